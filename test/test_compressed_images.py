"""`CompressedImage` payloads as image_transport's `compressed` publisher writes them: OpenCV's
own encoder makes them, OpenCV's decoder of the original array is the oracle."""

import cv2
import numpy as np
import pytest

from superpoint_ros.image_codec import ImageDecodeError, compression_of, decode_compressed_image

from conftest import structured_image


def encoded(pixels: np.ndarray, extension: str) -> bytes:
    ok, buffer = cv2.imencode(extension, pixels)
    assert ok
    return buffer.tobytes()


@pytest.mark.parametrize(
    ("format_field", "codec"),
    [
        ("bgr8; jpeg compressed bgr8", "jpeg"),
        ("rgb8; jpeg compressed bgr8", "jpeg"),
        ("mono8; png compressed mono8", "png"),
        ("mono16; png compressed mono16", "png"),
        ("jpeg", "jpeg"),
        ("jpg", "jpeg"),
        ("PNG", "png"),
    ],
)
def test_image_transport_and_bare_format_strings_name_their_codec(format_field, codec):
    assert compression_of(format_field) == codec


@pytest.mark.parametrize("format_field", ["16UC1; compressedDepth png", "webp", "", "bgr8; theora compressed bgr8"])
def test_unsupported_formats_are_refused_by_name(format_field):
    with pytest.raises(ImageDecodeError, match="compressedDepth|unsupported compressed format"):
        compression_of(format_field)


def test_a_jpeg_decodes_to_the_bgr_pixels_opencv_decodes():
    bgr = structured_image(96, 128, seed=3)
    payload = encoded(bgr, ".jpg")
    decoded = decode_compressed_image("bgr8; jpeg compressed bgr8", payload)
    assert decoded.channel_order == "bgr"
    np.testing.assert_array_equal(decoded.pixels, cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR))
    assert np.abs(decoded.pixels.astype(int) - bgr).mean() < 8, "a JPEG of the frame, not another image"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_png_of_grey_pixels_decodes_losslessly_in_its_own_depth(dtype):
    grey = structured_image(64, 80, seed=4)[..., 1].astype(dtype) * (257 if dtype == np.uint16 else 1)
    decoded = decode_compressed_image("mono16; png compressed mono16", encoded(grey, ".png"))
    assert decoded.pixels.dtype == dtype
    np.testing.assert_array_equal(decoded.pixels, grey)


def test_a_png_of_colour_pixels_decodes_losslessly_to_bgr():
    bgr = structured_image(64, 80, seed=5)
    decoded = decode_compressed_image("png", encoded(bgr, ".png"))
    np.testing.assert_array_equal(decoded.pixels, bgr)


@pytest.mark.parametrize("extension", [".jpg", ".png"])
def test_a_truncated_payload_is_refused(extension):
    payload = encoded(structured_image(64, 80, seed=6), extension)
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_compressed_image(extension[1:], payload[: len(payload) * 2 // 3])


def test_a_payload_that_is_not_the_named_codec_is_refused():
    payload = encoded(structured_image(64, 80, seed=6), ".png")
    with pytest.raises(ImageDecodeError, match="not a JPEG"):
        decode_compressed_image("bgr8; jpeg compressed bgr8", payload)
    with pytest.raises(ImageDecodeError, match="not a PNG"):
        decode_compressed_image("png", b"\x00" * 100)


def test_corrupt_jpeg_data_with_intact_markers_is_refused_or_decodes_to_the_declared_size():
    payload = bytearray(encoded(structured_image(64, 80, seed=7), ".jpg"))
    header_end = payload.index(b"\xff\xda")  # start of scan: keep the headers, garble the entropy-coded data
    payload[header_end + 20 : -2] = bytes(len(payload) - header_end - 22)
    try:
        decoded = decode_compressed_image("jpeg", bytes(payload))
    except ImageDecodeError as error:
        assert "corrupt jpeg" in str(error)
    else:
        assert decoded.pixels.shape[:2] == (64, 80)


@pytest.mark.parametrize("extension", [".jpg", ".png"])
def test_a_header_claiming_an_absurd_size_is_refused_before_decoding(extension):
    payload = bytearray(encoded(np.zeros((16, 16), np.uint8), extension))
    if extension == ".png":
        payload[16:24] = (40000).to_bytes(4, "big") + (40000).to_bytes(4, "big")
    else:
        frame = next(i for i in range(2, len(payload) - 1) if payload[i] == 0xFF and payload[i + 1] == 0xC0)
        payload[frame + 5 : frame + 9] = (65000).to_bytes(2, "big") + (65000).to_bytes(2, "big")
    with pytest.raises(ImageDecodeError, match="absurd image size"):
        decode_compressed_image(extension[1:], bytes(payload))
