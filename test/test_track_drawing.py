"""Track trails for the debug image: what is kept, and that drawing marks the frame."""

import numpy as np

from superpoint_ros.drawing import TrackTrails, draw_tracks


def test_trails_keep_the_last_positions_of_tracks_in_the_newest_frame_only():
    trails = TrackTrails(length=3)
    for step in range(5):
        drawn = trails.update(np.array([7, 9]), np.array([[step, 0.0], [0.0, step]]))
    assert [trail.tolist() for trail in drawn] == [[[2, 0], [3, 0], [4, 0]], [[0, 2], [0, 3], [0, 4]]]
    (only,) = trails.update(np.array([9]), np.array([[0.0, 5.0]]))
    assert only.tolist() == [[0, 3], [0, 4], [0, 5]]
    (fresh,) = trails.update(np.array([7]), np.array([[1.0, 1.0]]))
    assert fresh.tolist() == [[1, 1]], "a track absent from one frame starts a new trail"


def test_drawing_colours_pixels_along_each_trail():
    canvas = np.zeros((60, 80, 3), np.uint8)
    trails = [np.array([[10.0, 40.0], [30.0, 40.0]]), np.array([[60.0, 50.0]])]
    draw_tracks(canvas, trails, np.array([2, 25]), "2 tracked")
    assert canvas[40, 20].any(), "the first trail's segment"
    assert canvas[50, 60].any(), "the second track's dot"
    assert canvas[10, 5:60].any(), "the caption"
