"""A camera driver stand-in for the launch recipes, in its own process:
`python test/camera_info_sim.py --image TOPIC --info TOPIC [--image TOPIC --info TOPIC] ...`

Publishes `superpoint_ros.tools.camera_sim`'s moving-camera frames on each `--image` topic and a
calibrated CameraInfo (pinhole, no distortion) on the matching `--info` topic, reliable like
the RealSense and ZED drivers. With two cameras each tick sends both frames with one header
stamp, as a hardware-synchronised stereo pair does (the tracker pairs stereo frames by stamp);
the right image is the left one, so every keypoint has its match on the same row. Runs until
SIGINT or SIGTERM.
"""

import argparse
import signal
import threading
import time

import rclpy
from builtin_interfaces.msg import Time
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo

from superpoint_ros.tools.camera_sim import parse_arguments, render

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def camera_info(height: int, width: int, frame_id: str) -> CameraInfo:
    focal = 0.8 * width
    cx, cy = (width - 1) / 2, (height - 1) / 2
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.header.frame_id = frame_id
    info.k = [focal, 0.0, cx, 0.0, focal, cy, 0.0, 0.0, 1.0]
    info.d = [0.0] * 5
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [focal, 0.0, cx, 0.0, 0.0, focal, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", action="append", required=True)
    parser.add_argument("--info", action="append", required=True)
    parser.add_argument("--rate", type=float, default=4.0)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--encoding", default="mono8")
    arguments = parser.parse_args()
    frames = render(
        parse_arguments(
            ["--height", str(arguments.height), "--width", str(arguments.width), "--encoding", arguments.encoding]
        )
    )
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("camera_info_sim")
    cameras = [
        (node.create_publisher(type(frames[0]), image, RELIABLE), node.create_publisher(CameraInfo, info, RELIABLE))
        for image, info in zip(arguments.image, arguments.info, strict=True)
    ]
    info = camera_info(arguments.height, arguments.width, "camera")
    published = 0
    while not stop.wait(1 / arguments.rate):
        now_ns = time.time_ns()
        stamp = Time(sec=now_ns // 1_000_000_000, nanosec=now_ns % 1_000_000_000)
        frame = frames[published % len(frames)]
        frame.header.stamp = info.header.stamp = stamp
        for image_publisher, info_publisher in cameras:
            image_publisher.publish(frame)
            info_publisher.publish(info)
        published += 1
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
