"""Numpy images → SuperPoint's input: grey, float32, scaled to [0, 1], on the model's device.

Accepted arrays: `H×W` or `H×W×1` grey, `H×W×3` colour, `H×W×4` colour with alpha (ignored),
at least `MIN_SIDE` (8) pixels high and wide; dtype `uint8` (÷255), `uint16` (÷65535) or floating
point. Floating-point pixels are taken as already in [0, 1]: NaN becomes 0, and every value is
clipped to [0, 1] (−Inf to 0, +Inf and anything above 1 to 1), so that whatever a float image
holds the network sees finite input of the range it was trained on, and every engine gives finite
scores and unit-length descriptors. A float image in other units (a depth image in metres) is
therefore mostly saturated; scale it to [0, 1] first.
Colour becomes grey as each architecture's reference does it, in the same float32 operation
order, so that our grey pixels are bit-identical to its:
- `magicleap`: 0.2989 R + 0.5870 G + 0.1140 B, the weights transformers' image processor applies
  with `do_grayscale=True`. Like it, an image whose three channels are all equal (a grey PNG that
  OpenCV loaded as BGR) is taken as it is.
- `mit`: 0.299 R + 0.587 G + 0.114 B, always, as rpautrat/SuperPoint's forward does for 3 channels.
"""

import contextlib

import numpy as np
import torch

from superpoint_ros.feature_types import MIN_SIDE  # noqa: F401 (re-exported)
from superpoint_ros.model import MAGICLEAP, MIT
from superpoint_ros.numpy_images import (  # noqa: F401 (ImageError and check_image re-exported)
    _FULL_SCALE,
    CHANNEL_ORDERS,
    LUMA_RGB,
    MIT_LUMA_RGB,
    ImageError,
    check_image,
)


def device_guard(device: torch.device) -> contextlib.AbstractContextManager:
    """Make `device` the current CUDA device inside (nothing for the CPU).

    CUDA calls that take no device, such as pinning host memory, work on the current device; left
    at GPU 0, they would open a context there for a detector on `cuda:1`.
    """
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def to_grey_batch(
    images: list[np.ndarray], device: torch.device, channel_order: str = "bgr", architecture: str = MAGICLEAP
) -> torch.Tensor:
    """Stack same-shape, same-dtype images into a `(B, 1, H, W)` float32 tensor on `device`,
    colour made grey as `architecture`'s reference does (see the module docstring).

    Pixels travel to the device in their own dtype (a uint8 frame is a quarter of its float32
    size), and scaling and grey conversion run there.
    """
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    first = images[0]
    pinned = device.type == "cuda"
    batch = torch.stack([torch.from_numpy(np.ascontiguousarray(image)) for image in images])
    if first.dtype == np.uint16:
        # torch has few uint16 kernels; int32 holds every value exactly.
        batch = batch.to(torch.int32)
    with device_guard(device):
        if pinned:
            batch = batch.pin_memory()
        batch = batch.to(device, non_blocking=pinned).to(torch.float32)
    full_scale = _FULL_SCALE.get(first.dtype)
    if full_scale is not None:
        # Division rounds like the reference's float64 rescale cast back to float32.
        batch = batch / full_scale
    else:
        # One NaN would spread through every layer to the descriptors; a huge value could overflow.
        batch = torch.nan_to_num(batch, nan=0.0).clamp_(0.0, 1.0)
    if batch.ndim == 3:
        return batch[:, None]
    if batch.shape[-1] == 1:
        return batch.permute(0, 3, 1, 2)
    red, green, blue = (2, 1, 0) if channel_order == "bgr" else (0, 1, 2)
    channels = batch.unbind(dim=-1)
    luma = MIT_LUMA_RGB if architecture == MIT else LUMA_RGB
    grey = channels[red] * luma[0] + channels[green] * luma[1] + channels[blue] * luma[2]
    if architecture == MIT:
        return grey[:, None]
    already_grey = ((channels[0] == channels[1]) & (channels[1] == channels[2])).flatten(1).all(dim=1)
    return torch.where(already_grey[:, None, None], channels[0], grey)[:, None]
