"""The shipped parameter files, loaded the way `--params-file` loads them."""

import pathlib

import pytest
import rclpy
import torch
import yaml
from ament_index_python.packages import get_package_share_directory
from rclpy.context import Context

from superpoint_ros.backends import resolve_backend
from superpoint_ros.ros.node import DetectorNode

from domains import private_domain_id

CONFIG = pathlib.Path(get_package_share_directory("superpoint_ros")) / "config"


@pytest.fixture
def node_from():
    """`node_from(yaml_name)`: a DetectorNode started with `--params-file` (random weights)."""
    started = []

    def start(name: str) -> DetectorNode:
        context = Context()
        arguments = ["--ros-args", "--params-file", str(CONFIG / name), "-p", "weights:=random", "-p", "device:=cpu"]
        rclpy.init(args=arguments, context=context, domain_id=private_domain_id())
        node = DetectorNode(context=context)
        started.append((node, context))
        return node

    yield start
    for node, context in started:
        node.destroy_node()
        context.try_shutdown()


def file_parameters(name: str) -> dict:
    """The detector's section of a shipped YAML."""
    return yaml.safe_load((CONFIG / name).read_text())["/**/superpoint_detector"]["ros__parameters"]


@pytest.mark.parametrize("name", ["detector.yaml", "two_cameras.yaml"])
def test_every_value_in_a_shipped_config_reaches_the_node(node_from, name):
    node = node_from(name)
    for parameter, value in file_parameters(name).items():
        if parameter == "backend":
            # The request reads back as the engine it picks here (auto: OpenVINO on this CPU).
            assert node.get_parameter(parameter).value == resolve_backend(value, torch.device("cpu")), parameter
        elif parameter == "architecture":
            # `auto` reads back as the network found: random weights initialise Magic Leap's.
            assert node.get_parameter(parameter).value == "magicleap", parameter
        elif parameter not in ("weights", "device"):
            assert node.get_parameter(parameter).value == value, parameter


def test_the_default_config_runs_one_camera_on_image():
    parameters = file_parameters("detector.yaml")
    assert parameters["image_topics"] == []


def test_the_two_camera_config_publishes_per_camera_topics(node_from):
    node = node_from("two_cameras.yaml")
    assert [(camera.name, camera.image_topic) for camera in node.cameras] == [
        ("left", "left/image_raw"),
        ("right", "right/image_raw"),
    ]
    assert [camera.keypoints_publisher.topic_name for camera in node.cameras] == ["/left/keypoints", "/right/keypoints"]
    assert [camera.debug_publisher.topic_name for camera in node.cameras] == ["/left/debug_image", "/right/debug_image"]


def test_the_vins_fusion_stereo_config_sets_up_both_nodes_for_a_stereo_pair(node_from):
    from superpoint_ros.ros.tracker_node import TrackerNode

    parameters = yaml.safe_load((CONFIG / "vins_fusion_stereo.yaml").read_text())
    detector = node_from("vins_fusion_stereo.yaml")
    assert [camera.keypoints_publisher.topic_name for camera in detector.cameras] == [
        "/left/keypoints",
        "/right/keypoints",
    ]
    context = detector.context
    tracker = TrackerNode(context=context)
    try:
        for name, value in parameters["/**/superpoint_tracker"]["ros__parameters"].items():
            assert tracker.get_parameter(name).value == value, name
        assert [camera.tracks_publisher.topic_name for camera in tracker.cameras] == ["/left/tracks", "/right/tracks"]
        assert tracker.vins_publisher.topic_name == "/feature"
    finally:
        tracker.destroy_node()
