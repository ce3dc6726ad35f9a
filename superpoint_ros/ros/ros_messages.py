"""Building and reading our ROS messages quickly.

The generated setter of a `float32[]` field checks a numpy array element by element (~50 ms
for 512k floats); an `array.array('f')` is taken as it is (~0.5 ms). So every array field is
filled through `array.array` from the array's bytes, and read back with `np.frombuffer`.

The image messages live in `image_messages` (no torch, for camera processes) and are re-exported
here, where the nodes and tools have always taken them from.
"""

import array

import numpy as np
from geometry_msgs.msg import Point32
from sensor_msgs.msg import CameraInfo, ChannelFloat32, PointCloud
from std_msgs.msg import Header

from superpoint_ros.camera_model import CameraModel
from superpoint_ros.feature_types import CameraTracks, Detections
from superpoint_ros.msg import FeatureTracks, KeypointArray
from superpoint_ros.ros.image_messages import decode_frame_message, decode_image_message, image_message
from superpoint_ros.tracker_inputs import camera_model_input
from superpoint_ros.vins_layout import CHANNEL_NAMES

__all__ = [
    "camera_model_from_message",
    "decode_frame_message",
    "decode_image_message",
    "detections_from_message",
    "feature_tracks_message",
    "image_message",
    "keypoint_array_message",
    "point_cloud_message",
]


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


def _uint32_array(values: np.ndarray) -> array.array:
    return array.array("I", np.ascontiguousarray(values, dtype=np.uint32).tobytes())


def feature_tracks_message(
    header: Header,
    height: int,
    width: int,
    tracks: CameraTracks,
    normalized: np.ndarray | None,
) -> FeatureTracks:
    """A `FeatureTracks` of one camera's `tracks`; `normalized` `(N, 2)`, or None when no
    CameraInfo is known."""
    message = FeatureTracks()
    message.header = header
    message.height = height
    message.width = width
    message.ids = _uint32_array(tracks.ids)
    message.keypoints = _float32_array(tracks.keypoints)
    if normalized is not None:
        message.normalized = _float32_array(normalized)
    message.lengths = _uint32_array(tracks.lengths)
    message.ages = _uint32_array(tracks.ages)
    message.keypoint_indices = _uint32_array(tracks.keypoint_indices)
    return message


def point_cloud_message(header: Header, points: np.ndarray, channels: np.ndarray) -> PointCloud:
    """A `sensor_msgs/PointCloud` of `(M, 3)` points and `(C, M)` channels named
    `vins_layout.CHANNEL_NAMES` (see `vins_layout.vins_feature_arrays`)."""
    message = PointCloud()
    message.header = header
    message.points = [Point32(x=x, y=y, z=z) for x, y, z in points.tolist()]
    message.channels = [
        ChannelFloat32(name=name, values=_float32_array(values))
        for name, values in zip(CHANNEL_NAMES, channels, strict=True)
    ]
    return message


def camera_model_from_message(message: CameraInfo, rectified_input: bool = False) -> CameraModel:
    """The `CameraModel` of a received CameraInfo, validated (`tracker_inputs.camera_model_input`);
    raises `ValueError` naming what makes it unusable."""
    return camera_model_input(message, rectified_input)
