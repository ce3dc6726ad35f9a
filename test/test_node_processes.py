"""The node with a camera driver in ANOTHER process, the way robots run it: default Fast DDS
settings, no profile file, the shipped `config/detector.yaml`.

The camera is `superpoint_ros.camera_sim` in a child process. Large frames between processes go
over UDP loopback in fragments (the shared-memory segment is 512 KB), which a graph inside one
process never exercises. The node runs in this process so that its counters can be read; every
frame still crosses a process boundary to reach it.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import yaml
from ament_index_python.packages import get_package_share_directory
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy

from superpoint_ros.msg import KeypointArray
from superpoint_ros.node import DetectorNode

from conftest import structured_image
from ros_graph import Graph, private_domain_id, wait_until

SHIPPED_CONFIG = pathlib.Path(get_package_share_directory("superpoint_ros")) / "config" / "detector.yaml"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def graph():
    graph = Graph()
    yield graph
    graph.close()


def shipped_parameters(**changes) -> list[Parameter]:
    """The shipped config's parameters, with random weights on the CPU and `changes`."""
    (section,) = yaml.safe_load(SHIPPED_CONFIG.read_text()).values()
    values = {**section["ros__parameters"], "weights": "random", "device": "cpu", **changes}
    return [Parameter(name, value=value) for name, value in values.items()]


@pytest.fixture
def start_node(graph):
    started = []

    def start(namespace: str, **changes) -> DetectorNode:
        node = DetectorNode(
            namespace=namespace, parameter_overrides=shipped_parameters(**changes), context=graph.context
        )
        started.append(graph.add(node))
        return node

    yield start
    for node in started:
        graph.remove(node)


class CameraProcess:
    """`python -m superpoint_ros.camera_sim` in a child process on this test's ROS domain."""

    def __init__(self, topic: str, **options) -> None:
        arguments = [sys.executable, "-m", "superpoint_ros.camera_sim", "--topic", topic]
        for name, value in options.items():
            arguments += [f"--{name.replace('_', '-')}", str(value)]
        environment = {**os.environ, "ROS_DOMAIN_ID": str(private_domain_id())}
        environment.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
        self.process = subprocess.Popen(
            arguments, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def finish(self, timeout_s: float = 120.0) -> int:
        """Wait for the camera to publish all its frames; the number it published."""
        output, _ = self.process.communicate(timeout=timeout_s)
        assert self.process.returncode == 0, output
        return int(output.split("camera_sim: published ")[1].split()[0])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.communicate(timeout=10.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.communicate()


@pytest.fixture
def cameras():
    started = []

    def start(topic: str, **options) -> CameraProcess:
        camera = CameraProcess(topic, **options)
        started.append(camera)
        return camera

    yield start
    for camera in started:
        camera.stop()


def rate_below_capacity(node: DetectorNode, height: int, width: int) -> float:
    """A publishing rate (Hz) the node sustains on this machine, as loaded as it is now: the
    engine is compiled for the size first (as on the first frame), then one inference is timed
    and the rate keeps the node busy a quarter of the time at most."""
    image = structured_image(height, width, seed=0)
    node.detector.detect([image])
    started_s = time.monotonic()
    node.detector.detect([image])
    return min(2.0, 0.25 / (time.monotonic() - started_s))


def answered(inbox, frame_id: str) -> int:
    return sum(1 for message in list(inbox.messages) if message.header.frame_id == frame_id)


_namespaces = iter(range(1000))


def namespace() -> str:
    return f"/test_processes_{os.getpid()}_{next(_namespaces)}"


@pytest.mark.parametrize(("height", "width", "frames"), [(480, 640, 20), (720, 1280, 12)])
def test_a_reliable_camera_in_another_process_is_answered_with_the_shipped_config(
    graph, start_node, cameras, height, width, frames
):
    name = namespace()
    node = start_node(name)
    inbox = graph.subscribe(KeypointArray, f"{name}/keypoints", RELIABLE)
    frame_id = f"reliable_{height}"
    camera = cameras(
        f"{name}/image", rate=rate_below_capacity(node, height, width), frames=frames, height=height, width=width,
        encoding="bgr8", reliability="reliable", frame_id=frame_id,
    )  # fmt: skip
    published = camera.finish()
    wait_until(lambda: answered(inbox, frame_id) >= 0.95 * published, timeout_s=15.0, what="the answers")
    assert node.cameras[0].reliability == ReliabilityPolicy.RELIABLE
    assert node.statistics()["image"].rejected == 0
    heights = {message.height for message in inbox.messages}
    assert heights == {height}


def test_a_best_effort_camera_whose_large_frames_are_lost_gets_a_warning_naming_the_fixes(graph, start_node, cameras):
    rosout = graph.rosout()
    name = namespace()
    node = start_node(name, silence_warning_period=2.0)
    camera = cameras(
        f"{name}/image", rate=2.0, frames=16, height=720, width=1280, encoding="bgr8", reliability="best_effort"
    )
    warning = rosout.find(
        lambda log: log.name.startswith(name[1:]) and "no frame on" in log.msg, timeout_s=30.0, what="the warning"
    )
    assert "best effort" in warning.msg and "fastdds_large_images.xml" in warning.msg and "input_qos" in warning.msg
    assert node.cameras[0].reliability == ReliabilityPolicy.BEST_EFFORT
    camera.stop()


def test_a_driver_restart_with_other_qos_size_and_encoding_is_followed_without_restarting_the_node(
    graph, start_node, cameras
):
    name = namespace()
    node = start_node(name)
    inbox = graph.subscribe(KeypointArray, f"{name}/keypoints", RELIABLE)
    first = cameras(f"{name}/image", rate=3.0, frames=0, height=480, width=640, encoding="bgr8",
                    reliability="reliable", frame_id="first")  # fmt: skip
    wait_until(lambda: answered(inbox, "first") >= 3, timeout_s=30.0, what="answers to the first driver")
    first.process.kill()  # a crash, not a clean exit
    first.process.communicate()
    second = cameras(f"{name}/image", rate=3.0, frames=0, height=240, width=320, encoding="mono8",
                     reliability="best_effort", frame_id="second")  # fmt: skip
    wait_until(lambda: answered(inbox, "second") >= 3, timeout_s=30.0, what="answers to the restarted driver")
    second.stop()
    assert node.cameras[0].reliability == ReliabilityPolicy.BEST_EFFORT
    assert {m.height for m in inbox.messages if m.header.frame_id == "second"} == {240}
    assert node.statistics()["image"].rejected == 0


def test_diagnostics_follow_a_camera_in_another_process_and_warn_when_it_stops(graph, start_node, cameras):
    name = namespace()
    camera_name = f"cam_{os.getpid()}"
    start_node(name, image_topics=["image"], camera_names=[camera_name], silence_warning_period=2.0)
    diagnostics = graph.subscribe(DiagnosticArray, "/diagnostics", RELIABLE)
    status_name = f"superpoint_detector: {camera_name}"

    def statuses(level, since=0):
        return [
            status
            for array in list(diagnostics.messages)[since:]
            for status in array.status
            if status.name == status_name and status.level == level and status.hardware_id == "diag_cam"
        ]

    camera = cameras(f"{name}/image", rate=3.0, frames=0, height=240, width=320, encoding="bgr8",
                     reliability="reliable", frame_id="diag_cam")  # fmt: skip
    (ok, *_) = wait_until(lambda: statuses(DiagnosticStatus.OK), timeout_s=30.0, what="an OK status")
    values = {value.key: value.value for value in ok.values}
    assert float(values["input rate (Hz)"]) > 0 and values["input QoS"] == "reliable (input_qos: auto)"
    camera.stop()
    seen = len(diagnostics.messages)
    (warn, *_) = wait_until(lambda: statuses(DiagnosticStatus.WARN, seen), timeout_s=15.0, what="a WARN status")
    assert "no frame for" in warn.message


@pytest.mark.parametrize("compression", ["jpeg", "png"])
def test_compressed_frames_from_another_process_are_answered(graph, start_node, cameras, compression):
    name = namespace()
    node = start_node(name, image_transport="compressed")
    inbox = graph.subscribe(KeypointArray, f"{name}/keypoints", RELIABLE)
    frame_id = f"compressed_{compression}"
    rate = rate_below_capacity(node, 480, 640)
    camera = cameras(f"{name}/image", rate=rate, frames=8, height=480, width=640, encoding="bgr8",
                     reliability="reliable", transport="compressed", compression=compression,
                     frame_id=frame_id)  # fmt: skip
    published = camera.finish()
    wait_until(lambda: answered(inbox, frame_id) >= 0.95 * published, timeout_s=15.0, what="the answers")
    assert node.cameras[0].input_topic == f"{name}/image/compressed"
    assert {(m.height, m.width) for m in inbox.messages} == {(480, 640)}
    assert node.statistics()["image"].rejected == 0
