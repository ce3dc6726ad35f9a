"""`superpoint-bag` throughput against the `Detector`'s own batch throughput, same machine, same run.

    python -m superpoint_ros.tools.bench_bags --frames 48 --size 480x640 --batch 4 --rounds 3

Writes a bag of generated scenes (`bench_scenes.benchmark_scene`, raw `bgr8` or JPEG), then
alternates, round after round, the two measurements with one `Detector`: `detect` on the
frames already decoded in memory, batch after batch (the baseline), and `bags.process` on the
bag (read, decode, network, messages, write). Prints a Markdown section for BENCHMARKS.md with
each round's ratio and the share of the bag run spent outside `detect`; on a shared CPU the
median ratio and that share are the figures to read.
"""

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

from superpoint_ros import bag_messages, bags
from superpoint_ros.detector import Detector
from superpoint_ros.tools.bench_scenes import benchmark_scene, benchmark_weights, record_head


def write_input_bag(path: pathlib.Path, frames: list[np.ndarray], encoding: str) -> None:
    """A bag of `frames` on `/cam0/image_raw` (raw bgr8) or `/cam0/image_raw/compressed` (JPEG)."""
    store = bag_messages.typestore()
    types = store.types
    compressed = encoding == "jpeg"
    type_name = bag_messages.COMPRESSED_IMAGE if compressed else bag_messages.IMAGE
    topic = "/cam0/image_raw/compressed" if compressed else "/cam0/image_raw"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection(topic, type_name, typestore=store)
        for index, pixels in enumerate(frames):
            stamp = types["builtin_interfaces/msg/Time"](sec=index, nanosec=0)
            header = types["std_msgs/msg/Header"](stamp=stamp, frame_id="cam0")
            if compressed:
                data = cv2.imencode(".jpg", pixels)[1].reshape(-1)
                message = types[type_name](header=header, format="bgr8; jpeg compressed bgr8", data=data)
            else:
                message = bag_messages.image(pixels, "bgr8", header)
            writer.write(connection, (index + 1) * 10**8, store.serialize_cdr(message, type_name))


def detector_fps(detector: Detector, frames: list[np.ndarray], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(frames), batch):
        detector.detect(frames[start : start + batch])
    return len(frames) / (time.perf_counter() - started)


def bag_fps(detector: Detector, source: pathlib.Path, output: pathlib.Path, batch: int) -> tuple[float, float]:
    """Frames per second through `bags.process`, and the share of its time spent outside
    `detect` (reading ahead overlaps; what shows here is what the network waits for)."""
    network_s = 0.0
    detect = detector.detect

    def timed_detect(*args, **kwargs):
        nonlocal network_s
        started = time.perf_counter()
        try:
            return detect(*args, **kwargs)
        finally:
            network_s += time.perf_counter() - started

    detector.detect = timed_detect
    started = time.perf_counter()
    try:
        summary = bags.process(source, output, detector=detector, batch=batch, list_topics=False, overwrite=True)
    finally:
        del detector.detect
    elapsed = time.perf_counter() - started
    if summary.processed != summary.frames_read or summary.error:
        raise RuntimeError(summary.line())
    return summary.processed / elapsed, 1.0 - network_s / elapsed


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m superpoint_ros.tools.bench_bags", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", default="480x640", help="HEIGHTxWIDTH")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--input", choices=("raw", "jpeg"), default="raw", help="bgr8 Images or JPEG CompressedImages")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--weights", default=None, help="default: random hub-layout weights (bench_scenes.benchmark_weights)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    record = record_head("superpoint_ros.tools.bench_bags", argv)
    load_at_start = os.getloadavg()
    height, width = (int(side) for side in args.size.split("x"))
    with tempfile.TemporaryDirectory() as scratch:
        directory = pathlib.Path(scratch)
        weights = args.weights or str(benchmark_weights(directory / "weights"))
        detector = Detector(weights=weights, device=args.device, backend=args.backend)
        frames = [benchmark_scene(height, width, seed) for seed in range(args.frames)]
        write_input_bag(directory / "in", frames, args.input)
        if args.input == "jpeg":  # the baseline gets what the bag's frames decode to
            frames = [cv2.imdecode(cv2.imencode(".jpg", f)[1], cv2.IMREAD_UNCHANGED) for f in frames]
        detector.detect(frames[: args.batch])  # warm-up: first-call allocations
        rounds = []
        for _ in range(args.rounds):
            rounds.append(
                (
                    detector_fps(detector, frames, args.batch),
                    *bag_fps(detector, directory / "in", directory / "out", args.batch),
                )
            )
    ratios = [bag_rate / detector_rate for detector_rate, bag_rate, _ in rounds]
    machine = record["machine"]
    print(f"## {record['date']}: superpoint-bag throughput vs Detector batch throughput ({machine['cpu']})\n")
    print(f"- Command: `{record['command']}`")
    print(
        f"- Machine: {machine['cores']} cores ({machine['torch_threads']} torch threads), Python {machine['python']}, "
        f"torch {machine['torch']}, OpenVINO {machine['openvino']}; engine {detector.backend}, {detector.precision}"
    )
    print(
        f"- Input: {args.frames} frames {height}×{width} ({args.input}), batch {args.batch}; weights "
        f"{'random (benchmark_weights)' if args.weights is None else args.weights}"
    )
    load = " / ".join(f"{value:.2f}" for value in load_at_start)
    print(f"- Load average (1/5/15 min) at start {load}, at end {' / '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(
        "- Detector: `detect` on decoded frames in memory; superpoint-bag: `bags.process` on the MCAP bag with the "
        "same Detector (read, decode, network, KeypointArray, MCAP write), rounds alternating"
    )
    print(
        "\n| round | Detector frames/s | superpoint-bag frames/s | ratio | bag time outside `detect` |\n"
        "|---|---|---|---|---|"
    )
    for index, ((detector_rate, bag_rate, outside), ratio) in enumerate(zip(rounds, ratios, strict=True), start=1):
        print(f"| {index} | {detector_rate:.2f} | {bag_rate:.2f} | {ratio:.2f} | {100 * outside:.1f}% |")
    medians = [statistics.median(column) for column in zip(*rounds, strict=True)]
    print(
        f"| median | {medians[0]:.2f} | {medians[1]:.2f} | **{statistics.median(ratios):.2f}** | "
        f"{100 * medians[2]:.1f}% |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
