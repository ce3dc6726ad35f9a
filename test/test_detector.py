"""The Detector as users call it: batching, sizes, resize, settings, devices."""

import numpy as np
import pytest

from superpoint_ros.detector import DetectionSettings, Detector, resolve_device
from superpoint_ros.images import ImageError

from conftest import resized_grey, structured_image, through_resize


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


def test_resize_maps_each_axis_back_by_its_own_ratio(sharp_hf_weights):
    # 120×160 → 48×40: y shrinks 2.5×, x 4×, so a swapped x/y scale would show.
    image = structured_image(120, 160, 6)
    native = Detector(weights=str(sharp_hf_weights), device="cpu", nms_radius=2, keypoint_threshold=0.0)
    small = Detector(weights=str(sharp_hf_weights), device="cpu", nms_radius=2, keypoint_threshold=0.0, resize=(48, 40))
    resized_result = small.detect([image])[0]
    direct = native.detect([resized_grey(image, (48, 40))])[0]
    assert len(direct.scores) > 5
    assert direct.keypoints[:, 0].max() != direct.keypoints[:, 1].max()
    np.testing.assert_allclose(resized_result.keypoints, through_resize(direct.keypoints, (48, 40), (120, 160)))
    np.testing.assert_allclose(resized_result.scores, direct.scores, atol=1e-6)


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


@pytest.mark.parametrize(("height", "width"), [(7, 40), (40, 5), (4, 6)])
def test_images_under_eight_pixels_a_side_are_refused_with_the_minimum(detector, height, width):
    with pytest.raises(ValueError, match=f"{width}x{height} pixels; SuperPoint needs at least 8x8"):
        detector.detect([structured_image(32, 32, 0), structured_image(height, width, 1)])


def test_eight_pixels_a_side_is_the_smallest_image_detected(detector):
    detector.settings = DetectionSettings(0.0, 0, -1, 0)
    (result,) = detector.detect([structured_image(8, 8, 2)])
    # One 8×8 cell, no NMS, no border: every pixel scoring above 0 is a keypoint.
    assert 0 < len(result.scores) <= 64
    np.testing.assert_allclose(np.linalg.norm(result.descriptors, axis=1), 1.0, atol=1e-5)
    detector.settings = DetectionSettings()


def test_a_uint8_and_a_float32_image_of_one_shape_each_give_their_own_result(detector):
    as_bytes = structured_image(64, 96, 8)
    as_floats = structured_image(64, 96, 9).astype(np.float32) / 255
    float_alone, bytes_alone = detector.detect([as_floats])[0], detector.detect([as_bytes])[0]
    float_together, bytes_together = detector.detect([as_floats, as_bytes])
    assert len(float_alone.scores) > 0 and len(bytes_alone.scores) > 0
    assert_same(float_together, float_alone)
    assert_same(bytes_together, bytes_alone)


def frame_with_non_finite_pixels() -> tuple[np.ndarray, np.ndarray]:
    """A float grey frame with NaN, ±Inf and out-of-range pixels, and the frame the documented
    rule makes of it (NaN → 0, then clipped to [0, 1]), written out by hand."""
    rng = np.random.default_rng(3)
    frame = rng.random((64, 80), dtype=np.float32)
    cleaned = frame.copy()
    for (y, x), value, becomes in [
        ((20, 30), np.nan, 0.0),
        ((21, 31), np.inf, 1.0),
        ((40, 50), -np.inf, 0.0),
        ((10, 60), 7.5, 1.0),  # a depth in metres, say
        ((50, 12), -2.0, 0.0),
    ]:
        frame[y, x], cleaned[y, x] = value, becomes
    return frame, cleaned


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_non_finite_pixels_give_finite_unit_descriptors_as_if_cleaned(sharp_hf_weights, backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    detector = Detector(weights=str(sharp_hf_weights), device="cpu", backend=backend, nms_radius=2)
    frame, cleaned = frame_with_non_finite_pixels()
    (result,) = detector.detect([frame])
    (expected,) = detector.detect([cleaned])
    assert len(result.scores) > 10
    assert np.isfinite(result.scores).all() and np.isfinite(result.descriptors).all()
    np.testing.assert_allclose(np.linalg.norm(result.descriptors, axis=1), 1.0, atol=1e-5)
    assert_same(result, expected)


def test_both_engines_give_the_same_keypoints_for_non_finite_pixels(sharp_hf_weights):
    pytest.importorskip("openvino")
    frame, _ = frame_with_non_finite_pixels()
    results = [
        Detector(weights=str(sharp_hf_weights), device="cpu", backend=backend, nms_radius=2).detect([frame])[0]
        for backend in ("torch", "openvino")
    ]
    # Random pixels leave no flat regions, so the engines' float rounding (~1e-7) breaks no tie here.
    assert_same(*results)


def test_devices_resolve_or_fail_clearly():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
