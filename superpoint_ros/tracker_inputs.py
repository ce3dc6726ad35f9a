"""What the tracker accepts, one validation step per input message type (numpy only, no ROS):

- `keypoint_input` for a `KeypointArray`: a malformed message raises `InputRejected`; bad rows
  are dropped and counted, non-unit descriptors renormalised, and the count capped.
- `camera_model_input` for a `sensor_msgs/CameraInfo`: the `CameraModel`, or `InputRejected`.

Both take any object with the message's fields (the generated messages, or stand-ins in tests).
Pixels: x right, y down, (0, 0) the centre of the top-left pixel, so a `width × height` image
spans [-0.5, width - 0.5] × [-0.5, height - 0.5].
"""

import dataclasses

import numpy as np

from superpoint_ros.camera_model import CameraModel, camera_model

# Image sides above this are refused: the debug canvas and any per-pixel buffer are sized from
# the header, which a publisher can set freely (16384 × 16384 covers every camera sold today).
MAX_IMAGE_SIDE = 16384
# SuperPoint's descriptors have 256 dimensions; 4096 leaves room for other detectors while a
# descriptor size cannot make one keypoint cost more than 16 KB.
MAX_DESCRIPTOR_SIZE = 4096
DEFAULT_MAX_INPUT_KEYPOINTS = 8192
# A descriptor whose length differs from 1 by more than this is renormalised (float32 rounding
# of a unit vector of 256 values stays far below it).
UNIT_TOLERANCE = 1e-3
# A descriptor shorter than this has no direction to match on.
ZERO_NORM = 1e-6
# R of a CameraInfo is a rotation: R Rᵀ within this of the identity (entry-wise), det R > 0.
ROTATION_TOLERANCE = 1e-3
# Why rows of a KeypointArray are dropped, in the order they are checked (a row counts once).
NON_FINITE, ZERO_DESCRIPTOR, OUTSIDE_IMAGE, OVER_CAP = (
    "non-finite",
    "zero descriptor",
    "outside the image",
    "over max_input_keypoints",
)


class InputRejected(ValueError):
    """A whole message refused; the text says why."""


@dataclasses.dataclass(frozen=True)
class KeypointInput:
    """The usable rows of one `KeypointArray`: `keypoints` `(M, 2)` pixels, `scores` `(M,)`,
    `descriptors` `(M, D)` unit rows, all float32; `rows` `(M,)` int64, ascending, the row of
    each in the message (for `FeatureTracks.keypoint_indices`). `dropped` maps each reason
    (`NON_FINITE`, ...) to the rows it removed (only reasons that removed some); `renormalised`
    counts rows whose descriptor was rescaled to unit length."""

    keypoints: np.ndarray
    scores: np.ndarray
    descriptors: np.ndarray
    rows: np.ndarray
    dropped: dict[str, int]
    renormalised: int

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


def image_size_problem(width: int, height: int) -> str | None:
    """Why `width × height` pixels cannot be an image here, or None."""
    if not (1 <= width <= MAX_IMAGE_SIDE and 1 <= height <= MAX_IMAGE_SIDE):
        return f"image size {width}×{height} is outside 1..{MAX_IMAGE_SIDE} pixels a side"
    return None


def keypoint_input(message, max_input_keypoints: int = DEFAULT_MAX_INPUT_KEYPOINTS) -> KeypointInput:
    """The usable rows of `message` (a `KeypointArray`), at most `max_input_keypoints` of them,
    the highest-scoring first kept. Raises `InputRejected` for inconsistent lengths, a
    `descriptor_size` outside 1..`MAX_DESCRIPTOR_SIZE`, or an image size outside
    1..`MAX_IMAGE_SIDE`."""
    values, size = len(message.keypoints), int(message.descriptor_size)
    problem = image_size_problem(int(message.width), int(message.height))
    if problem:
        raise InputRejected(problem)
    if not 1 <= size <= MAX_DESCRIPTOR_SIZE:
        raise InputRejected(f"descriptor_size {size} is outside 1..{MAX_DESCRIPTOR_SIZE}")
    if values % 2:
        raise InputRejected(f"keypoints has {values} values, not an even number")
    count = values // 2
    if len(message.scores) != count:
        raise InputRejected(f"{count} keypoints but {len(message.scores)} scores")
    if len(message.descriptors) != count * size:
        raise InputRejected(
            f"{count} keypoints of descriptor_size {size} but {len(message.descriptors)} descriptor values"
        )
    keypoints = np.frombuffer(message.keypoints, np.float32).reshape(count, 2)
    scores = np.frombuffer(message.scores, np.float32)
    descriptors = np.frombuffer(message.descriptors, np.float32).reshape(count, size)

    finite = np.isfinite(keypoints).all(axis=1) & np.isfinite(scores) & np.isfinite(descriptors).all(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.sqrt(np.einsum("ij,ij->i", descriptors, descriptors, dtype=np.float64))
    nonzero = finite & (norms > ZERO_NORM)
    x, y = keypoints[:, 0], keypoints[:, 1]
    with np.errstate(invalid="ignore"):
        inside = nonzero & (x >= -0.5) & (x <= message.width - 0.5) & (y >= -0.5) & (y <= message.height - 0.5)
    dropped = {
        NON_FINITE: int(count - finite.sum()),
        ZERO_DESCRIPTOR: int(finite.sum() - nonzero.sum()),
        OUTSIDE_IMAGE: int(nonzero.sum() - inside.sum()),
    }
    rows = np.flatnonzero(inside)
    if len(rows) > max_input_keypoints:
        # The highest scores; ties keep the earlier row, as the detector ranks them.
        best = np.argsort(-scores[rows], kind="stable")[:max_input_keypoints]
        dropped[OVER_CAP] = len(rows) - max_input_keypoints
        rows = np.sort(rows[best])
    kept_descriptors = descriptors[rows]
    off_unit = np.abs(norms[rows] - 1.0) > UNIT_TOLERANCE
    if off_unit.any():
        rescaled = descriptors[rows[off_unit]].astype(np.float64) / norms[rows[off_unit], None]
        kept_descriptors[off_unit] = rescaled.astype(np.float32)
    return KeypointInput(
        keypoints=keypoints[rows],
        scores=scores[rows],
        descriptors=kept_descriptors,
        rows=rows.astype(np.int64),
        dropped={reason: rows_dropped for reason, rows_dropped in dropped.items() if rows_dropped},
        renormalised=int(off_unit.sum()),
    )


def camera_model_input(message, rectified_input: bool = False) -> CameraModel:
    """The `CameraModel` of `message` (a `CameraInfo`), checked before any use: a size within
    1..`MAX_IMAGE_SIDE`, finite `k`, `d`, `r`, `p`, positive focal lengths in K and P, R a
    rotation, and a supported distortion model with its number of coefficients. Raises
    `InputRejected` naming the first problem."""
    width, height = int(message.width), int(message.height)
    problem = image_size_problem(width, height)
    if problem:
        raise InputRejected(problem)
    fields = {name: np.asarray(getattr(message, name), np.float64).ravel() for name in ("k", "d", "r", "p")}
    for name, expected in (("k", 9), ("r", 9), ("p", 12)):
        if len(fields[name]) != expected:
            raise InputRejected(f"{name.upper()} has {len(fields[name])} values, not {expected}")
    for name, values in fields.items():
        if not np.isfinite(values).all():
            raise InputRejected(f"{name.upper()} has non-finite values: {values.tolist()}")
    try:
        model = camera_model(width, height, str(message.distortion_model), **fields, rectified_input=rectified_input)
    except ValueError as error:
        raise InputRejected(str(error)) from None
    focal_p = model.projection[0, 0], model.projection[1, 1]
    if not (focal_p[0] > 0 and focal_p[1] > 0):
        raise InputRejected(f"the rectification is not valid: focal lengths in P are {focal_p[0]}, {focal_p[1]}")
    rotation = model.rectification
    if np.abs(rotation @ rotation.T - np.eye(3)).max() > ROTATION_TOLERANCE or np.linalg.det(rotation) <= 0:
        raise InputRejected(f"R is not a rotation: {rotation.ravel().tolist()}")
    return model


def stereo_problem(left: CameraModel, right: CameraModel) -> str | None:
    """Why a left and a right `CameraModel` cannot rectify one stereo pair, or None: their sizes
    differ, or the right P gives no finite baseline (−P[0, 3] / P[0, 0])."""
    if (left.width, left.height) != (right.width, right.height):
        return f"left CameraInfo is {left.width}×{left.height} but right is {right.width}×{right.height}"
    baseline = -right.projection[0, 3] / right.projection[0, 0]
    if not np.isfinite(baseline):
        return f"the right P gives no finite baseline ({baseline})"
    return None
