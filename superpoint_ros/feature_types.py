"""Types and names that many modules share, with no heavy import (numpy only): a camera stand-in, the image
codec, the drawing and the messages use them without paying for torch.

`superpoint_ros.detector` and `superpoint_ros.tracking` re-export the names that lived there.
"""

import dataclasses

import numpy as np

BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
PRECISIONS = ("float32", "float16", "bfloat16", "int8")
DEFAULT_WEIGHTS = "magic-leap-community/superpoint"
RANDOM_WEIGHTS = "random"
MAGICLEAP = "magicleap"
"""Magic Leap's SuperPoint (`model.SuperPoint`), as transformers runs it."""
MIT = "mit"
"""The MIT-licensed SuperPoint of rpautrat/SuperPoint (`model_mit`)."""
ARCHITECTURES = (MAGICLEAP, MIT)
AUTO_ARCHITECTURE = "auto"
LICENCES = {
    MAGICLEAP: "Magic Leap's SuperPoint weights are licensed for non-commercial use only",
    MIT: "rpautrat/SuperPoint's weights are MIT-licensed",
}
"""What the published weights of each architecture may be used for (README, licence section)."""
VERIFICATIONS = ("auto", "fundamental", "homography", "none")
MATCHINGS = ("guided", "dense")
CELL_SIZE = 8
"""Side in pixels of the cell each position of the network's coarse output covers."""
# The network pools by 2 three times (a cell of `CELL_SIZE`): a smaller side leaves no cell.
MIN_SIDE = 8


@dataclasses.dataclass(frozen=True)
class DetectionSettings:
    """The knobs that may change between two frames.

    - `keypoint_threshold`: keep pixels whose score is above this (0 keeps every NMS survivor).
    - `nms_radius`: pixels; a keypoint must be the maximum of its (2r+1)² window (0: no NMS).
    - `max_keypoints`: keep the best this many per image; −1 keeps all.
    - `border_removal_distance`: pixels; drop keypoints closer than this to the image edge.
    """

    keypoint_threshold: float = 0.005
    nms_radius: int = 4
    max_keypoints: int = -1
    border_removal_distance: int = 4

    def __post_init__(self) -> None:
        if not 0.0 <= self.keypoint_threshold < 1.0:
            raise ValueError(f"keypoint_threshold must be in [0, 1), got {self.keypoint_threshold}")
        if self.nms_radius < 0:
            raise ValueError(f"nms_radius must be >= 0, got {self.nms_radius}")
        if self.max_keypoints < -1:
            raise ValueError(f"max_keypoints must be -1 (all) or >= 0, got {self.max_keypoints}")
        if self.border_removal_distance < 0:
            raise ValueError(f"border_removal_distance must be >= 0, got {self.border_removal_distance}")


@dataclasses.dataclass(frozen=True)
class Detections:
    """One image's keypoints, sorted by score, descending.

    `keypoints` `(N, 2)` float32 pixels (x, y) in the input image's grid; `scores` `(N,)`
    float32; `descriptors` `(N, D)` float32, each row of unit length.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    descriptors: np.ndarray


@dataclasses.dataclass(frozen=True)
class TrackingSettings:
    """The knobs that may change between two frames.

    - `nn_threshold`: largest L2 distance between unit descriptors of a match, in [0, 2].
    - `ratio_threshold`: a track's best match must be at most this fraction of the distance to
      the second best keypoint; 1.0 turns the test off.
    - `max_track_gap`: frames a track may go unseen and still be matched (0: only consecutive).
    - `verification`: `auto` (a homography where it explains the matches, as in a planar or
      distant scene or a rotation; else a fundamental matrix), `fundamental`, `homography` or
      `none`; see `geometric_inliers`.
    - `ransac_threshold`: pixels; the inlier distance of the verification (the epipolar distance
      for `fundamental`, the reprojection distance for `homography`).
    - `matching`: `guided` (search near each track's predicted position, dense as a fallback)
      or `dense` (every track against every keypoint); see the module docstring.
    """

    nn_threshold: float = 0.7
    ratio_threshold: float = 1.0
    max_track_gap: int = 2
    verification: str = "auto"
    ransac_threshold: float = 2.0
    matching: str = "guided"

    def __post_init__(self) -> None:
        if not 0.0 <= self.nn_threshold <= 2.0:
            raise ValueError(f"nn_threshold must be in [0, 2] (L2 between unit vectors), got {self.nn_threshold}")
        if not 0.0 < self.ratio_threshold <= 1.0:
            raise ValueError(f"ratio_threshold must be in (0, 1] (1 turns it off), got {self.ratio_threshold}")
        if self.max_track_gap < 0:
            raise ValueError(f"max_track_gap must be >= 0, got {self.max_track_gap}")
        if self.verification not in VERIFICATIONS:
            raise ValueError(f"verification must be one of {', '.join(VERIFICATIONS)}, got {self.verification!r}")
        if not self.ransac_threshold > 0.0:
            raise ValueError(f"ransac_threshold must be > 0 pixels, got {self.ransac_threshold}")
        if self.matching not in MATCHINGS:
            raise ValueError(f"matching must be one of {', '.join(MATCHINGS)}, got {self.matching!r}")


@dataclasses.dataclass(frozen=True)
class Tracks:
    """The tracks of one frame, row i for keypoint i of the frame's `Detections`.

    `ids` `(N,)` int64 in [0, 2**24); `lengths` `(N,)` frames the track has been seen in, this
    one included (1 for a new track); `ages` `(N,)` frames since the track was first seen (0 for
    a new track; `ages + 1 - lengths` frames were missed). Counts for this update: `lost`
    tracks dropped for having gone unseen longer than `max_track_gap`; `rejected` matches that
    geometric verification refused; `unverified` matches kept without a model because too few
    matches shared their frame gap. `live` tracks remain after the update. `restarted`: the
    descriptor size changed, so every earlier track was dropped before this frame. `guided`:
    the matches came from guided matching (False: dense matching, or nothing to match).
    """

    ids: np.ndarray
    lengths: np.ndarray
    ages: np.ndarray
    stamp: float | None
    lost: int
    rejected: int
    unverified: int
    live: int
    restarted: bool = False
    guided: bool = False

    @property
    def new(self) -> np.ndarray:
        """`(N,)` bool: the keypoints that started a track in this frame."""
        return self.lengths == 1


@dataclasses.dataclass(frozen=True)
class CameraTracks:
    """What one camera shows of a frame's tracks: `ids`, `lengths`, `ages` `(N,)`, `keypoints`
    `(N, 2)` pixels, and `keypoint_indices` `(N,)`, the rows of the camera's `Detections`."""

    ids: np.ndarray
    lengths: np.ndarray
    ages: np.ndarray
    keypoints: np.ndarray
    keypoint_indices: np.ndarray

    def select(self, rows: np.ndarray) -> "CameraTracks":
        return CameraTracks(
            self.ids[rows], self.lengths[rows], self.ages[rows], self.keypoints[rows], self.keypoint_indices[rows]
        )
