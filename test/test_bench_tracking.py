"""The tracker benchmark's input and its measurement, at a small size (timings are not checked)."""

import numpy as np

from superpoint_ros.tools.bench_tracking import (
    HEIGHT,
    SCENE_SHAPE,
    WIDTH,
    labelled_moving_frames,
    moving_frames,
    time_trackers,
    world_quality,
)
from superpoint_ros.tools.scenes import camera_homography
from superpoint_ros.tools.synthetic_world import OUTLIER


def test_benchmark_frames_hold_the_keypoint_count_with_unit_descriptors():
    frames = moving_frames(500, 3)
    assert [len(frame.keypoints) for frame in frames] == [500, 500, 500]
    np.testing.assert_allclose(np.linalg.norm(frames[0].descriptors, axis=1), 1.0, rtol=1e-5)
    assert ((frames[0].keypoints >= -2) & (frames[0].keypoints <= [642, 482])).all()


def test_a_label_is_the_same_scene_point_in_every_frame_by_the_cameras_homography():
    (first, first_labels), (second, second_labels) = labelled_moving_frames(500, 2)
    assert (first_labels == OUTLIER).sum() == 50
    row_of = {label: row for row, label in enumerate(first_labels) if label != OUTLIER}
    shared = [(row_of[label], row) for row, label in enumerate(second_labels) if label in row_of]
    assert len(shared) > 400
    before = camera_homography(SCENE_SHAPE, HEIGHT, WIDTH, 0.0)
    after = camera_homography(SCENE_SHAPE, HEIGHT, WIDTH, 1 / 300)
    points = np.c_[first.keypoints[[a for a, _ in shared]], np.ones(len(shared))] @ (after @ np.linalg.inv(before)).T
    moved = points[:, :2] / points[:, 2:]
    # Each observation has 0.3 px of noise.
    assert np.abs(moved - second.keypoints[[b for _, b in shared]]).max() < 3.0


def test_the_benchmark_reports_both_trackers_and_guided_matching_does_as_well_as_dense():
    result = time_trackers(500, 12, "cpu")
    assert result["keypoints"] == 500 and result["similarity_p50"] > 0
    guided, dense = result["guided"], result["dense"]
    assert guided["guided_frames"] == 1.0 and dense["guided_frames"] == 0.0
    for cell in (guided, dense):
        assert cell["p50"] > 0 and cell["of_similarity"] > 0
        assert cell["correct_share"] > 0.95
        assert 350 < cell["continued_per_frame"] <= 450, "a tenth of each frame is new points"
    assert guided["correct_share"] >= dense["correct_share"]
    assert guided["continued_per_frame"] >= 0.95 * dense["continued_per_frame"]


def test_on_the_synthetic_world_guided_matching_is_as_right_and_continues_as_much_as_dense():
    quality = world_quality()
    assert quality["guided"]["correct_share"] >= quality["dense"]["correct_share"]
    assert quality["guided"]["continued_per_frame"] >= 0.95 * quality["dense"]["continued_per_frame"]
    assert quality["dense"]["continued_per_frame"] > 100
