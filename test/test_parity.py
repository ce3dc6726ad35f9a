"""Our Detector against transformers' SuperPointForKeypointDetection, from the same weights.

The reference pipeline is transformers end to end: its image processor (with
`do_grayscale=True`, no resize) turns the BGR test images into pixel values, its model runs,
and `post_process_keypoint_detection` gives the per-image results. Required: the same keypoint
set, scores within 1e-5, descriptors within 1e-4.

One deliberate difference: transformers removes the border only at the top and left. Its
`_extract_keypoints` multiplies the full-resolution score map's size by 8 once more, so the
bottom/right limits fall outside the image. We remove all four borders, as the original
SuperPoint does. The reference therefore runs without its top-k, and the test applies the
bottom/right border and then the top-k to its output (`reference.reference_detections`).

These tests pin the PyTorch engine (`backend="torch"`), whose raw scores are bit-identical to the
reference's. test_backends.py holds the other engines to the same tolerances, allowing only
NMS decisions that float rounding can flip on near-ties.
"""

import numpy as np
import pytest
import torch

from superpoint_ros.detector import Detections, DetectionSettings, Detector

from conftest import structured_image
from helpers import (
    CONFIGURATIONS,
    DESCRIPTOR_TOLERANCE,
    FULL_RESOLUTION_CONFIGURATIONS,
    SCORE_TOLERANCE,
    memoised_detector,
    needs,
)

pytestmark = needs("transformers")
from superpoint_ros.tools.reference import (  # noqa: E402
    compare,
    configure_reference,
    reference_detections,
    reference_pixel_values,
    run_reference,
)


def scores_at(points: list[tuple[int, int]], detections_keypoints: np.ndarray, scores: np.ndarray) -> np.ndarray:
    rows = {tuple(map(int, point)): row for row, point in enumerate(np.rint(detections_keypoints))}
    return scores[[rows[point] for point in points]]


def assert_parity(detector, model, images, settings, label):
    detector.settings = settings
    ours = detector.detect(images)
    reference = reference_detections(model, images, settings)
    for index, (mine, theirs) in enumerate(zip(ours, reference, strict=True)):
        result = compare(mine, theirs)
        print(
            f"{label} image{index} {settings}: {result.count} keypoints, "
            f"set equal={result.same_keypoints} (top-k ties swapped: {len(result.only_ours)}), "
            f"max score diff={result.score_difference:.2e}, "
            f"max descriptor diff={result.descriptor_difference:.2e}"
        )
        assert len(mine.scores) == len(theirs["scores"])
        if settings.max_keypoints >= 0 and result.only_ours:
            # Several pixels share the k-th best score exactly, and top-k may keep any of them.
            # Only such pixels may differ, and only in equal numbers.
            cutoff = mine.scores[-1]
            swapped = np.concatenate(
                [
                    scores_at(result.only_ours, mine.keypoints, mine.scores),
                    scores_at(result.only_reference, theirs["keypoints"], theirs["scores"]),
                ]
            )
            assert np.abs(swapped - cutoff).max() <= SCORE_TOLERANCE, result
        else:
            assert result.same_keypoints, result
        assert result.score_difference <= SCORE_TOLERANCE
        assert result.descriptor_difference <= DESCRIPTOR_TOLERANCE
        assert np.all(np.diff(mine.scores) <= 0), "scores must be sorted descending"
        if settings.max_keypoints >= 0:
            assert len(mine.scores) <= settings.max_keypoints


def test_compare_pairs_keypoints_by_pixel_and_lists_the_rest_sorted():
    """By hand: ours at (5, 3), (7, 2), (1, 1) (one off by 0.4 px), the reference at (7, 2), (9, 9), (5, 3)."""
    ours = Detections(
        np.array([[5, 3], [7.4, 2], [1, 1]], np.float32),
        np.array([0.5, 0.25, 0.125], np.float32),
        np.array([[1, 0], [0, 1], [1, 1]], np.float32),
    )
    theirs = {
        "keypoints": np.array([[7, 2], [9, 9], [5, 3]]),
        "scores": np.array([0.25, 1.0, 0.75], np.float32),
        "descriptors": np.array([[0, 0.5], [9, 9], [1, 0]], np.float32),
    }
    result = compare(ours, theirs)
    assert (result.count, result.reference_count) == (3, 3)
    assert result.only_ours == [(1, 1)] and result.only_reference == [(9, 9)]
    assert result.score_difference == 0.25  # (5, 3): 0.5 against 0.75; (7, 2) agrees
    assert result.descriptor_difference == 0.5  # (7, 2): (0, 1) against (0, 0.5)
    assert not result.same_keypoints
    many = compare(ours, {**theirs, "keypoints": np.array([[1, 1], [0, 0], [0, 5]])})
    assert many.only_ours == [(5, 3), (7, 2)] and many.only_reference == [(0, 0), (0, 5)]


def memoised_torch_detector(weights) -> Detector:
    """The PyTorch engine on `weights`, its network computing each distinct batch once
    (`helpers.MemoisedForward`); `assert_parity` sets the post-processing for each test."""
    return memoised_detector(weights=str(weights), device="cpu", backend="torch")


@pytest.fixture(scope="module")
def detector(hf_weights) -> Detector:
    return memoised_torch_detector(hf_weights)


@pytest.fixture(scope="module")
def sharp_detector(sharp_hf_weights) -> Detector:
    return memoised_torch_detector(sharp_hf_weights)


@pytest.mark.parametrize("settings", CONFIGURATIONS, ids=str)
def test_random_weights_match_reference_on_small_batches(detector, reference_model, settings):
    images = [structured_image(64, 80, seed) for seed in range(3)]
    assert_parity(detector, reference_model, images, settings, "64x80 batch3")


@pytest.mark.parametrize("settings", CONFIGURATIONS, ids=str)
def test_sharpened_weights_match_reference_where_thresholds_bite(sharp_detector, sharp_reference_model, settings):
    images = [structured_image(240, 320, seed) for seed in range(3)]
    assert_parity(sharp_detector, sharp_reference_model, images, settings, "240x320 batch3 sharp")


@pytest.mark.parametrize("settings", FULL_RESOLUTION_CONFIGURATIONS, ids=str)
def test_full_resolution_frame_matches_reference(sharp_detector, sharp_reference_model, settings):
    images = [structured_image(480, 640, 7)]
    assert_parity(sharp_detector, sharp_reference_model, images, settings, "480x640 batch1 sharp")


def test_sizes_not_divisible_by_eight_match_reference(sharp_detector, sharp_reference_model):
    images = [structured_image(70, 93, seed) for seed in (11, 12)]
    settings = DetectionSettings(0.005, 2, -1, 3)
    assert_parity(sharp_detector, sharp_reference_model, images, settings, "70x93 batch2 sharp")


def test_reference_post_processing_truncates_integer_pixels_by_at_most_one(sharp_reference_model):
    """Its relative coordinates times the size are our integer pixels up to float error, and
    `post_process_keypoint_detection`'s int32 cast truncates that product, so it can lose a pixel."""
    images = [structured_image(70, 93, 11), structured_image(70, 93, 12)]
    configure_reference(sharp_reference_model, DetectionSettings(0.0, 1, -1, 0))
    sizes = [image.shape[:2] for image in images]
    outputs, processed = run_reference(sharp_reference_model, reference_pixel_values(images), sizes)
    for index, (height, width) in enumerate(sizes):
        valid = outputs.mask[index].bool()
        product = (outputs.keypoints[index][valid] * torch.tensor([width, height])).numpy()
        assert len(product) > 100
        assert np.abs(product - product.round()).max() < 1e-3
        assert set(np.unique(product.round() - processed[index]["keypoints"].numpy())) <= {0, 1}


def test_the_memoised_network_returns_what_a_fresh_network_computes(sharp_detector, sharp_hf_weights):
    from superpoint_ros.images import to_grey_batch

    one, other = (to_grey_batch([structured_image(64, 80, seed)], torch.device("cpu")) for seed in (3, 4))
    fresh = Detector(weights=str(sharp_hf_weights), device="cpu", backend="torch")
    with torch.inference_mode():
        computed = sharp_detector.network.computed
        outputs = [sharp_detector.network(grey.clone()) for grey in (one, other, one, other)]
        expected = [fresh.network(grey) for grey in (one, other, one, other)]
    assert sharp_detector.network.computed == computed + 2, "each input computed once, then served from the memo"
    for output, truth in zip(outputs, expected, strict=True):
        assert all(torch.equal(mine, theirs) for mine, theirs in zip(output, truth, strict=True))
