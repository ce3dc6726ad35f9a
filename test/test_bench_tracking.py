"""The tracker benchmark's input and its measurement, at a small size (timings are not checked)."""

import numpy as np

from superpoint_ros.bench_tracking import moving_frames, time_tracker


def test_benchmark_frames_hold_the_keypoint_count_with_unit_descriptors():
    frames = moving_frames(500, 3)
    assert [len(frame.keypoints) for frame in frames] == [500, 500, 500]
    np.testing.assert_allclose(np.linalg.norm(frames[0].descriptors, axis=1), 1.0, rtol=1e-5)
    assert ((frames[0].keypoints >= -2) & (frames[0].keypoints <= [642, 482])).all()


def test_the_benchmark_tracks_most_points_from_frame_to_frame():
    result = time_tracker(500, 10, "cpu")
    assert result["keypoints"] == 500
    assert 0.7 < result["continued_share"] <= 0.9, "a tenth of each frame is new points"
    assert result["p50"] > 0
