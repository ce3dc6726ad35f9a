"""`make demo`: the detector node on a generated moving-camera sequence.

    python -m superpoint_ros.demo                      # hub weights (needs the hub or its cache)
    python -m superpoint_ros.demo --weights DIR_OR_FILE
    python -m superpoint_ros.demo --random-weights     # untrained: keypoints are not meaningful

Starts `superpoint_detector` in this process with the installed `config/detector.yaml`,
publishes a camera gliding, turning and zooming over a procedurally drawn scene (one
homography per frame) on its `image` topic, waits for each `keypoints` message, prints the
keypoint count and the end-to-end latency (publish → KeypointArray received), and saves a few
`debug_image` overlays as PNG.
"""

import argparse
import math
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

from superpoint_ros.msg import KeypointArray
from superpoint_ros.node import DetectorNode
from superpoint_ros.ros_messages import image_message
from superpoint_ros.weights import RANDOM_WEIGHTS, WeightsError

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


def draw_scene(height: int, width: int, seed: int = 7) -> np.ndarray:
    """A BGR uint8 scene with corners, edges, blobs and texture for a camera to fly over."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    scene = np.empty((height, width, 3), np.uint8)
    scene[..., 0] = 90 + 60 * np.sin(x / 97.0)
    scene[..., 1] = 110 + 50 * np.cos(y / 71.0)
    scene[..., 2] = 140 + 40 * np.sin((x + y) / 131.0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (height, width), dtype=np.uint8), (0, 0), 3)
    scene = cv2.addWeighted(scene, 0.9, cv2.cvtColor(texture, cv2.COLOR_GRAY2BGR), 0.1, 0)
    unit = max(8, min(height, width) // 40)
    for _ in range(6):
        top, left = int(rng.integers(0, height - 8 * unit)), int(rng.integers(0, width - 8 * unit))
        for row in range(8):
            for column in range(8):
                if (row + column) % 2 == 0:
                    corner = (left + column * unit, top + row * unit)
                    cv2.rectangle(scene, corner, (corner[0] + unit - 1, corner[1] + unit - 1), (15, 15, 15), -1)
    for _ in range(40):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = np.array([rng.integers(0, width), rng.integers(0, height)])
        size = int(rng.integers(unit, 6 * unit))
        shape = rng.integers(0, 3)
        if shape == 0:
            cv2.circle(scene, tuple(int(c) for c in centre), size, colour, int(rng.choice([-1, 3])), cv2.LINE_AA)
        elif shape == 1:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))
            points = centre + size * np.stack([np.cos(angles), np.sin(angles)], axis=1)
            cv2.fillPoly(scene, [points.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            end = centre + rng.integers(-8 * unit, 8 * unit, 2)
            cv2.line(scene, tuple(int(c) for c in centre), tuple(int(c) for c in end), colour, 2, cv2.LINE_AA)
    for index in range(8):
        origin = (int(rng.integers(0, width - 10 * unit)), int(rng.integers(2 * unit, height)))
        cv2.putText(scene, f"SuperPoint {index}", origin, cv2.FONT_HERSHEY_DUPLEX, unit / 24, (250, 250, 250), 2)
    return scene


def camera_view(scene: np.ndarray, height: int, width: int, t: float) -> np.ndarray:
    """What a camera sees at time `t` (0 to 1): the frame's corners follow a smooth path over
    the scene, turning, zooming and tilting, and the view is that homography's warp."""
    scene_height, scene_width = scene.shape[:2]
    centre = np.array(
        [
            scene_width * (0.5 + 0.12 * math.sin(2 * math.pi * t)),
            scene_height * (0.5 + 0.10 * math.sin(4 * math.pi * t)),
        ]
    )
    angle = math.radians(12 * math.sin(2 * math.pi * t))
    scale = 1.0 + 0.2 * math.sin(2 * math.pi * t + 1.0)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    half = np.array([width, height]) / 2
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    tilt = 0.08 * math.sin(2 * math.pi * t + 2.0)
    corners = corners * (1 + tilt * np.array([[1], [-1], [-1], [1]]))
    in_scene = centre + (scale * corners) @ rotation.T
    in_view = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
    homography = cv2.getPerspectiveTransform(in_scene.astype(np.float32), in_view.astype(np.float32))
    return cv2.warpPerspective(scene, homography, (width, height), flags=cv2.INTER_LINEAR)


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
