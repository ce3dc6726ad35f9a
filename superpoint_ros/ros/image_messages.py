"""`sensor_msgs/Image` and `CompressedImage` messages ⇄ numpy arrays (see `image_codec`).

Only numpy, OpenCV and the message types: a camera process that publishes frames imports this,
not `ros_messages`, whose keypoint and track messages pull in the detector and torch.
"""

import array

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from superpoint_ros.image_codec import DecodedImage, decode_compressed_image, decode_image, encode_image


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
