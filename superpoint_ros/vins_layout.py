"""VINS-Fusion's feature layout as plain arrays (no ROS): what its estimator reads from
`/feature_tracker/feature` (`sensor_msgs/PointCloud`) in `feature_callback`
(HKUST-Aerial-Robotics/VINS-Fusion, vins_estimator/src/rosNodeTest.cpp):

- `points[i]` = `(x, y, 1)`: undistorted normalized coordinates of observation i; the estimator
  asserts `z == 1`.
- `channels`, in this order: track id, camera id, pixel u, pixel v, velocity x, velocity y (of
  the normalized coordinates, 1/s), then three channels it reads as ground truth whenever there
  are more than 5 channels; they are zero here, so that those reads stay in bounds.
- With two cameras, an id seen by both appears twice, camera 0 first; no id is in camera 1 only.

`superpoint_ros.ros.ros_messages.point_cloud_message` puts these arrays into the message.
"""

import dataclasses

import numpy as np

CHANNEL_NAMES = ("id", "camera_id", "u", "v", "velocity_x", "velocity_y", "zero_0", "zero_1", "zero_2")


@dataclasses.dataclass(frozen=True)
class CameraFeatures:
    """One camera's observations in one frame: `ids` `(N,)`, `pixels` `(N, 2)` (u, v),
    `normalized` `(N, 2)` undistorted (x/z, y/z), `velocities` `(N, 2)` in 1/s."""

    camera_id: int
    ids: np.ndarray
    pixels: np.ndarray
    normalized: np.ndarray
    velocities: np.ndarray


def vins_feature_arrays(cameras: list[CameraFeatures]) -> tuple[np.ndarray, np.ndarray]:
    """`points` `(M, 3)` float32 with z exactly 1, and `channels` `(9, M)` float32 in
    `CHANNEL_NAMES` order, camera after camera in the order given.

    Raises `ValueError` when a later camera has an id the first one lacks (the estimator pairs
    a stereo observation with the camera 0 one of the same id).
    """
    if len(cameras) > 1:
        first_ids = cameras[0].ids
        for camera in cameras[1:]:
            orphans = np.setdiff1d(camera.ids, first_ids)
            if len(orphans):
                raise ValueError(f"camera {camera.camera_id} has {len(orphans)} id(s) that camera 0 lacks")
    count = sum(len(camera.ids) for camera in cameras)
    points = np.ones((count, 3), np.float32)
    channels = np.zeros((len(CHANNEL_NAMES), count), np.float32)
    start = 0
    for camera in cameras:
        rows = slice(start, start + len(camera.ids))
        points[rows, :2] = camera.normalized
        channels[0, rows] = camera.ids
        channels[1, rows] = camera.camera_id
        channels[2:4, rows] = np.asarray(camera.pixels).T
        channels[4:6, rows] = np.asarray(camera.velocities).T
        start = rows.stop
    return points, channels


def finite_features(cameras: list[CameraFeatures]) -> tuple[list[CameraFeatures], int]:
    """The last guard before the estimator: `cameras` without the observations that have a
    non-finite pixel, normalized coordinate or velocity, and without later cameras' observations
    of ids that camera 0 lost that way (see `vins_feature_arrays`); also how many were dropped."""
    kept, dropped = [], 0
    for camera in cameras:
        finite = np.isfinite(camera.pixels).all(axis=1) & np.isfinite(camera.normalized).all(axis=1)
        finite &= np.isfinite(camera.velocities).all(axis=1)
        if kept:
            finite &= np.isin(camera.ids, kept[0].ids)
        dropped += int(len(finite) - finite.sum())
        kept.append(
            CameraFeatures(
                camera.camera_id,
                camera.ids[finite],
                camera.pixels[finite],
                camera.normalized[finite],
                camera.velocities[finite],
            )
        )
    return kept, dropped


@dataclasses.dataclass(frozen=True)
class Observations:
    """One camera's normalized coordinates `(N, 2)` by id `(N,)` at `stamp` seconds."""

    ids: np.ndarray
    normalized: np.ndarray
    stamp: float


def normalized_velocities(current: Observations, previous: Observations | None) -> np.ndarray:
    """`(N, 2)` velocities of `current`'s normalized coordinates since `previous` (the camera's
    frame before), in 1/s, as VINS-Fusion's own tracker computes them: zero for ids that
    `previous` lacks, and zero for all when there is no earlier stamp to divide by."""
    velocities = np.zeros((len(current.ids), 2))
    if previous is None or not len(previous.ids) or not current.stamp > previous.stamp:
        return velocities
    order = np.argsort(previous.ids)
    sorted_ids = previous.ids[order]
    positions = np.minimum(np.searchsorted(sorted_ids, current.ids), len(sorted_ids) - 1)
    found = sorted_ids[positions] == current.ids
    earlier = previous.normalized[order[positions[found]]]
    velocities[found] = (current.normalized[found] - earlier) / (current.stamp - previous.stamp)
    return velocities
