"""Our messages as `rosbags` builds and serialises them, with no ROS install.

`superpoint_ros.ros.ros_messages` fills rclpy messages for the nodes; this module fills the same
fields of `rosbags`' message classes, so that `superpoint-bag` writes what the nodes publish
(test/test_bags.py reads the bag's CDR back with rclpy and compares it with the nodes' messages
field by field; the raw bytes differ only in CDR padding, which Fast CDR leaves unset). The message types
come from this package's `.msg` files, registered in a `rosbags` typestore with ROS 2 Jazzy's
standard types; the bag writer embeds their definitions, so a reader needs no `superpoint_ros`.
"""

import functools
import pathlib
import sys

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from superpoint_ros.feature_types import CameraTracks, Detections
from superpoint_ros.image_codec import encode_image
from superpoint_ros.vins_layout import CHANNEL_NAMES

KEYPOINT_ARRAY = "superpoint_ros/msg/KeypointArray"
FEATURE_TRACKS = "superpoint_ros/msg/FeatureTracks"
POINT_CLOUD = "sensor_msgs/msg/PointCloud"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
OUR_TYPES = (KEYPOINT_ARRAY, FEATURE_TRACKS)


def message_definition_dirs() -> list[pathlib.Path]:
    """Where this package's `.msg` files may be: the source tree (also behind colcon's
    symlink install), the ament share directory of a colcon install, and the `share/` that a
    pip install puts them in."""
    dirs = [pathlib.Path(__file__).resolve().parent.parent / "msg"]
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(pathlib.Path(get_package_share_directory("superpoint_ros")) / "msg")
    except (ImportError, LookupError, OSError):  # no ROS, no sourced workspace, or not installed there
        pass
    dirs.append(pathlib.Path(sys.prefix) / "share" / "superpoint_ros" / "msg")
    return dirs


@functools.cache
def typestore() -> Typestore:
    """ROS 2 Jazzy's standard types plus `superpoint_ros/msg/*`; raises `FileNotFoundError`
    when the `.msg` files are nowhere to be found."""
    store = get_typestore(Stores.ROS2_JAZZY)
    for type_name in OUR_TYPES:
        file_name = f"{type_name.rsplit('/', 1)[1]}.msg"
        dirs = message_definition_dirs()
        path = next((d / file_name for d in dirs if (d / file_name).is_file()), None)
        if path is None:
            raise FileNotFoundError(f"{file_name} not found in {', '.join(map(str, dirs))}")
        store.register(get_types_from_msg(path.read_text(), type_name))
    return store


def serialize(message: object) -> bytes:
    """The CDR bytes of a `rosbags` message, as rclpy serialises the same message."""
    return bytes(typestore().serialize_cdr(message, message.__msgtype__))


def deserialize(data: bytes | memoryview, type_name: str) -> object:
    return typestore().deserialize_cdr(data, type_name)


def _float32(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float32).reshape(-1)


def _uint32(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.uint32).reshape(-1)


def image(pixels: np.ndarray, encoding: str, header: object) -> object:
    """A `sensor_msgs/Image` holding `pixels` packed as `image_codec.encode_image` packs them;
    fields as `image_messages.image_message`. For bags that tests and benchmarks write."""
    encoded = encode_image(pixels, encoding)
    return typestore().types[IMAGE](
        header=header,
        height=encoded.height,
        width=encoded.width,
        encoding=encoded.encoding,
        is_bigendian=int(encoded.is_bigendian),
        step=encoded.step,
        data=np.frombuffer(encoded.data, np.uint8),
    )


def keypoint_array(detections: Detections, header: object, height: int, width: int, descriptor_size: int) -> object:
    """A `KeypointArray` for one image of `height × width` pixels; `header` (a `rosbags`
    `std_msgs/msg/Header`) is kept as given. Fields as `ros_messages.keypoint_array_message`."""
    return typestore().types[KEYPOINT_ARRAY](
        header=header,
        height=height,
        width=width,
        descriptor_size=descriptor_size,
        keypoints=_float32(detections.keypoints),
        scores=_float32(detections.scores),
        descriptors=_float32(detections.descriptors),
    )


def feature_tracks(
    header: object, height: int, width: int, tracks: CameraTracks, normalized: np.ndarray | None
) -> object:
    """A `FeatureTracks` of one camera's `tracks`; `normalized` `(N, 2)`, or None when no
    CameraInfo is known. Fields as `ros_messages.feature_tracks_message`."""
    return typestore().types[FEATURE_TRACKS](
        header=header,
        height=height,
        width=width,
        ids=_uint32(tracks.ids),
        keypoints=_float32(tracks.keypoints),
        normalized=_float32(normalized if normalized is not None else np.empty(0)),
        lengths=_uint32(tracks.lengths),
        ages=_uint32(tracks.ages),
        keypoint_indices=_uint32(tracks.keypoint_indices),
    )


def point_cloud(header: object, points: np.ndarray, channels: np.ndarray) -> object:
    """A `sensor_msgs/PointCloud` of `(M, 3)` points and `(C, M)` channels named
    `vins_layout.CHANNEL_NAMES`, as `ros_messages.point_cloud_message`."""
    types = typestore().types
    point32, channel = types["geometry_msgs/msg/Point32"], types["sensor_msgs/msg/ChannelFloat32"]
    return types[POINT_CLOUD](
        header=header,
        points=[point32(x=x, y=y, z=z) for x, y, z in np.asarray(points, np.float32).tolist()],
        channels=[
            channel(name=name, values=_float32(values)) for name, values in zip(CHANNEL_NAMES, channels, strict=True)
        ],
    )
