"""Batched post-processing of SuperPoint's outputs: NMS, threshold, borders, top-k, descriptors.

Pure tensor functions that stay on the tensors' device. Pixel coordinates are x right, y down,
with (0, 0) the centre of the top-left pixel.
"""

import torch
from torch.nn import functional

from superpoint_ros.model import CELL_SIZE


def simple_nms(scores: torch.Tensor, nms_radius: int) -> torch.Tensor:
    """Zero every score that is not the maximum of its (2r+1)×(2r+1) window.

    Same semantics as SuperPoint's reference `simple_nms`: two extra rounds let maxima that were
    only suppressed by a suppressed neighbour come back. `scores` is `(B, H, W)`; `nms_radius`
    0 keeps every pixel.
    """
    if nms_radius < 0:
        raise ValueError(f"nms_radius must be >= 0, got {nms_radius}")

    def max_pool(x: torch.Tensor) -> torch.Tensor:
        return functional.max_pool2d(x, kernel_size=2 * nms_radius + 1, stride=1, padding=nms_radius)

    zeros = torch.zeros_like(scores)
    is_max = scores == max_pool(scores)
    for _ in range(2):
        suppressed = max_pool(is_max.float()) > 0
        remaining = torch.where(suppressed, zeros, scores)
        is_max = is_max | ((remaining == max_pool(remaining)) & ~suppressed)
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
    batch_size, height, width = scores.shape
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
    # The one host sync of the pipeline: K sizes everything that follows.
    top = int(counts.max()) if batch_size > 0 else 0
    candidates = torch.where(keep, scores, torch.full_like(scores, -torch.inf)).flatten(1)
    keypoint_scores, flat_index = torch.topk(candidates, top, dim=1, sorted=True)
    keypoints = torch.stack((flat_index % width, flat_index // width), dim=-1).to(scores.dtype)
    return keypoints, keypoint_scores, counts


def sample_descriptors(descriptor_map: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample dense descriptors `(B, D, h, w)` at pixels `(B, K, 2)` → `(B, K, D)`.

    The pixel → cell mapping is the reference implementation's (cell centres at 8c + 3.5, scaled
    to `align_corners=True` grid coordinates), so that descriptors match it. Samples are
    L2-normalised.
    """
    _, _, cells_high, cells_wide = descriptor_map.shape
    extent = keypoints.new_tensor(
        [
            cells_wide * CELL_SIZE - CELL_SIZE / 2 - 0.5,
            cells_high * CELL_SIZE - CELL_SIZE / 2 - 0.5,
        ]
    )
    grid = (keypoints - CELL_SIZE / 2 + 0.5) / extent * 2 - 1
    sampled = functional.grid_sample(descriptor_map, grid[:, None], mode="bilinear", align_corners=True)[:, :, 0]
    return functional.normalize(sampled, p=2, dim=1).transpose(1, 2)
