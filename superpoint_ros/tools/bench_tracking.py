"""Tracker benchmark: `Tracker.update` time per frame at 500, 1000 and 2000 keypoints, guided
and dense matching side by side, against one dense similarity matrix, with the quality of both.

    python -m superpoint_ros.tools.bench_tracking [--device cpu] [--threads 1] [--frames 60] [--cap 8192] [--dds]

Input: points scattered over the demo's scene (`superpoint_ros.tools.scenes`), seen through its
moving camera (`camera_homography`), so that tracks continue, leave and enter as in a video;
each point has its own unit descriptor, with noise per observation, and a tenth of each frame's
keypoints are fresh points (new tracks). The count per frame is held at N by taking the first N
visible points. The timer covers the whole `update`: matching, verification (`auto`, which fits
a fundamental matrix and a homography) and bookkeeping. Each frame goes to the guided tracker,
then the dense one, then one dense similarity (live tracks × keypoints) is timed, so that the
ratios compare times taken under the same load.

Quality, with the truth known: on that moving homography sequence and on the synthetic 3-D
world of the tests (`superpoint_ros.tools.synthetic_world`: parallax, an occlusion, outliers), the
share of continued tracks that continue their own physical point, and continuations per frame.

`--cap N` also times `update` at N keypoints (the tracker node's `max_input_keypoints`) in a
child process per matching, and reports that process's peak RSS.

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

from superpoint_ros.detector import Detections
from superpoint_ros.tools.bench_scenes import machine_info, percentiles
from superpoint_ros.tools.scenes import camera_homography
from superpoint_ros.tools.synthetic_world import OUTLIER, continuation_quality, synthetic_world
from superpoint_ros.tracking import MATCHINGS, Tracker

HEIGHT, WIDTH = 480, 640
SCENE_SHAPE = (2 * HEIGHT, 2 * WIDTH)
DESCRIPTOR_SIZE = 256
WARM_UP_FRAMES = 5


def moving_frames(keypoints: int, frames: int, seed: int = 0) -> list[Detections]:
    """`frames` Detections of about `keypoints` points each, from the demo camera's path."""
    return [detections for detections, _ in labelled_moving_frames(keypoints, frames, seed)]


def labelled_moving_frames(keypoints: int, frames: int, seed: int = 0) -> list[tuple[Detections, np.ndarray]]:
    """`moving_frames`, each with the `(N,)` scene point of every keypoint (`OUTLIER` for the
    fresh points, which are seen once)."""
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
        labels = np.concatenate((shown, np.full(fresh, OUTLIER)))
        order = rng.permutation(len(frame_keypoints))
        detections = Detections(
            frame_keypoints[order].astype(np.float32),
            np.ones(len(order), np.float32),
            np.ascontiguousarray(frame_descriptors[order]),
        )
        result.append((detections, labels[order]))
    return result


def quality(labels: list[np.ndarray], answers: list) -> dict:
    """The share of continued tracks that continue their own point, and continuations per frame."""
    correct, continued = continuation_quality(
        labels, [tracks.ids for tracks in answers], [tracks.lengths for tracks in answers]
    )
    return {
        "correct_share": correct / continued if continued else 0.0,
        "continued_per_frame": continued / max(len(answers) - 1, 1),
    }


def time_trackers(keypoints: int, frames: int, device: str) -> dict:
    """Guided and dense `update` times on the moving homography sequence, one dense similarity
    of the dense tracker's live tracks × the keypoints, and both trackers' quality."""
    sequence = labelled_moving_frames(keypoints, frames)
    trackers = {matching: Tracker(device=device, matching=matching) for matching in MATCHINGS}
    durations: dict[str, list[float]] = {matching: [] for matching in MATCHINGS}
    answers: dict[str, list] = {matching: [] for matching in MATCHINGS}
    similarity, tracks_matrix = [], None
    rng = np.random.default_rng(1)
    for index, (frame, _) in enumerate(sequence):
        for matching, tracker in trackers.items():
            start = time.perf_counter()
            answers[matching].append(tracker.update(frame))
            durations[matching].append(time.perf_counter() - start)
        if index < WARM_UP_FRAMES:
            continue
        if tracks_matrix is None:
            rows = rng.normal(size=(trackers["dense"].live_tracks, DESCRIPTOR_SIZE)).astype(np.float32)
            tracks_matrix = torch.from_numpy(rows / np.linalg.norm(rows, axis=1, keepdims=True)).to(device)
        frame_matrix = torch.from_numpy(frame.descriptors).to(device)
        start = time.perf_counter()
        tracks_matrix @ frame_matrix.T
        similarity.append(time.perf_counter() - start)
    labels = [frame_labels for _, frame_labels in sequence]
    similarity_p50 = percentiles(similarity)["p50"]
    result = {"keypoints": keypoints, "similarity_shape": list(tracks_matrix.shape[:1]) + [keypoints, DESCRIPTOR_SIZE]}
    result["similarity_p50"] = similarity_p50
    for matching in MATCHINGS:
        timing = percentiles(durations[matching][WARM_UP_FRAMES:])
        result[matching] = {
            **timing,
            "of_similarity": timing["p50"] / similarity_p50,
            "guided_frames": float(np.mean([tracks.guided for tracks in answers[matching][WARM_UP_FRAMES:]])),
            "live_tracks": trackers[matching].live_tracks,
            **quality(labels, answers[matching]),
        }
    return result


def world_quality() -> dict:
    """Both trackers' quality on the tests' synthetic 3-D world (parallax, occlusion, outliers)."""
    world = synthetic_world()
    labels = [frame.labels for frame in world.frames]
    result = {}
    for matching in MATCHINGS:
        tracker = Tracker(matching=matching)
        answers = [tracker.update(frame.detections) for frame in world.frames]
        result[matching] = quality(labels, answers)
    return result


def time_cap(keypoints: int, frames: int, matching: str, device: str) -> dict:
    """`update` at `keypoints` keypoints, and the peak RSS of this process (run it alone)."""
    import resource

    sequence = moving_frames(keypoints, frames)
    tracker = Tracker(device=device, matching=matching)
    durations = []
    for frame in sequence:
        start = time.perf_counter()
        tracker.update(frame)
        durations.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"keypoints": keypoints, "matching": matching, **percentiles(durations[2:]), "peak_rss_mb": peak_mb}


def _keypoint_array(count: int):
    from std_msgs.msg import Header

    from superpoint_ros.ros.ros_messages import keypoint_array_message

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
        [sys.executable, "-m", "superpoint_ros.tools.bench_tracking", "--child", str(count), str(repeats), str(domain)]
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


def _cap_in_child(keypoints: int, matching: str, arguments: argparse.Namespace) -> dict:
    """`time_cap` in a fresh process, so that its peak RSS is that run's alone."""
    command = [sys.executable, "-m", "superpoint_ros.tools.bench_tracking", "--cap-child", str(keypoints), matching]
    command += ["--device", arguments.device, "--threads", str(arguments.threads)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="where the tracker matches: cpu, cuda, cuda:N, auto")
    parser.add_argument("--frames", type=int, default=60, help="frames per size (the first 5 warm up)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1, as the tracker node's `threads` parameter; 0: torch's own, one per core)",
    )
    parser.add_argument("--dds", action="store_true", help="also time a KeypointArray through DDS from a child process")
    parser.add_argument("--cap", type=int, help="also time updates at this many keypoints, with peak RSS")
    parser.add_argument("--cap-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.child:
        _publish_from_child(*arguments.child)
        return 0
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    if arguments.cap_child:
        keypoints, matching = arguments.cap_child
        print(json.dumps(time_cap(int(keypoints), 10, matching, arguments.device)))
        return 0
    with open("/proc/loadavg") as loadavg:
        load = loadavg.read().split()[:3]
    results = {
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": load,
        "device": arguments.device,
        "torch_threads": torch.get_num_threads(),
        "fastdds_profile": os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE") or None,
        "tracker": [time_trackers(n, arguments.frames, arguments.device) for n in (500, 1000, 2000)],
        "world_quality": world_quality(),
    }
    if arguments.cap:
        results["cap"] = [_cap_in_child(arguments.cap, matching, arguments) for matching in MATCHINGS]
    if arguments.dds:
        results["dds"] = time_dds()
    where = f"device {arguments.device}, {torch.get_num_threads()} torch thread(s)"
    print(f"{results['machine']['cpu']}, {results['date']}, load average {' '.join(load)}, {where}")
    print(
        "| keypoints | matching | update p50 ms | p90 ms | p50 / one dense similarity | guided frames "
        "| correct continuations | continuations per frame | live tracks |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in results["tracker"]:
        for matching in MATCHINGS:
            cell = row[matching]
            print(
                f"| {row['keypoints']} | {matching} | {cell['p50']:.2f} | {cell['p90']:.2f} | "
                f"{cell['of_similarity']:.2f}× | {cell['guided_frames']:.0%} | {cell['correct_share']:.2%} | "
                f"{cell['continued_per_frame']:.1f} | {cell['live_tracks']} |"
            )
        shape = "×".join(str(n) for n in row["similarity_shape"])
        print(f"| {row['keypoints']} | one dense {shape} similarity | {row['similarity_p50']:.2f} | | 1.00× | | | | |")
    print("Synthetic 3-D world (tests' `synthetic_world`):")
    for matching, cell in results["world_quality"].items():
        print(
            f"- {matching}: correct continuations {cell['correct_share']:.2%}, "
            f"{cell['continued_per_frame']:.1f} continuations per frame"
        )
    for cap in results.get("cap", []):
        print(
            f"At {cap['keypoints']} keypoints, {cap['matching']}: update p50 {cap['p50']:.1f} ms, "
            f"p90 {cap['p90']:.1f} ms; peak RSS of the process {cap['peak_rss_mb']:.0f} MB"
        )
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
