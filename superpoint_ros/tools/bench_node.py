"""Node benchmark: `superpoint_detector` over a real DDS graph, image published to keypoints received.

Run through `python -m superpoint_ros.tools.bench --node`. Everything runs in this process, on a
private ROS domain limited to this machine: the detector node (with its inference thread) and
a probe node that publishes `sensor_msgs/Image` frames and subscribes to `KeypointArray`, each
spun by its own executor thread. Every message still goes through Fast DDS (serialised,
sent, received, deserialised), as between processes.

Per camera count (1 and 2, 480×640 bgr8, `max_keypoints` 1000):

- the pipeline alone (`Detector.detect` on one frame per camera) gives the service time, and
  the *sustainable rate* is 80% of its inverse; frames are published at that rate and at twice
  it (the node then drops frames it could not get to, keeping the newest);
- latency is receive time − publish time of each KeypointArray (p50, p99);
- the node's own work is timed apart, on the same data: decoding the Image message, building
  the KeypointArray (the fast `array.array` path, and the per-element path it avoids, once),
  and serialising it; the size is that of the serialised KeypointArray.

Both QoS ends are reliable, so that a lost UDP fragment of a large image cannot pass for latency.
"""

import os
import statistics
import threading
import time

import numpy as np

REPEATS = 30


def _percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1e3, q))


def _median_s(function, repeats: int = REPEATS) -> float:
    function()
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def message_costs(detector, image: np.ndarray) -> dict:
    """Milliseconds the node spends on one frame besides the pipeline, and the output's size."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from superpoint_ros.msg import KeypointArray
    from superpoint_ros.ros.ros_messages import decode_image_message, image_message, keypoint_array_message

    height, width = image.shape[:2]
    image_msg = image_message(image, "bgr8", Header(frame_id="camera"))
    detections = detector.detect([image])[0]
    message = keypoint_array_message(detections, Header(), height, width, detector.descriptor_size)

    def per_element() -> None:
        slow = KeypointArray()
        slow.keypoints = detections.keypoints.ravel()
        slow.scores = detections.scores
        slow.descriptors = detections.descriptors.ravel()

    return {
        "keypoints": len(detections.scores),
        "keypoint_array_bytes": len(serialize_message(message)),
        "image_bytes": len(serialize_message(image_msg)),
        "decode_image_ms": 1e3 * _median_s(lambda: decode_image_message(image_msg)),
        "build_message_ms": 1e3
        * _median_s(lambda: keypoint_array_message(detections, Header(), height, width, detector.descriptor_size)),
        "build_message_per_element_ms": 1e3 * _median_s(per_element, repeats=3),
        "serialise_ms": 1e3 * _median_s(lambda: serialize_message(message)),
    }


def measure_latency(graph, node_namespace: str, cameras: int, image: np.ndarray, rate_hz: float, frames: int) -> dict:
    """Publish `frames` frames per camera at `rate_hz`; latencies of the KeypointArrays that came back."""
    from builtin_interfaces.msg import Time
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from superpoint_ros.msg import KeypointArray
    from superpoint_ros.ros.ros_messages import image_message

    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    names = [f"camera{index}" for index in range(cameras)] if cameras > 1 else [""]
    published: dict[tuple[int, int], float] = {}
    latencies: list[float] = []
    sizes: list[int] = []
    lock = threading.Lock()

    def received(camera: int, message: KeypointArray) -> None:
        now = time.perf_counter()
        key = (camera, message.header.stamp.sec)
        with lock:
            if key in published:
                latencies.append(now - published[key])
                sizes.append(len(message.scores))

    publishers, subscriptions = [], []
    for index, name in enumerate(names):
        prefix = f"{node_namespace}/{name}/" if name else f"{node_namespace}/"
        topic = f"{node_namespace}/{name}/image" if name else f"{node_namespace}/image"
        publishers.append(graph.probe.create_publisher(Image, topic, qos))
        subscriptions.append(
            graph.probe.create_subscription(
                KeypointArray, f"{prefix}keypoints", lambda message, index=index: received(index, message), qos
            )
        )
    deadline = time.monotonic() + 10.0
    while any(p.get_subscription_count() == 0 for p in publishers) and time.monotonic() < deadline:
        time.sleep(0.01)
    messages = [image_message(image, "bgr8") for _ in names]
    period = 1.0 / rate_hz
    start = time.perf_counter()
    for sequence in range(frames):
        target = start + sequence * period
        while (delay := target - time.perf_counter()) > 0:
            time.sleep(delay)
        for index, publisher in enumerate(publishers):
            message = messages[index]
            message.header = Header(stamp=Time(sec=sequence), frame_id=f"camera{index}")
            with lock:
                published[(index, sequence)] = time.perf_counter()
            publisher.publish(message)
    # Let the last frames arrive.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        with lock:
            if len(latencies) >= cameras * frames:
                break
        time.sleep(0.01)
    for publisher in publishers:
        graph.probe.destroy_publisher(publisher)
    for subscription in subscriptions:
        graph.probe.destroy_subscription(subscription)
    with lock:
        return {
            "rate_hz": rate_hz,
            "published": cameras * frames,
            "received": len(latencies),
            "latency_p50_ms": _percentile(latencies, 50) if latencies else None,
            "latency_p99_ms": _percentile(latencies, 99) if latencies else None,
            "keypoints_per_message": float(np.mean(sizes)) if sizes else None,
        }


class _Graph:
    """One rclpy context on a private domain; the probe and the node spin on separate threads."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.node import Node

        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        self.context = Context()
        rclpy.init(args=[], context=self.context, domain_id=100 + os.getpid() % 100)
        self.probe = Node("superpoint_bench_probe", context=self.context)
        self._executors = []
        self._threads = []
        self.spin(self.probe)

    def spin(self, node) -> None:
        from rclpy.executors import SingleThreadedExecutor

        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(node)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        self._executors.append(executor)
        self._threads.append(thread)

    def close(self) -> None:
        for executor in self._executors:
            executor.shutdown()
        self.probe.destroy_node()
        self.context.try_shutdown()
        for thread in self._threads:
            thread.join(timeout=5.0)


def run_node_benchmark(weights: str, frames: int = 40, height: int = 480, width: int = 640) -> dict:
    """The measurements above, as a dict with a printable `table`."""
    from rclpy.parameter import Parameter

    from superpoint_ros.detector import Detector
    from superpoint_ros.ros.node import DetectorNode
    from superpoint_ros.tools.bench_scenes import benchmark_scene

    max_keypoints = 1000
    image = benchmark_scene(height, width, seed=0)
    detector = Detector(weights=weights, device="cpu", max_keypoints=max_keypoints)
    costs = message_costs(detector, image)
    graph = _Graph()
    rows = []
    try:
        for cameras in (1, 2):
            batch = [image] * cameras
            service_s = _median_s(lambda batch=batch: detector.detect(batch), repeats=15)
            sustainable_hz = 0.8 / service_s
            namespace = f"/superpoint_bench_{cameras}"
            overrides = [
                Parameter("weights", value=weights),
                Parameter("device", value="cpu"),
                Parameter("max_keypoints", value=max_keypoints),
                Parameter("debug_image", value=False),
                Parameter("input_qos", value="reliable"),
                Parameter("statistics_period", value=0.0),
            ]
            if cameras > 1:
                overrides.append(Parameter("image_topics", value=[f"camera{index}/image" for index in range(cameras)]))
            node = DetectorNode(namespace=namespace, parameter_overrides=overrides, context=graph.context)
            graph.spin(node)
            try:
                # Warm-up: compile the engine for this batch shape, settle discovery.
                measure_latency(graph, namespace, cameras, image, sustainable_hz, 3)
                for factor in (1, 2):
                    dropped_before = sum(counters.dropped for counters in node.statistics().values())
                    result = measure_latency(graph, namespace, cameras, image, factor * sustainable_hz, frames)
                    dropped = sum(counters.dropped for counters in node.statistics().values()) - dropped_before
                    result.update(
                        cameras=cameras,
                        load=f"{factor}× sustainable",
                        pipeline_ms=1e3 * service_s,
                        dropped=dropped,
                        load_average=os.getloadavg()[0],
                    )
                    rows.append(result)
            finally:
                node.destroy_node()
    finally:
        graph.close()
    return {"height": height, "width": width, "costs": costs, "runs": rows, "table": _table(costs, rows)}


def _table(costs: dict, rows: list[dict]) -> str:
    lines = [
        "| cameras | publish rate | pipeline ms (batch) | latency p50 / p99 ms | p50 − pipeline | "
        "received / published (dropped by node) | kp/msg | load (1 min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["latency_p50_ms"] is None:
            latency = overhead = "–"
        else:
            latency = f"{row['latency_p50_ms']:.1f} / {row['latency_p99_ms']:.1f}"
            extra = row["latency_p50_ms"] - row["pipeline_ms"]
            overhead = f"{extra:.1f} ms ({100 * extra / row['pipeline_ms']:.0f}%)"
        lines.append(
            f"| {row['cameras']} | {row['rate_hz']:.1f} Hz ({row['load']}) | {row['pipeline_ms']:.1f} | {latency} | "
            f"{overhead} | {row['received']} / {row['published']} ({row['dropped']}) | "
            f"{row['keypoints_per_message'] or 0:.0f} | {row['load_average']:.2f} |"
        )
    lines += [
        "",
        f"Per frame at {costs['keypoints']} keypoints: decode Image {costs['decode_image_ms']:.2f} ms, build "
        f"KeypointArray {costs['build_message_ms']:.2f} ms (per-element setter path: "
        f"{costs['build_message_per_element_ms']:.1f} ms), serialise {costs['serialise_ms']:.2f} ms; "
        f"KeypointArray {costs['keypoint_array_bytes'] / 1e6:.2f} MB, Image {costs['image_bytes'] / 1e6:.2f} MB.",
    ]
    return "\n".join(lines)
