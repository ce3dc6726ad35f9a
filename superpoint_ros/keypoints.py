"""Batched post-processing of SuperPoint's outputs: NMS, threshold, borders, top-k, descriptors.

Pure tensor functions that stay on the tensors' device. Pixel coordinates are x right, y down,
with (0, 0) the centre of the top-left pixel.
"""

import torch
from torch.nn import functional

from superpoint_ros.model import CELL_SIZE


def max_filter(values: torch.Tensor, radius: int) -> torch.Tensor:
    """The maximum of each pixel's (2r+1)×(2r+1) window of `values` `(B, H, W)`, clipped at the edges.

    Equal to `max_pool2d(values, 2r+1, stride=1, padding=r)`, bit for bit (a maximum does not
    round). On the CPU it is computed as a row pass then a column pass of shifted maxima,
    which is about 60× faster there than `max_pool2d`'s window loop at r = 4; on a GPU the
    single pooling kernel beats 4r small ones.
    """
    if values.device.type != "cpu":
        return functional.max_pool2d(values, kernel_size=2 * radius + 1, stride=1, padding=radius)
    for dim in (-1, -2):
        source, values = values, values.clone()
        length = values.shape[dim]
        for shift in range(1, min(radius, length - 1) + 1):
            ahead, behind = values.narrow(dim, 0, length - shift), values.narrow(dim, shift, length - shift)
            torch.maximum(ahead, source.narrow(dim, shift, length - shift), out=ahead)
            torch.maximum(behind, source.narrow(dim, 0, length - shift), out=behind)
    return values


def simple_nms(scores: torch.Tensor, nms_radius: int) -> torch.Tensor:
    """Zero every score that is not the maximum of its (2r+1)×(2r+1) window.

    Same semantics as SuperPoint's reference `simple_nms`: two extra rounds let maxima that were
    only suppressed by a suppressed neighbour come back. `scores` is `(B, H, W)`; `nms_radius`
    0 keeps every pixel.
    """
    if nms_radius < 0:
        raise ValueError(f"nms_radius must be >= 0, got {nms_radius}")
    zeros = torch.zeros_like(scores)
    is_max = scores == max_filter(scores, nms_radius)
    for _ in range(2):
        suppressed = max_filter(is_max.to(scores.dtype), nms_radius) > 0
        remaining = torch.where(suppressed, zeros, scores)
        is_max = is_max | ((remaining == max_filter(remaining, nms_radius)) & ~suppressed)
    return torch.where(is_max, scores, zeros)


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
    candidates, counts = _candidates(scores, keypoint_threshold, border_removal_distance, max_keypoints)
    # The one host sync of the pipeline: K sizes everything that follows.
    top = int(counts.max()) if scores.shape[0] > 0 else 0
    return (*_best(candidates, top, scores.shape[-1]), counts)


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
    candidates, counts = _candidates(scores, keypoint_threshold, border_removal_distance, max_keypoints)
    return (*_best(candidates, min(capacity, candidates.shape[1]), scores.shape[-1]), counts)


def _candidates(
    scores: torch.Tensor, keypoint_threshold: float, border_removal_distance: int, max_keypoints: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened scores `(B, H·W)` with −inf where no keypoint may be, and the keypoints per image."""
    _, height, width = scores.shape
    keep = scores > keypoint_threshold
    border = border_removal_distance
    if border > 0:
        keep[:, :border] = False
        keep[:, max(height - border, 0) :] = False
        keep[:, :, :border] = False
        keep[:, :, max(width - border, 0) :] = False
    counts = keep.flatten(1).sum(dim=1)
    if max_keypoints >= 0:
        counts = counts.clamp(max=max_keypoints)
    return torch.where(keep, scores, torch.full_like(scores, -torch.inf)).flatten(1), counts


def _best(candidates: torch.Tensor, top: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `top` best of each row of `candidates` `(B, H·W)`: pixels `(B, top, 2)`, scores `(B, top)`."""
    keypoint_scores, flat_index = torch.topk(candidates, top, dim=1, sorted=True)
    keypoints = torch.stack((flat_index % width, flat_index // width), dim=-1).to(candidates.dtype)
    return keypoints, keypoint_scores


def sample_descriptors(descriptor_map: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample dense descriptors `(B, D, h, w)` at pixels `(B, K, 2)` → `(B, K, D)`.

    The pixel → cell mapping is the reference implementation's (cell centres at 8c + 3.5, scaled
    to `align_corners=True` grid coordinates), so that descriptors match it. Samples are
    L2-normalised.
    """
    _, _, cells_high, cells_wide = descriptor_map.shape
    # Filled on the device, not copied from the host, so that a CUDA graph can capture it.
    extent = torch.stack(
        (
            keypoints.new_full((), cells_wide * CELL_SIZE - CELL_SIZE / 2 - 0.5),
            keypoints.new_full((), cells_high * CELL_SIZE - CELL_SIZE / 2 - 0.5),
        )
    )
    grid = (keypoints - CELL_SIZE / 2 + 0.5) / extent * 2 - 1
    sampled = functional.grid_sample(descriptor_map, grid[:, None], mode="bilinear", align_corners=True)[:, :, 0]
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
