"""Numpy images → SuperPoint's grey input `(B, 1, H, W)` float32 in [0, 1], in numpy: what
`images.to_grey_batch` does on the CPU, for the OpenVINO detector that runs without torch
(`openvino_detector`). Also what both accept (`check_image`; see `images` for the rules).

The same float32 operations in the same order, so the grey pixels are bit-identical to
`to_grey_batch`'s (test_numpy_keypoints.py): integers divided by their full scale, floats with
NaN made 0 and clipped to [0, 1], colour weighted as each architecture's reference does (see
`images`), and for `magicleap` an image whose three channels are equal taken as it is.
"""

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from superpoint_ros.feature_types import MIN_SIDE, MIT

LUMA_RGB = (0.2989, 0.5870, 0.1140)
MIT_LUMA_RGB = (0.299, 0.587, 0.114)
CHANNEL_ORDERS = ("bgr", "rgb")
T = TypeVar("T")
_FULL_SCALE = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}


class ImageError(ValueError):
    """An image the detector cannot take, with the reason."""


def check_image(image: np.ndarray) -> None:
    """Raise `ImageError` unless `image` is an array `to_grey_batch` accepts."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ImageError(f"expected H×W, H×W×1, H×W×3 or H×W×4, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"image has no pixels (shape {image.shape})")
    if image.dtype not in _FULL_SCALE and not np.issubdtype(image.dtype, np.floating):
        raise ImageError(f"expected uint8, uint16 or float pixels, got {image.dtype}")
    if image.shape[0] < MIN_SIDE or image.shape[1] < MIN_SIDE:
        raise ImageError(
            f"image is {image.shape[1]}x{image.shape[0]} pixels; SuperPoint needs at least {MIN_SIDE}x{MIN_SIDE}"
        )


def to_grey_array(images: list[np.ndarray], channel_order: str = "bgr", architecture: str = "magicleap") -> np.ndarray:
    """Stack same-shape, same-dtype images (checked by `images.check_image`) into `(B, 1, H, W)`
    float32, grey as `architecture`'s reference makes it."""
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    batch = np.stack(images).astype(np.float32)
    full_scale = _FULL_SCALE.get(images[0].dtype)
    if full_scale is not None:
        batch /= np.float32(full_scale)
    else:
        np.clip(np.nan_to_num(batch, copy=False, nan=0.0), 0.0, 1.0, out=batch)
    if batch.ndim == 3:
        return batch[:, None]
    if batch.shape[-1] == 1:
        return batch.transpose(0, 3, 1, 2)
    red, green, blue = (2, 1, 0) if channel_order == "bgr" else (0, 1, 2)
    luma = [np.float32(weight) for weight in (MIT_LUMA_RGB if architecture == MIT else LUMA_RGB)]
    grey = batch[..., red] * luma[0] + batch[..., green] * luma[1] + batch[..., blue] * luma[2]
    if architecture != MIT:
        already_grey = ((batch[..., 0] == batch[..., 1]) & (batch[..., 1] == batch[..., 2])).all(axis=(1, 2))
        grey = np.where(already_grey[:, None, None], batch[..., 0], grey)
    return np.ascontiguousarray(grey[:, None])


def run_by_shape(images: Sequence[np.ndarray], run_batch: Callable[[list[np.ndarray]], list[T]]) -> list[T]:
    """`run_batch`'s result for each image, each group of images of one shape and dtype run as
    one batch: how a detector takes a list of frames. Raises `ImageError` before any work if one
    image cannot be taken (`check_image`)."""
    for image in images:
        check_image(image)
    groups: dict[tuple, list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault((image.shape, image.dtype), []).append(index)
    results: list = [None] * len(images)
    for indices in groups.values():
        batch = [images[index] for index in indices]
        for index, result in zip(indices, run_batch(batch), strict=True):
            results[index] = result
    return results
