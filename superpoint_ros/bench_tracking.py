"""Tracker benchmark: `Tracker.update` time per frame at 500, 1000 and 2000 keypoints.

    python -m superpoint_ros.bench_tracking [--device cpu] [--threads N] [--frames 60] [--dds]

Input: points scattered over the demo's scene (`superpoint_ros.scenes`), seen through its
moving camera (`camera_homography`), so that tracks continue, leave and enter as in a video;
each point has its own unit descriptor, with noise per observation, and a tenth of each frame's
keypoints are fresh points (new tracks). The count per frame is held at N by taking the first N
visible points. The timer covers the whole `update`: matching, verification (`auto`, which fits
a fundamental matrix and a homography) and bookkeeping.

`--dds` also measures what the separate tracker process costs: a `KeypointArray` of 1000
keypoints (256-d descriptors) serialised and deserialised, and published by a child process to
a subscriber in this one (publish stamp to arrival, same clock). At 1.04 MB it exceeds Fast
DDS's default 512 KB shared-memory segment; run it with and without
`FASTRTPS_DEFAULT_PROFILES_FILE=config/fastdds_large_images.xml` to see both transports.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

from superpoint_ros.bench_scenes import machine_info, percentiles
from superpoint_ros.detector import Detections
from superpoint_ros.scenes import camera_homography
from superpoint_ros.tracking import Tracker

HEIGHT, WIDTH = 480, 640
SCENE_SHAPE = (2 * HEIGHT, 2 * WIDTH)
DESCRIPTOR_SIZE = 256


def moving_frames(keypoints: int, frames: int, seed: int = 0) -> list[Detections]:
    """`frames` Detections of about `keypoints` points each, from the demo camera's path."""
    rng = np.random.default_rng(seed)
    points = 6 * keypoints
    scene_points = rng.uniform([0, 0], [SCENE_SHAPE[1], SCENE_SHAPE[0]], (points, 2))
    descriptors = rng.normal(size=(points, DESCRIPTOR_SIZE)).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    result = []
    for index in range(frames):
        homography = camera_homography(SCENE_SHAPE, HEIGHT, WIDTH, index / 300)
        projected = np.c_[scene_points, np.ones(points)] @ homography.T
        pixels = projected[:, :2] / projected[:, 2:]
        visible = np.flatnonzero((pixels >= 0).all(axis=1) & (pixels[:, 0] < WIDTH) & (pixels[:, 1] < HEIGHT))
        fresh = keypoints // 10
        shown = visible[: keypoints - fresh]
        noisy = descriptors[shown] + rng.normal(0, 0.02, (len(shown), DESCRIPTOR_SIZE)).astype(np.float32)
        new = rng.normal(size=(fresh, DESCRIPTOR_SIZE)).astype(np.float32)
        frame_descriptors = np.concatenate((noisy, new))
        frame_descriptors /= np.linalg.norm(frame_descriptors, axis=1, keepdims=True)
        frame_keypoints = np.concatenate((pixels[shown], rng.uniform([0, 0], [WIDTH, HEIGHT], (fresh, 2))))
        frame_keypoints += rng.normal(0, 0.3, frame_keypoints.shape)
        order = rng.permutation(len(frame_keypoints))
        result.append(
            Detections(
                frame_keypoints[order].astype(np.float32),
                np.ones(len(order), np.float32),
                np.ascontiguousarray(frame_descriptors[order]),
            )
        )
    return result


def time_tracker(keypoints: int, frames: int, device: str) -> dict:
    detections = moving_frames(keypoints, frames)
    tracker = Tracker(device=device)
    for frame in detections[:5]:
        tracker.update(frame)
    durations, continued = [], []
    for frame in detections[5:]:
        start = time.perf_counter()
        tracks = tracker.update(frame)
        durations.append(time.perf_counter() - start)
        continued.append(float((tracks.lengths > 1).mean()))
    # The dense similarity matrix alone, for scale: live tracks × keypoints dot products.
    tracks_matrix = torch.from_numpy(detections[-1].descriptors[: min(keypoints, tracker.live_tracks)]).to(
        tracker.device
    )
    tracks_matrix = tracks_matrix.repeat(-(-tracker.live_tracks // len(tracks_matrix)), 1)[: tracker.live_tracks]
    frame_matrix = torch.from_numpy(detections[-1].descriptors).to(tracker.device)
    similarity = []
    for _ in range(20):
        start = time.perf_counter()
        tracks_matrix @ frame_matrix.T
        similarity.append(time.perf_counter() - start)
    return {
        "keypoints": keypoints,
        "live_tracks": tracker.live_tracks,
        "continued_share": float(np.mean(continued)),
        **percentiles(durations),
        "similarity_p50": percentiles(similarity)["p50"],
    }


def _keypoint_array(count: int):
    from std_msgs.msg import Header

    from superpoint_ros.ros_messages import keypoint_array_message

    (frame,) = moving_frames(count, 1)
    return keypoint_array_message(frame, Header(frame_id="camera"), HEIGHT, WIDTH, DESCRIPTOR_SIZE)


def _publish_from_child(count: int, repeats: int, domain: int) -> None:
    """The child process: publish `repeats` KeypointArrays, each stamped just before publishing."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from superpoint_ros.msg import KeypointArray

    rclpy.init(domain_id=domain)
    node = rclpy.create_node("bench_tracking_publisher")
    publisher = node.create_publisher(
        KeypointArray, "bench_keypoints", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    )
    message = _keypoint_array(count)
    deadline = time.monotonic() + 20
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    for sequence in range(repeats):
        now = time.time_ns()
        message.header.stamp.sec, message.header.stamp.nanosec = divmod(now, 1_000_000_000)
        message.header.frame_id = str(sequence)
        publisher.publish(message)
        time.sleep(0.05)
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()


def time_dds(count: int = 1000, repeats: int = 40) -> dict:
    """Serialisation costs of a `count`-keypoint KeypointArray, and its one-way latency from a
    child process."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message, serialize_message

    from superpoint_ros.msg import KeypointArray

    message = _keypoint_array(count)
    serialised = serialize_message(message)
    serialise, deserialise = [], []
    for _ in range(30):
        start = time.perf_counter()
        serialize_message(message)
        serialise.append(time.perf_counter() - start)
        start = time.perf_counter()
        deserialize_message(serialised, KeypointArray)
        deserialise.append(time.perf_counter() - start)

    domain = 100 + os.getpid() % 100
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("bench_tracking_subscriber", context=context)
    latencies = []

    def arrived(received) -> None:
        stamp_ns = received.header.stamp.sec * 1_000_000_000 + received.header.stamp.nanosec
        latencies.append((time.time_ns() - stamp_ns) * 1e-9)

    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(KeypointArray, "bench_keypoints", arrived, reliable)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    child = subprocess.Popen(
        [sys.executable, "-m", "superpoint_ros.bench_tracking", "--child", str(count), str(repeats), str(domain)]
    )
    deadline = time.monotonic() + 60
    try:
        while len(latencies) < repeats and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            if child.poll() is not None:
                # What is still in flight arrives within a second of the child's exit.
                deadline = min(deadline, time.monotonic() + 1.0)
    finally:
        child.wait(timeout=30)
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
    return {
        "keypoints": count,
        "bytes": len(serialised),
        "serialise_ms": percentiles(serialise)["p50"],
        "deserialise_ms": percentiles(deserialise)["p50"],
        "received": len(latencies),
        "published": repeats,
        "latency": percentiles(latencies) if latencies else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="where the tracker matches: cpu, cuda, cuda:N, auto")
    parser.add_argument("--frames", type=int, default=60, help="frames per size (the first 5 warm up)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--dds", action="store_true", help="also time a KeypointArray through DDS from a child process")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.child:
        _publish_from_child(*arguments.child)
        return 0
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    with open("/proc/loadavg") as loadavg:
        load = loadavg.read().split()[:3]
    results = {
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": load,
        "device": arguments.device,
        "torch_threads": torch.get_num_threads(),
        "fastdds_profile": os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE") or None,
        "tracker": [time_tracker(n, arguments.frames, arguments.device) for n in (500, 1000, 2000)],
    }
    if arguments.dds:
        results["dds"] = time_dds()
    where = f"device {arguments.device}, {torch.get_num_threads()} torch thread(s)"
    print(f"{results['machine']['cpu']}, {results['date']}, load average {' '.join(load)}, {where}")
    print("| keypoints | live tracks | continued | p50 ms | p90 ms | of which similarity matrix, p50 ms |")
    print("|---|---|---|---|---|---|")
    for row in results["tracker"]:
        share = f"{row['continued_share']:.0%}"
        cells = f"{row['p50']:.2f} | {row['p90']:.2f} | {row['similarity_p50']:.2f}"
        print(f"| {row['keypoints']} | {row['live_tracks']} | {share} | {cells} |")
    if arguments.dds:
        dds = results["dds"]
        latency = dds["latency"]
        size = (
            f"{dds['keypoints']} keypoints: {dds['bytes'] / 1e6:.2f} MB, Fast DDS profile {results['fastdds_profile']}"
        )
        print(
            f"KeypointArray of {size}, serialise {dds['serialise_ms']:.2f} ms, "
            f"deserialise {dds['deserialise_ms']:.2f} ms; child process → here p50 "
            f"{latency['p50']:.2f} ms, p90 {latency['p90']:.2f} ms ({dds['received']} of {dds['published']} received)"
            if latency
            else "no KeypointArray arrived from the child process"
        )
    if arguments.json:
        with open(arguments.json, "w") as output:
            json.dump(results, output, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
