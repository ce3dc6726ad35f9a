"""Reading a rosbag2 bag for `superpoint-bag`: opening it (also an MCAP file cut short), picking
its image topics, and a thread that reads the messages in bag order and decodes the images
ahead of the network."""

import dataclasses
import io
import os
import pathlib
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader, ReaderError
from rosbags.rosbag2.storage_mcap import McapReader, read_sized, read_string

from superpoint_ros import bag_messages
from superpoint_ros.bag_parameters import BagError
from superpoint_ros.image_codec import DecodedImage, ImageDecodeError, decode_compressed_image, decode_image
from superpoint_ros.numpy_images import ImageError, check_image

if TYPE_CHECKING:  # the tracker imports torch: only `--tracking` runs load it
    from superpoint_ros.bag_tracking import BagTracking

IMAGE_TYPES = (bag_messages.IMAGE, bag_messages.COMPRESSED_IMAGE)


class _CutShortMcapReader(McapReader):
    """An MCAP file whose writer never finished (a recorder killed, a copy cut short): without
    a footer or summary its records are scanned from the start, up to the first incomplete one,
    which raises `ReaderError` from `messages`."""

    def _open(self) -> None:
        bio = self.bio
        size = bio.seek(0, os.SEEK_END)
        bio.seek(0)
        if bio.read(8) != b"\x89MCAP0\r\n" or bio.read(1) != b"\x01":
            raise ReaderError("File magic is invalid.")
        if read_string(io.BytesIO(read_sized(bio))) != "ros2":
            raise ReaderError("Profile is not ros2.")
        self.data_start, self.data_end = bio.tell(), size
        try:
            self.meta_scan()
        except (ReaderError, TypeError, ValueError):
            pass  # the cut: `messages` meets it again and reports it


def _storage_file(path: pathlib.Path) -> pathlib.Path | None:
    """The single `.mcap` of a bag directory, for reading it without its metadata."""
    files = sorted(path.glob("*.mcap"))
    return files[0] if len(files) == 1 else None


def open_reader(path: pathlib.Path) -> tuple[Reader, str | None]:
    """An open reader of the bag at `path`, and a note when it is cut short (no MCAP footer:
    the messages are read up to the cut). Raises `BagError` naming the problem."""
    if not path.exists():
        raise BagError(f"{path}: no such file or directory")
    target = path
    if path.is_dir() and not (path / "metadata.yaml").exists():
        files = sorted([*path.glob("*.mcap"), *path.glob("*.db3")])
        if len(files) != 1:
            raise BagError(f"{path}: not a rosbag2 bag (no metadata.yaml and no single .mcap or .db3 file)")
        target = files[0]
    try:
        reader = Reader(target)
        reader.open()
        return reader, None
    except ReaderError as error:
        cut = str(error) == "File end magic is invalid."
        file = target if target.is_file() else _storage_file(target)
        if not cut or file is None:
            raise BagError(f"{path}: not a readable rosbag2 bag: {' '.join(str(error).split())}") from None
    except Exception as error:  # rosbags' sqlite3 and YAML layers raise their own kinds
        raise BagError(f"{path}: not a readable rosbag2 bag: {' '.join(str(error).split())}") from None
    reader = Reader(file)
    reader.storage = _CutShortMcapReader(file)
    try:
        reader.open()
    except ReaderError as error:
        raise BagError(f"{path}: not a readable rosbag2 bag: {error}") from None
    return reader, "the MCAP file is cut short (no footer)"


def image_topics_of(reader: Reader) -> dict[str, str]:
    """Image topic → message type, for every Image and CompressedImage topic of the bag."""
    return {c.topic: c.msgtype for c in reader.connections if c.msgtype in IMAGE_TYPES}


def select_topics(available: dict[str, str], requested: Sequence[str] | None) -> list[str]:
    """The image topics to process: `requested` (each must be in the bag), or all of them, with
    a `…/compressed` topic left out when its raw topic is there too (both would map to the
    same output). Raises `BagError`."""
    if not available:
        raise BagError("the bag has no sensor_msgs/Image or sensor_msgs/CompressedImage topic")
    if requested:
        missing = [topic for topic in requested if topic not in available]
        if missing:
            raise BagError(
                f"topic(s) {', '.join(missing)} not among the bag's image topics: {', '.join(sorted(available))}"
            )
        return list(dict.fromkeys(requested))
    return [
        t for t in sorted(available) if not (t.endswith("/compressed") and t.removesuffix("/compressed") in available)
    ]


@dataclasses.dataclass
class Camera:
    """One input image topic and what is written for it."""

    image_topic: str
    namespace: str
    tracking: "BagTracking | None" = None
    camera_id: int = 0  # in `tracking`: 0, or 1 for the right camera of a stereo pair

    @property
    def info_topic(self) -> str:
        return f"{self.namespace}/camera_info"


@dataclasses.dataclass
class Record:
    """One input message in bag order. An image has `image` (decoded) or `skipped` (a reason)
    and `problem`; a CameraInfo has `camera_info`."""

    connection: Connection
    timestamp_ns: int
    data: bytearray
    camera: Camera | None = None
    header: object = None
    image: DecodedImage | None = None
    skipped: str | None = None
    problem: str | None = None
    camera_info: object = None


def skip_reason(problem: str) -> str:
    """A short reason for the summary, from an `ImageDecodeError` or `ImageError` text."""
    if problem.startswith("unsupported"):
        return "unsupported encoding"
    if "too small" in problem or "needs at least" in problem:
        return "too small"
    return "undecodable"


def decode_record(record: Record) -> None:
    """Deserialise and decode an image record in place; a bad frame gets `skipped`."""
    try:
        message = bag_messages.deserialize(record.data, record.connection.msgtype)
    except Exception as error:  # rosbags raises whatever a corrupt buffer triggers
        record.skipped, record.problem = "undecodable", f"cannot deserialise: {error!r}"
        return
    record.header = message.header
    try:
        if record.connection.msgtype == bag_messages.COMPRESSED_IMAGE:
            decoded = decode_compressed_image(message.format, message.data)
        else:
            decoded = decode_image(
                message.height, message.width, message.encoding, bool(message.is_bigendian), message.step, message.data
            )
        check_image(decoded.pixels)
    except (ImageDecodeError, ImageError) as error:
        record.skipped, record.problem = skip_reason(str(error)), str(error)
        return
    record.image = decoded


_END = object()


class FrameReader:
    """A thread that reads the bag in order and decodes images, at most `ahead` records ahead
    of the consumer. Iterating yields `Record`s; `error` holds the read error that ended it."""

    def __init__(self, reader: Reader, connections: list[Connection], cameras: dict[str, Camera], ahead: int):
        self._reader = reader
        self._connections = connections
        self._cameras = cameras
        self._info_cameras = {camera.info_topic: camera for camera in cameras.values()}
        self._queue: queue.Queue = queue.Queue(maxsize=ahead)
        self._stopping = threading.Event()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._read, name="bag_reader", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            for connection, timestamp_ns, data in self._reader.messages(connections=self._connections):
                # Writable, so that torch takes the decoded pixels without a warning.
                record = Record(connection, timestamp_ns, bytearray(data))
                if connection.topic in self._cameras and connection.msgtype in IMAGE_TYPES:
                    record.camera = self._cameras[connection.topic]
                    decode_record(record)
                elif connection.msgtype == bag_messages.CAMERA_INFO and connection.topic in self._info_cameras:
                    record.camera = self._info_cameras[connection.topic]
                    try:
                        record.camera_info = bag_messages.deserialize(record.data, connection.msgtype)
                    except Exception as error:  # as above: a corrupt buffer
                        record.problem = f"cannot deserialise: {error!r}"
                if not self._put(record):
                    return
        except Exception as error:  # a truncated or corrupt bag: report it, keep what was read
            self.error = " ".join(str(error).split()) or repr(error)
        self._put(_END)

    def __iter__(self) -> Iterator[Record]:
        while (item := self._queue.get()) is not _END:
            yield item

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()


def is_bag(path: pathlib.Path) -> bool:
    """A rosbag2 directory, or a single `.mcap` or `.db3` file."""
    if path.is_file():
        return path.suffix in (".mcap", ".db3")
    return path.is_dir() and ((path / "metadata.yaml").exists() or any(path.glob("*.mcap")) or any(path.glob("*.db3")))
