"""`image_codec`: sensor_msgs/Image fields ⇄ arrays, without ROS."""

import numpy as np
import pytest

from superpoint_ros.image_codec import ENCODINGS, MAX_SIDE, ImageDecodeError, decode_image, encode_image

from conftest import structured_image


def pixels_for(encoding: str, height: int = 8, width: int = 10) -> np.ndarray:
    layout = ENCODINGS[encoding]
    rng = np.random.default_rng(len(encoding))
    shape = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    if layout.dtype == np.float32:
        return rng.random(shape, dtype=np.float32)
    return rng.integers(0, np.iinfo(layout.dtype).max, shape, endpoint=True).astype(layout.dtype)


def decode(encoded, **changes):
    fields = {
        "height": encoded.height,
        "width": encoded.width,
        "encoding": encoded.encoding,
        "is_bigendian": encoded.is_bigendian,
        "step": encoded.step,
        "data": encoded.data,
    }
    fields.update(changes)
    return decode_image(**fields)


@pytest.mark.parametrize("encoding", [name for name, layout in ENCODINGS.items() if layout.bayer_to_bgr is None])
def test_every_plain_encoding_round_trips_unchanged(encoding):
    pixels = pixels_for(encoding)
    decoded = decode(encode_image(pixels, encoding))
    np.testing.assert_array_equal(decoded.pixels, pixels)
    assert decoded.pixels.dtype == pixels.dtype
    assert decoded.channel_order == ("rgb" if encoding.startswith("rgb") else "bgr")


@pytest.mark.parametrize("encoding", ["mono8", "mono16", "bgr8", "rgba8", "32FC1"])
def test_padded_rows_decode_as_a_view_of_the_message_buffer(encoding):
    pixels = pixels_for(encoding, 9, 11)
    row_bytes = pixels[0].nbytes
    step = row_bytes + 13
    buffer = bytearray(step * 9 + 3)
    padded = np.frombuffer(buffer, np.uint8)
    for row in range(9):
        padded[row * step : row * step + row_bytes] = np.frombuffer(pixels[row].tobytes(), np.uint8)
    decoded = decode_image(9, 11, encoding, False, step, buffer)
    np.testing.assert_array_equal(decoded.pixels, pixels)
    assert np.shares_memory(decoded.pixels, padded)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1", "bgr16"])
def test_big_endian_data_is_byte_swapped_to_native_values(encoding):
    pixels = pixels_for(encoding)
    swapped = pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
    decoded = decode_image(8, 10, encoding, True, pixels[0].nbytes, swapped)
    np.testing.assert_array_equal(decoded.pixels, pixels)
    assert decoded.pixels.dtype.isnative


def test_rgb8_and_bgr8_of_one_scene_give_the_same_bgr_view():
    bgr = structured_image(12, 16, seed=3)
    from_bgr = decode(encode_image(bgr, "bgr8"))
    from_rgb = decode(encode_image(np.ascontiguousarray(bgr[..., ::-1]), "rgb8"))
    rgba = np.concatenate([bgr[..., ::-1], np.full((12, 16, 1), 255, np.uint8)], axis=2)
    from_rgba = decode(encode_image(rgba, "rgba8"))
    for decoded in (from_bgr, from_rgb, from_rgba):
        np.testing.assert_array_equal(decoded.bgr_view(), bgr)


def mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """Sample `bgr` through a colour filter array named the ROS way (top-left 2×2, row-major)."""
    channel = {"b": 0, "g": 1, "r": 2}
    raw = np.empty(bgr.shape[:2], np.uint8)
    for index, colour in enumerate(pattern):
        row, column = divmod(index, 2)
        raw[row::2, column::2] = bgr[row::2, column::2, channel[colour]]
    return raw


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_is_demosaiced_with_the_pattern_its_name_says(pattern):
    colour = np.array([30, 120, 220], np.uint8)  # B, G, R all different, so a wrong pattern shows
    scene = np.broadcast_to(colour, (8, 12, 3)).copy()
    raw = mosaic(scene, pattern)
    decoded = decode_image(8, 12, f"bayer_{pattern}8", False, 12, raw.tobytes())
    assert decoded.pixels.shape == (8, 12, 3)
    assert decoded.channel_order == "bgr"
    np.testing.assert_array_equal(decoded.pixels[2:-2, 2:-2], np.broadcast_to(colour, (4, 8, 3)))


def test_bytes_beyond_step_times_height_are_ignored():
    pixels = pixels_for("mono8")
    decoded = decode(encode_image(pixels, "mono8"), data=pixels.tobytes() + b"trailing")
    np.testing.assert_array_equal(decoded.pixels, pixels)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"encoding": "yuv422"}, "unsupported encoding 'yuv422'"),
        ({"encoding": ""}, "unsupported encoding ''"),
        ({"width": 0, "step": 0}, "no pixels"),
        ({"height": 0}, "no pixels"),
        ({"step": 29}, "step 29 is smaller than width × bytes per pixel = 10 × 3"),
        ({"data": bytes(30 * 8 - 1)}, "data has 239 bytes, fewer than step × height = 30 × 8 = 240"),
        ({"data": b""}, "data has 0 bytes"),
        ({"height": MAX_SIDE + 1}, "absurd image size"),
        ({"width": 1 << 40, "step": 3 << 40}, "absurd image size"),
        ({"height": 20000, "width": 20000, "step": 60000}, "absurd image size"),
        ({"height": 4097, "width": 4096, "step": 3 * 4096}, "absurd image size"),
        ({"height": 7}, r"image too small: 10x7 \(bgr8\); SuperPoint needs at least 8x8 pixels"),
        ({"width": 4, "step": 12}, "image too small: 4x8"),
        ({"height": 4, "width": 6, "step": 6, "encoding": "mono8"}, r"image too small: 6x4 \(mono8\)"),
    ],
)
def test_malformed_or_unsupported_images_raise_an_error_naming_the_problem(changes, problem):
    encoded = encode_image(pixels_for("bgr8"), "bgr8")
    with pytest.raises(ImageDecodeError, match=problem):
        decode(encoded, **changes)


@pytest.mark.parametrize(
    ("pixels", "encoding"),
    [
        (np.zeros((4, 4), np.uint8), "bgr8"),
        (np.zeros((4, 4, 3), np.uint16), "bgr8"),
        (np.zeros((4, 4), np.uint8), "yuv422"),
    ],
)
def test_encoding_refuses_arrays_that_do_not_fit_the_encoding(pixels, encoding):
    with pytest.raises(ValueError, match=encoding):
        encode_image(pixels, encoding)


def test_eight_pixels_a_side_decodes():
    pixels = pixels_for("mono8", 8, 8)
    np.testing.assert_array_equal(decode(encode_image(pixels, "mono8")).pixels, pixels)
