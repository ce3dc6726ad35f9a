"""Soak benchmark: the node as a process under overload for minutes, `make soak` (= `python -m
superpoint_ros.tools.soak`, options in `--help`).

Three processes besides this one: the node (`python -m superpoint_ros.ros.node`, device cpu, two
cameras, reliable input) and two `camera_sim` cameras at `--overload` times the node's capacity,
480×640 bgr8. Capacity is one 2-frame batch per inference; this process times that batch with
the same `Detector` and weights before anything else starts. From here, the four detection
parameters are changed every second through the node's `set_parameters` service, and the
keypoints are received; latency is receive time minus the frame's header stamp (the cameras
stamp with the system clock at publish, and every process shares this machine's clock).

The left camera starts first, alone, so that the node's engine has prepared both batch shapes
(one frame, two frames) before the warm-up ends, which then runs three batches at the settings
that give the most keypoints (`HEAVIEST`) before the changes start. After `--warmup` seconds with output flowing,
and at least ten outputs per camera, the node's RSS, threads and open descriptors are read
from /proc, then again after `--duration` seconds. Then the cameras stop and the node gets
SIGINT. Frame counts come from the cameras' exit lines, the node's statistics log lines and the
outputs received here. Targets (PASS/FAIL each): p99 latency ≤ 2.2 × one batch's inference (a
frame waits at most one inference, then runs one), RSS growth ≤ 5 %, RSS after warm-up ≤ 600 MB
(issue 17's budget for float32 and two cameras; `bench_memory` breaks it down), threads and descriptors
flat, no ERROR/FATAL/Traceback line from any process, exit 0 within 10 s of SIGINT.

Writes `benchmarks/soak-<date>.json` and appends an entry to BENCHMARKS.md.

Why one module over 400 lines: one command that starts, loads, watches and judges the node
processes; its checks read the same timeline.
"""

import argparse
import json
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from superpoint_ros.tools.bench_scenes import benchmark_weights, record_head
from superpoint_ros.tools.scenes import camera_view, draw_scene

HEIGHT, WIDTH = 480, 640
CAMERAS = ("left", "right")
NODE = "superpoint_detector"
# Sets drawn from every second: thresholds, radii, caps and borders users actually pick. Each
# starts with the value that keeps the most keypoints.
PARAMETER_CHOICES = {
    "keypoint_threshold": [0.001, 0.003, 0.005, 0.01, 0.02],
    "nms_radius": [2, 3, 4, 6, 8],
    "max_keypoints": [-1, 256, 1024, 2048],
    "border_removal_distance": [0, 4, 8, 16],
}
# The largest outputs (most keypoints) set the allocator's high-water mark: glibc keeps freed
# large buffers in the heap once its mmap threshold has risen, so RSS steps up at each new
# largest batch and stays. The warm-up runs these settings first, so that a later step is news.
HEAVIEST = {name: choices[0] for name, choices in PARAMETER_CHOICES.items()}
HEAVIEST_BATCHES = 3
ERROR_PATTERN = re.compile(r"\[(ERROR|FATAL)\]|Traceback")
STATISTICS_PATTERN = re.compile(
    r"\b(\w+): [^;]*; since start (\d+) frames received, (\d+) processed, (\d+) dropped for newer frames, "
    r"(\d+) rejected"
)
CLEAN_STOP_S = 10.0
WARMUP_OUTPUTS = 10
TARGETS = {"p99_over_inference": 2.2, "rss_growth": 0.05, "rss_after_warmup_mb": 600}
MIB_IN_MB = 1024 * 1024 / 1e6


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m superpoint_ros.tools.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds measured after the warm-up")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of load before the first reading")
    parser.add_argument("--overload", type=float, default=3.0, help="camera rate as a multiple of capacity")
    parser.add_argument("--output-dir", type=pathlib.Path, default=pathlib.Path("."))
    parser.add_argument("--no-write", action="store_true", help="print the report only")
    return parser.parse_args(argv)


def batch_inference_s(weights: str) -> float:
    """Median seconds of `Detector.detect` on two 480×640 frames, as the node will run them."""
    from superpoint_ros.detector import Detector

    detector = Detector(weights=weights, device="cpu")
    scene = draw_scene(2 * HEIGHT, 2 * WIDTH)
    frames = [camera_view(scene, HEIGHT, WIDTH, t) for t in (0.0, 0.5)]
    detector.detect(frames)
    durations = []
    for _ in range(5):
        start = time.perf_counter()
        detector.detect(frames)
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def resources(pid: int) -> dict:
    """RSS and its peak so far (MiB), thread count and open file descriptors of process `pid`."""
    status = dict(line.split(":", 1) for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines())
    return {
        "rss_mib": int(status["VmRSS"].split()[0]) / 1024,
        "peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024,
        "threads": int(status["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system, all threads) used so far by each process, and by the whole
    machine as `machine` (every core's busy time, from /proc/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for name, pid in pids.items():
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        used[name] = (int(fields[11]) + int(fields[12])) / ticks
    user, nice, system, idle, iowait, *rest = map(int, pathlib.Path("/proc/stat").read_text().split()[1:9])
    used["machine"] = (user + nice + system + sum(rest)) / ticks
    return used


class Child:
    """A child process whose stdout and stderr lines are collected as they come."""

    def __init__(self, command: list[str], environment: dict) -> None:
        self.process = subprocess.Popen(
            command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.process.stdout, self.process.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def stop(self, timeout_s: float) -> tuple[int | None, float]:
        """SIGINT, then wait; (exit status or None if it had to be killed, seconds to exit)."""
        start = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            returncode = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            returncode = None
        elapsed_s = time.monotonic() - start
        for reader in self._readers:
            reader.join(timeout=5.0)
        return returncode, elapsed_s


class Probe:
    """This process's side of the graph: the keypoints subscriptions and the parameter client."""

    def __init__(self, domain_id: int) -> None:
        import rclpy
        from rcl_interfaces.srv import SetParameters
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from superpoint_ros.msg import KeypointArray

        self.context = Context()
        rclpy.init(args=[], context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("soak_probe", context=self.context)
        self.outputs: dict[str, list[tuple[float, float, int]]] = {camera: [] for camera in CAMERAS}
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for camera in CAMERAS:
            self.node.create_subscription(KeypointArray, f"{camera}/keypoints", self._receiver(camera), qos)
        self.client = self.node.create_client(SetParameters, f"/{NODE}/set_parameters")
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _receiver(self, camera: str):
        def received(message) -> None:
            now_s = time.time()
            stamp_s = message.header.stamp.sec + message.header.stamp.nanosec * 1e-9
            self.outputs[camera].append((now_s, now_s - stamp_s, len(message.scores)))

        return received

    def set_parameters(self, values: dict, timeout_s: float) -> tuple[bool | None, float]:
        """(all accepted, or None without a reply in `timeout_s`; seconds to the reply)."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(
            parameters=[Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]
        )
        start = time.monotonic()
        future = self.client.call_async(request)
        deadline = start + timeout_s
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not future.done():
            self.client.remove_pending_request(future)
            return None, timeout_s
        return all(result.successful for result in future.result().results), time.monotonic() - start

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=5.0)


class ParameterChanger(threading.Thread):
    """Sets all four detection parameters to a new draw every second until stopped."""

    def __init__(self, probe: Probe) -> None:
        super().__init__(daemon=True)
        self.probe = probe
        self.stopping = threading.Event()
        self.replies: list[tuple[bool | None, float]] = []

    def run(self) -> None:
        rng = np.random.default_rng(0)
        next_s = time.monotonic()
        while not self.stopping.wait(max(0.0, next_s - time.monotonic())):
            values = {name: choices[rng.integers(len(choices))] for name, choices in PARAMETER_CHOICES.items()}
            self.replies.append(self.probe.set_parameters(values, timeout_s=5.0))
            next_s += 1.0


def wait_for(condition, timeout_s: float, what: str, node: Child) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if node.process.poll() is not None:
            raise RuntimeError(f"the node exited ({node.process.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} after {timeout_s:.0f} s")
        time.sleep(0.1)


def node_statistics(lines: list[str]) -> dict[str, dict[str, int]]:
    """The last statistics line of each camera in the node's log."""
    counters = {}
    for line in lines:
        for match in STATISTICS_PATTERN.finditer(line):
            camera, *values = match.groups()
            counters[camera] = dict(
                zip(("received", "processed", "dropped_for_newer", "rejected"), map(int, values), strict=True)
            )
    return counters


def published_count(lines: list[str]) -> int | None:
    counts = [int(line.split()[-1]) for line in lines if line.startswith("camera_sim: published ")]
    return counts[-1] if counts else None


def node_command(weights: str, topics: list[str], names: list[str], *parameters: str) -> list[str]:
    """The installed node on the CPU with `weights`, cameras `names` on `topics`, statistics
    every second, and `parameters` (`name:=value`) besides."""
    arguments = [f"weights:={weights}", "device:=cpu", f"image_topics:=[{', '.join(topics)}]"]
    arguments += [f"camera_names:=[{', '.join(names)}]", "statistics_period:=1.0", *parameters]
    return [sys.executable, "-m", "superpoint_ros.ros.node", "--ros-args"] + [
        word for argument in arguments for word in ("-p", argument)
    ]


def run_soak(arguments: argparse.Namespace, weights: str, inference_s: float) -> dict:
    domain_id = 100 + os.getpid() % 100
    environment = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    rate_hz = arguments.overload / inference_s
    topics = [f"{camera}/image" for camera in CAMERAS]
    node = Child(node_command(weights, topics, CAMERAS), environment)
    probe = Probe(domain_id)
    cameras, changer = [], ParameterChanger(probe)
    try:
        wait_for(probe.client.service_is_ready, 600, "set_parameters service", node)
        # The left camera starts alone, so the node runs a batch of one before batches of two:
        # its engine prepares each batch shape once, and that memory belongs to the warm-up.
        for camera, topic in zip(CAMERAS, topics, strict=True):
            command = [
                sys.executable,
                "-m",
                "superpoint_ros.tools.camera_sim",
                "--topic",
                topic,
                "--rate",
                f"{rate_hz:.3f}",
            ]
            cameras.append(
                Child(command + ["--frame-id", f"{camera}_optical", "--wait-for-subscriber", "120"], environment)
            )
            wait_for(lambda camera=camera: probe.outputs[camera], 300, f"keypoints from the {camera} camera", node)
        print(f"soak: output flowing; warming up {arguments.warmup:.0f} s", flush=True)
        if probe.set_parameters(HEAVIEST, timeout_s=30.0)[0] is not True:
            raise RuntimeError(f"the node did not accept {HEAVIEST}")
        counts = {camera: len(outputs) for camera, outputs in probe.outputs.items()}

        def heavy_done() -> bool:
            return all(len(probe.outputs[camera]) >= counts[camera] + HEAVIEST_BATCHES for camera in CAMERAS)

        wait_for(heavy_done, 600, f"{HEAVIEST_BATCHES} outputs per camera at {HEAVIEST}", node)
        changer.start()
        time.sleep(arguments.warmup)

        def warm() -> bool:
            return min(map(len, probe.outputs.values())) >= WARMUP_OUTPUTS

        wait_for(warm, 600, f"{WARMUP_OUTPUTS} outputs per camera", node)
        measured_from_s = time.time()
        pids = {"node": node.process.pid, "soak": os.getpid()}
        pids.update({f"camera {camera}": child.process.pid for camera, child in zip(CAMERAS, cameras, strict=True)})
        cpu_at_start = cpu_seconds(pids)
        samples = [{"t_s": 0.0, **resources(node.process.pid)}]
        print(f"soak: after warm-up {samples[0]}; measuring {arguments.duration:.0f} s", flush=True)
        while (elapsed_s := time.time() - measured_from_s) < arguments.duration:
            if node.process.poll() is not None:
                raise RuntimeError(f"the node exited ({node.process.returncode}) during the soak")
            time.sleep(min(10.0, arguments.duration - elapsed_s))
            samples.append({"t_s": round(time.time() - measured_from_s, 1), **resources(node.process.pid)})
        cpu_used = {name: seconds - cpu_at_start[name] for name, seconds in cpu_seconds(pids).items()}
        print(f"soak: at the end {samples[-1]}", flush=True)
        changer.stopping.set()
        changer.join()
        camera_exits = [camera.stop(10.0)[0] for camera in cameras]
        time.sleep(2.5)  # the node finishes its last batch and logs its final counts
        node_exit, node_stop_s = node.stop(30.0)
    except RuntimeError as error:
        raise RuntimeError(f"{error}; the node's last lines:\n" + "\n".join(node.lines[-15:])) from None
    finally:
        changer.stopping.set()
        for child in [*cameras, node]:
            if child.process.poll() is None:
                child.stop(10.0)
        probe.close()
    return {
        "rate_hz": rate_hz,
        "samples": samples,
        "cpu_s": cpu_used,
        "measured_from_s": measured_from_s,
        "outputs": probe.outputs,
        "parameter_replies": changer.replies,
        "node_lines": node.lines,
        "camera_lines": [camera.lines for camera in cameras],
        "camera_exits": camera_exits,
        "node_exit": node_exit,
        "node_stop_s": node_stop_s,
    }


def summarise(raw: dict, inference_s: float) -> dict:
    """Counts, latency, resources and the target verdicts of one soak."""
    latencies = [
        latency for outputs in raw["outputs"].values() for at_s, latency, _ in outputs if at_s >= raw["measured_from_s"]
    ]
    p50_ms, p99_ms = (float(np.percentile(latencies, q) * 1e3) for q in (50, 99))
    # Under overload each batch answers every camera once: the gaps between answers are the
    # node's batch period in the soak, which other load on the machine can stretch.
    gaps = [
        np.diff([at_s for at_s, _, _ in outputs if at_s >= raw["measured_from_s"]])
        for outputs in raw["outputs"].values()
    ]
    period_ms = float(np.median(np.concatenate(gaps)) * 1e3)
    start, end = raw["samples"][0], raw["samples"][-1]
    errors = [
        line for lines in [raw["node_lines"], *raw["camera_lines"]] for line in lines if ERROR_PATTERN.search(line)
    ]
    replies = raw["parameter_replies"]
    counters = node_statistics(raw["node_lines"])
    frames = {
        camera: {
            "published": published_count(lines),
            **counters.get(camera, {}),
            "outputs_received": len(raw["outputs"][camera]),
        }
        for camera, lines in zip(CAMERAS, raw["camera_lines"], strict=True)
    }
    rss_growth = end["rss_mib"] / start["rss_mib"] - 1
    targets = {
        f"p99 latency ≤ {TARGETS['p99_over_inference']} × batch inference": p99_ms
        <= TARGETS["p99_over_inference"] * inference_s * 1e3,
        f"RSS growth ≤ {TARGETS['rss_growth']:.0%} after warm-up": rss_growth <= TARGETS["rss_growth"],
        # Issue 17: float32, two 480×640 cameras; stated in MB (10⁶ bytes).
        f"RSS after warm-up ≤ {TARGETS['rss_after_warmup_mb']} MB": start["rss_mib"] * MIB_IN_MB
        <= TARGETS["rss_after_warmup_mb"],
        "threads flat": end["threads"] == start["threads"],
        "file descriptors flat": end["fds"] == start["fds"],
        "zero errors": not errors,
        f"clean stop on SIGINT (exit 0 within {CLEAN_STOP_S:.0f} s)": raw["node_exit"] == 0
        and raw["node_stop_s"] <= CLEAN_STOP_S,
    }
    return {
        "batch_inference_ms": inference_s * 1e3,
        "camera_rate_hz": raw["rate_hz"],
        "frames": frames,
        "latency_ms": {"p50": p50_ms, "p99": p99_ms, "max": float(max(latencies) * 1e3), "count": len(latencies)},
        "answer_period_ms": period_ms,
        "cpu_s": raw["cpu_s"],
        "resources": {"after_warmup": start, "end": end, "rss_growth": rss_growth, "samples": raw["samples"]},
        "parameter_changes": {
            "sent": len(replies),
            "accepted": sum(accepted is True for accepted, _ in replies),
            "refused": sum(accepted is False for accepted, _ in replies),
            "unanswered_5s": sum(accepted is None for accepted, _ in replies),
            "reply_p50_ms": float(np.median([s for _, s in replies]) * 1e3) if replies else None,
            "reply_max_ms": float(max(s for _, s in replies) * 1e3) if replies else None,
        },
        "errors": {"count": len(errors), "first": errors[:20]},
        "stop": {"node_exit": raw["node_exit"], "node_stop_s": raw["node_stop_s"], "camera_exits": raw["camera_exits"]},
        "targets": targets,
    }


def report(record: dict) -> str:
    """The Markdown entry of one soak (also printed)."""
    result = record["result"]
    frames, latency, resources_ = result["frames"], result["latency_ms"], result["resources"]
    start, end = resources_["after_warmup"], resources_["end"]
    parameters = result["parameter_changes"]
    load = record["load_average"]
    machine = record["machine"]
    cpu = dict(result["cpu_s"])
    machine_cpu_s = cpu.pop("machine")
    lines = [
        f"## Soak {record['date']}: {machine['cpu']}, GPU {machine['gpu'] or 'none'}",
        "",
        f"- Command: `{record['command']}` ({record['duration_s']:.0f} s measured after a warm-up: "
        f"the left camera alone until its first output, then both: {HEAVIEST_BATCHES} batches at the settings "
        f"with the most keypoints, then changes for at least {record['warmup_s']:.0f} s and until "
        f"{WARMUP_OUTPUTS} outputs per camera)",
        f"- Machine: {machine['cores']} cores, Python {machine['python']}, torch {machine['torch']}, OpenVINO "
        f"{machine['openvino'] or 'not installed'}; load average (1/5/15 min) at start "
        f"{' / '.join(f'{v:.2f}' for v in load['start'])}, at end {' / '.join(f'{v:.2f}' for v in load['end'])}",
        f"- Node: device cpu, backend auto, two cameras 480×640 bgr8, input_qos auto, {record['weights']}",
        f"- One 2-frame batch: {result['batch_inference_ms']:.0f} ms (this process, before the soak); cameras at "
        f"{result['camera_rate_hz']:.1f} Hz each ({record['overload']:g}× capacity)",
        "",
        "| camera | published | received by the node | processed | dropped for newer | rejected | outputs here |",
        "|---|---|---|---|---|---|---|",
    ]
    for camera, counts in frames.items():
        columns = ("published", "received", "processed", "dropped_for_newer", "rejected", "outputs_received")
        lines.append(f"| {camera} | " + " | ".join(str(counts.get(key, "?")) for key in columns) + " |")
    lines += [
        "",
        f"- Latency, stamp to keypoints received (after warm-up, {latency['count']} outputs): p50 "
        f"{latency['p50']:.0f} ms, p99 {latency['p99']:.0f} ms, max {latency['max']:.0f} ms; p99 is "
        f"{latency['p99'] / result['batch_inference_ms']:.2f}× one batch",
        f"- The node answered each camera every {result['answer_period_ms']:.0f} ms (median gap: its batch "
        f"period during the soak); p99 is {latency['p99'] / result['answer_period_ms']:.2f}× that",
        f"- CPU seconds used while measuring, of {machine['cores'] * record['duration_s']:.0f} available: "
        + ", ".join(f"{name} {seconds:.0f}" for name, seconds in cpu.items())
        + f", everything else on the machine {machine_cpu_s - sum(cpu.values()):.0f}",
        f"- Node process after warm-up → end: RSS {start['rss_mib']:.0f} → {end['rss_mib']:.0f} MiB "
        f"({start['rss_mib'] * MIB_IN_MB:.0f} → {end['rss_mib'] * MIB_IN_MB:.0f} MB, "
        f"{resources_['rss_growth']:+.1%}; peak {end['peak_rss_mib'] * MIB_IN_MB:.0f} MB), "
        f"threads {start['threads']} → {end['threads']}, "
        f"fds {start['fds']} → {end['fds']}",
        f"- Parameter changes: {parameters['sent']} sent, {parameters['accepted']} accepted, "
        f"{parameters['refused']} refused, {parameters['unanswered_5s']} unanswered in 5 s; reply p50 "
        f"{parameters['reply_p50_ms']:.0f} ms, max {parameters['reply_max_ms']:.0f} ms",
        f"- Errors (ERROR/FATAL/Traceback lines): {result['errors']['count']}",
        f"- Stop: node exit {result['stop']['node_exit']} after {result['stop']['node_stop_s']:.1f} s of SIGINT",
        "",
        *(f"- {'PASS' if passed else 'FAIL'}: {target}" for target, passed in result["targets"].items()),
        "",
    ]
    return "\n".join(lines)


def write_reports(output_dir: pathlib.Path, record: dict, entry: str) -> pathlib.Path:
    directory = output_dir / "benchmarks"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"soak-{record['timestamp']}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    with (output_dir / "BENCHMARKS.md").open("a") as stream:
        stream.write("\n" + entry.replace("\n\n|", f"\n\nJSON: `benchmarks/{path.name}`\n\n|", 1))
    return path


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    load_start = os.getloadavg()
    record = {
        **record_head("superpoint_ros.tools.soak", argv),
        "duration_s": arguments.duration,
        "warmup_s": arguments.warmup,
        "overload": arguments.overload,
        "weights": "random weights in the hub layout (`bench_scenes.benchmark_weights`, seed 0)",
    }
    with tempfile.TemporaryDirectory(prefix="superpoint_soak_") as scratch:
        weights = str(benchmark_weights(pathlib.Path(scratch) / "weights"))
        inference_s = batch_inference_s(weights)
        print(f"soak: one 2-frame batch takes {inference_s * 1e3:.0f} ms; load {load_start}", flush=True)
        try:
            raw = run_soak(arguments, weights, inference_s)
        except RuntimeError as error:
            print(f"soak: aborted: {error}", file=sys.stderr)
            return 1
    record["load_average"] = {"start": list(load_start), "end": list(os.getloadavg())}
    record["result"] = summarise(raw, inference_s)
    entry = report(record)
    print(entry)
    if not arguments.no_write:
        print(f"wrote {write_reports(arguments.output_dir, record, entry)}")
    return 0 if all(record["result"]["targets"].values()) else 2


if __name__ == "__main__":
    sys.exit(main())
