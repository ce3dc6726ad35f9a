"""The `superpoint_detector` node over a real DDS graph: images published on its topics,
outputs received by a subscriber, parameters set through its SetParameters service.

The node runs in this process (so its counters can be read), on its own namespace per test
(with this process's id, in case another run shares the domain) so no test sees another's
messages; everything between it and the test goes through DDS.
"""

import itertools
import os
import time

import cv2
import numpy as np
import pytest
from rcl_interfaces.msg import Parameter as ParameterMessage
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import DescribeParameters, ListParameters, SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from superpoint_ros.detector import Detector
from superpoint_ros.msg import KeypointArray
from superpoint_ros.node import NODE_NAME, RUNTIME_PARAMETERS, DetectorNode
from superpoint_ros.ros_messages import detections_from_message, image_message

from conftest import structured_image
from ros_graph import Graph, header, wait_until

HEIGHT, WIDTH = 120, 160
_namespaces = itertools.count()


@pytest.fixture(scope="module")
def graph():
    graph = Graph()
    yield graph
    graph.close()


@pytest.fixture(scope="module")
def reference():
    """The same pipeline the node runs, called directly."""
    return Detector(weights="random", device="cpu")


@pytest.fixture
def start_node(graph):
    """Start a detector node in a fresh namespace: `start_node(**parameters) -> (node, namespace)`."""
    started = []

    def start(**parameters):
        namespace = f"/test_node_{os.getpid()}_{next(_namespaces)}"
        overrides = [Parameter("weights", value="random"), Parameter("device", value="cpu")]
        overrides += [Parameter(name, value=value) for name, value in parameters.items()]
        node = graph.add(DetectorNode(namespace=namespace, parameter_overrides=overrides, context=graph.context))
        started.append(node)
        return node, namespace

    yield start
    for node in started:
        graph.remove(node)


def connect(graph, node, namespace, camera="", input_qos=None):
    """A publisher to the camera's input and an inbox of its keypoints, matched both ways."""
    camera_index = next(i for i, c in enumerate(node.cameras) if c.name == (camera or "image"))
    prefix = f"{namespace}/{camera}/" if camera else f"{namespace}/"
    image_topic = node.cameras[camera_index].image_topic
    image_topic = image_topic if image_topic.startswith("/") else f"{namespace}/{image_topic}"
    publisher = graph.publisher(Image, image_topic, **({"qos": input_qos} if input_qos else {}))
    inbox = graph.subscribe(KeypointArray, f"{prefix}keypoints")
    wait_until(lambda: publisher.get_subscription_count() > 0, what="the node to subscribe")
    wait_until(lambda: node.cameras[camera_index].keypoints_publisher.get_subscription_count() > 0, what="a match")
    return publisher, inbox


def output_for(inbox, stamp, **find):
    return inbox.find(lambda m: m.header.stamp == stamp, what=f"output stamped {stamp.sec}", **find)


def exchange(publisher, inbox, message):
    """Publish `message` (again every few seconds: best effort may lose the first) until its
    output arrives; return that output."""
    for _ in range(5):
        publisher.publish(message)
        try:
            return output_for(inbox, message.header.stamp, timeout_s=4.0)
        except AssertionError:
            continue
    raise AssertionError("the node never answered")


def assert_detections_equal(message, expected):
    received = detections_from_message(message)
    np.testing.assert_array_equal(received.keypoints, expected.keypoints)
    np.testing.assert_array_equal(received.scores, expected.scores)
    np.testing.assert_array_equal(received.descriptors, expected.descriptors)


def scene(seed=0, height=HEIGHT, width=WIDTH):
    return structured_image(height, width, seed)


def bayer_rggb(bgr):
    raw = bgr[..., 1].copy()
    raw[0::2, 0::2] = bgr[0::2, 0::2, 2]
    raw[1::2, 1::2] = bgr[1::2, 1::2, 0]
    return raw


ENCODINGS = ["bgr8", "8UC3", "rgb8", "bgra8", "rgba8", "mono8", "8UC1", "mono16", "16UC1", "32FC1", "bayer_rggb8"]


def encoding_case(encoding, bgr):
    """What to publish for `bgr` in `encoding`, and what `Detector.detect` gets for it (with
    which channel order)."""
    if encoding in ("bgr8", "8UC3"):
        return bgr, [bgr], "bgr"
    if encoding == "rgb8":
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        return rgb, [rgb], "rgb"
    if encoding in ("bgra8", "rgba8"):
        four = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA if encoding == "bgra8" else cv2.COLOR_BGR2RGBA)
        return four, [four], encoding[:3]
    if encoding in ("mono8", "8UC1"):
        grey = np.ascontiguousarray(bgr[..., 1])
        return grey, [grey], "bgr"
    if encoding in ("mono16", "16UC1"):
        grey = bgr[..., 2].astype(np.uint16) * 257
        return grey, [grey], "bgr"
    if encoding == "32FC1":
        grey = bgr[..., 0].astype(np.float32) / 255
        return grey, [grey], "bgr"
    raw = bayer_rggb(bgr)
    return raw, [cv2.cvtColor(raw, cv2.COLOR_BayerBG2BGR)], "bgr"


@pytest.fixture(scope="module")
def shared_node(graph):
    namespace = f"/test_node_{os.getpid()}_shared"
    overrides = [Parameter("weights", value="random"), Parameter("device", value="cpu")]
    node = graph.add(DetectorNode(namespace=namespace, parameter_overrides=overrides, context=graph.context))
    publisher, inbox = connect(graph, node, namespace)
    yield node, namespace, publisher, inbox
    graph.remove(node)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_keypoints_equal_the_detector_output_and_keep_the_header(shared_node, reference, encoding):
    _, _, publisher, inbox = shared_node
    published, detector_input, channel_order = encoding_case(encoding, scene(seed=ENCODINGS.index(encoding)))
    sent = image_message(published, encoding, header(10_000 + ENCODINGS.index(encoding), f"optical_{encoding}"))
    received = exchange(publisher, inbox, sent)
    assert received.header == sent.header
    assert (received.height, received.width) == (HEIGHT, WIDTH)
    assert received.descriptor_size == reference.descriptor_size == 256
    (expected,) = reference.detect(detector_input, channel_order)
    assert len(expected.scores) > 0
    assert_detections_equal(received, expected)


def test_rgb8_and_bgr8_of_one_scene_give_identical_keypoints(shared_node):
    _, _, publisher, inbox = shared_node
    bgr = scene(seed=7)
    from_bgr = exchange(publisher, inbox, image_message(bgr, "bgr8", header(7001)))
    from_rgb = exchange(publisher, inbox, image_message(bgr[..., ::-1].copy(), "rgb8", header(7002)))
    assert len(from_bgr.scores) > 0
    assert list(from_bgr.keypoints) == list(from_rgb.keypoints)
    assert list(from_bgr.scores) == list(from_rgb.scores)
    assert list(from_bgr.descriptors) == list(from_rgb.descriptors)


def test_debug_image_is_published_only_while_subscribed(graph, start_node):
    node, namespace = start_node()
    publisher, inbox = connect(graph, node, namespace)
    camera = node.cameras[0]
    exchange(publisher, inbox, image_message(scene(1), "bgr8", header(1)))
    assert camera.counters.debug_images == 0

    debug_inbox = graph.subscribe(Image, f"{namespace}/debug_image")
    wait_until(lambda: camera.debug_publisher.get_subscription_count() > 0, what="the debug subscriber")
    sent = image_message(scene(2), "rgb8", header(2, "left_optical"))
    exchange(publisher, inbox, sent)
    debug = output_for(debug_inbox, sent.header.stamp)
    assert debug.header == sent.header
    assert (debug.encoding, debug.height, debug.width, debug.step) == ("bgr8", HEIGHT, WIDTH, 3 * WIDTH)
    drawn = np.frombuffer(debug.data, np.uint8).reshape(HEIGHT, WIDTH, 3)
    assert not np.array_equal(drawn, scene(2)[..., ::-1]), "keypoints and caption are drawn on the frame"
    assert camera.counters.debug_images == 1

    graph.unsubscribe(debug_inbox)
    wait_until(lambda: camera.debug_publisher.get_subscription_count() == 0, what="the debug subscriber to leave")
    exchange(publisher, inbox, image_message(scene(3), "bgr8", header(3)))
    assert camera.counters.debug_images == 1


def parameter_message(name, value):
    return ParameterMessage(name=name, value=Parameter(name, value=value).get_parameter_value())


def set_parameters(graph, namespace, **values):
    client = graph.probe.create_client(SetParameters, f"{namespace}/{NODE_NAME}/set_parameters")
    request = SetParameters.Request(parameters=[parameter_message(n, v) for n, v in values.items()])
    try:
        return graph.call(client, request).results
    finally:
        graph.probe.destroy_client(client)


def test_detection_parameters_change_the_next_frame_through_the_parameter_service(graph, start_node):
    node, namespace = start_node()
    publisher, inbox = connect(graph, node, namespace)
    image = scene(4)
    before = exchange(publisher, inbox, image_message(image, "bgr8", header(1)))
    assert len(before.scores) > 10

    (result,) = set_parameters(graph, namespace, max_keypoints=7)
    assert result.successful, result.reason
    results = set_parameters(graph, namespace, nms_radius=2, border_removal_distance=8, keypoint_threshold=0.01)
    assert [result.successful for result in results] == [True] * 3
    after = exchange(publisher, inbox, image_message(image, "bgr8", header(2)))
    expected_detector = Detector(
        weights="random",
        device="cpu",
        max_keypoints=7,
        nms_radius=2,
        border_removal_distance=8,
        keypoint_threshold=0.01,
    )
    (expected,) = expected_detector.detect([image])
    assert len(expected.scores) == 7
    assert_detections_equal(after, expected)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"nms_radius": -1}, "range"),
        ({"nms_radius": 1000}, "range"),
        ({"max_keypoints": -2}, "range"),
        ({"border_removal_distance": -4}, "range"),
        ({"keypoint_threshold": 1.5}, "range"),
        ({"keypoint_threshold": 1.0}, "keypoint_threshold must be in [0, 1)"),
        ({"max_keypoints": 2.5}, "type"),
        ({"weights": "elsewhere"}, "read-only"),
        ({"device": "cuda"}, "read-only"),
    ],
)
def test_invalid_or_read_only_parameter_changes_are_rejected_with_a_reason(graph, start_node, values, reason):
    node, namespace = start_node()
    settings_before = node.detector.settings
    (result,) = set_parameters(graph, namespace, **values)
    assert not result.successful
    assert reason in result.reason
    assert node.detector.settings == settings_before


def test_every_parameter_is_described_and_every_number_has_a_range(graph, start_node):
    _, namespace = start_node()
    listing = graph.probe.create_client(ListParameters, f"{namespace}/{NODE_NAME}/list_parameters")
    names = [n for n in graph.call(listing, ListParameters.Request()).result.names if n != "use_sim_time"]
    describe = graph.probe.create_client(DescribeParameters, f"{namespace}/{NODE_NAME}/describe_parameters")
    descriptors = graph.call(describe, DescribeParameters.Request(names=names)).descriptors
    assert set(RUNTIME_PARAMETERS) <= set(names)
    for descriptor in descriptors:
        assert descriptor.description, descriptor.name
        assert descriptor.read_only == (descriptor.name not in RUNTIME_PARAMETERS), descriptor.name
        if descriptor.type == ParameterType.PARAMETER_INTEGER:
            assert descriptor.integer_range, descriptor.name
        if descriptor.type == ParameterType.PARAMETER_DOUBLE:
            assert descriptor.floating_point_range, descriptor.name


def test_the_resize_parameters_run_the_network_smaller_and_report_source_pixels(graph, start_node):
    node, namespace = start_node(resize_height=64, resize_width=80)
    publisher, inbox = connect(graph, node, namespace)
    image = scene(13)
    received = exchange(publisher, inbox, image_message(image, "bgr8", header(1)))
    (expected,) = Detector(weights="random", device="cpu", resize=(64, 80)).detect([image])
    assert (received.height, received.width) == (HEIGHT, WIDTH)
    assert_detections_equal(received, expected)


def test_the_backend_parameter_picks_the_engine(graph, start_node):
    node, namespace = start_node(backend="torch")
    assert node.detector.backend == "torch"
    publisher, inbox = connect(graph, node, namespace)
    image = scene(14)
    received = exchange(publisher, inbox, image_message(image, "bgr8", header(2)))
    (expected,) = Detector(weights="random", device="cpu", backend="torch").detect([image])
    assert_detections_equal(received, expected)


def test_the_onnxruntime_backend_names_its_provider_and_reads_the_tensorrt_cache_parameter(graph, start_node, tmp_path):
    pytest.importorskip("onnxruntime")
    node, namespace = start_node(backend="onnxruntime", tensorrt_cache_dir=str(tmp_path / "engines"))
    assert node.detector.backend == "onnxruntime (CPUExecutionProvider)"
    assert node.get_parameter("tensorrt_cache_dir").value == str(tmp_path / "engines")
    publisher, inbox = connect(graph, node, namespace)
    image = scene(15)
    received = exchange(publisher, inbox, image_message(image, "bgr8", header(3)))
    (expected,) = Detector(weights="random", device="cpu", backend="onnxruntime").detect([image])
    assert_detections_equal(received, expected)


def test_two_cameras_each_get_their_own_keypoints_from_one_batch(graph, start_node, reference):
    node, namespace = start_node(image_topics=["left/image_raw", "/elsewhere/right/image_raw"], batch_timeout=0.1)
    assert [camera.name for camera in node.cameras] == ["camera0", "camera1"]
    left_publisher, left_inbox = connect(graph, node, namespace, "camera0")
    right_publisher, right_inbox = connect(graph, node, namespace, "camera1")
    assert left_publisher.topic_name == f"{namespace}/left/image_raw"
    assert right_publisher.topic_name == "/elsewhere/right/image_raw"
    left, right = scene(10), scene(11)
    for sequence in range(1, 6):
        left_sent = image_message(left, "bgr8", header(sequence, "left"))
        right_sent = image_message(right, "bgr8", header(sequence, "right"))
        left_publisher.publish(left_sent)
        right_publisher.publish(right_sent)
        try:
            left_received = output_for(left_inbox, left_sent.header.stamp, timeout_s=4.0)
            right_received = output_for(right_inbox, right_sent.header.stamp, timeout_s=4.0)
        except AssertionError:
            continue  # best effort lost one; try the pair again
        if node.statistics()["camera0"].largest_batch == 2:
            break
    statistics = node.statistics()
    assert statistics["camera0"].largest_batch == statistics["camera1"].largest_batch == 2
    assert statistics["camera0"].batched_frames >= 1
    assert left_received.header == left_sent.header and right_received.header == right_sent.header
    expected_left, expected_right = reference.detect([left, right])
    assert_detections_equal(left_received, expected_left)
    assert_detections_equal(right_received, expected_right)
    assert len(left_received.scores) != len(right_received.scores) or list(left_received.keypoints) != list(
        right_received.keypoints
    )


def test_named_cameras_publish_under_their_names(graph, start_node):
    node, namespace = start_node(image_topics=["a/image", "b/image"], camera_names=["front", "rear"])
    publisher, inbox = connect(graph, node, namespace, "rear")
    sent = image_message(scene(12), "bgr8", header(1, "rear"))
    assert exchange(publisher, inbox, sent).header == sent.header
    assert publisher.topic_name == f"{namespace}/b/image"


def test_a_burst_faster_than_inference_keeps_only_recent_frames_and_reports_drops(graph, start_node):
    height, width = 240, 320
    images = [scene(seed, height, width) for seed in range(4)]
    inference_detector = Detector(weights="random", device="cpu")
    inference_detector.detect(images[:1])
    started = time.monotonic()
    inference_detector.detect(images[:1])
    inference_s = time.monotonic() - started

    rosout = graph.rosout()
    node, namespace = start_node(input_qos="reliable", statistics_period=0.2)
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    publisher, inbox = connect(graph, node, namespace, input_qos=reliable)
    exchange(publisher, inbox, image_message(images[0], "bgr8", header(0)))
    burst = [image_message(images[i % 4], "bgr8", header(i)) for i in range(1, 51)]
    outputs_before = len(inbox)

    burst_started = time.monotonic()
    for message in burst:
        publisher.publish(message)
        # Paced so that the executor sees each frame; still ten frames per inference.
        time.sleep(inference_s / 10)
    # The executor stays free while the worker is busy: the parameter service answers at once.
    (result,) = set_parameters(graph, namespace, max_keypoints=-1)
    assert result.successful
    assert time.monotonic() - burst_started < 10 * inference_s
    newest = image_message(images[1], "bgr8", header(1000))
    newest_published = time.monotonic()
    publisher.publish(newest)
    output_for(inbox, newest.header.stamp)
    newest_latency_s = inbox.arrival_s[-1] - newest_published

    outputs = inbox.messages[outputs_before:]
    stamps = [m.header.stamp.sec - header(0).stamp.sec for m in outputs]
    assert stamps == sorted(stamps)
    assert stamps[-1] == 1000
    assert len(outputs) < 25, f"{len(outputs)} outputs for 51 frames: old frames were queued"
    # After the burst: at most the frame in flight, then the newest frame; no backlog.
    assert newest_latency_s < 3 * inference_s + 0.5, f"{newest_latency_s:.2f} s, inference {inference_s:.2f} s"

    counters = node.statistics()["image"]
    assert counters.dropped == counters.received - counters.processed
    assert counters.dropped >= 10
    rosout.find(
        lambda log: (
            log.name == f"{namespace[1:]}.{NODE_NAME}"
            and f"{counters.received} frames received, {counters.processed} processed, "
            f"{counters.dropped} dropped for newer frames"
            in log.msg
        ),
        what="a log line with the drop count",
    )


def malformed(sequence, **fields):
    message = image_message(scene(20), "bgr8", header(sequence))
    for name, value in fields.items():
        setattr(message, name, value)
    return message


BAD_INPUTS = {
    "unsupported encoding 'yuv422'": dict(encoding="yuv422"),
    "no pixels: 0x120": dict(width=0),
    "no pixels: 160x0": dict(height=0),
    "step 100 is smaller than width × bytes per pixel": dict(step=100),
    "fewer than step × height": dict(data=bytes(10)),
    "absurd image size": dict(height=1 << 20, width=1 << 20, step=3 << 20),
}


def test_bad_inputs_are_dropped_with_an_error_naming_the_problem_and_the_node_goes_on(graph, start_node, reference):
    rosout = graph.rosout()
    node, namespace = start_node()
    publisher, inbox = connect(graph, node, namespace)
    exchange(publisher, inbox, image_message(scene(21), "bgr8", header(0)))
    for sequence, (problem, fields) in enumerate(BAD_INPUTS.items(), start=1):
        rejected = node.statistics()["image"].rejected
        bad = malformed(100 + sequence, **fields)
        publisher.publish(bad)
        wait_until(lambda rejected=rejected: node.statistics()["image"].rejected > rejected, what=problem)
        rosout.find(
            lambda log, problem=problem: problem in log.msg and log.level >= 40 and log.name.startswith(namespace[1:]),
            what=f"error '{problem}'",
        )
        good = scene(sequence)
        received = exchange(publisher, inbox, image_message(good, "bgr8", header(sequence)))
        assert_detections_equal(received, reference.detect([good])[0])
    assert not [m for m in inbox.messages if m.header.stamp.sec - header(0).stamp.sec >= 100]


def test_a_repeated_bad_input_is_logged_once_per_throttle_period(graph, start_node):
    rosout = graph.rosout()
    node, namespace = start_node()
    publisher, inbox = connect(graph, node, namespace)
    for sequence in range(5):
        publisher.publish(malformed(sequence, encoding="nv12"))
        wait_until(lambda sequence=sequence: node.statistics()["image"].rejected > sequence, what="a rejection")
    exchange(publisher, inbox, image_message(scene(22), "bgr8", header(10)))
    logged = [log for log in rosout.messages if "'nv12'" in log.msg and namespace[1:] in log.name]
    assert len(logged) == 1
