"""A camera driver stand-in in its own process: `python -m superpoint_ros.tools.camera_sim`.

Publishes the generated moving-camera sequence of `scenes` as `sensor_msgs/Image` on `--topic`,
or as `sensor_msgs/CompressedImage` on `<topic>/compressed` the way image_transport's
`compressed` publisher writes it (`format` such as `bgr8; jpeg compressed bgr8`). It uses rclpy
with whatever DDS settings the environment gives (`ROS_DOMAIN_ID`, `FASTRTPS_DEFAULT_PROFILES_FILE`
...), so tests and benchmarks see what a real driver in another process would deliver.

QoS: `reliable` is ROS's default profile (reliable, keep last 10), which image_transport's
publishers use; `best_effort` is the sensor-data profile (best effort, keep last 5). `--depth`
overrides the depth. Frames are rendered and encoded before the first is sent, so publishing
costs only the copy into DDS. Each header stamp is the system clock at publish, so a receiver
with the same clock can compute latency from it.

Output for scripts, one line each: `camera_sim: matched subscriptions=N` (or `camera_sim: started`
with `--wait-for-subscriber 0`) before the first frame, `camera_sim: published N` at exit.
Exits 0 after `--frames` frames or on SIGINT/SIGTERM; 1 if no subscription matched in time.
"""

import argparse
import array
import signal
import sys
import threading
import time

import cv2
import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage

from superpoint_ros.image_codec import ENCODINGS
from superpoint_ros.ros.image_messages import image_message
from superpoint_ros.tools.scenes import camera_view, draw_scene

DISTINCT_FRAMES = 24
_BGR_INDEX = {"b": 0, "g": 1, "r": 2}


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="camera_sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--topic", default="image", help="image topic (compressed: <topic>/compressed)")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second")
    parser.add_argument("--frames", type=int, default=0, help="frames to publish, 0 = until stopped")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--encoding", default="bgr8", choices=sorted(ENCODINGS))
    parser.add_argument("--reliability", choices=("reliable", "best_effort"), default="reliable")
    parser.add_argument("--depth", type=int, default=None, help="history depth (default: 10 reliable, 5 best effort)")
    parser.add_argument("--transport", choices=("raw", "compressed"), default="raw")
    parser.add_argument("--compression", choices=("jpeg", "png"), default="jpeg")
    parser.add_argument("--format-string", default=None, help="CompressedImage.format to send instead, e.g. 'jpeg'")
    parser.add_argument("--frame-id", default="camera")
    parser.add_argument(
        "--wait-for-subscriber", type=float, default=30.0, help="seconds to wait for a match, 0 = do not wait"
    )
    arguments = parser.parse_args(argv)
    if arguments.rate <= 0 or arguments.frames < 0 or arguments.height < 2 or arguments.width < 2:
        parser.error("--rate must be > 0, --frames >= 0, --height and --width >= 2")
    if arguments.transport == "compressed":
        try:
            compressed_target(arguments.encoding, arguments.compression)
        except ValueError as error:
            parser.error(str(error))
    return arguments


def in_encoding(bgr: np.ndarray, encoding: str) -> np.ndarray:
    """The `H×W×3` uint8 BGR frame as pixels of `encoding` (see `image_codec.ENCODINGS`)."""
    layout = ENCODINGS[encoding]
    if layout.bayer_to_bgr is not None:
        pattern = encoding.removeprefix("bayer_").removesuffix("8")
        pixels = np.empty(bgr.shape[:2], np.uint8)
        for offset, colour in enumerate(pattern):
            pixels[offset // 2 :: 2, offset % 2 :: 2] = bgr[offset // 2 :: 2, offset % 2 :: 2, _BGR_INDEX[colour]]
        return pixels
    if layout.channels == 1:
        pixels = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    else:
        pixels = bgr[..., ::-1] if layout.channel_order == "rgb" else bgr
        if layout.channels == 4:
            pixels = np.dstack([pixels, np.full(bgr.shape[:2], 255, np.uint8)])
    if layout.dtype == np.uint16:
        return pixels.astype(np.uint16) * 257
    if layout.dtype == np.float32:
        return pixels.astype(np.float32) / 255
    return np.ascontiguousarray(pixels)


def compressed_target(encoding: str, compression: str) -> str:
    """The encoding image_transport's compressed publisher stores for `encoding` (colour images
    as BGR, mono as mono; JPEG 8-bit only); raises ValueError for what it cannot compress."""
    depth = "16" if encoding in ("mono16", "bgr16", "rgb16") else "8"
    if depth == "16" and compression == "jpeg":
        raise ValueError(f"{encoding} is 16-bit: use --compression png")
    if encoding in ("mono8", "mono16"):
        return f"mono{depth}"
    if encoding in ("bgr8", "rgb8", "bgra8", "rgba8", "bgr16", "rgb16"):
        return f"bgr{depth}"
    raise ValueError(f"image_transport's compressed transport does not take {encoding}")


def compressed_message(bgr: np.ndarray, arguments: argparse.Namespace) -> CompressedImage:
    target = compressed_target(arguments.encoding, arguments.compression)
    pixels = in_encoding(bgr, target)
    extension, options = (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]) if arguments.compression == "jpeg" else (".png", [])
    ok, data = cv2.imencode(extension, pixels, options)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {target} frame as {arguments.compression}")
    message = CompressedImage()
    message.format = arguments.format_string or f"{arguments.encoding}; {arguments.compression} compressed {target}"
    message.data = array.array("B", data.tobytes())
    return message


def render(arguments: argparse.Namespace) -> list:
    """`DISTINCT_FRAMES` messages of one pass of the camera path, headers left to fill."""
    scene = draw_scene(2 * arguments.height, 2 * arguments.width)
    messages = []
    for index in range(DISTINCT_FRAMES):
        bgr = camera_view(scene, arguments.height, arguments.width, index / DISTINCT_FRAMES)
        if arguments.transport == "compressed":
            messages.append(compressed_message(bgr, arguments))
        else:
            messages.append(image_message(in_encoding(bgr, arguments.encoding), arguments.encoding))
        messages[-1].header.frame_id = arguments.frame_id
    return messages


def wait_for_subscription(publisher, timeout_s: float, stop: threading.Event) -> bool:
    deadline = time.monotonic() + timeout_s
    while publisher.get_subscription_count() == 0:
        if stop.wait(0.05) or time.monotonic() > deadline:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    messages = render(arguments)
    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("camera_sim")
    best_effort = arguments.reliability == "best_effort"
    qos = QoSProfile(
        depth=arguments.depth or (5 if best_effort else 10),
        reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )
    topic = f"{arguments.topic}/compressed" if arguments.transport == "compressed" else arguments.topic
    publisher = node.create_publisher(type(messages[0]), topic, qos)
    published = 0
    try:
        if arguments.wait_for_subscriber > 0:
            if not wait_for_subscription(publisher, arguments.wait_for_subscriber, stop):
                print(f"camera_sim: no subscription matched {publisher.topic_name}", flush=True)
                return 0 if stop.is_set() else 1
            print(f"camera_sim: matched subscriptions={publisher.get_subscription_count()}", flush=True)
        else:
            print("camera_sim: started", flush=True)
        due_s = time.monotonic()
        while arguments.frames == 0 or published < arguments.frames:
            if stop.wait(max(0.0, due_s - time.monotonic())):
                break
            message = messages[published % len(messages)]
            now_ns = time.time_ns()
            message.header.stamp = Time(sec=now_ns // 1_000_000_000, nanosec=now_ns % 1_000_000_000)
            publisher.publish(message)
            published += 1
            # Like a camera, a late tick is skipped, not made up for with a burst.
            due_s = max(due_s + 1 / arguments.rate, time.monotonic())
        # Exiting at once would cut off the last reliable frames still being sent.
        if not best_effort:
            publisher.wait_for_all_acked(Duration(seconds=2))
    finally:
        print(f"camera_sim: published {published}", flush=True)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
