"""Delivery between processes: which frames of a camera in another process the node answers,
for each publisher reliability, node `input_qos` and Fast DDS profile.

```
python -m superpoint_ros.tools.bench_delivery                # every row, 30 frames each at 2 Hz
python -m superpoint_ros.tools.bench_delivery --frames 10 --output-dir .   # also append to BENCHMARKS.md
python -m superpoint_ros.tools.bench_delivery --churn --frames 100          # reliable camera, with and without churn
```

`--churn` runs the reliable camera with `input_qos: auto` three times: alone; while
`superpoint_ros.tools.qos_churn` makes short-lived best-effort publishers come and go on its topic
(one every 0.6 s, living 0.3 s) and the node follows every publisher at once
(`qos_settle_period: 0`, as before the settle period existed); and with the same churn under the
shipped `qos_settle_period`. It counts the subscriptions the node made.

Three processes per row, as on a robot: the installed node (`python -m superpoint_ros.ros.node`
with the shipped `config/detector.yaml`, random weights, CPU), `superpoint_ros.tools.camera_sim`
publishing 640×480 `bgr8`, and this process counting the `KeypointArray`s that come back. The
profile, where a row uses it, is the installed `config/fastdds_large_images.xml`, exported in the
processes the row names. The node's log is searched for its silent-publisher warning, and its
statistics lines give the frames it received: the first frame of a size compiles the engine
(about a second), so the frames that arrive meanwhile are received but dropped for newer ones.
"""

import argparse
import datetime
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

ROWS = (
    # publisher reliability, node input_qos, processes given the Fast DDS profile
    ("reliable", "auto", "none"),
    ("best_effort", "auto", "none"),
    ("reliable", "sensor_data", "none"),
    ("best_effort", "sensor_data", "none"),
    ("reliable", "reliable", "none"),
    ("best_effort", "auto", "both"),
    ("reliable", "sensor_data", "both"),
    ("best_effort", "auto", "node only"),
)
WARNING_TEXT = "no frame on"
CHURN_PERIOD_S = 0.6
CHURN_LIFETIME_S = 0.3


def _share(name: str) -> str:
    from ament_index_python.packages import get_package_share_directory

    return str(pathlib.Path(get_package_share_directory("superpoint_ros")) / "config" / name)


def run_row(
    reliability: str,
    input_qos: str,
    profile: str,
    frames: int,
    rate_hz: float,
    domain_id: int,
    churn: bool = False,
    settle_period_s: float | None = None,
) -> dict:
    """Start node and camera (and with `churn`, `qos_churn` for as long as the camera runs), count
    the answers; the row's result as a dict."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from superpoint_ros.msg import KeypointArray

    base = {key: value for key, value in os.environ.items() if key != "FASTRTPS_DEFAULT_PROFILES_FILE"}
    base["ROS_DOMAIN_ID"] = str(domain_id)
    with_profile = {**base, "FASTRTPS_DEFAULT_PROFILES_FILE": _share("fastdds_large_images.xml")}
    node_environment = with_profile if profile in ("both", "node only") else base
    camera_environment = with_profile if profile == "both" else base
    namespace = f"/delivery_{os.getpid()}"
    node = subprocess.Popen(
        [sys.executable, "-m", "superpoint_ros.ros.node", "--ros-args", "-r", f"__ns:={namespace}",
         "--params-file", _share("detector.yaml"), "-p", "weights:=random", "-p", "device:=cpu",
         "-p", f"input_qos:={input_qos}", "-p", "silence_warning_period:=3.0"]
        + ([] if settle_period_s is None else ["-p", f"qos_settle_period:={settle_period_s}"]),
        env=node_environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    context = Context()
    rclpy.init(args=[], context=context, domain_id=domain_id)
    probe = Node("delivery_probe", context=context)
    answers = []
    probe.create_subscription(
        KeypointArray,
        f"{namespace}/keypoints",
        answers.append,
        QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE),
    )
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    churner = None
    if churn:
        churner = subprocess.Popen(
            [sys.executable, "-m", "superpoint_ros.tools.qos_churn", "--topic", f"{namespace}/image",
             "--count", str(int(frames / rate_hz / CHURN_PERIOD_S) + 30), "--period", str(CHURN_PERIOD_S),
             "--lifetime", str(CHURN_LIFETIME_S)],
            env=base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        camera = subprocess.run(
            [sys.executable, "-m", "superpoint_ros.tools.camera_sim", "--topic", f"{namespace}/image",
             "--rate", str(rate_hz), "--frames", str(frames), "--height", "480", "--width", "640",
             "--encoding", "bgr8", "--reliability", reliability, "--wait-for-subscriber", "60"],
            env=camera_environment, capture_output=True, text=True, timeout=120 + frames / rate_hz,
        )  # fmt: skip
        published = int(camera.stdout.split("camera_sim: published ")[1].split()[0])
        time.sleep(5.0)  # the last frame's inference, a statistics line, the silence warning's period
    finally:
        if churner is not None:
            churner.send_signal(signal.SIGINT)
            churner.communicate(timeout=30)
        node.send_signal(signal.SIGINT)
        log, _ = node.communicate(timeout=30)
        executor.shutdown()
        probe.destroy_node()
        context.try_shutdown()
    return {
        "publisher": reliability.replace("_", " "),
        "input_qos": input_qos,
        "profile": profile,
        "published": published,
        "answered": len(answers),
        # The largest count in the statistics lines: the node's total since start.
        "received": max((int(count) for count in re.findall(r"(\d+) frames received", log)), default=0),
        "warned": WARNING_TEXT in log,
        "churn": churn,
        "settle": "shipped" if settle_period_s is None else f"{settle_period_s:g} s",
        "subscriptions": log.count("subscribing to"),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| publisher | node `input_qos` | Fast DDS profile | received by the node | answered | node warned |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['publisher']} | `{row['input_qos']}` | {row['profile']} | "
            f"{row['received']} / {row['published']} | {row['answered']} / {row['published']} | "
            f"{'yes' if row['warned'] else 'no'} |"
        )
    return "\n".join(lines)


def churn_table(rows: list[dict]) -> str:
    lines = [
        "| best-effort publisher churn | `qos_settle_period` | received by the node | answered | subscriptions made |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        churn = f"one every {CHURN_PERIOD_S:g} s, living {CHURN_LIFETIME_S:g} s" if row["churn"] else "none"
        lines.append(
            f"| {churn} | {row['settle']} | {row['received']} / {row['published']} | "
            f"{row['answered']} / {row['published']} | {row['subscriptions']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m superpoint_ros.tools.bench_delivery", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rate", type=float, default=2.0, help="Hz")
    parser.add_argument("--domain-id", type=int, default=1 + os.getpid() % 100)
    parser.add_argument("--output-dir", type=pathlib.Path, help="append the table to BENCHMARKS.md there")
    parser.add_argument("--churn", action="store_true", help="reliable camera without, then with publisher churn")
    arguments = parser.parse_args(argv)
    rows = []
    if arguments.churn:
        for churn, settle_period_s in ((False, None), (True, 0.0), (True, None)):
            rows.append(
                run_row(
                    "reliable", "auto", "none", arguments.frames, arguments.rate, arguments.domain_id, churn,
                    settle_period_s,
                )
            )  # fmt: skip
            print(churn_table(rows[-1:]).splitlines()[-1], flush=True)
        text = churn_table(rows)
    else:
        for reliability, input_qos, profile in ROWS:
            rows.append(run_row(reliability, input_qos, profile, arguments.frames, arguments.rate, arguments.domain_id))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        text = table(rows)
    print(text)
    if arguments.output_dir:
        from superpoint_ros.tools.bench_scenes import machine_info

        command = shlex.join(["python", "-m", "superpoint_ros.tools.bench_delivery", *(argv or sys.argv[1:])])
        machine = machine_info()
        title = "Input QoS under publisher churn" if arguments.churn else "Delivery between processes"
        entry = (
            f"\n## {title}, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}\n\n"
            f"`{command}` on {machine['cpu']}, {machine['cores']} cores, load average "
            f"{' '.join(f'{value:.2f}' for value in os.getloadavg())}. 640×480 bgr8 at {arguments.rate:g} Hz from "
            "`camera_sim` in its own process, the installed node with the shipped config in another.\n\n"
            f"{text}\n"
        )
        with open(arguments.output_dir / "BENCHMARKS.md", "a") as markdown:
            markdown.write(entry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
