"""The generated camera sequence: its homography is the ground truth that match and track tests
rely on, so it is checked here against the rendered frames themselves."""

import cv2
import numpy as np

from superpoint_ros.tools.scenes import camera_homography, camera_view, draw_scene


def test_a_scene_point_lands_where_the_homography_says_in_the_rendered_view():
    scene = np.zeros((480, 640, 3), np.uint8)
    cv2.circle(scene, (300, 250), 3, (255, 255, 255), -1)
    height, width, t = 240, 320, 0.3
    view = camera_view(scene, height, width, t)
    expected = cv2.perspectiveTransform(np.array([[[300.0, 250.0]]]), camera_homography(scene.shape, height, width, t))
    grey = view.max(axis=2).astype(np.float64)
    ys, xs = np.nonzero(grey > 0)
    centroid = np.array([np.average(xs, weights=grey[ys, xs]), np.average(ys, weights=grey[ys, xs])])
    assert np.linalg.norm(centroid - expected[0, 0]) < 0.5


def test_the_scene_is_reproducible_and_the_camera_moves():
    scene = draw_scene(240, 320)
    assert np.array_equal(scene, draw_scene(240, 320))
    first, later = (camera_homography(scene.shape, 120, 160, t) for t in (0.0, 0.1))
    assert not np.allclose(first, later)
