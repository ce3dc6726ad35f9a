"""Batched post-processing of SuperPoint's outputs: NMS, threshold, borders, top-k, descriptors.

Pure tensor functions that stay on the tensors' device. Pixel coordinates are x right, y down,
with (0, 0) the centre of the top-left pixel.

On the CPU, where a 30 Hz pipeline leaves a few milliseconds for all of this, the window maxima
run as OpenCV dilations and the selection sorts only the pixels above the threshold; both give
the same keypoints and scores as the device-agnostic code, bit for bit (test_keypoints.py).
"""

from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch.nn import functional

from superpoint_ros.feature_types import DetectionSettings
from superpoint_ros.model import CELL_SIZE, MAGICLEAP, MIT
from superpoint_ros.numpy_keypoints import clear_border

_OPENCV_DILATE_DTYPES = (torch.uint8, torch.int16, torch.float32, torch.float64)


def max_filter(values: torch.Tensor, radius: int) -> torch.Tensor:
    """The maximum of each pixel's (2r+1)×(2r+1) window of `values` `(B, H, W)`, clipped at the edges.

    Equal to `max_pool2d(values, 2r+1, stride=1, padding=r)`, bit for bit, for values above
    −3.4e38 (a maximum does not round). On the CPU it is OpenCV's dilation with a square
    kernel, a row pass then a column pass, which is about 20× faster there than `max_pool2d`'s
    window loop at r = 4.
    """
    if values.device.type == "cpu" and values.dtype in _OPENCV_DILATE_DTYPES:
        kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
        values = values.contiguous()
        maxima = torch.empty_like(values)
        for image, result in zip(values, maxima, strict=True):
            cv2.dilate(image.numpy(), kernel, dst=result.numpy())
        return maxima
    return functional.max_pool2d(values, kernel_size=2 * radius + 1, stride=1, padding=radius)


def dilate_mask(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Boolean `(B, H, W)`: whether any pixel of each (2r+1)×(2r+1) window of `mask` is set."""
    if mask.device.type == "cpu":
        return max_filter(mask.view(torch.uint8), radius).view(torch.bool)
    return max_filter(mask.to(torch.float32), radius) > 0


def simple_nms(scores: torch.Tensor, nms_radius: int) -> torch.Tensor:
    """Zero every score that is not the maximum of its (2r+1)×(2r+1) window.

    Same semantics as SuperPoint's reference `simple_nms`: two extra rounds let maxima that were
    only suppressed by a suppressed neighbour come back. `scores` is `(B, H, W)`; `nms_radius`
    0 keeps every pixel.
    """
    if nms_radius < 0:
        raise ValueError(f"nms_radius must be >= 0, got {nms_radius}")
    is_max = scores == max_filter(scores, nms_radius)
    for _ in range(2):
        suppressed = dilate_mask(is_max, nms_radius)
        remaining = scores.masked_fill(suppressed, 0.0)
        is_max |= (remaining == max_filter(remaining, nms_radius)) & ~suppressed
    return scores.masked_fill(~is_max, 0.0)


def select_keypoints(
    scores: torch.Tensor,
    keypoint_threshold: float,
    border_removal_distance: int,
    max_keypoints: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick the keypoints of each image from NMS'd scores `(B, H, W)`.

    A pixel is kept when its score is above `keypoint_threshold` and it lies at least
    `border_removal_distance` pixels inside the `H×W` score map; then the `max_keypoints`
    best of each image (−1: all).

    Returns `keypoints` `(B, K, 2)` float pixels (x, y), `keypoint_scores` `(B, K)`, both sorted
    by score descending, and `counts` `(B,)`: image b's keypoints are the first `counts[b]` rows,
    the rest is padding. K is the largest count in the batch.
    """
    keep, kept, counts = _candidates(scores, keypoint_threshold, border_removal_distance, max_keypoints)
    # The one host sync of the pipeline: K sizes everything that follows.
    top = int(counts.max()) if scores.shape[0] > 0 else 0
    if scores.device.type == "cpu":
        keypoint_scores, flat_index = _best_kept(scores, keep, kept, top)
    else:
        keypoint_scores, flat_index = _top(scores, keep, top)
    return _pixels(flat_index, scores.shape[-1], scores.dtype), keypoint_scores, counts


def select_keypoints_static(
    scores: torch.Tensor,
    keypoint_threshold: float,
    border_removal_distance: int,
    max_keypoints: int,
    capacity: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`select_keypoints` with K fixed at `capacity` (at most H·W) and no host sync, for a CUDA graph.

    `counts` is what `select_keypoints` returns. Where it exceeds `capacity` the rows hold only
    the best `capacity` keypoints and the caller must retry with more room; otherwise row b's
    first `counts[b]` entries are `select_keypoints`' (the same scores in the same order; which
    of exactly equal scores comes first is up to `topk`).
    """
    keep, _, counts = _candidates(scores, keypoint_threshold, border_removal_distance, max_keypoints)
    _, height, width = scores.shape
    keypoint_scores, flat_index = _top(scores, keep, min(capacity, height * width))
    return _pixels(flat_index, width, scores.dtype), keypoint_scores, counts


def _candidates(
    scores: torch.Tensor, keypoint_threshold: float, border_removal_distance: int, max_keypoints: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where a keypoint may be `(B, H, W)`, how many such pixels each image has, and how many
    keypoints it gets (that, capped by `max_keypoints`)."""
    keep = clear_border(scores > keypoint_threshold, border_removal_distance)
    kept = keep.flatten(1).sum(dim=1)
    counts = kept.clamp(max=max_keypoints) if max_keypoints >= 0 else kept
    return keep, kept, counts


def _top(scores: torch.Tensor, keep: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `top` best kept scores of each image `(B, top)` (−inf padding) and their flat pixel
    indices, by `topk` over the whole map: one kernel, no host sync.

    Among exactly equal scores, which come first, and which survive a `max_keypoints` cut, is
    `topk`'s choice: on CUDA it may differ from the CPU's pixel order and between GPUs. float32
    scores rarely tie exactly; bfloat16's 8-bit mantissa makes ties common, so bfloat16's overlap
    with float32 at a `max_keypoints` cut counts some of them as misses (docs/gpu.md)."""
    candidates = torch.where(keep, scores, torch.full_like(scores, -torch.inf)).flatten(1)
    return torch.topk(candidates, top, dim=1, sorted=True)


def _pixels(flat_index: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.stack((flat_index % width, flat_index // width), dim=-1).to(dtype)


def _best_kept(
    scores: torch.Tensor, keep: torch.Tensor, kept: torch.Tensor, top: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`topk` of the kept scores of each image (padded with −inf), found by sorting only the kept
    pixels: a few thousand of a frame's 300 000. Equal scores come in pixel order."""
    batch_size = scores.shape[0]
    image_index, flat_index = keep.flatten(1).nonzero(as_tuple=True)
    values = scores.flatten(1)[image_index, flat_index]
    order = torch.sort(values, descending=True, stable=True).indices
    # A stable sort by image keeps each image's scores descending.
    order = order[torch.sort(image_index[order], stable=True).indices]
    image_index, flat_index, values = image_index[order], flat_index[order], values[order]
    rank = torch.arange(len(order)) - (torch.cumsum(kept, 0) - kept)[image_index]
    chosen = rank < top
    keypoint_scores = scores.new_full((batch_size, top), -torch.inf)
    positions = torch.zeros((batch_size, top), dtype=torch.int64)
    keypoint_scores[image_index[chosen], rank[chosen]] = values[chosen]
    positions[image_index[chosen], rank[chosen]] = flat_index[chosen]
    return keypoint_scores, positions


def sample_descriptors(
    descriptor_map: torch.Tensor, keypoints: torch.Tensor, architecture: str = MAGICLEAP
) -> torch.Tensor:
    """Bilinearly sample dense descriptors `(B, D, h, w)` at pixels `(B, K, 2)` → `(B, K, D)`.

    Each architecture has its reference's pixel → cell mapping, so that descriptors match it:
    - `magicleap`: cell centres at 8c + 3.5, scaled to `align_corners=True` grid coordinates
      (transformers' and Magic Leap's);
    - `mit`: (x + 0.5) / (8·w) mapped to [-1, 1] with `align_corners=False` (rpautrat/SuperPoint's),
      which reads cell c at 8c + 3.5 too but scales by exactly 1/8, so the two part towards the
      far edges; outside the outer cell centres it blends with zeros, which the normalisation
      then cancels.
    Samples are L2-normalised. A channels-last map gives the same bits about twice as fast on
    the CPU at hundreds of keypoints or more; converting one to it costs more than that saves.
    """
    _, _, cells_high, cells_wide = descriptor_map.shape
    # Constants are filled on the device, not copied from the host, so that a CUDA graph can capture them.
    if architecture == MIT:
        extent = torch.stack(
            (keypoints.new_full((), cells_wide * CELL_SIZE), keypoints.new_full((), cells_high * CELL_SIZE))
        )
        grid = (keypoints + 0.5) / extent * 2 - 1
    else:
        extent = torch.stack(
            (
                keypoints.new_full((), cells_wide * CELL_SIZE - CELL_SIZE / 2 - 0.5),
                keypoints.new_full((), cells_high * CELL_SIZE - CELL_SIZE / 2 - 0.5),
            )
        )
        grid = (keypoints - CELL_SIZE / 2 + 0.5) / extent * 2 - 1
    sampled = functional.grid_sample(descriptor_map, grid[:, None], mode="bilinear", align_corners=architecture != MIT)[
        :, :, 0
    ]
    return functional.normalize(sampled, p=2, dim=1).transpose(1, 2)


def to_original_pixels(
    keypoints: torch.Tensor, resized_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """Pixels `(B, K, 2)` found in an image resized from `original_size` to `resized_size`
    (height, width), in the original's pixels: centres map through the resize,
    (x + 0.5) · original / resized − 0.5."""
    if resized_size == original_size:
        return keypoints
    # Filled on the device, not copied from the host, so that a CUDA graph can capture it.
    scale = torch.stack(
        (
            keypoints.new_full((), original_size[1] / resized_size[1]),
            keypoints.new_full((), original_size[0] / resized_size[0]),
        )
    )
    return (keypoints + 0.5) * scale - 0.5


def postprocess(
    scores: torch.Tensor,
    descriptor_map: torch.Tensor,
    settings: DetectionSettings,
    network_size: tuple[int, int],
    original_size: tuple[int, int],
    capacity: int | None = None,
    mark: Callable[[str], None] | None = None,
    architecture: str = MAGICLEAP,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The network's outputs to keypoints: NMS, selection, descriptor sampling and the mapping
    back through a resize, written once for the plain and the CUDA-graph pipelines.

    `scores` `(B, H, W)` and `descriptor_map` `(B, D, H/8, W/8)` come from a `network_size`
    (height, width) input made from `original_size` images. Returns `keypoints` `(B, K, 2)` in
    original pixels, `keypoint_scores` `(B, K)`, `descriptors` `(B, K, D)` and `counts` `(B,)`.
    K follows the data (`select_keypoints`, one host sync) unless `capacity` fixes it
    (`select_keypoints_static`, none, for a CUDA graph). `mark(stage)` is called after the
    selection (`postprocess`) and after the sampling (`descriptors`), for the benchmark.
    Descriptors are sampled as `architecture`'s reference does (`sample_descriptors`).
    """
    scores = simple_nms(scores, settings.nms_radius)
    selection = (settings.keypoint_threshold, settings.border_removal_distance, settings.max_keypoints)
    if capacity is None:
        keypoints, keypoint_scores, counts = select_keypoints(scores, *selection)
    else:
        keypoints, keypoint_scores, counts = select_keypoints_static(scores, *selection, capacity)
    if mark is not None:
        mark("postprocess")
    descriptors = sample_descriptors(descriptor_map, keypoints, architecture)
    if mark is not None:
        mark("descriptors")
    return to_original_pixels(keypoints, network_size, original_size), keypoint_scores, descriptors, counts
