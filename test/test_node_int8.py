"""The node with `precision: int8` calibrated on its camera's first frames, over a real DDS graph:
float32 answers until the int8 network is ready, then the node logs the switch and carries on."""

import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy

from superpoint_ros.ros.node import NODE_NAME
from superpoint_ros.ros.ros_messages import image_message
from superpoint_ros.tools.bench_scenes import benchmark_scene

from helpers import needs
from ros_graph import connect, header, output_for, wait_until

pytest.importorskip("openvino")
pytestmark = needs("nncf")

HEIGHT, WIDTH = 120, 160


def test_the_node_switches_to_int8_after_calibrating_on_its_first_frames(graph, start_node, tmp_path):
    rosout = graph.rosout()
    node, namespace = start_node(
        precision="int8",
        int8_calibration="frames",
        int8_calibration_count=2,
        int8_cache_dir=str(tmp_path),
        input_qos="reliable",
    )
    assert node.detector.precision == "float32"
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    publisher, inbox = connect(graph, node, namespace, input_qos=reliable)
    frames = [benchmark_scene(HEIGHT, WIDTH, seed) for seed in range(3)]
    for sequence, frame in enumerate(frames[:2]):
        message = image_message(frame, "bgr8", header(sequence))
        publisher.publish(message)
        output_for(inbox, message.header.stamp)
    wait_until(lambda: node.detector.precision == "int8", timeout_s=120.0, what="the int8 network")
    rosout.find(
        lambda log: log.name == f"{namespace[1:]}.{NODE_NAME}" and "Switched to the int8 network" in log.msg,
        what="the switch in the log",
    )
    assert any(tmp_path.glob("superpoint_int8_*.xml"))
    message = image_message(frames[2], "bgr8", header(2, frame_id="int8_camera"))
    publisher.publish(message)
    output = output_for(inbox, message.header.stamp)
    assert output.header.frame_id == "int8_camera" and len(output.scores) > 0
