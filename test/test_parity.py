"""Our Detector against transformers' SuperPointForKeypointDetection, from the same weights.

The reference pipeline is transformers end to end: its image processor (with
`do_grayscale=True`, no resize) turns the BGR test images into pixel values, its model runs,
and `post_process_keypoint_detection` gives the per-image results. Required: the same keypoint
set, scores within 1e-5, descriptors within 1e-4.

One deliberate difference: transformers removes the border only at the top and left. Its
`_extract_keypoints` multiplies the full-resolution score map's size by 8 once more, so the
bottom/right limits fall outside the image. We remove all four borders, as the original
SuperPoint does. The reference therefore runs without its top-k, and the test applies the
bottom/right border and then the top-k to its output (`with_four_borders`).

These tests pin the PyTorch engine (`backend="torch"`), whose raw scores are bit-identical to the
reference's. test_backends.py holds the other engines to the same tolerances, allowing only
NMS decisions that float rounding can flip on near-ties.
"""

import itertools

import numpy as np
import pytest
import torch

from superpoint_ros.detector import DetectionSettings, Detector

from conftest import structured_image

transformers = pytest.importorskip("transformers")
from transformers.models.superpoint.image_processing_pil_superpoint import (  # noqa: E402
    SuperPointImageProcessorPil,
)

SCORE_TOLERANCE = 1e-5
DESCRIPTOR_TOLERANCE = 1e-4


def reference_detections(model, images_bgr: list[np.ndarray], settings: DetectionSettings) -> list[dict]:
    decoder = model.keypoint_decoder
    decoder.keypoint_threshold = settings.keypoint_threshold
    decoder.nms_radius = settings.nms_radius
    decoder.max_keypoints = -1
    decoder.border_removal_distance = settings.border_removal_distance
    processor = SuperPointImageProcessorPil(do_resize=False, do_grayscale=True)
    inputs = processor([image[..., ::-1] for image in images_bgr], return_tensors="pt")
    sizes = [image.shape[:2] for image in images_bgr]
    with torch.no_grad():
        outputs = model(**inputs)
    processed = processor.post_process_keypoint_detection(outputs, sizes)
    results = []
    for index, (height, width) in enumerate(sizes):
        valid = outputs.mask[index].bool()
        pixels = outputs.keypoints[index][valid] * torch.tensor([width, height])
        result = {
            "keypoints": pixels.round().numpy(),
            "relative_times_size": pixels.numpy(),
            "post_processed_keypoints": processed[index]["keypoints"].numpy(),
            "scores": processed[index]["scores"].numpy(),
            "descriptors": processed[index]["descriptors"].numpy(),
        }
        results.append(with_four_borders(result, 8 * (height // 8), 8 * (width // 8), settings))
    return results


def with_four_borders(result: dict, height: int, width: int, settings: DetectionSettings) -> dict:
    """Drop keypoints within the border of the bottom and right edges, then keep the top k."""
    border = settings.border_removal_distance
    x, y = result["keypoints"].T
    keep = np.flatnonzero((x < width - border) & (y < height - border))
    if settings.max_keypoints >= 0:
        keep = keep[np.argsort(-result["scores"][keep], kind="stable")[: settings.max_keypoints]]
    return {name: values[keep] for name, values in result.items()}


def compare(ours, reference) -> dict:
    """Match keypoints by pixel; return the set difference and the worst value differences."""
    ours_by_pixel = {tuple(map(int, p)): i for i, p in enumerate(ours.keypoints)}
    ref_by_pixel = {tuple(map(int, p)): i for i, p in enumerate(reference["keypoints"])}
    common = sorted(ours_by_pixel.keys() & ref_by_pixel.keys())
    ours_rows = [ours_by_pixel[p] for p in common]
    ref_rows = [ref_by_pixel[p] for p in common]
    return {
        "count": len(ours.keypoints),
        "only_ours": sorted(ours_by_pixel.keys() - ref_by_pixel.keys()),
        "only_reference": sorted(ref_by_pixel.keys() - ours_by_pixel.keys()),
        "only_ours_scores": ours.scores[[ours_by_pixel[p] for p in ours_by_pixel.keys() - ref_by_pixel.keys()]],
        "only_reference_scores": reference["scores"][
            [ref_by_pixel[p] for p in ref_by_pixel.keys() - ours_by_pixel.keys()]
        ],
        "score_diff": float(np.abs(ours.scores[ours_rows] - reference["scores"][ref_rows]).max(initial=0.0)),
        "descriptor_diff": float(
            np.abs(ours.descriptors[ours_rows] - reference["descriptors"][ref_rows]).max(initial=0.0)
        ),
    }


@pytest.fixture(scope="module")
def reference_model(hf_weights):
    return transformers.SuperPointForKeypointDetection.from_pretrained(hf_weights).eval()


@pytest.fixture(scope="module")
def sharp_reference_model(sharp_hf_weights):
    return transformers.SuperPointForKeypointDetection.from_pretrained(sharp_hf_weights).eval()


CONFIGURATIONS = [
    DetectionSettings(threshold, radius, max_keypoints, border)
    for threshold, radius, max_keypoints, border in itertools.chain(
        itertools.product([0.0, 0.005], [0, 1, 4, 8], [-1], [4]),
        itertools.product([0.005], [4], [1, 100], [0, 8]),
    )
]


def assert_parity(detector, model, images, settings, label):
    detector.settings = settings
    ours = detector.detect(images)
    reference = reference_detections(model, images, settings)
    for index, (mine, theirs) in enumerate(zip(ours, reference, strict=True)):
        result = compare(mine, theirs)
        print(
            f"{label} image{index} {settings}: {result['count']} keypoints, "
            f"set equal={not result['only_ours'] and not result['only_reference']} "
            f"(top-k ties swapped: {len(result['only_ours'])}), "
            f"max score diff={result['score_diff']:.2e}, max descriptor diff={result['descriptor_diff']:.2e}"
        )
        assert len(mine.scores) == len(theirs["scores"])
        if settings.max_keypoints >= 0 and result["only_ours"]:
            # Several pixels share the k-th best score exactly, and top-k may keep any of them.
            # Only such pixels may differ, and only in equal numbers.
            cutoff = mine.scores[-1]
            swapped = np.concatenate([result["only_ours_scores"], result["only_reference_scores"]])
            assert np.abs(swapped - cutoff).max() <= SCORE_TOLERANCE, result
        else:
            assert result["only_ours"] == [] and result["only_reference"] == [], result
        assert result["score_diff"] <= SCORE_TOLERANCE
        assert result["descriptor_diff"] <= DESCRIPTOR_TOLERANCE
        assert np.all(np.diff(mine.scores) <= 0), "scores must be sorted descending"
        if settings.max_keypoints >= 0:
            assert len(mine.scores) <= settings.max_keypoints
        # The reference's post-processing truncates to int32; its unrounded product is within
        # float error of our integer pixels, so the truncation is off by at most one pixel.
        assert np.abs(theirs["relative_times_size"] - theirs["keypoints"]).max(initial=0) < 1e-3
        truncation = theirs["keypoints"] - theirs["post_processed_keypoints"]
        assert set(np.unique(truncation)) <= {0, 1}


@pytest.mark.parametrize("settings", CONFIGURATIONS, ids=str)
def test_random_weights_match_reference_on_small_batches(hf_weights, reference_model, settings):
    detector = Detector(weights=str(hf_weights), device="cpu", backend="torch")
    images = [structured_image(64, 80, seed) for seed in range(3)]
    assert_parity(detector, reference_model, images, settings, "64x80 batch3")


@pytest.mark.parametrize("settings", CONFIGURATIONS, ids=str)
def test_sharpened_weights_match_reference_where_thresholds_bite(sharp_hf_weights, sharp_reference_model, settings):
    detector = Detector(weights=str(sharp_hf_weights), device="cpu", backend="torch")
    images = [structured_image(240, 320, seed) for seed in range(3)]
    assert_parity(detector, sharp_reference_model, images, settings, "240x320 batch3 sharp")


@pytest.mark.parametrize(
    "settings",
    [DetectionSettings(0.005, 4, -1, 4), DetectionSettings(0.0, 1, 100, 8), DetectionSettings(0.05, 8, -1, 0)],
    ids=str,
)
def test_full_resolution_frame_matches_reference(sharp_hf_weights, sharp_reference_model, settings):
    detector = Detector(weights=str(sharp_hf_weights), device="cpu", backend="torch")
    assert_parity(detector, sharp_reference_model, [structured_image(480, 640, 7)], settings, "480x640 batch1 sharp")


def test_sizes_not_divisible_by_eight_match_reference(sharp_hf_weights, sharp_reference_model):
    detector = Detector(weights=str(sharp_hf_weights), device="cpu", backend="torch")
    images = [structured_image(70, 93, seed) for seed in (11, 12)]
    assert_parity(detector, sharp_reference_model, images, DetectionSettings(0.005, 2, -1, 3), "70x93 batch2 sharp")
