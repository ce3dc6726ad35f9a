"""Feature tracks from per-frame SuperPoint detections: the same physical point, found again
frame after frame, keeps one id. ROS-free (numpy, torch, OpenCV).

```python
from superpoint_ros.tracking import Tracker
tracker = Tracker(nn_threshold=0.7, max_track_gap=2)
for detections in frames:                          # superpoint_ros.detector.Detections
    tracks = tracker.update(detections, stamp=t)   # t: seconds, optional
    tracks.ids       # (N,) int64, aligned with detections.keypoints rows; new points get new ids
    tracks.lengths   # (N,) frames each track has been seen in, this one included (1: new)
    tracks.ages      # (N,) frames since each track was first seen (0: new)
```

Each frame is matched against the live tracks: every track's most recent descriptor, for
tracks missed in at most `max_track_gap` consecutive frames (so a short occlusion keeps the
id). A match is a mutual nearest neighbour in descriptor space, closer than `nn_threshold`
(L2 between unit descriptors, 0.7 as in MagicLeap's demo tracker), optionally passing a ratio
test. RANSAC (OpenCV) on a fundamental matrix or a homography then rejects matches that do not
fit the camera motion: see `TrackingSettings.verification`.
"""

import cv2
import numpy as np
import torch

from superpoint_ros.devices import resolve_device
from superpoint_ros.feature_types import (  # noqa: F401 (some are re-exported: they lived here before)
    VERIFICATIONS,
    CameraTracks,
    Detections,
    TrackingSettings,
    Tracks,
)

# Ids wrap below 2**24 so that a float32 (VINS-Fusion's channel type) holds every id exactly.
ID_LIMIT = 1 << 24
# Fewer matches than this (per group, see `_verify`) cannot show which ones are outliers: any 8
# matches fit some fundamental matrix and any 4 a homography. Such groups are kept unverified.
MIN_MATCHES_TO_VERIFY = {"auto": 16, "fundamental": 16, "homography": 8}
# `auto` takes the homography when it explains this share of the fundamental matrix's inliers.
PLANAR_SHARE = 0.95
RANSAC_CONFIDENCE = 0.999
RANSAC_MAX_ITERATIONS = 2000


class Tracker:
    """Persistent ids for keypoints across frames; see the module docstring.

    `device` is where descriptors are matched (`cpu`, `cuda`, `cuda:N`, `auto`): on a GPU, the
    similarity matrix is computed there. `first_id` is the id of the first new track. Replace
    `tracker.settings` (a `TrackingSettings`) between frames to change the matching.
    """

    def __init__(
        self,
        nn_threshold: float = 0.7,
        max_track_gap: int = 2,
        ratio_threshold: float = 1.0,
        verification: str = "auto",
        ransac_threshold: float = 2.0,
        device: str | torch.device = "cpu",
        first_id: int = 0,
    ) -> None:
        self.settings = TrackingSettings(nn_threshold, ratio_threshold, max_track_gap, verification, ransac_threshold)
        if not 0 <= first_id < ID_LIMIT:
            raise ValueError(f"first_id must be in [0, 2**24), got {first_id}")
        self.device = resolve_device(device)
        self._next_id = first_id
        self._wrapped = False
        self.reset()

    def reset(self) -> None:
        """Forget every track. Ids go on from the last one, so no id is given to two points."""
        self._frame = 0
        self._ids = np.empty(0, np.int64)
        self._keypoints = np.empty((0, 2), np.float32)
        self._descriptors: torch.Tensor | None = None
        self._first_frame = np.empty(0, np.int64)
        self._last_frame = np.empty(0, np.int64)
        self._lengths = np.empty(0, np.int64)

    @property
    def live_tracks(self) -> int:
        return len(self._ids)

    def update(self, detections: Detections, stamp: float | None = None) -> Tracks:
        """Match one frame's detections to the live tracks and return their tracks.

        Raises `ValueError` for arrays of inconsistent shapes, non-finite keypoints, or a
        descriptor size that differs from the live tracks' (call `reset` first).
        """
        keypoints, descriptors = _checked_arrays(detections)
        if self._descriptors is not None and len(self._ids) and descriptors.shape[1] != self._descriptors.shape[1]:
            raise ValueError(
                f"descriptors have {descriptors.shape[1]} dimensions but the live tracks' have "
                f"{self._descriptors.shape[1]}; reset the tracker to change the descriptor size"
            )
        settings = self.settings
        self._frame += 1
        lost = self._drop_stale(settings.max_track_gap)
        new_descriptors = torch.from_numpy(descriptors).to(self.device, non_blocking=True)

        track_rows, keypoint_rows = np.empty(0, np.int64), np.empty(0, np.int64)
        if len(self._ids) and len(keypoints):
            similarity = self._descriptors @ new_descriptors.T
            track_rows, keypoint_rows = mutual_nearest_neighbours(
                similarity, settings.nn_threshold, settings.ratio_threshold
            )
        matched = len(track_rows)
        track_rows, keypoint_rows, unverified = self._verify(track_rows, keypoint_rows, keypoints, settings)
        rejected = matched - len(track_rows)

        ids = np.empty(len(keypoints), np.int64)
        lengths = np.ones(len(keypoints), np.int64)
        ages = np.zeros(len(keypoints), np.int64)
        self._lengths[track_rows] += 1
        self._last_frame[track_rows] = self._frame
        self._keypoints[track_rows] = keypoints[keypoint_rows]
        ids[keypoint_rows] = self._ids[track_rows]
        lengths[keypoint_rows] = self._lengths[track_rows]
        ages[keypoint_rows] = self._frame - self._first_frame[track_rows]
        if len(track_rows):
            self._descriptors[torch.from_numpy(track_rows).to(self.device)] = new_descriptors[
                torch.from_numpy(keypoint_rows).to(self.device)
            ]

        unmatched = np.ones(len(keypoints), bool)
        unmatched[keypoint_rows] = False
        new_rows = np.flatnonzero(unmatched)
        ids[new_rows] = self._allocate_ids(len(new_rows))
        self._append(ids[new_rows], keypoints[new_rows], new_descriptors[torch.from_numpy(new_rows).to(self.device)])
        return Tracks(ids, lengths, ages, stamp, lost, rejected, unverified, len(self._ids))

    def _drop_stale(self, max_track_gap: int) -> int:
        """Drop tracks missed in more than `max_track_gap` frames before this one."""
        keep = self._frame - self._last_frame - 1 <= max_track_gap
        lost = int(len(keep) - keep.sum())
        if lost:
            self._ids, self._keypoints = self._ids[keep], self._keypoints[keep]
            self._first_frame, self._last_frame = self._first_frame[keep], self._last_frame[keep]
            self._lengths = self._lengths[keep]
            self._descriptors = self._descriptors[torch.from_numpy(keep).to(self.device)]
        return lost

    def _verify(
        self, track_rows: np.ndarray, keypoint_rows: np.ndarray, keypoints: np.ndarray, settings: TrackingSettings
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """The matches that fit the geometry, and how many were kept unverified.

        Tracks last seen in different frames moved by different amounts, so one model per gap:
        the matches to tracks last seen in frame f are verified together.
        """
        if settings.verification == "none" or not len(track_rows):
            return track_rows, keypoint_rows, 0
        keep = np.ones(len(track_rows), bool)
        unverified = 0
        last_frames = self._last_frame[track_rows]
        for frame in np.unique(last_frames):
            group = np.flatnonzero(last_frames == frame)
            if len(group) < MIN_MATCHES_TO_VERIFY[settings.verification]:
                unverified += len(group)
                continue
            before = self._keypoints[track_rows[group]]
            after = keypoints[keypoint_rows[group]]
            keep[group] = geometric_inliers(before, after, settings.verification, settings.ransac_threshold)
        return track_rows[keep], keypoint_rows[keep], unverified

    def _allocate_ids(self, count: int) -> np.ndarray:
        """`count` fresh ids, increasing from the last one; after a wrap, live ids are skipped."""
        ids = np.empty(0, np.int64)
        while len(ids) < count:
            needed = count - len(ids)
            block = (self._next_id + np.arange(needed, dtype=np.int64)) % ID_LIMIT
            self._wrapped |= self._next_id + needed >= ID_LIMIT
            self._next_id = int((self._next_id + needed) % ID_LIMIT)
            if self._wrapped:
                block = block[~np.isin(block, self._ids)]
            ids = np.concatenate((ids, block))
        return ids

    def _append(self, ids: np.ndarray, keypoints: np.ndarray, descriptors: torch.Tensor) -> None:
        self._ids = np.concatenate((self._ids, ids))
        self._keypoints = np.concatenate((self._keypoints, keypoints))
        self._first_frame = np.concatenate((self._first_frame, np.full(len(ids), self._frame)))
        self._last_frame = np.concatenate((self._last_frame, np.full(len(ids), self._frame)))
        self._lengths = np.concatenate((self._lengths, np.ones(len(ids), np.int64)))
        if self._descriptors is None or not len(self._descriptors):
            # No live tracks: the descriptor size may be new.
            self._descriptors = descriptors.clone()
        else:
            self._descriptors = torch.cat((self._descriptors, descriptors))


def _checked_arrays(detections: Detections) -> tuple[np.ndarray, np.ndarray]:
    keypoints = np.asarray(detections.keypoints, np.float32)
    descriptors = np.ascontiguousarray(detections.descriptors, np.float32)
    if keypoints.ndim != 2 or keypoints.shape[1] != 2:
        raise ValueError(f"keypoints must be an (N, 2) array, got shape {keypoints.shape}")
    if descriptors.ndim != 2 or len(descriptors) != len(keypoints) or descriptors.shape[1] == 0:
        raise ValueError(
            f"descriptors must be an (N, D) array with D > 0 and N = {len(keypoints)} keypoints, "
            f"got shape {descriptors.shape}"
        )
    if not np.isfinite(keypoints).all():
        raise ValueError("keypoints must be finite")
    return keypoints, descriptors


def mutual_nearest_neighbours(
    similarity: torch.Tensor, nn_threshold: float, ratio_threshold: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of mutual best matches in an `(R, C)` matrix of dot products
    between unit descriptors, whose L2 distance (`sqrt(2 - 2 s)`) is at most `nn_threshold`.

    With `ratio_threshold < 1`, a row's best distance must also be at most that fraction of its
    second best. Entries set to −inf never match.
    """
    rows, columns = similarity.shape
    if rows == 0 or columns == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    best_similarity, best_column = similarity.max(dim=1)
    # A row's best column is mutual when no row beats it there, that is when it holds the
    # column's maximum. (On the CPU, the column-wise max with indices took 10x longer than amax.)
    column_best = similarity.amax(dim=0)
    keep = best_similarity >= column_best[best_column]
    keep &= best_similarity >= 1.0 - nn_threshold**2 / 2
    if ratio_threshold < 1.0 and columns > 1:
        top_two = similarity.topk(2, dim=1).values
        distances = torch.sqrt(torch.clamp(2.0 - 2.0 * top_two, min=0.0))
        keep &= distances[:, 0] <= ratio_threshold * distances[:, 1]
    kept_rows = torch.arange(rows, device=similarity.device)[keep].cpu().numpy()
    kept_columns = best_column[keep].cpu().numpy()
    # Rows tied exactly at a column's maximum would share it: the first row keeps it.
    _, first = np.unique(kept_columns, return_index=True)
    first.sort()
    return kept_rows[first], kept_columns[first]


def geometric_inliers(before: np.ndarray, after: np.ndarray, model: str, threshold_px: float) -> np.ndarray:
    """`(M,)` bool: which of the `(M, 2)` pixel correspondences `before → after` fit the camera
    motion, by RANSAC (OpenCV), for `model`:

    - `fundamental`: one fundamental matrix (epipolar distance ≤ `threshold_px`). A planar scene
      or a pure rotation leaves it undetermined, and so does little parallax: RANSAC then picks
      one of many matrices that fit every true match, and outliers that fit it pass.
    - `homography`: one homography (reprojection distance ≤ `threshold_px`); rejects the true
      matches of off-plane points wherever parallax exceeds the threshold.
    - `auto`: both; the homography's inliers when it explains at least `PLANAR_SHARE` of what the
      fundamental matrix does (a planar or distant scene, a rotation), else the fundamental's.

    All-false when OpenCV finds no model (for example, every point on one line).
    """
    before = np.ascontiguousarray(before, np.float32)
    after = np.ascontiguousarray(after, np.float32)
    if model == "auto":
        epipolar = geometric_inliers(before, after, "fundamental", threshold_px)
        planar = geometric_inliers(before, after, "homography", threshold_px)
        return planar if planar.sum() >= PLANAR_SHARE * epipolar.sum() else epipolar
    try:
        if model == "fundamental":
            # The 8-point USAC estimator: OpenCV's classic FM_RANSAC (7-point, no local
            # optimisation) refused 7% of the true matches of a synthetic 3-D scene at 2 px.
            _, mask = cv2.findFundamentalMat(
                before, after, cv2.USAC_FM_8PTS, threshold_px, RANSAC_CONFIDENCE, RANSAC_MAX_ITERATIONS
            )
        else:
            _, mask = cv2.findHomography(
                before, after, cv2.RANSAC, threshold_px, maxIters=RANSAC_MAX_ITERATIONS, confidence=RANSAC_CONFIDENCE
            )
    except cv2.error:
        return np.zeros(len(before), bool)
    if mask is None or len(mask) != len(before):
        return np.zeros(len(before), bool)
    return mask.ravel().astype(bool)


def match_stereo(
    left_descriptors: np.ndarray,
    left_rectified: np.ndarray,
    right_descriptors: np.ndarray,
    right_rectified: np.ndarray,
    nn_threshold: float = 0.7,
    row_tolerance: float = 2.0,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Left and right rows of the keypoints of one stereo frame that show the same point.

    `*_descriptors` `(N, D)` unit rows; `*_rectified` `(N, 2)` pixels in the rectified pair
    (`CameraModel.rectified`), where a point's two views share a row. A pair must lie within
    `row_tolerance` pixels of one row, have a disparity (left x − right x) of at least
    −`row_tolerance`, and be mutual nearest neighbours within `nn_threshold` among such pairs.
    """
    device = resolve_device(device)
    left = torch.from_numpy(np.ascontiguousarray(left_descriptors, np.float32)).to(device)
    right = torch.from_numpy(np.ascontiguousarray(right_descriptors, np.float32)).to(device)
    left_xy = torch.from_numpy(np.asarray(left_rectified, np.float32).reshape(-1, 2)).to(device)
    right_xy = torch.from_numpy(np.asarray(right_rectified, np.float32).reshape(-1, 2)).to(device)
    similarity = left @ right.T
    same_row = (left_xy[:, None, 1] - right_xy[None, :, 1]).abs() <= row_tolerance
    in_front = left_xy[:, None, 0] - right_xy[None, :, 0] >= -row_tolerance
    similarity = similarity.masked_fill(~(same_row & in_front), -torch.inf)
    return mutual_nearest_neighbours(similarity, nn_threshold)
