"""`keypoints.postprocess` in numpy and OpenCV, for the OpenVINO detector that runs without torch
(`openvino_detector`): NMS, threshold, borders, top-k and descriptor sampling, on the CPU.

Same conventions and results as `keypoints.py`'s CPU path: pixels x right, y down, (0, 0) the
centre of the top-left pixel. The window maxima are the same OpenCV dilations and the selection
the same stable sort, so keypoints and scores are equal bit for bit; descriptor sampling is
bilinear in the same float32 steps as `grid_sample`, with sums in another order, so descriptors
agree to float rounding (test_numpy_keypoints.py pins both against `keypoints.py`).
"""

import cv2
import numpy as np

from superpoint_ros.feature_types import CELL_SIZE, MIT, DetectionSettings


def max_filter(values: np.ndarray, radius: int) -> np.ndarray:
    """The maximum of each pixel's (2r+1)×(2r+1) window of `values` `(B, H, W)`, clipped at the edges."""
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return np.stack([cv2.dilate(image, kernel) for image in values])


def simple_nms(scores: np.ndarray, nms_radius: int) -> np.ndarray:
    """Zero every score of `(B, H, W)` that is not the maximum of its window, with the reference's
    two extra rounds (see `keypoints.simple_nms`)."""
    if nms_radius < 0:
        raise ValueError(f"nms_radius must be >= 0, got {nms_radius}")
    is_max = scores == max_filter(scores, nms_radius)
    for _ in range(2):
        suppressed = max_filter(is_max.view(np.uint8), nms_radius).view(bool)
        remaining = np.where(suppressed, np.float32(0), scores)
        is_max |= (remaining == max_filter(remaining, nms_radius)) & ~suppressed
    return np.where(is_max, scores, np.float32(0))


def clear_border(keep, border: int):
    """`keep` `(B, H, W)` (a numpy array or a torch tensor) with its outer `border` pixels set
    False, in place; returned."""
    if border > 0:
        height, width = keep.shape[-2:]
        keep[:, :border] = False
        keep[:, max(height - border, 0) :] = False
        keep[:, :, :border] = False
        keep[:, :, max(width - border, 0) :] = False
    return keep


def select_keypoints(
    scores: np.ndarray, keypoint_threshold: float, border_removal_distance: int, max_keypoints: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each image's keypoints `(N, 2)` float32 (x, y) and scores `(N,)`, best first, from NMS'd
    scores `(B, H, W)`: above the threshold, at least `border_removal_distance` pixels inside,
    the best `max_keypoints` (−1: all). Equal scores come in pixel order."""
    width = scores.shape[-1]
    keep = clear_border(scores > keypoint_threshold, border_removal_distance)
    selected = []
    for image_scores, image_keep in zip(scores, keep, strict=True):
        flat_index = np.flatnonzero(image_keep)
        values = image_scores.reshape(-1)[flat_index]
        # Scores above a threshold >= 0 are positive, so negating them sorts descending exactly.
        order = np.argsort(-values, kind="stable")
        if max_keypoints >= 0:
            order = order[:max_keypoints]
        flat_index = flat_index[order]
        pixels = np.stack((flat_index % width, flat_index // width), axis=-1).astype(np.float32)
        selected.append((pixels, values[order]))
    return selected


def sample_descriptors(descriptor_map: np.ndarray, keypoints: np.ndarray, architecture: str) -> np.ndarray:
    """Bilinearly sample a channels-last descriptor map `(h, w, D)` at pixels `(N, 2)` → `(N, D)`,
    L2-normalised, with `architecture`'s pixel → cell mapping (see `keypoints.sample_descriptors`):
    the same grid coordinates and corner weights as `grid_sample`, zeros outside the map."""
    cells_high, cells_wide, depth = descriptor_map.shape
    if len(keypoints) == 0:
        return np.zeros((0, depth), np.float32)
    if architecture == MIT:
        extent = np.array([cells_wide * CELL_SIZE, cells_high * CELL_SIZE], np.float32)
        grid = (keypoints + np.float32(0.5)) / extent * np.float32(2) - np.float32(1)
        # align_corners=False: ((g + 1) · size − 1) / 2
        source = ((grid + np.float32(1)) * np.array([cells_wide, cells_high], np.float32) - np.float32(1)) / np.float32(
            2
        )
    else:
        extent = np.array(
            [cells_wide * CELL_SIZE - CELL_SIZE / 2 - 0.5, cells_high * CELL_SIZE - CELL_SIZE / 2 - 0.5], np.float32
        )
        grid = (keypoints - np.float32(CELL_SIZE / 2) + np.float32(0.5)) / extent * np.float32(2) - np.float32(1)
        # align_corners=True: (g + 1) / 2 · (size − 1)
        source = (grid + np.float32(1)) / np.float32(2) * np.array([cells_wide - 1, cells_high - 1], np.float32)
    x, y = source[:, 0], source[:, 1]
    x0, y0 = np.floor(x), np.floor(y)
    x1, y1 = x0 + np.float32(1), y0 + np.float32(1)
    # Corner weights as grid_sample's CPU kernel forms them: fractions, their complements, products.
    west, north = x - x0, y - y0
    east, south = np.float32(1) - west, np.float32(1) - north
    corners = ((x0, y0, south * east), (x1, y0, south * west), (x0, y1, north * east), (x1, y1, north * west))
    sampled = np.zeros((len(keypoints), depth), np.float32)
    for column, row, weight in corners:
        inside = (column >= 0) & (column < cells_wide) & (row >= 0) & (row < cells_high)
        values = descriptor_map[
            np.clip(row, 0, cells_high - 1).astype(np.intp), np.clip(column, 0, cells_wide - 1).astype(np.intp)
        ]
        sampled += values * np.where(inside, weight, np.float32(0))[:, None]
    norms = np.sqrt(np.einsum("kd,kd->k", sampled, sampled))
    return sampled / np.maximum(norms, np.float32(1e-12))[:, None]


def postprocess(
    scores: np.ndarray, descriptor_maps: np.ndarray, settings: DetectionSettings, architecture: str
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The network's outputs to each image's `(keypoints, scores, descriptors)`.

    `scores` `(B, H, W)` float32 and `descriptor_maps` `(B, H/8, W/8, D)` channels last, as the
    OpenVINO graph gives them; keypoints are in the pixels of the network's input."""
    suppressed = simple_nms(scores, settings.nms_radius)
    selections = select_keypoints(
        suppressed, settings.keypoint_threshold, settings.border_removal_distance, settings.max_keypoints
    )
    return [
        (keypoints, keypoint_scores, sample_descriptors(descriptor_map, keypoints, architecture))
        for (keypoints, keypoint_scores), descriptor_map in zip(selections, descriptor_maps, strict=True)
    ]
