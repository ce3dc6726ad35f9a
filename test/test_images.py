"""Pre-processing: dtypes, channel orders and layouts all become the reference's grey."""

import numpy as np
import pytest
import torch

from superpoint_ros import image_codec, images
from superpoint_ros.images import ImageError, check_image, to_grey_batch
from superpoint_ros.model import CELL_SIZE

from conftest import structured_image

CPU = torch.device("cpu")


def grey(image: np.ndarray, channel_order: str = "bgr") -> np.ndarray:
    """`to_grey_batch` of one image (which takes tiny arrays too; `check_image` is the gate)."""
    return to_grey_batch([image], CPU, channel_order)[0, 0].numpy()


def test_colour_grey_is_bit_identical_to_the_reference_processor():
    transformers = pytest.importorskip("transformers")
    from transformers.models.superpoint.image_processing_pil_superpoint import SuperPointImageProcessorPil

    assert transformers is not None
    image = structured_image(48, 64, seed=5)
    processor = SuperPointImageProcessorPil(do_resize=False, do_grayscale=True)
    reference = processor(image[..., ::-1], return_tensors="pt")["pixel_values"][0, 0].numpy()
    assert np.array_equal(grey(image), reference)


def test_luma_weights_are_applied_to_the_named_channels():
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in BGR order
    assert grey(bgr) == pytest.approx(np.full((2, 2), 0.2989), abs=1e-7)
    assert grey(bgr[..., ::-1].copy(), "rgb") == pytest.approx(np.full((2, 2), 0.2989), abs=1e-7)
    assert grey(bgr, "rgb") == pytest.approx(np.full((2, 2), 0.1140), abs=1e-7)


def test_rgb_and_bgr_views_of_one_scene_give_the_same_grey():
    image = structured_image(32, 40, seed=1)
    assert np.array_equal(grey(image, "bgr"), grey(np.ascontiguousarray(image[..., ::-1]), "rgb"))


def test_alpha_is_ignored():
    image = structured_image(16, 24, seed=2)
    with_alpha = np.dstack([image, np.full(image.shape[:2], 7, np.uint8)])
    assert np.array_equal(grey(with_alpha), grey(image))


def test_grey_layouts_and_dtypes_scale_to_unit_range():
    values = np.array([[0, 128], [255, 64]], np.uint8)
    expected = values / np.float32(255)
    assert np.array_equal(grey(values), expected.astype(np.float32))
    assert np.array_equal(grey(values[..., None]), expected.astype(np.float32))
    assert np.array_equal(grey(np.dstack([values] * 3)), expected.astype(np.float32))
    wide = np.array([[0, 65535], [32768, 1]], np.uint16)
    assert grey(wide) == pytest.approx(wide / 65535, abs=1e-7)
    floats = np.array([[0.25, 1.0]], np.float64)
    assert grey(floats).tolist() == [[0.25, 1.0]]


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (np.zeros((0, 5), np.uint8), "no pixels"),
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.zeros((4, 4), np.int8), "int8"),
        ([[0, 1]], "numpy array"),
        (np.zeros((7, 40), np.uint8), "40x7 pixels; SuperPoint needs at least 8x8"),
        (np.zeros((40, 5, 3), np.uint8), "5x40 pixels; SuperPoint needs at least 8x8"),
    ],
)
def test_unusable_images_are_refused_with_the_reason(image, reason):
    with pytest.raises(ImageError, match=reason):
        check_image(image)


def test_eight_pixels_a_side_is_accepted():
    check_image(np.zeros((8, 8), np.uint8))
    check_image(np.zeros((8, 200, 3), np.float32))


def test_the_smallest_side_the_codec_and_the_detector_take_is_one_network_cell():
    # The codec defines it without torch; the network's cell is where the number comes from.
    assert image_codec.MIN_SIDE == images.MIN_SIDE == CELL_SIZE


def test_non_finite_and_out_of_range_float_pixels_become_finite_unit_range_values():
    values = np.array([[np.nan, np.inf, -np.inf, 2.5, -0.5, 0.25, 1e30, 1.0]], np.float32)
    assert grey(values).tolist() == [[0.0, 1.0, 0.0, 1.0, 0.0, 0.25, 1.0, 1.0]]
    assert grey(values.astype(np.float64)).tolist() == [[0.0, 1.0, 0.0, 1.0, 0.0, 0.25, 1.0, 1.0]]


def test_a_nan_channel_counts_as_zero_in_the_grey_conversion():
    bgr = np.array([[[np.nan, 0.5, 1.0]]], np.float32)  # B is NaN
    expected = np.float32(1.0) * np.float32(0.2989) + np.float32(0.5) * np.float32(0.5870)
    assert grey(bgr) == pytest.approx(expected, abs=1e-7)
