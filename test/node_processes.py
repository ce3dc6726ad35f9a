"""The node and its camera as child processes, for the tests that send frames from one to the
other (test_node_delivery.py, test_node_processes.py): the installed node with the shipped
config, `camera_sim` cameras, and cameras paced below what the node can do on this machine now."""

import functools
import pathlib
import sys
import time

from ament_index_python.packages import get_package_share_directory
from rclpy.qos import QoSProfile, ReliabilityPolicy

from superpoint_ros.detector_choice import create_detector

from conftest import structured_image
from processes import START_S, ChildProcess
from ros_graph import wait_until

SHIPPED_CONFIG = pathlib.Path(get_package_share_directory("superpoint_ros")) / "config" / "detector.yaml"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# The share of its time the node may spend on the paced cameras' frames, by the inference time
# measured when the test starts, and the pace's ceiling. Load that comes later is not counted,
# so the tests that pace a camera are marked `timing`: `make test` runs them alone.
BUSY_SHARE = 0.4
MAX_RATE_HZ = 5.0


class NodeProcess(ChildProcess):
    """The node with the shipped parameter file, random weights on the CPU, in `namespace`."""

    def __init__(self, namespace: str, **parameters) -> None:
        arguments = [sys.executable, "-m", "superpoint_ros.ros.node", "--ros-args", "-r", f"__ns:={namespace}"]
        arguments += ["--params-file", str(SHIPPED_CONFIG), "-p", "weights:=random", "-p", "device:=cpu"]
        for name, value in parameters.items():
            arguments += ["-p", f"{name}:={value}"]
        super().__init__(arguments)
        self.line_with("waiting for a publisher")


class CameraProcess(ChildProcess):
    """`python -m superpoint_ros.tools.camera_sim` publishing on `topic`."""

    def __init__(self, topic: str, **options) -> None:
        arguments = [sys.executable, "-m", "superpoint_ros.tools.camera_sim", "--topic", topic]
        for name, value in options.items():
            arguments += [f"--{name.replace('_', '-')}", str(value)]
        super().__init__(arguments)

    def published(self, timeout_s: float = 120.0) -> int:
        """Wait until all frames are out; how many were published."""
        return int(self.line_with("camera_sim: published", timeout_s).split()[-1])


def answers(inbox, frame_id: str) -> int:
    return sum(1 for message in list(inbox.messages) if message.header.frame_id == frame_id)


@functools.cache
def node_engine():
    """The engine the node processes build: `weights: random` on the CPU."""
    return create_detector(weights="random", device="cpu")


def rate_below_capacity(height: int, width: int) -> float:
    """A rate (Hz) the node sustains on this machine as loaded as it is now: one inference of
    the same engine at this size is timed here, and the node is kept busy at most `BUSY_SHARE`
    of the time (at most `MAX_RATE_HZ`)."""
    detector = node_engine()
    image = structured_image(height, width, seed=0)
    detector.detect([image])
    started_s = time.monotonic()
    detector.detect([image])
    return min(MAX_RATE_HZ, BUSY_SHARE / (time.monotonic() - started_s))


def warm_up(processes, inbox, topic: str, height: int, width: int, **options) -> None:
    """Frames of this size until one is answered: the node compiles its engine for a new size on
    the first frame (about a second), and frames that come meanwhile are dropped for newer ones.
    One frame is not enough: the node can answer it before its keypoints publisher has discovered
    this process's subscription, and a volatile publisher keeps nothing for a late subscriber."""
    frame_id = f"warm_up_{height}x{width}"
    camera = CameraProcess(topic, rate=1, frames=0, height=height, width=width, frame_id=frame_id, **options)
    processes(camera)
    wait_until(lambda: answers(inbox, frame_id), START_S, "a warm-up frame's answer")
    camera.stop()
