"""`make demo`: the detector node on a generated moving-camera sequence.

    python -m superpoint_ros.tools.demo                      # hub weights (needs the hub or its cache)
    python -m superpoint_ros.tools.demo --weights DIR_OR_FILE
    python -m superpoint_ros.tools.demo --random-weights     # untrained: keypoints are not meaningful

Starts `superpoint_detector` in this process with the installed `config/detector.yaml`,
publishes a camera gliding, turning and zooming over a procedurally drawn scene (one
homography per frame) on its `image` topic, waits for each `keypoints` message, prints the
keypoint count and the end-to-end latency (publish → KeypointArray received), and saves a few
`debug_image` overlays as PNG.
"""

import argparse
import pathlib
import sys
import threading
import time

import cv2
import numpy as np
import rclpy
from ament_index_python.packages import get_package_share_directory
from builtin_interfaces.msg import Time
from huggingface_hub.utils import logging as hub_logging
from rclpy.exceptions import ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from superpoint_ros.feature_types import RANDOM_WEIGHTS
from superpoint_ros.msg import KeypointArray
from superpoint_ros.ros.node import DetectorNode
from superpoint_ros.ros.ros_messages import image_message
from superpoint_ros.tools.scenes import camera_view, draw_scene
from superpoint_ros.weights_files import WeightsError

DEFAULT_OUTPUT = pathlib.Path("demo_output")
RANDOM_LABEL = "[random weights: keypoints are not meaningful]"


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="superpoint-demo", description=__doc__.splitlines()[0])
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--weights", help="local weights: a directory with model.safetensors, or a weights file")
    weights.add_argument(
        "--random-weights", action="store_true", help="untrained weights: shows the pipeline, not real keypoints"
    )
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the config file's)")
    parser.add_argument("--frames", type=int, default=20, help="frames to publish (default: %(default)s)")
    parser.add_argument("--height", type=int, default=480, help="frame height in pixels (default: %(default)s)")
    parser.add_argument("--width", type=int, default=640, help="frame width in pixels (default: %(default)s)")
    parser.add_argument("--overlays", type=int, default=4, help="overlay PNGs to save (default: %(default)s)")
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT, help="default: %(default)s/")
    arguments = parser.parse_args(argv)
    if arguments.frames < 1 or arguments.height < 64 or arguments.width < 64:
        parser.error("--frames must be at least 1, --height and --width at least 64")
    return arguments


class Camera:
    """The demo's camera node side: publishes frames, collects the detector's outputs."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.received = threading.Condition()
        self.keypoints: dict[tuple[int, int], tuple[float, object]] = {}
        self.overlays: dict[tuple[int, int], object] = {}
        self.publisher = node.create_publisher(Image, "image", qos_profile_sensor_data)
        node.create_subscription(KeypointArray, "keypoints", self._on_keypoints, 10)
        node.create_subscription(Image, "debug_image", self._on_overlay, 10)

    @staticmethod
    def _key(message) -> tuple[int, int]:
        return message.header.stamp.sec, message.header.stamp.nanosec

    def _on_keypoints(self, message) -> None:
        with self.received:
            self.keypoints[self._key(message)] = (time.monotonic(), message)
            self.received.notify_all()

    def _on_overlay(self, message) -> None:
        with self.received:
            self.overlays[self._key(message)] = message
            self.received.notify_all()

    def send(self, message: Image, timeout_s: float = 60.0, resend_s: float = 5.0):
        """Publish and wait for this frame's keypoints (and overlay); (latency s, KeypointArray,
        overlay Image or None), or None on timeout. Best effort may lose a frame: resend then."""
        key = self._key(message)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            published_s = time.monotonic()
            self.publisher.publish(message)
            with self.received:
                if self.received.wait_for(lambda: key in self.keypoints, timeout=resend_s):
                    self.received.wait_for(lambda: key in self.overlays, timeout=1.0)
                    arrived_s, keypoints = self.keypoints[key]
                    return arrived_s - published_s, keypoints, self.overlays.get(key)
        return None


def connected(camera: Camera, detector_node: DetectorNode, timeout_s: float) -> bool:
    """Whether the camera's image publisher and both detector outputs have matched in time."""
    outputs = detector_node.cameras[0]
    deadline = time.monotonic() + timeout_s
    while (
        camera.publisher.get_subscription_count() == 0
        or outputs.keypoints_publisher.get_subscription_count() == 0
        or outputs.debug_publisher.get_subscription_count() == 0
    ):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def run(arguments: argparse.Namespace) -> int:
    params_file = pathlib.Path(get_package_share_directory("superpoint_ros")) / "config" / "detector.yaml"
    weights = RANDOM_WEIGHTS if arguments.random_weights else arguments.weights
    ros_arguments = ["--ros-args", "--params-file", str(params_file), "-p", "statistics_period:=0.0"]
    if weights:
        ros_arguments += ["-p", f"weights:={weights}"]
    if arguments.device:
        ros_arguments += ["-p", f"device:={arguments.device}"]
    label = f"  {RANDOM_LABEL}" if arguments.random_weights else ""
    # The loader's own sentence says what failed; the hub client's retry chatter adds nothing.
    hub_logging.set_verbosity_error()

    source = weights or "the config file's (the Hugging Face hub)"
    print(f"Starting superpoint_detector with {params_file}, weights {source}.{label}", flush=True)
    rclpy.init(args=ros_arguments)
    try:
        try:
            detector_node = DetectorNode()
        except (WeightsError, ValueError, ParameterException) as error:
            print(f"superpoint-demo: {error}", file=sys.stderr)
            if not weights:
                print("superpoint-demo: pass --weights PATH, or --random-weights to see the pipeline.", file=sys.stderr)
            return 1
        camera = Camera(rclpy.create_node("superpoint_demo_camera"))
        executor = SingleThreadedExecutor()
        executor.add_node(detector_node)
        executor.add_node(camera.node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        try:
            if not connected(camera, detector_node, timeout_s=10.0):
                print("superpoint-demo: the detector's topics did not connect within 10 s", file=sys.stderr)
                return 1
            return publish_sequence(arguments, camera, str(detector_node.detector.device), label)
        finally:
            executor.shutdown()
            detector_node.destroy_node()
            camera.node.destroy_node()
    finally:
        rclpy.try_shutdown()


def publish_sequence(arguments: argparse.Namespace, camera: Camera, device: str, label: str) -> int:
    height, width = arguments.height, arguments.width
    scene = draw_scene(2 * height, 2 * width)
    arguments.output.mkdir(parents=True, exist_ok=True)
    for old in arguments.output.glob("overlay_*.png"):
        old.unlink()
    save_at = set(np.linspace(0, arguments.frames - 1, min(arguments.overlays, arguments.frames)).round().astype(int))
    print(f"Publishing {arguments.frames} frames of {width}x{height} to the detector on {device}.{label}")
    latencies_ms = []
    start_ns = time.time_ns()
    for index in range(arguments.frames):
        frame = camera_view(scene, height, width, index / arguments.frames)
        stamp_ns = start_ns + index * 100_000_000
        header = Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="demo_camera")
        outcome = camera.send(image_message(frame, "bgr8", header))
        if outcome is None:
            print(f"superpoint-demo: no keypoints for frame {index + 1} within 60 s", file=sys.stderr)
            return 1
        latency_s, keypoints, overlay = outcome
        latencies_ms.append(1000 * latency_s)
        saved = ""
        if index in save_at and overlay is not None:
            path = arguments.output / f"overlay_{index:03d}.png"
            pixels = np.frombuffer(overlay.data, np.uint8).reshape(overlay.height, overlay.step)
            cv2.imwrite(str(path), pixels[:, : 3 * overlay.width].reshape(overlay.height, overlay.width, 3))
            saved = f"  saved {path}"
        print(
            f"frame {index + 1:3d}/{arguments.frames}: {len(keypoints.scores):5d} keypoints, "
            f"latency {latencies_ms[-1]:7.1f} ms{saved}{label}",
            flush=True,
        )
    p50, p90 = np.percentile(latencies_ms, [50, 90])
    print(
        f"End-to-end latency over {len(latencies_ms)} frames: median {p50:.1f} ms, 90th percentile {p90:.1f} ms, "
        f"max {max(latencies_ms):.1f} ms (publish → KeypointArray received).{label}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        return run(arguments)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
