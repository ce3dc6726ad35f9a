"""Building KeypointArray and Image messages from arrays, and reading them back."""

import array

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from superpoint_ros.detector import Detections
from superpoint_ros.msg import KeypointArray
from superpoint_ros.ros.ros_messages import (
    decode_image_message,
    detections_from_message,
    image_message,
    keypoint_array_message,
)

from conftest import structured_image
from ros_graph import header


def random_detections(count: int, descriptor_size: int = 256) -> Detections:
    rng = np.random.default_rng(count)
    descriptors = rng.standard_normal((count, descriptor_size)).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    scores = np.sort(rng.random(count, dtype=np.float32))[::-1]
    return Detections(rng.random((count, 2), dtype=np.float32) * 100, scores, descriptors)


def test_keypoint_array_survives_serialisation_bit_for_bit():
    detections = random_detections(37)
    message = keypoint_array_message(detections, header(5, "cam"), 480, 640, 256)
    received = deserialize_message(serialize_message(message), KeypointArray)
    assert received.header == header(5, "cam")
    assert (received.height, received.width, received.descriptor_size) == (480, 640, 256)
    assert list(received.keypoints[:2]) == [detections.keypoints[0, 0], detections.keypoints[0, 1]]
    decoded = detections_from_message(received)
    for name in ("keypoints", "scores", "descriptors"):
        np.testing.assert_array_equal(getattr(decoded, name), getattr(detections, name))


def test_a_message_without_keypoints_reads_back_as_empty_arrays():
    empty = Detections(np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros((0, 256), np.float32))
    decoded = detections_from_message(keypoint_array_message(empty, header(0), 8, 8, 256))
    assert decoded.keypoints.shape == (0, 2) and decoded.scores.shape == (0,) and decoded.descriptors.shape == (0, 256)


def test_a_thousand_keypoints_serialise_to_about_a_megabyte():
    message = keypoint_array_message(random_detections(1000), header(1, "camera"), 480, 640, 256)
    payload = 4 * (2 * 1000 + 1000 + 256 * 1000)
    size = len(serialize_message(message))
    assert payload < size < payload + 100


def test_an_image_message_round_trips_through_serialisation():
    bgr = structured_image(24, 32, seed=1)
    message = image_message(bgr, "bgr8", header(3, "optical"))
    received = deserialize_message(serialize_message(message), Image)
    assert received.header == header(3, "optical")
    assert (received.encoding, received.step) == ("bgr8", 96)
    np.testing.assert_array_equal(decode_image_message(received).pixels, bgr)


def test_array_fields_are_filled_with_array_array_not_numpy(monkeypatch):
    # Given a numpy array, the generated setter converts it element by element (~13 ms for
    # 1000×256 floats here, ~50 ms with ROS_PYTHON_CHECK_FIELDS=1); an array.array('f') is
    # stored or memcpy'd. keypoint_array_message must hand the setters array.array.
    assigned = {}
    for field in ("keypoints", "scores", "descriptors"):
        generated = getattr(KeypointArray, field)

        def record(message, value, field=field, generated=generated):
            assigned[field] = value
            generated.fset(message, value)

        monkeypatch.setattr(KeypointArray, field, property(generated.fget, record))
    message = keypoint_array_message(random_detections(2000), header(1), 480, 640, 256)
    for field in ("keypoints", "scores", "descriptors"):
        assert isinstance(assigned[field], array.array) and assigned[field].typecode == "f", field
    assert len(message.descriptors) == 2000 * 256
