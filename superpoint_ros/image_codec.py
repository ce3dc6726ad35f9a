"""`sensor_msgs/Image` fields ⇄ numpy arrays, without ROS and without cv_bridge.

`decode_image` turns the fields of a received image into an array that `Detector.detect`
takes, plus the channel order to pass it. Sizes the network cannot take (under `MIN_SIDE` = 8
pixels on a side) are refused here, like malformed layouts. Where the layout allows (native
byte order, no demosaicing) the array is a view of the message buffer: rows are `step` bytes
apart, so padded rows cost nothing either. Big-endian 16/32-bit data is byte-swapped into a
copy, and `bayer_*8` is demosaiced to BGR by OpenCV.

`decode_compressed_image` does the same for a `sensor_msgs/CompressedImage` as image_transport's
`compressed` transport writes it (JPEG or PNG, decoded by OpenCV).

`encode_image` is the reverse for publishing (tests, the demo and the debug image).
"""

import dataclasses
import struct
import sys

import cv2
import numpy as np

MIN_SIDE = 8
"""Fewest pixels per side: the network pools by 2 three times, so it needs one whole 8×8 cell
(`model.CELL_SIZE`). It lives here, not beside the network, so that decoding an image, and a camera
process that only encodes them, never import torch; `images` takes it from here."""


@dataclasses.dataclass(frozen=True)
class Encoding:
    """How one `encoding` string lays out a pixel: element type, channels, colour order."""

    dtype: np.dtype
    channels: int
    channel_order: str = "bgr"
    bayer_to_bgr: int | None = None

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


_UINT8, _UINT16, _FLOAT32 = np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)

# OpenCV names a Bayer pattern after the second row's second and third pixels, ROS after the
# top-left 2×2 block; so ROS `rggb` is OpenCV `BayerBG`, and so on.
ENCODINGS: dict[str, Encoding] = {
    "mono8": Encoding(_UINT8, 1),
    "8UC1": Encoding(_UINT8, 1),
    "mono16": Encoding(_UINT16, 1),
    "16UC1": Encoding(_UINT16, 1),
    "32FC1": Encoding(_FLOAT32, 1),
    "bgr8": Encoding(_UINT8, 3),
    "8UC3": Encoding(_UINT8, 3),
    "rgb8": Encoding(_UINT8, 3, "rgb"),
    "bgra8": Encoding(_UINT8, 4),
    "8UC4": Encoding(_UINT8, 4),
    "rgba8": Encoding(_UINT8, 4, "rgb"),
    "bgr16": Encoding(_UINT16, 3),
    "16UC3": Encoding(_UINT16, 3),
    "rgb16": Encoding(_UINT16, 3, "rgb"),
    "bayer_rggb8": Encoding(_UINT8, 1, bayer_to_bgr=cv2.COLOR_BayerBG2BGR),
    "bayer_bggr8": Encoding(_UINT8, 1, bayer_to_bgr=cv2.COLOR_BayerRG2BGR),
    "bayer_gbrg8": Encoding(_UINT8, 1, bayer_to_bgr=cv2.COLOR_BayerGR2BGR),
    "bayer_grbg8": Encoding(_UINT8, 1, bayer_to_bgr=cv2.COLOR_BayerGB2BGR),
}

# A header claiming more is corrupt or hostile. The pixel cap also bounds the network's memory:
# its first layers hold about 0.5–0.8 KB per input pixel, so 16.7 Mpx (4096×4096) peaks near
# 13 GB, and a frame much larger than that could get the node killed for lack of memory.
MAX_SIDE = 1 << 15
MAX_PIXELS = 1 << 24

_NATIVE_BYTE_ORDER = "<" if sys.byteorder == "little" else ">"


class ImageDecodeError(ValueError):
    """An image message that cannot be turned into pixels; the message names the fault."""


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    """`pixels`: `H×W` or `H×W×C` array as `Detector.detect` takes it; `channel_order`: the
    colour order of its first three channels (`"bgr"` or `"rgb"`)."""

    pixels: np.ndarray
    channel_order: str

    def bgr_view(self) -> np.ndarray:
        """The pixels with colour channels in B, G, R order (alpha dropped); a view, no copy."""
        if self.pixels.ndim == 2:
            return self.pixels
        return self.pixels[..., 2::-1] if self.channel_order == "rgb" else self.pixels[..., :3]


def decode_image(
    height: int, width: int, encoding: str, is_bigendian: bool, step: int, data: bytes | memoryview
) -> DecodedImage:
    """Pixels of an image given as `sensor_msgs/Image` fields; raises `ImageDecodeError`.

    `data` is anything exposing the buffer protocol (rclpy gives an `array.array('B')`).
    Bytes past `step * height` are ignored.
    """
    layout = ENCODINGS.get(encoding)
    if layout is None:
        raise ImageDecodeError(f"unsupported encoding '{encoding}' (supported: {', '.join(ENCODINGS)})")
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"image has no pixels: {width}x{height} ({encoding})")
    if height > MAX_SIDE or width > MAX_SIDE or height * width > MAX_PIXELS:
        raise ImageDecodeError(
            f"absurd image size {width}x{height} ({encoding}); at most {MAX_SIDE} per side and {MAX_PIXELS} pixels"
        )
    if height < MIN_SIDE or width < MIN_SIDE:
        raise ImageDecodeError(
            f"image too small: {width}x{height} ({encoding}); SuperPoint needs at least {MIN_SIDE}x{MIN_SIDE} pixels"
        )
    row_bytes = width * layout.bytes_per_pixel
    if step < row_bytes:
        raise ImageDecodeError(
            f"step {step} is smaller than width × bytes per pixel = {width} × {layout.bytes_per_pixel} ({encoding})"
        )
    buffer = np.frombuffer(data, np.uint8)
    if buffer.size < step * height:
        raise ImageDecodeError(
            f"data has {buffer.size} bytes, fewer than step × height = {step} × {height} = {step * height}"
        )
    rows = buffer[: step * height].reshape(height, step)[:, :row_bytes]
    byte_order = ">" if is_bigendian else "<"
    pixels = rows.view(layout.dtype.newbyteorder(byte_order))
    if layout.dtype.itemsize > 1 and byte_order != _NATIVE_BYTE_ORDER:
        pixels = pixels.astype(layout.dtype)
    pixels = pixels.reshape(height, width, layout.channels) if layout.channels > 1 else pixels
    if layout.bayer_to_bgr is not None:
        return DecodedImage(cv2.cvtColor(pixels, layout.bayer_to_bgr), "bgr")
    return DecodedImage(pixels, layout.channel_order)


@dataclasses.dataclass(frozen=True)
class EncodedImage:
    """The `sensor_msgs/Image` fields of an array, rows packed (`step = width × bytes per pixel`)."""

    height: int
    width: int
    encoding: str
    is_bigendian: bool
    step: int
    data: bytes


def encode_image(pixels: np.ndarray, encoding: str) -> EncodedImage:
    """Pack `pixels` (`H×W` or `H×W×C`, matching `encoding`'s dtype and channel count)."""
    layout = ENCODINGS.get(encoding)
    if layout is None:
        raise ValueError(f"unsupported encoding '{encoding}' (supported: {', '.join(ENCODINGS)})")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if pixels.ndim not in (2, 3) or channels != layout.channels or pixels.dtype != layout.dtype:
        raise ValueError(
            f"{encoding} needs {layout.channels} channel(s) of {layout.dtype}, "
            f"got shape {pixels.shape} of {pixels.dtype}"
        )
    height, width = pixels.shape[:2]
    return EncodedImage(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=_NATIVE_BYTE_ORDER == ">",
        step=width * layout.bytes_per_pixel,
        data=np.ascontiguousarray(pixels).tobytes(),
    )


COMPRESSIONS = ("jpeg", "png")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
# JPEG start-of-frame markers (all but DHT C4, JPG C8 and DAC CC), which carry the image size.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def compression_of(format_field: str) -> str:
    """The codec named by a `CompressedImage.format`: image_transport writes
    `"<encoding>; <codec> compressed <encoding>"` (`"bgr8; jpeg compressed bgr8"`), older
    drivers and bags a bare `"jpeg"` or `"png"`. Raises `ImageDecodeError` for anything else,
    such as `compressedDepth`, whose PNG carries depth quantisation parameters."""
    text = format_field.strip().lower()
    if "compresseddepth" in text:
        raise ImageDecodeError(f"format '{format_field}' is compressedDepth, which this node does not decode")
    if ";" in text:
        text = text.split(";", 1)[1].split("compressed", 1)[0]
    codec = {"jpg": "jpeg"}.get(text.strip(), text.strip())
    if codec not in COMPRESSIONS:
        raise ImageDecodeError(f"unsupported compressed format '{format_field}' (supported: jpeg, png)")
    return codec


def _compressed_size(codec: str, data: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG or PNG header, so that a hostile size is refused before the
    decoder allocates it; raises `ImageDecodeError` for a payload that is not that codec."""
    if codec == "png":
        if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 24:
            raise ImageDecodeError("data is not a PNG image (no PNG signature and IHDR header)")
        return struct.unpack(">II", data[16:24])
    if not data.startswith(_JPEG_START):
        raise ImageDecodeError("data is not a JPEG image (no start-of-image marker)")
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            raise ImageDecodeError(f"corrupt JPEG header at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        if marker in _JPEG_FRAME_MARKERS:
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        position += 2 + length
    raise ImageDecodeError("truncated JPEG: no frame header")


def decode_compressed_image(format_field: str, data: bytes | memoryview) -> DecodedImage:
    """Pixels of a `sensor_msgs/CompressedImage`; raises `ImageDecodeError`.

    OpenCV decodes colour to BGR whatever encoding the publisher started from (image_transport
    converts colour to `bgr8`/`bgr16` before compressing), and keeps grey and 16-bit PNGs as
    they are. A payload cut short (no JPEG end-of-image marker, no PNG `IEND` chunk) is refused
    rather than decoded into a partly grey frame.
    """
    codec = compression_of(format_field)
    payload = np.frombuffer(data, np.uint8)
    raw = payload.tobytes()
    width, height = _compressed_size(codec, raw)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"{codec} image has no pixels: {width}x{height}")
    if height > MAX_SIDE or width > MAX_SIDE or height * width > MAX_PIXELS:
        raise ImageDecodeError(
            f"absurd image size {width}x{height} ({codec}); at most {MAX_SIDE} per side and {MAX_PIXELS} pixels"
        )
    tail = payload[-len(_PNG_END) :].tobytes()
    if (codec == "png" and tail != _PNG_END) or (codec == "jpeg" and not tail.endswith(_JPEG_END)):
        raise ImageDecodeError(f"truncated {codec} data ({payload.size} bytes): its end marker is missing")
    pixels = cv2.imdecode(payload, cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ImageDecodeError(f"corrupt {codec} data ({payload.size} bytes): OpenCV cannot decode it")
    if pixels.dtype not in (_UINT8, _UINT16) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
        raise ImageDecodeError(f"{codec} decoded to an unsupported layout: shape {pixels.shape} of {pixels.dtype}")
    return DecodedImage(pixels, "bgr")
