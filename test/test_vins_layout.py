"""VINS-Fusion's feature layout, undistortion from a hand-built CameraInfo, and stereo pairing.

The oracles: OpenCV's forward camera models (`cv2.projectPoints`, `cv2.fisheye.projectPoints`)
put known normalized points through the distortion, and undistortion must bring them back;
the layout is checked against the channel order of VINS-Fusion's `feature_callback`.
"""

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from superpoint_ros.ros.ros_messages import camera_model_from_message, point_cloud_message
from superpoint_ros.tracking import ID_LIMIT, match_stereo
from superpoint_ros.vins_layout import (
    CHANNEL_NAMES,
    CameraFeatures,
    Observations,
    normalized_velocities,
    vins_feature_arrays,
)

K = [460.0, 0.0, 317.5, 0.0, 455.0, 243.25, 0.0, 0.0, 1.0]


def camera_info(distortion_model="plumb_bob", d=(-0.28, 0.07, 2e-4, 1.8e-5, 0.0), r=None, p=None) -> CameraInfo:
    info = CameraInfo(width=640, height=480, distortion_model=distortion_model)
    info.k = K
    info.d = list(d)
    info.r = r if r is not None else [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    info.p = p if p is not None else [K[0], 0.0, K[2], 0.0, 0.0, K[4], K[5], 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def grid_normalized() -> np.ndarray:
    """Normalized points whose distorted pixels cover most of a 640×480 image."""
    x, y = np.meshgrid(np.linspace(-0.55, 0.55, 9), np.linspace(-0.42, 0.42, 7))
    return np.column_stack((x.ravel(), y.ravel()))


def test_plumb_bob_normalized_coordinates_invert_opencvs_distortion_and_equal_undistort_points():
    info = camera_info()
    truth = grid_normalized()
    pixels = cv2.projectPoints(
        np.column_stack((truth, np.ones(len(truth)))), np.zeros(3), np.zeros(3), np.reshape(K, (3, 3)), np.array(info.d)
    )[0].reshape(-1, 2)
    normalized = camera_model_from_message(info).normalized(pixels)
    np.testing.assert_allclose(normalized, truth, atol=2e-4)
    expected = cv2.undistortPoints(pixels.reshape(-1, 1, 2), np.reshape(K, (3, 3)), np.array(info.d)).reshape(-1, 2)
    np.testing.assert_array_equal(normalized, expected)


def test_equidistant_normalized_coordinates_invert_opencvs_fisheye_model():
    d = (0.02, -0.01, 0.004, -0.001)
    info = camera_info("equidistant", d)
    truth = grid_normalized()
    pixels = cv2.fisheye.projectPoints(
        np.column_stack((truth, np.ones(len(truth))))[:, None, :],
        np.zeros(3),
        np.zeros(3),
        np.reshape(K, (3, 3)),
        np.array(d),
    )[0].reshape(-1, 2)
    normalized = camera_model_from_message(info).normalized(pixels)
    np.testing.assert_allclose(normalized, truth, atol=1e-5)


def test_rectified_input_takes_the_projection_matrix_and_no_distortion():
    p = [500.0, 0.0, 320.0, -50.0, 0.0, 500.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    model = camera_model_from_message(camera_info(p=p), rectified_input=True)
    np.testing.assert_allclose(model.normalized(np.array([[320.0, 240.0], [570.0, 140.0]])), [[0, 0], [0.5, -0.2]])


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"distortion_model": "kannala_brandt"}, "not supported"),
        ({"k": [0.0] * 9}, "not calibrated"),
        ({"distortion_model": "equidistant", "d": [0.1] * 5}, "4 coefficients"),
        ({"d": [0.1] * 3}, "needs 4, 5, 8, 12 or 14"),
    ],
)
def test_an_unusable_camera_info_raises_a_value_error_naming_the_problem(fields, problem):
    info = camera_info()
    for name, value in fields.items():
        setattr(info, name, value)
    with pytest.raises(ValueError, match=problem):
        camera_model_from_message(info)


def features(camera_id, ids, offset=0.0):
    ids = np.asarray(ids)
    pixels = np.column_stack((ids * 10.0 + offset, ids * 20.0 + offset))
    return CameraFeatures(camera_id, ids, pixels, pixels / 1000, np.column_stack((ids * 0.1, -ids * 0.1)))


def test_the_point_cloud_has_z_exactly_one_and_the_nine_channels_in_vins_fusions_order():
    points, channels = vins_feature_arrays([features(0, [7, 3, ID_LIMIT - 1])])
    message = point_cloud_message(Header(frame_id="cam0"), points, channels)
    assert [channel.name for channel in message.channels] == list(CHANNEL_NAMES)
    assert len(message.channels) == 9
    assert [p.z for p in message.points] == [1.0, 1.0, 1.0]
    values = [np.asarray(channel.values) for channel in message.channels]
    assert list(values[0]) == [7, 3, ID_LIMIT - 1], "ids below 2**24 survive float32 exactly"
    assert list(values[1]) == [0, 0, 0]
    assert list(values[2]) == [70, 30, (ID_LIMIT - 1) * 10.0]
    assert list(values[3]) == pytest.approx([140, 60, (ID_LIMIT - 1) * 20.0])
    assert list(values[4]) == pytest.approx([0.7, 0.3, (ID_LIMIT - 1) * 0.1])
    assert list(values[5]) == pytest.approx([-0.7, -0.3, -(ID_LIMIT - 1) * 0.1])
    assert all(not v.any() for v in values[6:])
    assert [p.x for p in message.points] == pytest.approx([0.07, 0.03, (ID_LIMIT - 1) / 100])


def test_stereo_observations_follow_all_of_camera_0_and_only_repeat_its_ids():
    points, channels = vins_feature_arrays([features(0, [5, 9, 2]), features(1, [9, 5], offset=-4.0)])
    assert list(channels[0]) == [5, 9, 2, 9, 5]
    assert list(channels[1]) == [0, 0, 0, 1, 1]
    assert list(channels[2]) == [50, 90, 20, 86, 46]
    assert points.shape == (5, 3) and (points[:, 2] == 1).all()
    with pytest.raises(ValueError, match="camera 1 has 1 id"):
        vins_feature_arrays([features(0, [5, 9]), features(1, [9, 4])])


def test_velocities_are_the_normalized_displacement_per_second_and_zero_for_new_ids():
    previous = Observations(np.array([4, 8, 1]), np.array([[0.1, 0.2], [0.3, 0.4], [0.0, 0.0]]), 10.0)
    current = Observations(np.array([8, 6, 4]), np.array([[0.35, 0.4], [0.9, 0.9], [0.1, 0.1]]), 10.5)
    np.testing.assert_allclose(normalized_velocities(current, previous), [[0.1, 0.0], [0.0, 0.0], [0.0, -0.2]])
    assert not normalized_velocities(current, None).any()
    assert not normalized_velocities(current, Observations(previous.ids, previous.normalized, 10.5)).any()


def test_stereo_matching_pairs_points_on_one_row_with_a_positive_disparity_only():
    rng = np.random.default_rng(0)
    descriptors = rng.normal(size=(4, 256)).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    left = np.array([[100, 50], [200, 80], [300, 120], [400, 160]], np.float32)
    # Right views: same row and 20 px disparity; 1.5 px off the row; 5 px off; a negative disparity.
    right = np.array([[80, 50], [150, 81.5], [250, 125], [420, 160]], np.float32)
    left_rows, right_rows = match_stereo(descriptors, left, descriptors, right, row_tolerance=2.0)
    assert sorted(zip(left_rows.tolist(), right_rows.tolist(), strict=True)) == [(0, 0), (1, 1)]
