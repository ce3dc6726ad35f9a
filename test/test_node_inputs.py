"""How the node meets its cameras, in one process over DDS: input QoS that follows the
publishers, warnings for incompatible or silent publishers, /diagnostics, and compressed input.

Delivery of large frames between processes is tested in test_node_delivery.py; here the frames
are small and the graph is in-process, which is enough for the node's logic.
"""

import itertools
import os

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from superpoint_ros.detector_choice import create_detector
from superpoint_ros.msg import KeypointArray
from superpoint_ros.ros.diagnostics import CameraHealth, camera_status
from superpoint_ros.ros.ros_messages import detections_from_message, image_message

from conftest import structured_image
from ros_graph import header, wait_until

HEIGHT, WIDTH = 96, 128
RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
_namespaces = itertools.count()


@pytest.fixture(scope="module")
def reference():
    return create_detector(weights="random", device="cpu")


def from_node(log, namespace):
    return log.name.startswith(namespace[1:])


def answer(publisher, inbox, message, attempts=5):
    """Publish until the output stamped like `message` arrives (best effort may lose one)."""
    for _ in range(attempts):
        publisher.publish(message)
        try:
            return inbox.find(lambda m: m.header.stamp == message.header.stamp, timeout_s=4.0)
        except AssertionError:
            continue
    raise AssertionError("the node never answered")


def test_auto_qos_waits_for_a_publisher_then_follows_its_reliability_across_a_restart(graph, start_node):
    rosout = graph.rosout()
    node, namespace = start_node()
    camera = node.cameras[0]
    assert camera.subscription is None and camera.reliability is None
    rosout.find(
        lambda log: from_node(log, namespace) and "waiting for a publisher" in log.msg and camera.input_topic in log.msg
    )
    inbox = graph.subscribe(KeypointArray, f"{namespace}/keypoints")

    best_effort = graph.publisher(Image, f"{namespace}/image", BEST_EFFORT)
    wait_until(lambda: camera.reliability == ReliabilityPolicy.BEST_EFFORT, what="a best-effort subscription")
    wait_until(lambda: best_effort.get_subscription_count() > 0, what="a match")
    answer(best_effort, inbox, image_message(structured_image(HEIGHT, WIDTH, 1), "bgr8", header(1)))

    graph.probe.destroy_publisher(best_effort)
    reliable = graph.publisher(Image, f"{namespace}/image", RELIABLE)
    wait_until(lambda: camera.reliability == ReliabilityPolicy.RELIABLE, what="a reliable subscription")
    wait_until(lambda: reliable.get_subscription_count() > 0, what="a match")
    answer(reliable, inbox, image_message(structured_image(HEIGHT, WIDTH, 2), "bgr8", header(2)))

    choices = [log.msg for log in rosout.messages if from_node(log, namespace) and "subscribing to" in log.msg]
    assert len(choices) == 2, choices
    assert "best effort, following its 1 publisher: 1 best effort" in choices[0]
    assert "reliable, following its 1 publisher: 1 reliable" in choices[1]


def test_auto_qos_takes_best_effort_when_any_publisher_is_best_effort(graph, start_node):
    node, namespace = start_node()
    graph.publisher(Image, f"{namespace}/image", RELIABLE)
    wait_until(lambda: node.cameras[0].reliability == ReliabilityPolicy.RELIABLE, what="a reliable subscription")
    graph.publisher(Image, f"{namespace}/image", BEST_EFFORT)
    wait_until(lambda: node.cameras[0].reliability == ReliabilityPolicy.BEST_EFFORT, what="best effort")


def test_an_incompatible_publisher_is_reported_with_the_topic_and_the_clashing_policy(graph, start_node):
    rosout = graph.rosout()
    node, namespace = start_node(input_qos="reliable")
    graph.publisher(Image, f"{namespace}/image", BEST_EFFORT)
    log = rosout.find(lambda log: from_node(log, namespace) and "cannot match" in log.msg, what="the QoS warning")
    assert f"'{namespace}/image'" in log.msg and "clashing policy: reliability" in log.msg
    assert log.level == 30


def test_a_publisher_that_delivers_nothing_gets_a_throttled_warning_with_cause_and_fixes(graph, start_node):
    rosout = graph.rosout()
    node, namespace = start_node(silence_warning_period=1.0)
    graph.publisher(Image, f"{namespace}/image", BEST_EFFORT)
    warning = rosout.find(lambda log: from_node(log, namespace) and "no frame on" in log.msg, what="the warning")
    assert warning.level == 30
    for text in (f"'{namespace}/image'", "1 publisher: 1 best effort", "UDP fragments", "input_qos", ".xml"):
        assert text in warning.msg, text
    profile = warning.msg.split("FASTRTPS_DEFAULT_PROFILES_FILE=")[1].split()[0]
    assert os.path.isfile(profile), "the warning names the installed Fast DDS profile"
    wait_until(
        lambda: sum("no frame on" in log.msg for log in rosout.messages if from_node(log, namespace)) >= 2,
        what="a second warning one period later",
    )


def statuses_named(inbox, name):
    return [status for array in inbox.messages for status in array.status if status.name == name]


def test_diagnostics_report_each_camera_and_turn_to_warn_when_it_goes_silent(graph, start_node):
    tag = f"{os.getpid()}_{next(_namespaces)}"
    names = [f"front_{tag}", f"rear_{tag}"]
    node, namespace = start_node(image_topics=["front", "rear"], camera_names=names, silence_warning_period=1.5)
    diagnostics = graph.subscribe(DiagnosticArray, "/diagnostics", RELIABLE)
    front = f"superpoint_detector: {names[0]}"
    wait_until(lambda: statuses_named(diagnostics, front), what="a status for the front camera")
    publisher = graph.publisher(Image, f"{namespace}/front", RELIABLE)
    inbox = graph.subscribe(KeypointArray, f"{namespace}/{names[0]}/keypoints")
    wait_until(lambda: publisher.get_subscription_count() > 0, what="the node to subscribe")
    frames = itertools.count(1)
    image = structured_image(HEIGHT, WIDTH, 3)

    def ok_status():
        """One more frame, answered; then the OK statuses of the front camera since frames came."""
        answer(publisher, inbox, image_message(image, "bgr8", header(next(frames), "cam_front")))
        statuses = statuses_named(diagnostics, front)
        # A status published between a frame's arrival and its keypoints is OK too, with no latency yet.
        processed = [s for s in statuses if {v.key: v.value for v in s.values}["frames processed"] != "0"]
        return [s for s in processed if s.level == DiagnosticStatus.OK and s.hardware_id == "cam_front"]

    (status, *_) = wait_until(ok_status, what="an OK status with the camera's frame_id as hardware id")
    assert status.message == "ok"
    values = {value.key: value.value for value in status.values}
    for key in (
        "input rate (Hz)",
        "processed rate (Hz)",
        "dropped for newer frames",
        "rejected",
        "latency p50 (ms)",
        "latency p95 (ms)",
        "network time per frame (ms)",
        "device",
        "backend",
        "precision",
        "weights",
        "input QoS",
    ):
        assert key in values, key
    assert values["device"] == "cpu" and values["weights"] == "random" and values["precision"] == "float32"
    assert values["input QoS"] == "reliable (input_qos: auto)"
    assert float(values["latency p50 (ms)"]) > 0 and int(values["frames processed"]) >= 1

    seen = len(diagnostics.messages)
    wait_until(
        lambda: [
            s
            for array in diagnostics.messages[seen:]
            for s in array.status
            if s.name == front and s.level == DiagnosticStatus.WARN and "no frame for" in s.message
        ],
        what="a WARN status once the camera is silent",
    )
    rear = statuses_named(diagnostics, f"superpoint_detector: {names[1]}")[-1]
    assert rear.level == DiagnosticStatus.WARN and "no frame yet" in rear.message
    assert {v.key: v.value for v in rear.values}["input QoS"] == "waiting for a publisher (input_qos: auto)"


def test_quiet_time_counts_from_the_last_frame_or_from_when_the_node_began_waiting_if_later():
    health = CameraHealth()
    assert health.quiet_s(now_s=10.0, waiting_since_s=4.0) == 6.0  # never heard: since waiting began
    health.last_frame_s = 7.0
    assert health.quiet_s(now_s=10.0, waiting_since_s=4.0) == 3.0  # heard since
    # A new subscription or a publisher appearing restarts the count after an old frame.
    assert health.quiet_s(now_s=10.0, waiting_since_s=9.0) == 1.0
    level = {
        waiting_since_s: camera_status("cam", health, 10.0, 2.5, waiting_since_s, {}).level
        for waiting_since_s in (4.0, 9.0)
    }
    assert level == {4.0: DiagnosticStatus.WARN, 9.0: DiagnosticStatus.OK}


def jpeg_message(bgr, sequence, format_field="bgr8; jpeg compressed bgr8"):
    ok, payload = cv2.imencode(".jpg", bgr)
    assert ok
    return CompressedImage(header=header(sequence, "compressed_cam"), format=format_field, data=payload.tobytes())


@pytest.mark.parametrize("format_field", ["bgr8; jpeg compressed bgr8", "jpeg"])
def test_compressed_input_on_the_remapped_topic_gives_the_keypoints_of_the_decoded_frame(
    graph, start_node, reference, format_field
):
    node, namespace = start_node(cli_args=["--ros-args", "-r", "image:=camera/image_raw"], image_transport="compressed")
    assert node.cameras[0].input_topic == f"{namespace}/camera/image_raw/compressed"
    publisher = graph.publisher(CompressedImage, f"{namespace}/camera/image_raw/compressed", RELIABLE)
    inbox = graph.subscribe(KeypointArray, f"{namespace}/keypoints")
    wait_until(lambda: publisher.get_subscription_count() > 0, what="the node to subscribe")
    bgr = structured_image(HEIGHT, WIDTH, 4)
    sent = jpeg_message(bgr, 1, format_field)
    received = answer(publisher, inbox, sent)
    assert received.header == sent.header
    assert (received.height, received.width) == (HEIGHT, WIDTH)
    decoded = cv2.imdecode(np.frombuffer(bytes(sent.data), np.uint8), cv2.IMREAD_COLOR)
    (expected,) = reference.detect([decoded])
    got = detections_from_message(received)
    assert len(expected.scores) > 0
    np.testing.assert_array_equal(got.keypoints, expected.keypoints)
    np.testing.assert_array_equal(got.descriptors, expected.descriptors)


def test_a_corrupt_compressed_frame_is_rejected_with_an_error_and_the_next_one_is_answered(graph, start_node):
    rosout = graph.rosout()
    node, namespace = start_node(image_transport="compressed")
    publisher = graph.publisher(CompressedImage, f"{namespace}/image/compressed", RELIABLE)
    inbox = graph.subscribe(KeypointArray, f"{namespace}/keypoints")
    wait_until(lambda: publisher.get_subscription_count() > 0, what="the node to subscribe")
    good = jpeg_message(structured_image(HEIGHT, WIDTH, 5), 2)
    truncated = CompressedImage(header=header(1), format=good.format, data=bytes(good.data)[:300])
    publisher.publish(truncated)
    wait_until(lambda: node.statistics()["image"].rejected == 1, what="the rejection")
    rosout.find(lambda log: from_node(log, namespace) and "truncated jpeg" in log.msg and log.level == 40)
    answer(publisher, inbox, good)
    assert not [m for m in inbox.messages if m.header.stamp == truncated.header.stamp]
