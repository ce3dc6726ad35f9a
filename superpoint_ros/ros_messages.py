"""Building and reading our ROS messages quickly.

The generated setter of a `float32[]` field checks a numpy array element by element (~50 ms
for 512k floats); an `array.array('f')` is taken as it is (~0.5 ms). So every array field is
filled through `array.array` from the array's bytes, and read back with `np.frombuffer`.
"""

import array

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from superpoint_ros.detector import Detections
from superpoint_ros.image_codec import DecodedImage, decode_compressed_image, decode_image, encode_image
from superpoint_ros.msg import KeypointArray


def _float32_array(values: np.ndarray) -> array.array:
    return array.array("f", np.ascontiguousarray(values, dtype=np.float32).tobytes())


def keypoint_array_message(
    detections: Detections, header: Header, height: int, width: int, descriptor_size: int
) -> KeypointArray:
    """A `KeypointArray` for one image of `height × width` pixels; `header` is kept as given."""
    message = KeypointArray()
    message.header = header
    message.height = height
    message.width = width
    message.descriptor_size = descriptor_size
    message.keypoints = _float32_array(detections.keypoints)
    message.scores = _float32_array(detections.scores)
    message.descriptors = _float32_array(detections.descriptors)
    return message


def detections_from_message(message: KeypointArray) -> Detections:
    """The arrays of a received `KeypointArray`, as `Detections` viewing the message buffers."""
    keypoints = np.frombuffer(message.keypoints, np.float32).reshape(-1, 2)
    descriptors = np.frombuffer(message.descriptors, np.float32).reshape(len(keypoints), message.descriptor_size)
    return Detections(keypoints, np.frombuffer(message.scores, np.float32), descriptors)


def image_message(pixels: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """A `sensor_msgs/Image` holding a packed copy of `pixels` (see `image_codec.encode_image`)."""
    encoded = encode_image(pixels, encoding)
    message = Image()
    if header is not None:
        message.header = header
    message.height = encoded.height
    message.width = encoded.width
    message.encoding = encoded.encoding
    message.is_bigendian = encoded.is_bigendian
    message.step = encoded.step
    message.data = array.array("B", encoded.data)
    return message


def decode_image_message(message: Image) -> DecodedImage:
    """The pixels of a received image; raises `image_codec.ImageDecodeError` if it is malformed."""
    return decode_image(
        message.height, message.width, message.encoding, bool(message.is_bigendian), message.step, message.data
    )


def decode_frame_message(message: Image | CompressedImage) -> DecodedImage:
    """The pixels of a received `Image` or `CompressedImage`; raises `ImageDecodeError`."""
    if isinstance(message, CompressedImage):
        return decode_compressed_image(message.format, message.data)
    return decode_image_message(message)
