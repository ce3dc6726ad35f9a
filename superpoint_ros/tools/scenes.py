"""The generated camera sequence of the demo, the tests and the benchmarks: a procedurally drawn
scene (no image files, so no licences to track) seen through a smoothly moving homography whose
value is known for every frame. Needs numpy and OpenCV only: no ROS, no torch."""

import math

import cv2
import numpy as np


def draw_scene(height: int, width: int, seed: int = 7) -> np.ndarray:
    """A BGR uint8 scene with corners, edges, blobs and texture for a camera to fly over."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    scene = np.empty((height, width, 3), np.uint8)
    scene[..., 0] = 90 + 60 * np.sin(x / 97.0)
    scene[..., 1] = 110 + 50 * np.cos(y / 71.0)
    scene[..., 2] = 140 + 40 * np.sin((x + y) / 131.0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (height, width), dtype=np.uint8), (0, 0), 3)
    scene = cv2.addWeighted(scene, 0.9, cv2.cvtColor(texture, cv2.COLOR_GRAY2BGR), 0.1, 0)
    unit = max(8, min(height, width) // 40)
    for _ in range(6):
        top, left = int(rng.integers(0, height - 8 * unit)), int(rng.integers(0, width - 8 * unit))
        for row in range(8):
            for column in range(8):
                if (row + column) % 2 == 0:
                    corner = (left + column * unit, top + row * unit)
                    cv2.rectangle(scene, corner, (corner[0] + unit - 1, corner[1] + unit - 1), (15, 15, 15), -1)
    for _ in range(40):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = np.array([rng.integers(0, width), rng.integers(0, height)])
        size = int(rng.integers(unit, 6 * unit))
        shape = rng.integers(0, 3)
        if shape == 0:
            cv2.circle(scene, tuple(int(c) for c in centre), size, colour, int(rng.choice([-1, 3])), cv2.LINE_AA)
        elif shape == 1:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))
            points = centre + size * np.stack([np.cos(angles), np.sin(angles)], axis=1)
            cv2.fillPoly(scene, [points.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            end = centre + rng.integers(-8 * unit, 8 * unit, 2)
            cv2.line(scene, tuple(int(c) for c in centre), tuple(int(c) for c in end), colour, 2, cv2.LINE_AA)
    for index in range(8):
        origin = (int(rng.integers(0, width - 10 * unit)), int(rng.integers(2 * unit, height)))
        cv2.putText(scene, f"SuperPoint {index}", origin, cv2.FONT_HERSHEY_DUPLEX, unit / 24, (250, 250, 250), 2)
    return scene


def camera_homography(scene_shape: tuple[int, ...], height: int, width: int, t: float) -> np.ndarray:
    """The 3×3 homography from scene pixels to view pixels of the camera at time `t` (0 to 1).

    The frame's corners follow a smooth path over the scene, turning, zooming and tilting. A
    point seen at view pixel p in frame t1 is at `H(t2) @ inv(H(t1)) @ p` in frame t2: the
    ground truth that tests and benchmarks check matches and tracks against.
    """
    scene_height, scene_width = scene_shape[:2]
    centre = np.array(
        [
            scene_width * (0.5 + 0.12 * math.sin(2 * math.pi * t)),
            scene_height * (0.5 + 0.10 * math.sin(4 * math.pi * t)),
        ]
    )
    angle = math.radians(12 * math.sin(2 * math.pi * t))
    scale = 1.0 + 0.2 * math.sin(2 * math.pi * t + 1.0)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    half = np.array([width, height]) / 2
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    tilt = 0.08 * math.sin(2 * math.pi * t + 2.0)
    corners = corners * (1 + tilt * np.array([[1], [-1], [-1], [1]]))
    in_scene = centre + (scale * corners) @ rotation.T
    in_view = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
    return cv2.getPerspectiveTransform(in_scene.astype(np.float32), in_view.astype(np.float32))


def camera_view(scene: np.ndarray, height: int, width: int, t: float) -> np.ndarray:
    """The `height × width` BGR frame the camera sees at time `t`: the scene warped by
    `camera_homography(scene.shape, height, width, t)`."""
    homography = camera_homography(scene.shape, height, width, t)
    return cv2.warpPerspective(scene, homography, (width, height), flags=cv2.INTER_LINEAR)
