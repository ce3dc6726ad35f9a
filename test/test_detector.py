"""The Detector as users call it: batching, sizes, resize, settings, devices."""

import numpy as np
import pytest

from superpoint_ros.detector import DetectionSettings, Detector, resolve_device
from superpoint_ros.images import ImageError

from conftest import structured_image


@pytest.fixture(scope="module")
def detector(sharp_hf_weights):
    return Detector(weights=str(sharp_hf_weights), device="cpu")


def assert_same(a, b):
    """Equal detections; pixels with exactly equal scores may come in either order."""
    order_a = np.lexsort((a.keypoints[:, 1], a.keypoints[:, 0], -a.scores))
    order_b = np.lexsort((b.keypoints[:, 1], b.keypoints[:, 0], -b.scores))
    assert np.array_equal(a.keypoints[order_a], b.keypoints[order_b])
    np.testing.assert_allclose(a.scores[order_a], b.scores[order_b], atol=1e-6)
    np.testing.assert_allclose(a.descriptors[order_a], b.descriptors[order_b], atol=1e-5)


def test_a_batch_gives_what_each_image_gives_alone(detector):
    images = [structured_image(64, 96, seed) for seed in range(3)]
    batched = detector.detect(images)
    for image, result in zip(images, batched, strict=True):
        assert_same(result, detector.detect([image])[0])


def test_mixed_sizes_come_back_in_input_order(detector):
    images = [structured_image(64, 96, 0), structured_image(48, 56, 1), structured_image(64, 96, 2)]
    results = detector.detect(images)
    for image, result in zip(images, results, strict=True):
        assert_same(result, detector.detect([image])[0])


def test_results_have_the_documented_types_and_order(detector):
    result = detector.detect([structured_image(64, 96, 4)])[0]
    assert result.keypoints.dtype == result.scores.dtype == result.descriptors.dtype == np.float32
    assert result.keypoints.shape == (len(result.scores), 2)
    assert result.descriptors.shape == (len(result.scores), detector.descriptor_size)
    assert np.all(np.diff(result.scores) <= 0)
    np.testing.assert_allclose(np.linalg.norm(result.descriptors, axis=1), 1.0, atol=1e-5)


def test_sizes_not_divisible_by_eight_lose_the_last_rows_and_columns(detector):
    # 70×93: the network sees the top-left 64×88; the border counts from that region's edges.
    detector.settings = DetectionSettings(0.0, 1, -1, 2)
    image = structured_image(70, 93, 3)
    result = detector.detect([image])[0]
    assert len(result.scores) > 0
    assert result.keypoints[:, 0].max() <= 88 - 2 - 1 and result.keypoints[:, 1].max() <= 64 - 2 - 1
    assert result.keypoints.min() >= 2


def test_resize_reports_keypoints_in_original_pixels(sharp_hf_weights):
    image = structured_image(120, 160, 6)
    native = Detector(weights=str(sharp_hf_weights), device="cpu", nms_radius=2, keypoint_threshold=0.0)
    small = Detector(weights=str(sharp_hf_weights), device="cpu", nms_radius=2, keypoint_threshold=0.0, resize=(60, 80))
    resized_result = small.detect([image])[0]
    direct = native.detect([native_resize(small, image)])[0]
    # Pixel centres map through the 2× resize: x_original = (x_small + 0.5) · 2 − 0.5.
    np.testing.assert_allclose(resized_result.keypoints, (direct.keypoints + 0.5) * 2 - 0.5)
    np.testing.assert_allclose(resized_result.scores, direct.scores, atol=1e-6)


def native_resize(detector: Detector, image: np.ndarray) -> np.ndarray:
    """The float grey image the resizing detector feeds its network, as an H×W float32 array."""
    import torch
    from torch.nn import functional

    from superpoint_ros.images import to_grey_batch

    grey = to_grey_batch([image], torch.device("cpu"))
    small = functional.interpolate(grey, size=detector.resize, mode="bilinear", align_corners=False, antialias=True)
    return small[0, 0].numpy()


@pytest.mark.parametrize(
    ("field", "value"),
    [("keypoint_threshold", -0.1), ("keypoint_threshold", 1.0), ("nms_radius", -1), ("max_keypoints", -2)]
    + [("border_removal_distance", -1)],
)
def test_invalid_settings_are_refused_with_the_parameter_name(field, value):
    with pytest.raises(ValueError, match=field):
        DetectionSettings(**{field: value})


def test_bad_images_are_refused_before_any_work(detector):
    with pytest.raises(ImageError, match="shape"):
        detector.detect([structured_image(32, 32, 0), np.zeros((4, 4, 2), np.uint8)])


def test_devices_resolve_or_fail_clearly():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
