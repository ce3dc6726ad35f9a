"""The tracker's input validation, case by case, on real `KeypointArray` and `CameraInfo`
messages: what is refused whole, which rows are dropped and why, and what reaches the tracker.
The expected rows are written out by hand for each case."""

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo

from superpoint_ros.camera_model import camera_model
from superpoint_ros.detector import Detections
from superpoint_ros.msg import KeypointArray
from superpoint_ros.ros.ros_messages import keypoint_array_message
from superpoint_ros.tracker_inputs import (
    MAX_DESCRIPTOR_SIZE,
    MAX_IMAGE_SIDE,
    NON_FINITE,
    OUTSIDE_IMAGE,
    OVER_CAP,
    ZERO_DESCRIPTOR,
    InputRejected,
    camera_model_input,
    keypoint_input,
    stereo_problem,
)
from superpoint_ros.vins_layout import CameraFeatures, finite_features

from ros_graph import header

WIDTH, HEIGHT = 320, 240


def unit_rows(rng, count: int, size: int = 256) -> np.ndarray:
    vectors = rng.normal(size=(count, size)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def message(keypoints, descriptors, scores=None, width=WIDTH, height=HEIGHT) -> KeypointArray:
    keypoints = np.asarray(keypoints, np.float32).reshape(-1, 2)
    scores = np.linspace(1.0, 0.1, len(keypoints)) if scores is None else scores
    detections = Detections(keypoints, np.asarray(scores, np.float32), np.asarray(descriptors, np.float32))
    return keypoint_array_message(detections, header(1), height, width, detections.descriptors.shape[1])


def ten_keypoints(rng) -> tuple[np.ndarray, np.ndarray]:
    return rng.uniform(0, 200, (10, 2)).astype(np.float32), unit_rows(rng, 10)


def test_a_clean_message_passes_unchanged_with_every_row():
    rng = np.random.default_rng(0)
    keypoints, descriptors = ten_keypoints(rng)
    valid = keypoint_input(message(keypoints, descriptors))
    assert list(valid.rows) == list(range(10)) and valid.dropped == {} and valid.renormalised == 0
    np.testing.assert_array_equal(valid.keypoints, keypoints)
    np.testing.assert_array_equal(valid.descriptors, descriptors)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: setattr(m, "keypoints", m.keypoints[:-1]), "19 values, not an even number"),
        (lambda m: setattr(m, "scores", m.scores[:4]), "10 keypoints but 4 scores"),
        (lambda m: setattr(m, "descriptors", m.descriptors[:-1]), "descriptor_size 256 but 2559 descriptor values"),
        (lambda m: setattr(m, "descriptor_size", 0), "descriptor_size 0 is outside 1..4096"),
        (lambda m: setattr(m, "descriptor_size", MAX_DESCRIPTOR_SIZE + 1), "descriptor_size 4097 is outside"),
        (lambda m: setattr(m, "width", 0), "image size 0×240 is outside 1..16384"),
        (lambda m: setattr(m, "height", 0), "image size 320×0"),
        (lambda m: setattr(m, "width", MAX_IMAGE_SIDE + 1), "image size 16385×240"),
        (lambda m: (setattr(m, "width", 20000), setattr(m, "height", 20000)), "image size 20000×20000"),
    ],
)
def test_a_malformed_message_is_refused_whole_with_the_reason(change, problem):
    rng = np.random.default_rng(1)
    hostile = message(*ten_keypoints(rng))
    change(hostile)
    with pytest.raises(InputRejected, match=problem):
        keypoint_input(hostile)


def test_the_largest_allowed_sizes_are_accepted():
    rng = np.random.default_rng(2)
    keypoints = rng.uniform(0, 200, (3, 2))
    valid = keypoint_input(message(keypoints, unit_rows(rng, 3, MAX_DESCRIPTOR_SIZE), width=16384, height=16384))
    assert len(valid.rows) == 3


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda k, s, d: k.__setitem__((3, 0), np.nan), NON_FINITE),
        (lambda k, s, d: k.__setitem__((3, 1), np.inf), NON_FINITE),
        (lambda k, s, d: s.__setitem__(3, np.nan), NON_FINITE),
        (lambda k, s, d: s.__setitem__(3, -np.inf), NON_FINITE),
        (lambda k, s, d: d.__setitem__((3, 17), np.nan), NON_FINITE),
        (lambda k, s, d: d.__setitem__((3, 17), np.inf), NON_FINITE),
        (lambda k, s, d: d.__setitem__(3, 0.0), ZERO_DESCRIPTOR),
        (lambda k, s, d: k.__setitem__((3, 0), -0.51), OUTSIDE_IMAGE),
        (lambda k, s, d: k.__setitem__((3, 0), WIDTH - 0.49), OUTSIDE_IMAGE),
        (lambda k, s, d: k.__setitem__((3, 1), HEIGHT + 100), OUTSIDE_IMAGE),
        (lambda k, s, d: k.__setitem__((3, 1), -1e30), OUTSIDE_IMAGE),
    ],
)
def test_a_bad_row_is_dropped_and_counted_and_the_others_keep_their_message_rows(spoil, reason):
    rng = np.random.default_rng(3)
    keypoints, descriptors = ten_keypoints(rng)
    scores = np.linspace(1.0, 0.1, 10).astype(np.float32)
    spoil(keypoints, scores, descriptors)
    valid = keypoint_input(message(keypoints, descriptors, scores))
    assert valid.dropped == {reason: 1}
    assert list(valid.rows) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    np.testing.assert_array_equal(valid.keypoints, keypoints[valid.rows])
    np.testing.assert_array_equal(valid.descriptors, descriptors[valid.rows])
    assert np.isfinite(valid.descriptors).all() and np.isfinite(valid.scores).all()


def test_keypoints_on_the_image_edges_are_kept():
    rng = np.random.default_rng(4)
    edges = [(-0.5, -0.5), (WIDTH - 0.5, HEIGHT - 0.5), (0, HEIGHT - 0.5), (WIDTH - 0.5, 0)]
    valid = keypoint_input(message(edges, unit_rows(rng, 4)))
    assert list(valid.rows) == [0, 1, 2, 3] and valid.dropped == {}


def test_each_row_counts_once_under_the_first_reason_that_drops_it():
    rng = np.random.default_rng(5)
    keypoints, descriptors = ten_keypoints(rng)
    keypoints[0] = (-50, np.nan)  # non-finite and outside
    descriptors[1] = 0.0
    keypoints[1] = (-50, -50)  # zero descriptor and outside
    keypoints[2] = (-50, -50)
    valid = keypoint_input(message(keypoints, descriptors))
    assert valid.dropped == {NON_FINITE: 1, ZERO_DESCRIPTOR: 1, OUTSIDE_IMAGE: 1}
    assert valid.dropped_total == 3 and list(valid.rows) == list(range(3, 10))


def test_non_unit_descriptors_are_renormalised_and_unit_ones_left_alone():
    rng = np.random.default_rng(6)
    keypoints, descriptors = ten_keypoints(rng)
    original = descriptors.copy()
    descriptors[2] *= 3.0
    descriptors[5] *= 1e-3
    descriptors[7] *= 1e25  # its float32 squares overflow
    valid = keypoint_input(message(keypoints, descriptors))
    assert valid.renormalised == 3 and valid.dropped == {}
    np.testing.assert_allclose(valid.descriptors, original, atol=1e-6)
    np.testing.assert_array_equal(valid.descriptors[[0, 1, 3]], original[[0, 1, 3]])


def test_above_max_input_keypoints_the_highest_scores_are_kept_in_message_order():
    rng = np.random.default_rng(7)
    keypoints, descriptors = ten_keypoints(rng)
    scores = np.array([0.5, 0.9, 0.1, 0.7, 0.7, 0.2, 0.95, 0.3, 0.7, 0.05], np.float32)
    valid = keypoint_input(message(keypoints, descriptors, scores), max_input_keypoints=4)
    # 0.95 (row 6), 0.9 (row 1), then the tie at 0.7 keeps the earlier rows 3 and 4.
    assert list(valid.rows) == [1, 3, 4, 6]
    assert valid.dropped == {OVER_CAP: 6}
    np.testing.assert_array_equal(valid.scores, scores[[1, 3, 4, 6]])


def test_the_cap_counts_only_rows_left_after_the_bad_ones():
    rng = np.random.default_rng(8)
    keypoints, descriptors = ten_keypoints(rng)
    keypoints[:4] = np.nan
    valid = keypoint_input(message(keypoints, descriptors), max_input_keypoints=5)
    assert valid.dropped == {NON_FINITE: 4, OVER_CAP: 1} and list(valid.rows) == [4, 5, 6, 7, 8]


def camera_info(**fields) -> CameraInfo:
    info = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model="plumb_bob")
    info.k = [300.0, 0.0, 159.5, 0.0, 300.0, 119.5, 0.0, 0.0, 1.0]
    info.d = [0.01, -0.02, 0.0, 0.0, 0.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [300.0, 0.0, 159.5, 0.0, 0.0, 300.0, 119.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    for name, value in fields.items():
        setattr(info, name, value)
    return info


def with_value(name: str, index: int, value: float) -> dict:
    values = list(getattr(camera_info(), name))
    values[index] = value
    return {name: values}


def test_a_valid_camera_info_gives_its_model():
    model = camera_model_input(camera_info())
    assert (model.width, model.height) == (WIDTH, HEIGHT) and model.camera_matrix[0, 0] == 300.0


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (with_value("k", 0, np.nan), "K has non-finite values"),
        (with_value("k", 0, np.inf), "K has non-finite values"),
        (with_value("k", 2, np.nan), "K has non-finite values"),
        (with_value("d", 0, np.nan), "D has non-finite values"),
        (with_value("r", 4, np.nan), "R has non-finite values"),
        (with_value("p", 3, np.inf), "P has non-finite values"),
        (with_value("k", 0, 0.0), "not calibrated"),
        (with_value("k", 4, -300.0), "not calibrated"),
        (with_value("p", 0, 0.0), "focal lengths in P are 0.0"),
        (with_value("r", 0, 2.0), "R is not a rotation"),
        ({"r": [1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]}, "R is not a rotation"),  # a reflection
        ({"distortion_model": "kannala_brandt"}, "'kannala_brandt' is not supported"),
        ({"distortion_model": ""}, "'' is not supported"),
        ({"distortion_model": "equidistant"}, "equidistant distortion needs 4 coefficients, got 5"),
        ({"d": [0.1] * 3}, "needs 4, 5, 8, 12 or 14 coefficients, got 3"),
        ({"width": 0}, "image size 0×240"),
        ({"height": 20000}, "image size 320×20000"),
    ],
)
def test_an_invalid_camera_info_is_refused_naming_the_problem(fields, problem):
    with pytest.raises(InputRejected, match=problem.replace("(", r"\(")):
        camera_model_input(camera_info(**fields))


@pytest.mark.parametrize("model", ["plumb_bob", "rational_polynomial", "equidistant"])
def test_the_supported_distortion_models_are_accepted(model):
    d = [0.01, -0.02, 0.001, 0.0] if model == "equidistant" else [0.01, -0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert camera_model_input(camera_info(distortion_model=model, d=d)).distortion_model == model


def test_unset_r_and_p_count_as_the_identity_and_k():
    model = camera_model_input(camera_info(r=[0.0] * 9, p=[0.0] * 12))
    np.testing.assert_array_equal(model.rectification, np.eye(3))
    np.testing.assert_array_equal(model.projection[:, :3], model.camera_matrix)


def pinhole(width=WIDTH, height=HEIGHT, tx=0.0):
    k = np.array([300.0, 0, 159.5, 0, 300.0, 119.5, 0, 0, 1])
    p = np.array([300.0, 0, 159.5, tx, 0, 300.0, 119.5, 0, 0, 0, 1, 0])
    return camera_model(width, height, "plumb_bob", k, np.zeros(5), np.eye(3).ravel(), p)


def test_a_stereo_pair_needs_equal_sizes():
    assert stereo_problem(pinhole(), pinhole(tx=-30.0)) is None
    assert stereo_problem(pinhole(), pinhole(640, 480, -30.0)) == "left CameraInfo is 320×240 but right is 640×480"


def test_the_last_guard_drops_non_finite_observations_and_their_ids_in_the_right_camera():
    ids = np.array([4, 5, 6])
    pixels = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    normalized = np.array([[0.1, 0.2], [np.nan, 0.1], [0.3, 0.4]])
    velocities = np.array([[0.0, 0.0], [0.0, 0.0], [np.inf, 0.0]])
    left = CameraFeatures(0, ids, pixels, normalized, velocities)
    right = CameraFeatures(1, np.array([5, 4]), pixels[:2], np.array([[0.1, 0.1], [0.2, 0.2]]), np.zeros((2, 2)))
    (kept_left, kept_right), dropped = finite_features([left, right])
    assert list(kept_left.ids) == [4] and list(kept_right.ids) == [4]
    assert dropped == 3
    np.testing.assert_array_equal(kept_right.normalized, [[0.2, 0.2]])
