"""A synthetic world whose truth is known by construction, for the tracker's tests and its
benchmark (`bench_tracking`); numpy only.

Each physical point has its own random unit descriptor; every observation of it adds noise
and renormalises. A pinhole camera moves through the points (3-D, or all on one plane), so
points leave and enter the view; the pixel of every observation is its projection plus noise.
Outliers are keypoints that carry the descriptor of a point that has just left the view, placed
where that point cannot be (far from where the true camera motion puts it). The oracle: a
keypoint's physical point (`Frame.labels`), so ids can be checked against the truth without
the tracker's help.
"""

import dataclasses

import numpy as np

from superpoint_ros.detector import Detections

HEIGHT, WIDTH = 480, 640
CAMERA = np.array([[400.0, 0.0, 319.5], [0.0, 400.0, 239.5], [0.0, 0.0, 1.0]])
DESCRIPTOR_SIZE = 256
OUTLIER = -1
MAX_TRACK_GAP = 2


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def rotation_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


@dataclasses.dataclass
class Frame:
    detections: Detections
    labels: np.ndarray  # physical point of each keypoint; OUTLIER for outliers


@dataclasses.dataclass
class World:
    frames: list[Frame]
    outliers: int


def synthetic_world(
    planar: bool = False,
    step: float = 0.25,
    frames: int = 24,
    points: int = 500,
    outliers_per_frame: int = 8,
    hidden: tuple[int, int] = (8, 8 + MAX_TRACK_GAP),
    seed: int = 0,
) -> World:
    """Frames of a camera moving right and turning, through `points` physical points.

    A quarter of the points are hidden in frames `hidden[0]` to `hidden[1] - 1` (an occlusion
    of `hidden[1] - hidden[0]` frames). Keypoints are shuffled, as a detector orders them by
    score and not by point.
    """
    rng = np.random.default_rng(seed)
    world_points = np.column_stack(
        (
            rng.uniform(-9, 9, points),
            rng.uniform(-4, 4, points),
            np.full(points, 6.0) if planar else rng.uniform(4, 12, points),
        )
    )
    descriptors = unit_rows(rng.normal(size=(points, DESCRIPTOR_SIZE)))
    occluded = rng.random(points) < 0.25
    result, donors_used, outlier_count = [], set(), 0
    previous_pixels = seen_previous = None
    for index in range(frames):
        rotation, centre = pose(index, step)
        in_camera = (world_points - centre) @ rotation  # rows: R^T (X - C)
        pixels = (in_camera / in_camera[:, 2:]) @ CAMERA.T
        pixels = pixels[:, :2]
        visible = (in_camera[:, 2] > 0.5) & (pixels[:, 0] >= 0) & (pixels[:, 0] <= WIDTH - 1)
        visible &= (pixels[:, 1] >= 0) & (pixels[:, 1] <= HEIGHT - 1)
        if hidden[0] <= index < hidden[1]:
            visible &= ~occluded
        labels = np.flatnonzero(visible)
        noisy = unit_rows(descriptors[labels] + rng.normal(0, 0.02, (len(labels), DESCRIPTOR_SIZE)))
        keypoints = pixels[labels] + rng.normal(0, 0.3, (len(labels), 2))
        if previous_pixels is not None:
            # Points that just left the view: their tracks are live, their descriptors unique.
            left_view = np.flatnonzero(seen_previous & ~visible & ~occluded)
            donors = [d for d in left_view if d not in donors_used][:outliers_per_frame]
            donors_used.update(donors)
            outlier_pixels = [far_from_truth(rng, previous_pixels[d], index, step) for d in donors]
            if donors:
                keypoints = np.concatenate((keypoints, np.array(outlier_pixels)))
                noisy = np.concatenate(
                    (noisy, unit_rows(descriptors[donors] + rng.normal(0, 0.02, (len(donors), DESCRIPTOR_SIZE))))
                )
                labels = np.concatenate((labels, np.full(len(donors), OUTLIER)))
                outlier_count += len(donors)
        order = rng.permutation(len(labels))
        scores = np.linspace(1, 0.1, len(labels)).astype(np.float32)
        result.append(Frame(Detections(keypoints[order].astype(np.float32), scores, noisy[order]), labels[order]))
        seen_previous, previous_pixels = visible, pixels
    return World(result, outlier_count)


def pose(index: int, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera `index`'s rotation (camera to world) and centre: moving right by `step` metres a
    frame, turning slowly."""
    return rotation_y(0.01 * index), np.array([step * index - 1.5, 0.01 * index, 0.0])


def far_from_truth(rng, previous_pixel: np.ndarray, index: int, step: float) -> np.ndarray:
    """A pixel of frame `index` at least 20 px from the epipolar line of `previous_pixel` of
    frame `index - 1` under the true motion (no two-view test could accept it), in the image."""
    while True:
        candidate = rng.uniform([0, 0], [WIDTH - 1, HEIGHT - 1])
        if epipolar_distance(previous_pixel, candidate, index, step) > 20:
            return candidate


def epipolar_distance(previous_pixel: np.ndarray, pixel: np.ndarray, index: int, step: float) -> float:
    """Distance of `pixel` in frame `index` from the epipolar line of `previous_pixel` in frame
    `index - 1`: the line through the projections of two points of that pixel's ray."""
    previous_rotation, previous_centre = pose(index - 1, step)
    rotation, centre = pose(index, step)
    ray = np.linalg.inv(CAMERA) @ np.array([*previous_pixel, 1.0])
    projected = []
    for depth in (1.0, 100.0):
        in_camera = rotation.T @ (previous_centre + previous_rotation @ (ray * depth) - centre)
        projected.append((CAMERA @ (in_camera / in_camera[2]))[:2])
    a, b = projected
    direction = (b - a) / np.linalg.norm(b - a)
    offset = pixel - a
    return float(abs(offset[0] * direction[1] - offset[1] * direction[0]))


def continuation_quality(labels: list[np.ndarray], ids: list[np.ndarray], lengths: list[np.ndarray]) -> tuple[int, int]:
    """(correct, continued): keypoints that continued a track (length > 1) over a sequence, and
    how many of them continued the track of their own physical point. `labels[f]` `(N,)` the
    point of each keypoint of frame f (`OUTLIER` for an outlier, each one its own point),
    `ids[f]` and `lengths[f]` `(N,)` the tracker's answer."""
    point_of: dict[int, object] = {}
    correct = continued = 0
    for frame, (frame_labels, frame_ids, frame_lengths) in enumerate(zip(labels, ids, lengths, strict=True)):
        rows = zip(frame_labels.tolist(), frame_ids.tolist(), frame_lengths.tolist(), strict=True)
        for row, (label, track_id, length) in enumerate(rows):
            point = label if label != OUTLIER else ("outlier", frame, row)
            if length > 1:
                continued += 1
                correct += point_of.get(track_id) == point
            point_of[track_id] = point
    return correct, continued
