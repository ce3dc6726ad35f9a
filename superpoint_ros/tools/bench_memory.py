"""Memory benchmark: where the detector node's memory goes, and its RSS after warm-up.

```
python -m superpoint_ros.tools.bench_memory                       # both parts, float32 and int8
python -m superpoint_ros.tools.bench_memory --precisions float32 --no-breakdown
```

`make bench` runs it too (`--memory`, on by default with ROS). Everything measured runs in
processes of its own, so that nothing shares a heap with this one:

- **Breakdown**: a child process (`--stages`) does what the node process does, step by step,
  and reads its own `/proc/self/status` after each step: the imports (numpy and OpenCV, rclpy
  and the messages, OpenVINO, our node module), the detector the node would build
  (`detector_choice.create_detector`: on the CPU with OpenVINO, the torch-free
  `OpenVinoDetector`, whose network a child process prepares once), the first 480×640 frame
  (the engine compiled for that shape and its buffers), a 2-frame batch, a few more frames at
  the settings that give the most keypoints, and last `malloc_trim(0)`, which shows how much of
  the heap was free but kept. It also names the heavy packages imported by then that the engine
  does not need, torch among them.
- **Node**: `python -m superpoint_ros.ros.node` as a process (device cpu, reliable input), with one or
  two `camera_sim` cameras at `CAMERA_RATE_HZ`, 480×640 bgr8. After the node's log says it has
  processed `WARMUP_FRAMES` frames of each camera, and `SETTLE_S` seconds more, its RSS is read
  from `/proc/<pid>/status`, with its anonymous and file-backed parts and its peak (VmHWM). int8
  runs twice: with an empty cache directory (the first start quantises) and again with it.

Sizes are MB = 10⁶ bytes, as the targets of issue 17 are stated. RSS counts the shared
libraries' pages the process touched (file-backed), which other processes may share.

Why one module over 400 lines: it is one command. The breakdown (run by a child process of this
module), the node runs, the speed runs and the report share `process_memory` and one JSON record.
"""

import argparse
import ctypes
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

HEIGHT, WIDTH = 480, 640
CAMERA_RATE_HZ = 5.0
WARMUP_FRAMES = 10
SETTLE_S = 5.0
SPEED_RUNS = 30
TARGETS_MB = {("float32", 2): 600, ("int8", 2): 500, ("float32", 1): 500}
"""Issue 17 §2: RSS after warm-up for (precision, cameras)."""
# Packages the node must not need at run time with the OpenVINO engine: the reference and tools.
TOOLING_MODULES = ("transformers", "nncf", "onnxruntime", "huggingface_hub", "safetensors.torch")
_STATUS_FIELDS = {"VmRSS": "rss_mb", "RssAnon": "anon_mb", "RssFile": "file_mb", "VmHWM": "peak_mb"}


def process_memory(pid: int | str = "self") -> dict[str, float]:
    """RSS of process `pid` in MB: total, anonymous, file-backed and its peak (`VmHWM`)."""
    memory = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        field, _, value = line.partition(":")
        if field in _STATUS_FIELDS:
            memory[_STATUS_FIELDS[field]] = int(value.split()[0]) * 1024 / 1e6
    return memory


def malloc_trim() -> None:
    """Give the heap's free pages back to the system (glibc)."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def run_stages(weights: str, precision: str, cache_dir: str) -> None:
    """The breakdown's child process: one JSON line per step on stdout."""

    def step(name: str) -> None:
        print(json.dumps({"stage": name, **process_memory()}), flush=True)

    step("python")
    import cv2  # noqa: F401
    import numpy  # noqa: F401

    step("numpy, OpenCV")
    import rclpy  # noqa: F401
    import sensor_msgs.msg  # noqa: F401

    step("rclpy and messages")
    if importlib.util.find_spec("openvino") is not None:
        import openvino  # noqa: F401

        step("OpenVINO")
    import numpy as np

    import superpoint_ros.ros.node  # noqa: F401
    from superpoint_ros.calibration import calibration_scenes
    from superpoint_ros.detector_choice import create_detector
    from superpoint_ros.feature_types import DetectionSettings

    step("our node module")
    detector = create_detector(
        weights=weights,
        device="cpu",
        precision=precision,
        quantization_cache_dir=cache_dir,
        network_cache_dir=cache_dir,
    )
    step(f"detector ({type(detector).__name__})")
    image = np.dstack([calibration_scenes(1, HEIGHT, WIDTH)[0]] * 3)
    detector.detect([image])
    step("first frame (batch 1)")
    detector.detect([image, image])
    step("first 2-frame batch")
    most = DetectionSettings(keypoint_threshold=0.001, nms_radius=2, border_removal_distance=0)
    for _ in range(3):
        detector.detect([image, image], settings=most)
    step("3 batches at the most keypoints")
    malloc_trim()
    step("malloc_trim")
    loaded = [name for name in (*TOOLING_MODULES, "torch") if name in sys.modules]
    print(json.dumps({"weights_mb": weights_file_mb(detector), "tooling_imported": loaded}))


def weights_file_mb(detector) -> float:
    """The network's parameters in MB: the IR's .bin of the torch-free detector, else the module's."""
    prepared = getattr(detector, "prepared", None)
    if prepared is not None:
        return prepared.graph_path.with_suffix(".bin").stat().st_size / 1e6
    return sum(parameter.numel() * parameter.element_size() for parameter in detector.model.parameters()) / 1e6


def breakdown(weights: str, precision: str, cache_dir: str) -> dict:
    """`run_stages` in a fresh process: the steps with their memory, and each step's increase."""
    completed = subprocess.run(
        [sys.executable, "-m", "superpoint_ros.tools.bench_memory", "--stages", precision, "--weights", weights]
        + ["--cache-dir", cache_dir],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"the breakdown process failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
    *steps, summary = lines
    summary.setdefault("tooling_imported", [])
    previous = 0.0
    for step in steps:
        step["added_mb"] = step["rss_mb"] - previous
        previous = step["rss_mb"]
    return {"precision": precision, "steps": steps, **summary}


def node_rss(weights: str, precision: str, cameras: int, cache_dir: str) -> dict:
    """The node's memory after warm-up with `cameras` cameras (see the module docstring)."""
    from superpoint_ros.tools.soak import Child, node_command, node_statistics, wait_for

    names = ["left", "right"][:cameras]
    topics = [f"{name}/image" for name in names]
    environment = {
        **os.environ,
        "ROS_DOMAIN_ID": str(100 + os.getpid() % 100),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    }
    node = Child(
        node_command(
            weights, topics, names, f"precision:={precision}", f"int8_cache_dir:={cache_dir}", "input_qos:=reliable"
        ),
        environment,
    )
    camera_processes = []
    try:
        for topic in topics:
            command = [sys.executable, "-m", "superpoint_ros.tools.camera_sim", "--topic", topic]
            camera_processes.append(
                Child(command + ["--rate", str(CAMERA_RATE_HZ), "--wait-for-subscriber", "600"], environment)
            )

        def warm() -> bool:
            counters = node_statistics(node.lines)
            return all(counters.get(name, {}).get("processed", 0) >= WARMUP_FRAMES for name in names)

        start_s = time.monotonic()
        wait_for(warm, 900, f"{WARMUP_FRAMES} processed frames per camera", node)
        warmup_s = time.monotonic() - start_s
        time.sleep(SETTLE_S)
        memory = process_memory(node.process.pid)
    except RuntimeError as error:
        raise RuntimeError(f"{error}; the node's last lines:\n" + "\n".join(node.lines[-15:])) from None
    finally:
        for child in [*camera_processes, node]:
            child.stop(10.0)
    processed = {name: counts.get("processed") for name, counts in node_statistics(node.lines).items()}
    return {"precision": precision, "cameras": cameras, "warmup_s": warmup_s, "processed": processed, **memory}


def batch_speed(weights: str, runs: int = SPEED_RUNS) -> dict:
    """Milliseconds (median; interleaved, the order swapped every run, so that the load of a shared
    machine falls on both alike) of the OpenVINO float32 network on a 2-frame
    480×640 batch: as `OpenVinoNetwork` runs it (image by image, one model compiled at batch 1)
    and through a model compiled for batch 2, which is how it ran before and what one compiled
    model per batch size would cost in memory."""
    import numpy as np
    import openvino
    import torch

    from superpoint_ros.backends import OpenVinoNetwork, openvino_graph
    from superpoint_ros.weights import load_model

    model = load_model(weights)
    network = OpenVinoNetwork(model)
    graph = openvino_graph(model)
    graph.reshape({0: openvino.PartialShape([2, 1, HEIGHT, WIDTH])})
    batched = openvino.Core().compile_model(graph, "CPU", network.engine.config).create_infer_request()
    pixels = np.random.default_rng(0).random((2, 1, HEIGHT, WIDTH), dtype=np.float32)
    grey = torch.from_numpy(pixels)
    ways = {"image by image": lambda: network(grey), "compiled for batch 2": lambda: batched.infer({0: pixels})}
    durations = {name: [] for name in ways}
    for function in ways.values():
        function()
    for run in range(runs):
        for name, function in list(ways.items())[:: 1 if run % 2 else -1]:
            start = time.perf_counter()
            function()
            durations[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(samples)) for name, samples in durations.items()}


def detector_speed(weights: str, runs: int = SPEED_RUNS) -> dict:
    """Milliseconds (median, interleaved as in `batch_speed`) of one 480×640 frame through the
    torch-free `OpenVinoDetector` the node runs and through `Detector` with the OpenVINO engine,
    at the default settings and at those that give the most keypoints."""
    import numpy as np

    from superpoint_ros.calibration import calibration_scenes
    from superpoint_ros.detector import Detector
    from superpoint_ros.feature_types import DetectionSettings
    from superpoint_ros.openvino_detector import OpenVinoDetector

    image = np.dstack([calibration_scenes(1, HEIGHT, WIDTH, seed=3)[0]] * 3)
    with tempfile.TemporaryDirectory(prefix="superpoint_speed_") as cache:
        detectors = {
            "torch-free": OpenVinoDetector(weights=weights, network_cache_dir=cache),
            "Detector": Detector(weights=weights, device="cpu", backend="openvino"),
        }
    results = {}
    for label, settings in (
        ("default settings", DetectionSettings()),
        ("most keypoints", DetectionSettings(keypoint_threshold=0.001, nms_radius=2, border_removal_distance=0)),
    ):
        durations = {name: [] for name in detectors}
        for detector in detectors.values():
            (found,) = detector.detect([image], settings=settings)
        for run in range(runs):
            for name, detector in list(detectors.items())[:: 1 if run % 2 else -1]:
                start = time.perf_counter()
                detector.detect([image], settings=settings)
                durations[name].append(time.perf_counter() - start)
        medians = {name: 1e3 * float(np.median(samples)) for name, samples in durations.items()}
        results[label] = {**medians, "keypoints": len(found.scores), "runs": runs}
    return results


def format_detector_speed(speed: dict) -> str:
    runs = next(iter(speed.values()))["runs"]
    lines = [
        f"One 480×640 frame, median of {runs} interleaved runs:",
        "",
        "| settings | keypoints | torch-free OpenVinoDetector ms | Detector (OpenVINO) ms | ratio |",
        "|---|---|---|---|---|",
    ]
    for label, row in speed.items():
        ratio = row["torch-free"] / row["Detector"]
        lines.append(
            f"| {label} | {row['keypoints']} | {row['torch-free']:.0f} | {row['Detector']:.0f} | {ratio:.2f} |"
        )
    return "\n".join(lines)


def run_memory_benchmark(weights: str, precisions: tuple[str, ...] = ("float32", "int8"), stages: bool = True) -> dict:
    """Both parts for `precisions`, as a dict with a printable `table`."""
    breakdowns, rows = [], []
    with tempfile.TemporaryDirectory(prefix="superpoint_memory_") as scratch:
        for precision in precisions:
            cache_dir = str(pathlib.Path(scratch) / f"int8_cache_{precision}")
            if stages:
                print(f"memory: breakdown, {precision}", flush=True)
                breakdowns.append(breakdown(weights, precision, cache_dir))
            cases = [(2, "")] if precision == "int8" else [(1, ""), (2, "")]
            if precision == "int8":
                cases.append((2, " (cached int8 model)"))
            for cameras, note in cases:
                print(f"memory: node, {precision}, {cameras} camera(s){note}", flush=True)
                row = node_rss(weights, precision, cameras, cache_dir)
                row["note"] = note
                rows.append(row)
                print(f"memory: {format_node_table([row]).splitlines()[-1]}", flush=True)
    print("memory: batch speed, image by image against compiled for batch 2", flush=True)
    speed = batch_speed(weights)
    ratio = speed["image by image"] / speed["compiled for batch 2"]
    speed_line = (
        f"OpenVINO float32, one 2-frame 480×640 batch, median of {SPEED_RUNS} interleaved runs: image by image "
        f"{speed['image by image']:.0f} ms, compiled for batch 2 {speed['compiled for batch 2']:.0f} ms "
        f"(ratio {ratio:.2f})."
    )
    print("memory: speed, the torch-free detector against Detector with OpenVINO", flush=True)
    detector_speeds = detector_speed(weights)
    table = format_node_table(rows) + "\n\n" + speed_line + "\n\n" + format_detector_speed(detector_speeds)
    if breakdowns:
        table += "\n\n" + format_breakdown(breakdowns)
    return {
        "breakdowns": breakdowns,
        "node": rows,
        "batch_speed_ms": speed,
        "detector_speed_ms": detector_speeds,
        "table": table,
    }


def format_node_table(rows: list[dict]) -> str:
    lines = [
        "| node, 480×640 | RSS after warm-up MB | anonymous / file-backed MB | peak MB | target | frames processed |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        target = TARGETS_MB.get((row["precision"], row["cameras"]))
        verdict = "–" if target is None else f"≤ {target}: {'PASS' if row['rss_mb'] <= target else 'FAIL'}"
        processed = ", ".join(f"{name} {count}" for name, count in row["processed"].items())
        lines.append(
            f"| {row['precision']}, {row['cameras']} camera(s){row.get('note', '')} | {row['rss_mb']:.0f} | "
            f"{row['anon_mb']:.0f} / {row['file_mb']:.0f} | {row['peak_mb']:.0f} | {verdict} | {processed} |"
        )
    return "\n".join(lines)


def format_breakdown(breakdowns: list[dict]) -> str:
    """The steps side by side, one column per process (a step it did not take: –)."""
    header = " | ".join(f"{entry['precision']}: RSS MB (+ step; anonymous)" for entry in breakdowns)
    lines = [f"| step (one process each) | {header} |", "|---|" + "---|" * len(breakdowns)]
    names: list[str] = []
    for entry in breakdowns:
        for index, step in enumerate(entry["steps"]):
            if step["stage"] not in names:
                # After the step that came before it in its own process.
                previous = entry["steps"][index - 1]["stage"] if index else None
                names.insert(names.index(previous) + 1 if previous in names else len(names), step["stage"])
    for name in names:
        cells = []
        for entry in breakdowns:
            step = next((step for step in entry["steps"] if step["stage"] == name), None)
            if step is None:
                cells.append("–")
            else:
                cells.append(f"{step['rss_mb']:.0f} ({step['added_mb']:+.0f}; {step['anon_mb']:.0f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = [
        f"{entry['precision']}: weights {entry['weights_mb']:.1f} MB; tooling imported at run time: "
        f"{', '.join(entry['tooling_imported']) or 'none'}"
        for entry in breakdowns
    ]
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {note}" for note in notes)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m superpoint_ros.tools.bench_memory", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--weights", help="weights as the node takes them (default: random, hub layout)")
    parser.add_argument("--precisions", default="float32,int8")
    parser.add_argument("--no-breakdown", action="store_true", help="the node's RSS only")
    parser.add_argument("--stages", metavar="PRECISION", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", type=pathlib.Path, default=pathlib.Path.cwd())
    parser.add_argument("--no-write", action="store_true", help="print only; write no files")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.stages:
        run_stages(arguments.weights, arguments.stages, arguments.cache_dir)
        return 0
    # Not at the top: the breakdown's process must import nothing before its first step.
    from superpoint_ros.tools.bench_scenes import benchmark_weights, record_head

    record = record_head("superpoint_ros.tools.bench_memory", argv)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="superpoint_memory_weights_") as scratch:
        weights = arguments.weights or str(benchmark_weights(pathlib.Path(scratch) / "weights"))
        try:
            result = run_memory_benchmark(weights, tuple(arguments.precisions.split(",")), not arguments.no_breakdown)
        except RuntimeError as error:
            print(f"memory benchmark aborted: {error}", file=sys.stderr)
            return 1
    record["load_average"] = {"start": list(load_start), "end": list(os.getloadavg())}
    record["memory"] = result
    entry = report(record)
    print(entry)
    if not arguments.no_write:
        directory = arguments.output_dir / "benchmarks"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"memory-{record['timestamp']}.json"
        path.write_text(json.dumps(record, indent=1) + "\n")
        with (arguments.output_dir / "BENCHMARKS.md").open("a") as stream:
            stream.write(f"\n{entry}\nJSON: `benchmarks/{path.name}`\n")
        print(f"wrote {path}")
    return 0


def report(record: dict) -> str:
    """The Markdown entry of one run."""
    machine, load = record["machine"], record["load_average"]
    return "\n".join(
        [
            f"## Memory {record['date']}: {machine['cpu']}",
            "",
            f"- Command: `{record['command']}`; {machine['cores']} cores, torch {machine['torch']}, "
            f"OpenVINO {machine['openvino'] or 'not installed'}; load average (1/5/15 min) at start "
            f"{' / '.join(f'{v:.2f}' for v in load['start'])}, at end {' / '.join(f'{v:.2f}' for v in load['end'])}",
            f"- Node: `{CAMERA_RATE_HZ:g}` Hz per camera, RSS read {SETTLE_S:g} s after {WARMUP_FRAMES} "
            "processed frames per camera; random weights in the hub layout (the real network's size)",
            "",
            record["memory"]["table"],
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
