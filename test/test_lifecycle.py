"""The managed (lifecycle) detector and tracker: transitions over the `lifecycle_msgs` services, as a lifecycle
manager calls them, and `ros2 lifecycle set` through the real CLI against the executable started
with `--managed`. Random weights on the CPU."""

import itertools
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy

from superpoint_ros.feature_types import Detections
from superpoint_ros.msg import FeatureTracks, KeypointArray
from superpoint_ros.ros.node import NODE_NAME, ManagedDetectorNode, create
from superpoint_ros.ros.ros_messages import image_message, keypoint_array_message
from superpoint_ros.ros.ros_support import split_managed_flag
from superpoint_ros.ros.tracker_node import NODE_NAME as TRACKER_NODE_NAME
from superpoint_ros.ros.tracker_node import ManagedTrackerNode

from conftest import structured_image
from domains import spare_domain_ids
from ros_graph import header, wait_until

RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
_namespaces = itertools.count()


def managed_node(graph, **parameters):
    namespace = f"/lifecycle_{os.getpid()}_{next(_namespaces)}"
    overrides = [Parameter("weights", value="random"), Parameter("device", value="cpu")]
    overrides += [Parameter(name, value=value) for name, value in parameters.items()]
    node = ManagedDetectorNode(namespace=namespace, parameter_overrides=overrides, context=graph.context)
    graph.add(node)
    return node, namespace


class Lifecycle:
    """The node's lifecycle services, called from the probe node."""

    def __init__(self, graph, namespace: str, node_name: str = NODE_NAME) -> None:
        self.graph = graph
        path = f"{namespace}/{node_name}"
        self._change = graph.probe.create_client(ChangeState, f"{path}/change_state")
        self._get = graph.probe.create_client(GetState, f"{path}/get_state")

    def change(self, transition: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition))
        return self.graph.call(self._change, request, timeout_s=120.0).success

    def state(self) -> int:
        return self.graph.call(self._get, GetState.Request()).current_state.id


def comes_back(graph, topic: str, message, inbox, active: bool) -> bool:
    """Publish `message` once, reliable, on `topic`; whether an output stamped like it reached
    `inbox` (waited for 20 s when the node is `active`, else 1.5 s, for one it should never send)."""
    publisher = graph.publisher(type(message), topic, RELIABLE)
    if active:
        wait_until(lambda: publisher.get_subscription_count() > 0, what="a match")
    publisher.publish(message)
    try:
        inbox.find(lambda m: m.header.stamp == message.header.stamp, timeout_s=20.0 if active else 1.5)
        return True
    except AssertionError:
        return False
    finally:
        graph.probe.destroy_publisher(publisher)


def answered(graph, namespace, inbox, sequence, active: bool) -> bool:
    """Whether the detector answered one frame with its keypoints (see `comes_back`)."""
    message = image_message(structured_image(64, 80, sequence), "bgr8", header(sequence))
    return comes_back(graph, f"{namespace}/image", message, inbox, active)


def test_configure_activate_deactivate_cleanup_and_shutdown_over_the_lifecycle_services(graph):
    node, namespace = managed_node(graph, input_qos="reliable")
    lifecycle = Lifecycle(graph, namespace)
    inbox = graph.subscribe(KeypointArray, f"{namespace}/keypoints", RELIABLE)
    assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED and node.detector is None

    assert lifecycle.change(Transition.TRANSITION_CONFIGURE)
    assert lifecycle.state() == State.PRIMARY_STATE_INACTIVE
    assert node.detector is not None and node.cameras[0].subscription is None
    assert not answered(graph, namespace, inbox, 1, active=False), "inactive, yet it answered"

    assert lifecycle.change(Transition.TRANSITION_ACTIVATE)
    assert answered(graph, namespace, inbox, 2, active=True)

    detector = node.detector
    assert lifecycle.change(Transition.TRANSITION_DEACTIVATE)
    assert node.detector is detector, "deactivate keeps the engine"
    received = len(inbox)
    assert not answered(graph, namespace, inbox, 3, active=False)
    assert len(inbox) == received, "nothing is published while inactive"

    assert lifecycle.change(Transition.TRANSITION_ACTIVATE)
    assert answered(graph, namespace, inbox, 4, active=True), "frames flow again after reactivation"

    assert lifecycle.change(Transition.TRANSITION_DEACTIVATE)
    assert lifecycle.change(Transition.TRANSITION_CLEANUP)
    assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED and node.detector is None
    assert lifecycle.change(Transition.TRANSITION_CONFIGURE), "configures again after a cleanup"
    assert lifecycle.change(Transition.TRANSITION_ACTIVATE)
    assert lifecycle.change(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert lifecycle.state() == State.PRIMARY_STATE_FINALIZED and node.detector is None
    graph.remove(node)


def errors_of(rosout, namespace: str) -> list:
    return [log for log in list(rosout.messages) if log.name.startswith(namespace[1:]) and log.level >= 40]


def test_a_failed_configure_leaves_the_node_alive_and_unconfigured_with_one_error_line(graph, tmp_path):
    rosout = graph.rosout()
    node, namespace = managed_node(graph, weights=str(tmp_path / "missing.safetensors"))
    lifecycle = Lifecycle(graph, namespace)
    assert not lifecycle.change(Transition.TRANSITION_CONFIGURE)
    assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
    # /rosout is another writer than the service's reply: the line can arrive after it.
    wait_until(lambda: errors_of(rosout, namespace), what="the error line on /rosout")
    errors = errors_of(rosout, namespace)
    assert len(errors) == 1 and "Cannot configure" in errors[0].msg and "missing.safetensors" in errors[0].msg
    assert "Traceback" not in errors[0].msg
    assert not lifecycle.change(Transition.TRANSITION_CONFIGURE), "alive: it answers a second attempt"
    assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
    graph.remove(node)


def keypoints_message(sequence: int) -> KeypointArray:
    rng = np.random.default_rng(sequence)
    descriptors = rng.normal(size=(20, 256)).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    keypoints = rng.uniform(10, 60, size=(20, 2)).astype(np.float32)
    detections = Detections(keypoints, np.linspace(1, 0.5, 20, dtype=np.float32), descriptors)
    return keypoint_array_message(detections, header(sequence), 64, 80, 256)


def tracked(graph, namespace, inbox, sequence, active: bool) -> bool:
    """Whether the tracker answered one KeypointArray with its tracks (see `comes_back`)."""
    return comes_back(graph, f"{namespace}/keypoints", keypoints_message(sequence), inbox, active)


def test_the_managed_tracker_tracks_only_while_active(graph):
    namespace = f"/lifecycle_tracker_{os.getpid()}"
    node = graph.add(ManagedTrackerNode(namespace=namespace, context=graph.context))
    lifecycle = Lifecycle(graph, namespace, TRACKER_NODE_NAME)
    inbox = graph.subscribe(FeatureTracks, f"{namespace}/tracks", RELIABLE)
    assert lifecycle.change(Transition.TRANSITION_CONFIGURE) and node.tracker is not None
    assert not tracked(graph, namespace, inbox, 1, active=False)
    assert lifecycle.change(Transition.TRANSITION_ACTIVATE)
    assert tracked(graph, namespace, inbox, 2, active=True)
    assert lifecycle.change(Transition.TRANSITION_DEACTIVATE)
    assert not tracked(graph, namespace, inbox, 3, active=False)
    assert lifecycle.change(Transition.TRANSITION_ACTIVATE)
    assert tracked(graph, namespace, inbox, 4, active=True)
    assert lifecycle.change(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert lifecycle.state() == State.PRIMARY_STATE_FINALIZED and node.tracker is None
    graph.remove(node)


def test_managed_is_taken_only_before_ros_args():
    assert split_managed_flag(["node", "--managed", "--ros-args", "-p", "a:=1"]) == (
        True,
        ["node", "--ros-args", "-p", "a:=1"],
    )
    assert split_managed_flag(["node", "--ros-args", "-r", "--managed:=x"]) == (
        False,
        ["node", "--ros-args", "-r", "--managed:=x"],
    )
    assert split_managed_flag(["node"]) == (False, ["node"])


def test_create_builds_the_plain_node_unless_managed(graph):
    plain = create(False, context=graph.context, parameter_overrides=[Parameter("weights", value="random")])
    try:
        assert not isinstance(plain, ManagedDetectorNode) and plain.detector is not None
    finally:
        plain.destroy_node()


@pytest.mark.skipif(shutil.which("ros2") is None, reason="the ros2 CLI is not installed (../shared/ros2cli)")
def test_ros2_lifecycle_set_drives_the_executable_started_with_managed():
    namespace = f"/lifecycle_cli_{os.getpid()}"
    environment = {**os.environ, "ROS_DOMAIN_ID": str(spare_domain_ids()[-1]), "HF_HUB_OFFLINE": "1"}
    node = subprocess.Popen(
        [sys.executable, "-m", "superpoint_ros.ros.node", "--managed", "--ros-args", "-r", f"__ns:={namespace}"]
        + ["-p", "weights:=random", "-p", "device:=cpu"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    path = f"{namespace}/{NODE_NAME}"

    def lifecycle(*arguments: str) -> str:
        """The CLI's answer. Without a daemon it discovers the graph afresh each time, within
        `--spin-time`; on a loaded machine that can miss the node, so "Node not found" is asked again.
        Each call spins that long twice (finding the node, then calling it; the call itself waits
        for the service), so a short spin time saves seconds per call and loses nothing."""
        command = ["ros2", "lifecycle", arguments[0], "--no-daemon", "--spin-time", "1", path, *arguments[1:]]
        deadline = time.monotonic() + 60.0
        while True:
            result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120, check=False)
            answer = result.stdout + result.stderr
            if answer.strip() != "Node not found" or time.monotonic() > deadline:
                return answer

    try:
        wait_until(lambda: "unconfigured" in lifecycle("get"), 60.0, "the node")
        assert "Transitioning successful" in lifecycle("set", "configure")
        assert "Transitioning successful" in lifecycle("set", "activate")
        assert "active [3]" in lifecycle("get")
        assert "Transitioning successful" in lifecycle("set", "shutdown")
    finally:
        node.terminate()
        output = node.communicate(timeout=30)[0]
    assert "Traceback" not in output, output
