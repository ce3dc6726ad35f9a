"""The camera input's QoS following without flapping, and its silence warning, in one process over
DDS (the hostile publishers in other processes are in test_node_processes.py)."""

import time

from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from superpoint_ros.msg import KeypointArray
from superpoint_ros.ros.camera_input import SHARED_MEMORY_SEGMENT_BYTES, FrameSize, silence_cause
from superpoint_ros.ros.ros_messages import image_message

from conftest import structured_image
from ros_graph import header, wait_until

RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)


def test_a_small_last_frame_makes_the_cause_a_silent_publisher_not_lost_fragments():
    small = FrameSize(640, 10, "mono8", 6400)
    text = silence_cause(small, ReliabilityPolicy.RELIABLE, "/profile.xml")
    assert "matched but silent" in text and "640x10 mono8, 6 KB" in text
    assert "UDP" not in text and "profile.xml" not in text


def test_a_large_last_frame_or_none_blames_fragments_and_names_the_fixes():
    large = FrameSize(640, 480, "bgr8", 640 * 480 * 3)
    assert large.nbytes > SHARED_MEMORY_SEGMENT_BYTES
    reliable = silence_cause(large, ReliabilityPolicy.RELIABLE, "/profile.xml")
    assert "640x480 bgr8, 900 KB" in reliable and "UDP fragments" in reliable and "compressed" in reliable
    best_effort = silence_cause(None, ReliabilityPolicy.BEST_EFFORT, "/profile.xml")
    assert "No frame has arrived yet" in best_effort and "publish reliable" in best_effort
    assert "FASTRTPS_DEFAULT_PROFILES_FILE=/profile.xml" in best_effort


def test_the_limit_is_the_shared_memory_segment():
    at_limit = FrameSize(1, 1, "mono8", SHARED_MEMORY_SEGMENT_BYTES)
    over = FrameSize(1, 1, "mono8", SHARED_MEMORY_SEGMENT_BYTES + 1)
    assert "UDP" not in silence_cause(at_limit, ReliabilityPolicy.RELIABLE, "")
    assert "UDP" in silence_cause(over, ReliabilityPolicy.RELIABLE, "")


def test_a_publisher_that_stopped_after_small_frames_is_called_matched_but_silent(graph, start_node):
    rosout = graph.rosout()
    node, namespace = start_node(silence_warning_period=1.0)
    inbox = graph.subscribe(KeypointArray, f"{namespace}/keypoints", RELIABLE)
    publisher = graph.publisher(Image, f"{namespace}/image", RELIABLE)
    wait_until(lambda: publisher.get_subscription_count() > 0, what="a match")
    message = image_message(structured_image(64, 80, 1), "bgr8", header(1))
    publisher.publish(message)
    inbox.find(lambda m: m.header.stamp == message.header.stamp)
    # A warning that names the frame: on a loaded machine the match can take longer than the
    # silence period, and the node rightly warns of a publisher with no frame yet before it.
    warning = rosout.find(
        lambda log: log.name.startswith(namespace[1:]) and "no frame on" in log.msg and "80x64" in log.msg,
        what="the silence warning that follows the frame",
    )
    assert "80x64 bgr8, 15 KB" in warning.msg and "matched but silent" in warning.msg
    assert "UDP" not in warning.msg


def test_a_best_effort_publisher_shorter_than_the_settle_period_does_not_flip_a_reliable_camera(graph, start_node):
    node, namespace = start_node(qos_settle_period=3.0)
    camera = node.cameras[0]
    graph.publisher(Image, f"{namespace}/image", RELIABLE)
    wait_until(lambda: camera.reliability == ReliabilityPolicy.RELIABLE, what="a reliable subscription")
    for _ in range(3):
        visitor = graph.publisher(Image, f"{namespace}/image", BEST_EFFORT)
        wait_until(lambda: camera.input.publisher_count == 2, what="the visitor in the graph")
        time.sleep(0.5)
        graph.probe.destroy_publisher(visitor)
        wait_until(lambda: camera.input.publisher_count == 1, what="the visitor gone")
    time.sleep(1.0)  # two graph checks more: a switch, had one been due, would have happened
    assert camera.reliability == ReliabilityPolicy.RELIABLE and camera.input.resubscriptions == 0


def test_a_best_effort_publisher_that_stays_is_followed_after_the_settle_period_and_the_old_subscription_goes(
    graph, start_node
):
    node, namespace = start_node(qos_settle_period=1.0)
    camera = node.cameras[0]
    graph.publisher(Image, f"{namespace}/image", RELIABLE)
    wait_until(lambda: camera.reliability == ReliabilityPolicy.RELIABLE, what="a reliable subscription")
    reliable_subscription = camera.subscription
    graph.publisher(Image, f"{namespace}/image", BEST_EFFORT)
    wait_until(lambda: camera.input.publisher_count == 2, what="the second publisher in the graph")
    seen_s = time.monotonic()
    wait_until(lambda: camera.reliability == ReliabilityPolicy.BEST_EFFORT, what="best effort")
    assert time.monotonic() - seen_s >= 0.5, "switched before the publishers had settled"
    assert camera.input.resubscriptions == 1
    wait_until(
        lambda: reliable_subscription not in node.subscriptions, what="the old subscription destroyed once replaced"
    )


def test_a_reliable_camera_is_followed_even_when_a_visitor_came_first_and_others_keep_coming(graph, start_node):
    """The first choice follows whoever is there; a camera that stays is followed once settled,
    although short-lived publishers never stop coming and going."""
    node, namespace = start_node(qos_settle_period=1.0)
    camera = node.cameras[0]
    visitor = graph.publisher(Image, f"{namespace}/image", BEST_EFFORT)
    wait_until(lambda: camera.reliability == ReliabilityPolicy.BEST_EFFORT, what="the visitor followed at first")
    graph.publisher(Image, f"{namespace}/image", RELIABLE)
    deadline_s = time.monotonic() + 20.0
    while camera.reliability != ReliabilityPolicy.RELIABLE:
        assert time.monotonic() < deadline_s, "the steady reliable camera was never followed"
        graph.probe.destroy_publisher(visitor)
        visitor = graph.publisher(Image, f"{namespace}/image", BEST_EFFORT)
        time.sleep(0.3)
    for _ in range(6):  # the churn goes on: the settled camera keeps its subscription
        graph.probe.destroy_publisher(visitor)
        visitor = graph.publisher(Image, f"{namespace}/image", BEST_EFFORT)
        time.sleep(0.3)
    assert camera.reliability == ReliabilityPolicy.RELIABLE and camera.input.resubscriptions == 1
