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

`matching: guided` (the default) compares a track only with the keypoints near where it is
predicted: its last position moved by its own last velocity (pixels per frame, from its last
two observations), or by the median velocity of the previous frame's verified matches for a
track seen once; within `GUIDED_RADIUS_PX` (`GUIDED_WIDE_RADIUS_PX` for a track seen once),
plus `GUIDED_RADIUS_GROWTH_PX` per frame it was missed. A grid over the new keypoints finds the candidates. The
frame falls back to dense matching (every track against every keypoint) when nothing predicts
the motion (the first frames, after a frame without matches) or when guided matching finds
fewer than half the previous frame's matches (a jump); `matching: dense` always matches densely.

Why one module over 400 lines: the matching (dense and guided), the geometric verification and
the id bookkeeping share the tracker's state frame by frame; split, each part would reach into
the others' arrays.
"""

from collections.abc import Callable

import cv2
import numpy as np
import torch

from superpoint_ros.devices import resolve_device
from superpoint_ros.feature_types import (  # noqa: F401 (some are re-exported: they lived here before)
    MATCHINGS,
    VERIFICATIONS,
    CameraTracks,
    Detections,
    TrackingSettings,
    Tracks,
)

# Ids wrap below 2**24 so that a float32 (VINS-Fusion's channel type) holds every id exactly.
ID_LIMIT = 1 << 24
# Pixels around a track's predicted position where its keypoint is searched: with its own
# velocity, and with only the previous frame's median motion (a track seen once: points at
# other depths move differently); plus GUIDED_RADIUS_GROWTH_PX for each frame it was missed.
GUIDED_RADIUS_PX = 16.0
GUIDED_WIDE_RADIUS_PX = 24.0
GUIDED_RADIUS_GROWTH_PX = 8.0
# Guided matching that finds fewer than this share of the previous frame's matches, or fewer
# than MIN_GUIDED_MATCHES, is redone densely: the motion jumped and the predictions missed.
GUIDED_MIN_SHARE = 0.5
MIN_GUIDED_MATCHES = 16
# Candidate pairs whose descriptors are gathered at once: two buffers of PAIR_CHUNK × D floats
# (16 MB at D = 256), kept between frames, since fresh ones cost a page fault per 4 KB.
PAIR_CHUNK = 16384
# More candidate pairs than this share of tracks × keypoints (keypoints bunched together):
# dense matching is cheaper.
DENSE_PAIR_SHARE = 0.25
# Fewer matches than this (per group, see `_verify`) cannot show which ones are outliers: any 8
# matches fit some fundamental matrix and any 4 a homography. Such groups are kept unverified.
MIN_MATCHES_TO_VERIFY = {"auto": 16, "fundamental": 16, "homography": 8}
# `auto` takes the homography when it explains this share of the fundamental matrix's inliers.
PLANAR_SHARE = 0.95
RANSAC_CONFIDENCE = 0.999
RANSAC_MAX_ITERATIONS = 2000
# Track rows per block of the similarity matrix: memory O(SIMILARITY_CHUNK_ROWS × keypoints),
# 32 MB at 8192 keypoints, instead of O(tracks × keypoints).
SIMILARITY_CHUNK_ROWS = 1024


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
        matching: str = "guided",
    ) -> None:
        self.settings = TrackingSettings(
            nn_threshold, ratio_threshold, max_track_gap, verification, ransac_threshold, matching
        )
        if not 0 <= first_id < ID_LIMIT:
            raise ValueError(f"first_id must be in [0, 2**24), got {first_id}")
        self.device = resolve_device(device)
        self._next_id = first_id
        self._wrapped = False
        self._pair_buffers: tuple[torch.Tensor, torch.Tensor] | None = None
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
        # Pixels per frame between each track's last two observations; valid where `_moving`.
        self._velocities = np.zeros((0, 2), np.float32)
        self._moving = np.empty(0, bool)
        # The previous frame's median velocity of verified matches (None: nothing to predict
        # from), and how many matches it had.
        self._motion: np.ndarray | None = None
        self._last_matched = 0

    @property
    def live_tracks(self) -> int:
        return len(self._ids)

    @property
    def descriptor_size(self) -> int | None:
        """D of the live tracks' descriptors; None while there are none."""
        return self._descriptors.shape[1] if self._descriptors is not None and len(self._ids) else None

    def update(self, detections: Detections, stamp: float | None = None) -> Tracks:
        """Match one frame's detections to the live tracks and return their tracks.

        A descriptor size other than the live tracks' is a new stream (another detector, or a
        restarted one with another model): the tracks start afresh, as after `reset`, and
        `Tracks.restarted` says so. Raises `ValueError` for arrays of inconsistent shapes or
        non-finite values (`superpoint_ros.tracker_inputs` cleans a message's rows first).
        """
        keypoints, descriptors = _checked_arrays(detections)
        restarted = (
            self._descriptors is not None and len(self._ids) > 0 and descriptors.shape[1] != self._descriptors.shape[1]
        )
        if restarted:
            self.reset()
        settings = self.settings
        self._frame += 1
        lost = self._drop_stale(settings.max_track_gap)
        new_descriptors = torch.from_numpy(descriptors).to(self.device, non_blocking=True)

        track_rows, keypoint_rows, guided = np.empty(0, np.int64), np.empty(0, np.int64), False
        if len(self._ids) and len(keypoints):
            track_rows, keypoint_rows, guided = self._match(keypoints, new_descriptors, settings)
        matched = len(track_rows)
        track_rows, keypoint_rows, unverified = self._verify(track_rows, keypoint_rows, keypoints, settings)
        rejected = matched - len(track_rows)
        self._follow_motion(track_rows, keypoints[keypoint_rows])

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
            # index_copy_ and index_select: indexing with a tensor took several times longer.
            self._descriptors.index_copy_(
                0,
                torch.from_numpy(track_rows).to(self.device),
                new_descriptors.index_select(0, torch.from_numpy(keypoint_rows).to(self.device)),
            )

        unmatched = np.ones(len(keypoints), bool)
        unmatched[keypoint_rows] = False
        new_rows = np.flatnonzero(unmatched)
        ids[new_rows] = self._allocate_ids(len(new_rows))
        self._append(
            ids[new_rows],
            keypoints[new_rows],
            new_descriptors.index_select(0, torch.from_numpy(new_rows).to(self.device)),
        )
        return Tracks(ids, lengths, ages, stamp, lost, rejected, unverified, len(self._ids), restarted, guided)

    def _match(
        self, keypoints: np.ndarray, descriptors: torch.Tensor, settings: TrackingSettings
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Track rows and keypoint rows of the mutual matches, and whether guided matching found
        them (else dense matching did)."""
        if settings.matching == "guided" and self._motion is not None:
            gaps = (self._frame - self._last_frame).astype(np.float32)
            velocities = np.where(self._moving[:, None], self._velocities, self._motion)
            predicted = self._keypoints + velocities * gaps[:, None]
            radii = np.where(self._moving, GUIDED_RADIUS_PX, GUIDED_WIDE_RADIUS_PX) + GUIDED_RADIUS_GROWTH_PX * (
                gaps - 1
            )
            if self._pair_buffers is None or self._pair_buffers[0].shape[1] != descriptors.shape[1]:
                self._pair_buffers = pair_buffers(descriptors.shape[1], self.device)
            matches = guided_mutual_nearest_neighbours(
                self._descriptors,
                descriptors,
                predicted,
                radii,
                keypoints,
                settings.nn_threshold,
                settings.ratio_threshold,
                self._pair_buffers,
            )
            if matches is not None and len(matches[0]) >= max(
                MIN_GUIDED_MATCHES, GUIDED_MIN_SHARE * self._last_matched
            ):
                return *matches, True
        track_rows, keypoint_rows = mutual_nearest_neighbours(
            self._descriptors, descriptors, settings.nn_threshold, settings.ratio_threshold
        )
        return track_rows, keypoint_rows, False

    def _follow_motion(self, track_rows: np.ndarray, positions: np.ndarray) -> None:
        """Update the velocities of the tracks verified in this frame at `positions` `(M, 2)`
        (before their `_keypoints` and `_last_frame` move on), and the frame's median motion."""
        if len(track_rows):
            gaps = (self._frame - self._last_frame[track_rows]).astype(np.float32)
            self._velocities[track_rows] = (positions - self._keypoints[track_rows]) / gaps[:, None]
            self._moving[track_rows] = True
        self._last_matched = len(track_rows)
        enough = len(track_rows) >= MIN_GUIDED_MATCHES
        self._motion = np.median(self._velocities[track_rows], axis=0).astype(np.float32) if enough else None

    def _drop_stale(self, max_track_gap: int) -> int:
        """Drop tracks missed in more than `max_track_gap` frames before this one."""
        keep = self._frame - self._last_frame - 1 <= max_track_gap
        lost = int(len(keep) - keep.sum())
        if lost:
            self._ids, self._keypoints = self._ids[keep], self._keypoints[keep]
            self._first_frame, self._last_frame = self._first_frame[keep], self._last_frame[keep]
            self._lengths = self._lengths[keep]
            self._velocities, self._moving = self._velocities[keep], self._moving[keep]
            self._descriptors = self._descriptors.index_select(
                0, torch.from_numpy(np.flatnonzero(keep)).to(self.device)
            )
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
        self._velocities = np.concatenate((self._velocities, np.zeros((len(ids), 2), np.float32)))
        self._moving = np.concatenate((self._moving, np.zeros(len(ids), bool)))
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
    if not np.isfinite(descriptors).all():
        # One NaN makes a column's maximum NaN, and with it every mutual test false.
        raise ValueError("descriptors must be finite")
    return keypoints, descriptors


def mutual_nearest_neighbours(
    rows: torch.Tensor,
    columns: torch.Tensor,
    nn_threshold: float,
    ratio_threshold: float = 1.0,
    allowed: Callable[[int, int], torch.Tensor] | None = None,
    chunk_rows: int = SIMILARITY_CHUNK_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of mutual best matches between `(R, D)` unit descriptors `rows` and `(C, D)`
    `columns` (dot products), whose L2 distance (`sqrt(2 - 2 s)`) is at most `nn_threshold`.

    With `ratio_threshold < 1`, a row's best distance must also be at most that fraction of its
    second best. `allowed(start, stop)`, when given, is the `(stop - start, C)` bool mask of the
    pairs rows `start:stop` may match. The similarity is computed `chunk_rows` rows at a time,
    so memory stays O(`chunk_rows` × C) however many rows there are.
    """
    row_count, column_count = len(rows), len(columns)
    if row_count == 0 or column_count == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    best_similarity = torch.empty(row_count, dtype=rows.dtype, device=rows.device)
    best_column = torch.empty(row_count, dtype=torch.int64, device=rows.device)
    column_best = torch.full((column_count,), -torch.inf, dtype=rows.dtype, device=rows.device)
    keep = torch.ones(row_count, dtype=torch.bool, device=rows.device)
    for start in range(0, row_count, chunk_rows):
        stop = min(start + chunk_rows, row_count)
        block = rows[start:stop] @ columns.T
        if allowed is not None:
            block = block.masked_fill(~allowed(start, stop), -torch.inf)
        best_similarity[start:stop], best_column[start:stop] = block.max(dim=1)
        # (On the CPU, the column-wise max with indices took 10x longer than amax.)
        column_best = torch.maximum(column_best, block.amax(dim=0))
        if ratio_threshold < 1.0 and column_count > 1:
            top_two = block.topk(2, dim=1).values
            distances = torch.sqrt(torch.clamp(2.0 - 2.0 * top_two, min=0.0))
            keep[start:stop] = distances[:, 0] <= ratio_threshold * distances[:, 1]
    # A row's best column is mutual when no row beats it there, that is when it holds the
    # column's maximum.
    keep &= best_similarity >= column_best[best_column]
    keep &= best_similarity >= 1.0 - nn_threshold**2 / 2
    kept_rows = torch.arange(row_count, device=rows.device)[keep].cpu().numpy()
    kept_columns = best_column[keep].cpu().numpy()
    # Rows tied exactly at a column's maximum would share it: the first row keeps it.
    _, first = np.unique(kept_columns, return_index=True)
    first.sort()
    return kept_rows[first], kept_columns[first]


def guided_mutual_nearest_neighbours(
    rows: torch.Tensor,
    columns: torch.Tensor,
    row_centres: np.ndarray,
    row_radii: np.ndarray,
    column_positions: np.ndarray,
    nn_threshold: float,
    ratio_threshold: float = 1.0,
    buffers: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """`mutual_nearest_neighbours` among the pairs that lie close: row i (a track, `(R, D)`
    unit descriptors `rows`) may match column j (a keypoint, `(C, D)` `columns`) only when the
    keypoint's pixel `column_positions[j]` is within `row_radii[i]` pixels of `row_centres[i]`
    (its predicted position). Best, second best (for the ratio test) and mutual are taken among
    those pairs only. Cost: one dot product per candidate pair, not R × C; None when there are
    more pairs than `DENSE_PAIR_SHARE` × R × C (dense matching is cheaper then).

    `buffers`: two `(PAIR_CHUNK, D)` tensors on the descriptors' device, reused between calls.
    """
    pair_rows, pair_columns = candidate_pairs(row_centres, row_radii, column_positions)
    if len(pair_rows) > DENSE_PAIR_SHARE * len(rows) * len(columns):
        return None
    if not len(pair_rows):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    device = rows.device
    pair_rows_t, pair_columns_t = torch.from_numpy(pair_rows).to(device), torch.from_numpy(pair_columns).to(device)
    if buffers is None:
        buffers = pair_buffers(rows.shape[1], device)
    similarity = torch.empty(len(pair_rows), dtype=rows.dtype, device=device)
    for start in range(0, len(pair_rows), PAIR_CHUNK):
        stop = min(start + PAIR_CHUNK, len(pair_rows))
        # index_select into kept buffers: advanced indexing (rows[index]) took 7x longer on the
        # CPU, and fresh outputs as long again in page faults.
        row_block = torch.index_select(rows, 0, pair_rows_t[start:stop], out=buffers[0][: stop - start])
        column_block = torch.index_select(columns, 0, pair_columns_t[start:stop], out=buffers[1][: stop - start])
        similarity[start:stop] = torch.linalg.vecdot(row_block, column_block)
    row_best = torch.full((len(rows),), -torch.inf, dtype=similarity.dtype, device=device)
    row_best = row_best.scatter_reduce(0, pair_rows_t, similarity, "amax")
    column_best = torch.full((len(columns),), -torch.inf, dtype=similarity.dtype, device=device)
    column_best = column_best.scatter_reduce(0, pair_columns_t, similarity, "amax")
    best_of_row = similarity >= row_best[pair_rows_t]
    keep = best_of_row & (similarity >= column_best[pair_columns_t])
    keep &= similarity >= 1.0 - nn_threshold**2 / 2
    if ratio_threshold < 1.0:
        # The second best of a row: the best of its pairs but its first best one.
        pair_index = torch.arange(len(similarity), device=device)
        first_best = torch.full((len(rows),), len(similarity), dtype=torch.int64, device=device)
        first_best = first_best.scatter_reduce(0, pair_rows_t[best_of_row], pair_index[best_of_row], "amin")
        others = similarity.masked_fill(pair_index == first_best[pair_rows_t], -torch.inf)
        second = torch.full((len(rows),), -torch.inf, dtype=similarity.dtype, device=device)
        second = second.scatter_reduce(0, pair_rows_t, others, "amax")
        distance = torch.sqrt(torch.clamp(2.0 - 2.0 * similarity, min=0.0))
        second_distance = torch.sqrt(torch.clamp(2.0 - 2.0 * second[pair_rows_t], min=0.0))
        keep &= distance <= ratio_threshold * second_distance
    keep = keep.cpu().numpy()
    kept_rows, kept_columns = pair_rows[keep], pair_columns[keep]
    # Ties at a row's or a column's best: the first pair keeps it.
    _, first = np.unique(kept_rows, return_index=True)
    kept_rows, kept_columns = kept_rows[first], kept_columns[first]
    _, first = np.unique(kept_columns, return_index=True)
    first.sort()
    return kept_rows[first], kept_columns[first]


def pair_buffers(descriptor_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The two `(PAIR_CHUNK, descriptor_size)` float32 buffers `guided_mutual_nearest_neighbours` gathers into."""
    return tuple(torch.empty((PAIR_CHUNK, descriptor_size), dtype=torch.float32, device=device) for _ in range(2))


def candidate_pairs(centres: np.ndarray, radii: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i, j) with `positions[j]` within `radii[i]` pixels of `centres[i]`, as two
    `(P,)` int64 arrays: `centres` `(R, 2)`, `radii` `(R,)`, `positions` `(C, 2)`.

    A grid of cells as wide as the smallest radius buckets the positions, so each centre looks
    only at the cells its disc can reach: 3 × 3 for the smallest radius, 5 × 5 for up to twice
    that, and so on.
    """
    centres = np.asarray(centres, np.float32)
    positions = np.asarray(positions, np.float32)
    radii = np.asarray(radii, np.float32)
    searched = radii > 0
    if not len(positions) or not searched.any():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    cell = radii[searched].min()
    origin = positions.min(axis=0)
    cells = np.floor((positions - origin) / cell).astype(np.int64)
    columns_count, rows_count = cells.max(axis=0) + 1
    cell_of = cells[:, 1] * columns_count + cells[:, 0]
    order = np.argsort(cell_of, kind="stable")
    starts = np.concatenate(([0], np.cumsum(np.bincount(cell_of, minlength=columns_count * rows_count))))
    reaches = np.where(searched, np.ceil(radii / cell), 0).astype(np.int64)
    all_rows, all_columns = [], []
    for reach in np.unique(reaches[searched]):
        rows = np.flatnonzero(reaches == reach)
        steps = np.arange(-reach, reach + 1)
        step_x, step_y = np.tile(steps, len(steps)), np.repeat(steps, len(steps))
        # Centres far outside the keypoints' box reach no cell: clip them to just outside it.
        centre_cells = np.floor((centres[rows] - origin) / cell)
        limit = [columns_count + reach, rows_count + reach]
        centre_cells = np.clip(centre_cells, -reach - 1, limit).astype(np.int64)
        around_x = centre_cells[:, :1] + step_x  # (R', cells)
        around_y = centre_cells[:, 1:] + step_y
        inside = (around_x >= 0) & (around_x < columns_count) & (around_y >= 0) & (around_y < rows_count)
        neighbour = np.where(inside, around_y * columns_count + around_x, 0)
        first = starts[neighbour]
        counts = np.where(inside, starts[neighbour + 1] - first, 0).ravel()
        total = int(counts.sum())
        if not total:
            continue
        pair_rows = np.repeat(np.repeat(rows, len(step_x)), counts)
        within_cell = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        pair_columns = order[np.repeat(first.ravel(), counts) + within_cell]
        close = ((positions[pair_columns] - centres[pair_rows]) ** 2).sum(axis=1) <= radii[pair_rows] ** 2
        all_rows.append(pair_rows[close])
        all_columns.append(pair_columns[close])
    if not all_rows:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(all_rows), np.concatenate(all_columns)


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

    def allowed(start: int, stop: int) -> torch.Tensor:
        same_row = (left_xy[start:stop, None, 1] - right_xy[None, :, 1]).abs() <= row_tolerance
        in_front = left_xy[start:stop, None, 0] - right_xy[None, :, 0] >= -row_tolerance
        return same_row & in_front

    return mutual_nearest_neighbours(left, right, nn_threshold, allowed=allowed)
