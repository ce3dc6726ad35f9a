"""`superpoint-bag`: a rosbag2 bag of camera images in, a bag of SuperPoint keypoints out.

    superpoint-bag recording/ features/ --weights DIR --batch 8 --tracking
    ros2 run superpoint_ros bag recording/ features/
    superpoint_ros.bags.process("recording", "features", weights="DIR")

No ROS install is needed: `rosbags` reads the input (a rosbag2 directory or a single `.mcap`
or `.db3` file, MCAP or sqlite3) and writes the output, with the message definitions embedded.
Each `sensor_msgs/Image` or `sensor_msgs/CompressedImage` (JPEG, PNG) frame becomes one
`superpoint_ros/msg/KeypointArray` with the image's header, on the topic the live detector node
publishes for that camera (`camera_namespace`); `--tracking` adds the tracker node's
`FeatureTracks` (`<camera namespace>/tracks`) and `--vins` its VINS-Fusion `PointCloud`
(`<camera namespace>/feature`), with calibration from `<camera namespace>/camera_info`; with
the tracker's `stereo: true`, cameras `<ns>/left` and `<ns>/right` are tracked as a pair, as
the stereo tracker node in `<ns>` does (`<ns>/feature`). Each output message is stamped in the
bag with its image's receive time.

A thread reads and decodes frames while the network runs on the previous batch. Ctrl-C or
SIGTERM stops after the current batch and closes the output bag, which then holds everything
done so far. See docs/bags.md.
"""

import argparse
import collections
import concurrent.futures
import dataclasses
import io
import logging
import multiprocessing
import os
import pathlib
import queue
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import yaml
from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import McapReader, read_sized, read_string
from tqdm import tqdm

from superpoint_ros import bag_messages
from superpoint_ros.backends import BACKENDS, PRECISIONS
from superpoint_ros.calibration import CALIBRATION_COUNT
from superpoint_ros.camera_model import CameraModel, camera_model
from superpoint_ros.detector import Detections, Detector
from superpoint_ros.frame_calibration import FrameCalibration
from superpoint_ros.image_codec import DecodedImage, ImageDecodeError, decode_compressed_image, decode_image
from superpoint_ros.images import ImageError, check_image
from superpoint_ros.tracking import CameraTracks, Tracker, match_stereo
from superpoint_ros.vins_layout import CameraFeatures, Observations, normalized_velocities, vins_feature_arrays
from superpoint_ros.weights import DEFAULT_WEIGHTS, WeightsError

PROGRAM = "superpoint-bag"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
IMAGE_TYPES = (bag_messages.IMAGE, bag_messages.COMPRESSED_IMAGE)
EXIT_OK, EXIT_READ_ERROR, EXIT_USAGE = 0, 1, 2
# Frames the reader thread may decode ahead of the network, in batches.
READ_AHEAD_BATCHES = 2
PENDING_LIMIT = 8
SKIP_LOG_PERIOD_S = 5.0
# As the tracker node's (tracker_node imports rclpy, this module must not): a frame due after one
# `vins_max_rate` period is not skipped for coming a little early.
RATE_TOLERANCE = 0.95
# Stereo frames waiting for their other half; a stamp older than this many is given up.
PENDING_STEREO_FRAMES = 10
TRACKER_MATCHING = ("nn_threshold", "ratio_threshold", "max_track_gap", "verification", "ransac_threshold")


class BagError(Exception):
    """A bad input, output or option: reported as one line with exit code 2."""


def camera_namespace(image_topic: str) -> str:
    """The namespace a detector node runs in for this camera, whose `image` is remapped to
    `image_topic`: `/cam0/image_raw` and `/cam0/image_raw/compressed` give `/cam0`, `/image`
    gives `` (the root)."""
    topic = "/" + image_topic.strip("/")
    topic = topic.removesuffix("/compressed")
    return topic.rsplit("/", 1)[0]


def _absolute(topic: str) -> str:
    return "/" + topic.strip("/")


def output_namespaces(image_topics: Sequence[str], detector_parameters: dict) -> dict[str, str]:
    """Each input image topic's output namespace. With the node's `image_topics` parameter set
    (several cameras in one node, at the root namespace, so relative names resolve against
    `/`), a topic listed there (or its
    `/compressed`) maps to `/<camera name>`, by `camera_names` or `camera0`, `camera1`, ...;
    any other topic maps to `camera_namespace(topic)`."""
    configured = [_absolute(t) for t in detector_parameters.get("image_topics") or []]
    names = detector_parameters.get("camera_names") or [f"camera{i}" for i in range(len(configured))]
    if len(names) != len(configured):
        raise BagError(f"camera_names has {len(names)} entries but image_topics has {len(configured)}")
    by_topic = dict(zip(configured, names, strict=True))
    namespaces = {}
    for topic in image_topics:
        base = _absolute(topic).removesuffix("/compressed")
        namespaces[topic] = f"/{by_topic[base]}" if base in by_topic else camera_namespace(topic)
    return namespaces


def read_parameters(params_file: str | os.PathLike | None) -> tuple[dict, dict]:
    """The `superpoint_detector` and `superpoint_tracker` parameters of a node parameters
    file (keys `superpoint_detector`, `/**/superpoint_detector`, `/ns/superpoint_detector`
    or `/**`, as `--params-file` applies them); raises `BagError`."""
    if params_file is None:
        return {}, {}
    path = pathlib.Path(params_file)
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise BagError(f"cannot read parameters file {path}: {' '.join(str(error).split())}") from None
    if not isinstance(content, dict):
        raise BagError(f"parameters file {path} is not a mapping of node names to ros__parameters")
    sections: dict[str, dict] = {"superpoint_detector": {}, "superpoint_tracker": {}}
    for key in sorted(content, key=lambda k: k != "/**"):
        node = str(key).rstrip("/").rsplit("/", 1)[-1]
        values = (content[key] or {}).get("ros__parameters", {}) if isinstance(content[key], dict) else {}
        for name, section in sections.items():
            if key == "/**" or node == name:
                section.update(values)
    return sections["superpoint_detector"], sections["superpoint_tracker"]


def detector_arguments(parameters: dict) -> dict:
    """`Detector` keyword arguments from the detector node's parameters (those it lacks keep
    `Detector`'s defaults), as the node passes them; raises `BagError` for an uneven resize."""
    arguments = {}
    names = {
        "weights": "weights",
        "weights_revision": "weights_revision",
        "architecture": "architecture",
        "device": "device",
        "precision": "precision",
        "tensorrt_cache_dir": "tensorrt_cache_dir",
        "int8_calibration": "calibration",
        "int8_calibration_count": "calibration_count",
        "int8_cache_dir": "quantization_cache_dir",
        "keypoint_threshold": "keypoint_threshold",
        "nms_radius": "nms_radius",
        "max_keypoints": "max_keypoints",
        "border_removal_distance": "border_removal_distance",
    }
    for parameter, argument in names.items():
        if parameter in parameters:
            # An empty string stands for "unset" in the node's string parameters.
            arguments[argument] = parameters[parameter] if parameters[parameter] != "" else None
    if "backend" in parameters:
        # Also as the node's parameter reads back: `onnxruntime (CPUExecutionProvider)`.
        arguments["backend"] = str(parameters["backend"]).split(" (", 1)[0]
    resize = (parameters.get("resize_height", 0), parameters.get("resize_width", 0))
    if (resize[0] == 0) != (resize[1] == 0):
        raise BagError(f"resize_height and resize_width must both be 0 or both be set, got {resize}")
    if resize[0]:
        arguments["resize"] = resize
    return arguments


@dataclasses.dataclass
class Summary:
    """What one bag's run did. `skipped` counts frames by reason; `error` is a read error
    (a truncated bag) after which the run stopped."""

    input: str
    output: str
    frames_read: int = 0
    processed: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    keypoints: int = 0
    output_bytes: int = 0
    interrupted: bool = False
    error: str | None = None

    def line(self) -> str:
        """The one-line report printed at the end."""
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.skipped.items()))
        per_frame = self.keypoints / self.processed if self.processed else 0.0
        text = (
            f"{PROGRAM}: {self.input}: {self.frames_read} frames read, {self.processed} processed, {skipped} skipped"
            f"{f' ({reasons})' if reasons else ''}; {per_frame:.1f} keypoints per frame; "
            f"wrote {self.output} ({self.output_bytes / 1e6:.1f} MB)"
        )
        if self.error:
            text += f"; read error: {self.error}"
        if self.interrupted:
            text += "; interrupted, the output holds the frames processed so far"
        return text

    @property
    def exit_code(self) -> int:
        return EXIT_READ_ERROR if self.error else EXIT_OK


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
class TrackedFrame:
    """One camera's image as the tracker node receives its KeypointArray."""

    header: object
    height: int
    width: int
    detections: Detections
    timestamp_ns: int

    @property
    def stamp(self) -> float:
        return self.header.stamp.sec + self.header.stamp.nanosec * 1e-9

    @property
    def stamp_key(self) -> tuple[int, int]:
        return self.header.stamp.sec, self.header.stamp.nanosec


class Tracking:
    """The tracker node's work, without ROS, for what one tracker node would hear: one camera,
    or (`stereo`) a left and a right camera whose frames pair by identical stamps. Its outputs
    (`offer`) are the node's: FeatureTracks per camera, and the VINS-Fusion PointCloud."""

    def __init__(self, parameters: dict, namespaces: list[str], tracks_namespace: str) -> None:
        """`parameters`: the tracker node's; `namespaces`: each camera's (left first);
        `tracks_namespace`: where `feature` goes. Raises `BagError` for a bad parameter."""
        try:
            rate_hz = float(parameters.get("vins_max_rate", 0.0))
            self.tracker = Tracker(
                device=parameters.get("device", "cpu"),
                **{n: parameters[n] for n in TRACKER_MATCHING if n in parameters},
            )
        except (ValueError, TypeError) as error:
            raise BagError(f"superpoint_tracker parameters: {' '.join(str(error).split())}") from None
        self.namespaces = namespaces
        self.feature_topic = f"{tracks_namespace}/feature"
        self.min_track_length = int(parameters.get("min_track_length", 1))
        self.vins_period_s = 1.0 / rate_hz if rate_hz > 0 else 0.0
        self.rectified_input = bool(parameters.get("images_rectified", False))
        self.row_tolerance = float(parameters.get("stereo_row_tolerance", 2.0))
        self.models: list[CameraModel | None] = [None] * len(namespaces)
        self.previous: list[Observations | None] = [None] * len(namespaces)
        self.last_stamp: float | None = None
        self.last_vins_stamp: float | None = None
        self.pending: collections.OrderedDict[tuple[int, int], dict[int, TrackedFrame]] = collections.OrderedDict()
        self.unpaired = 0

    def set_camera_info(self, camera: int, info: object) -> None:
        """Take a `rosbags` CameraInfo; raises `ValueError` for one the camera model refuses."""
        self.models[camera] = camera_model(
            info.width, info.height, info.distortion_model, info.k, info.d, info.r, info.p, self.rectified_input
        )

    def offer(self, camera: int, frame: TrackedFrame) -> list[tuple[str, str, object, int]]:
        """Track `frame` of `camera` (in stereo, once its other half came): the messages to
        write, as `(topic, type, message, receive time ns)`. Raises `ValueError` for detections
        the tracker refuses."""
        if len(self.namespaces) == 1:
            return self._track([frame])
        halves = self.pending.setdefault(frame.stamp_key, {})
        halves[camera] = frame
        outputs = []
        if len(halves) == 2:
            del self.pending[frame.stamp_key]
            outputs = self._track([halves[0], halves[1]])
        while len(self.pending) > PENDING_STEREO_FRAMES:
            self.pending.popitem(last=False)
            self.unpaired += 1
        return outputs

    def _track(self, frames: list[TrackedFrame]) -> list[tuple[str, str, object, int]]:
        stamp = frames[0].stamp
        if self.last_stamp is not None and stamp < self.last_stamp:
            self.tracker.reset()
            self.previous = [None] * len(self.previous)
            self.last_vins_stamp = None
        self.last_stamp = stamp
        left = frames[0].detections
        tracks = self.tracker.update(left, stamp)
        views = [CameraTracks(tracks.ids, tracks.lengths, tracks.ages, left.keypoints, np.arange(len(tracks.ids)))]
        if len(frames) == 2:
            left_rows, right_rows = self._match_stereo(left, frames[1].detections)
            views.append(
                CameraTracks(
                    tracks.ids[left_rows],
                    tracks.lengths[left_rows],
                    tracks.ages[left_rows],
                    frames[1].detections.keypoints[right_rows],
                    right_rows,
                )
            )
        outputs, features = [], []
        for camera, (frame, view) in enumerate(zip(frames, views, strict=True)):
            model = self.models[camera]
            normalized = model.normalized(view.keypoints) if model is not None else None
            shown = np.flatnonzero(view.lengths >= self.min_track_length)
            message = bag_messages.feature_tracks(
                frame.header,
                frame.height,
                frame.width,
                view.select(shown),
                normalized[shown] if normalized is not None else None,
            )
            topic = f"{self.namespaces[camera]}/tracks"
            outputs.append((topic, bag_messages.FEATURE_TRACKS, message, frame.timestamp_ns))
            if normalized is not None:
                current = Observations(view.ids, normalized, stamp)
                velocities = normalized_velocities(current, self.previous[camera])
                self.previous[camera] = current
                features.append(
                    CameraFeatures(camera, view.ids[shown], view.keypoints[shown], normalized[shown], velocities[shown])
                )
        due = self.last_vins_stamp is None or stamp - self.last_vins_stamp >= RATE_TOLERANCE * self.vins_period_s
        if len(features) == len(views) and due:
            self.last_vins_stamp = stamp
            cloud = bag_messages.point_cloud(frames[0].header, *vins_feature_arrays(features))
            outputs.append((self.feature_topic, bag_messages.POINT_CLOUD, cloud, frames[-1].timestamp_ns))
        return outputs

    def _match_stereo(self, left: Detections, right: Detections) -> tuple[np.ndarray, np.ndarray]:
        left_model, right_model = self.models
        if left_model is not None and right_model is not None:
            left_rows, right_rows = left_model.rectified(left.keypoints), right_model.rectified(right.keypoints)
        else:
            left_rows, right_rows = left.keypoints, right.keypoints
        return match_stereo(
            left.descriptors,
            left_rows,
            right.descriptors,
            right_rows,
            self.tracker.settings.nn_threshold,
            self.row_tolerance,
            self.tracker.device,
        )


@dataclasses.dataclass
class Camera:
    """One input image topic and what is written for it."""

    image_topic: str
    namespace: str
    tracking: Tracking | None = None
    index: int = 0  # in `tracking`: 0, or 1 for the right camera of a stereo pair

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


class ThrottledLines:
    """Prints a line per (topic, reason) at most every `period_s`, with the count so far."""

    def __init__(self, write: Callable[[str], None], prefix: str, period_s: float = SKIP_LOG_PERIOD_S) -> None:
        self._write = write
        self._prefix = prefix
        self._period_s = period_s
        self._last_s: dict[tuple[str, str], float] = {}
        self._counts: collections.Counter = collections.Counter()

    def __call__(self, topic: str, reason: str, text: str) -> None:
        key = (topic, reason)
        self._counts[key] += 1
        now_s = time.monotonic()
        if now_s - self._last_s.get(key, -self._period_s) >= self._period_s:
            self._last_s[key] = now_s
            self._write(f"{self._prefix}skipped a frame on {topic}: {text} ({self._counts[key]} {reason} so far)")


def default_batch(detector: Detector) -> int:
    """Batch size when none is given: larger on a GPU, whose throughput grows with it."""
    return 16 if detector.device.type == "cuda" else 4


def _tree_size(path: pathlib.Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _check_output(input_path: pathlib.Path, output: pathlib.Path, overwrite: bool) -> None:
    source, target = input_path.resolve(), output.resolve()
    if target == source or source in target.parents or (source.is_file() and target == source.parent):
        raise BagError(f"output {output} would write into the input {input_path}")
    if output.exists() and not overwrite:
        raise BagError(f"output {output} exists; give --overwrite to replace it")


def _remove(path: pathlib.Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _copy_connection(writer: Writer, connection: Connection) -> Connection:
    """An output connection carrying `connection`'s type, definition and QoS unchanged."""
    if connection.msgdef.data and connection.digest:
        return writer.add_connection(
            connection.topic,
            connection.msgtype,
            msgdef=connection.msgdef.data,
            rihs01=connection.digest,
            serialization_format=connection.ext.serialization_format,
            offered_qos_profiles=connection.ext.offered_qos_profiles,
        )
    return writer.add_connection(connection.topic, connection.msgtype, typestore=bag_messages.typestore())


def process(
    input_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    topics: Sequence[str] | None = None,
    params_file: str | os.PathLike | None = None,
    weights: str | None = None,
    device: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    batch: int | None = None,
    storage: str = "mcap",
    tracking: bool = False,
    vins: bool = False,
    copy_input: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    stop: threading.Event | None = None,
    log: Callable[[str], None] | None = None,
    list_topics: bool = True,
    detector: Detector | None = None,
) -> Summary:
    """Run SuperPoint over the image topics of the bag at `input_path` and write `output`.

    Options as the command's (see `main` and docs/bags.md); `detector` replaces the one built
    from the parameters (the weights and engine options are then ignored). `stop` (set by a
    signal handler) ends the run after the current batch with a valid, closed bag. `log` hears
    the topic list (with `list_topics`) and the throttled skip lines (default: stderr). Raises
    `BagError` for a bad input, output or option, before anything is written.
    """
    input_path, output = pathlib.Path(input_path), pathlib.Path(output)
    write_line = log or (lambda text: print(text, file=sys.stderr, flush=True))
    if storage not in STORAGES:
        raise BagError(f"unknown output storage '{storage}' (choose {' or '.join(STORAGES)})")
    if batch is not None and batch < 1:
        raise BagError(f"--batch must be at least 1, got {batch}")
    tracking = tracking or vins
    detector_parameters, tracker_parameters = read_parameters(params_file)
    calibration = None
    _check_output(input_path, output, overwrite)
    reader, cut_note = open_reader(input_path)
    try:
        selected = select_topics(image_topics_of(reader), topics)
        namespaces = output_namespaces(selected, detector_parameters)
        clashes = [ns for ns, n in collections.Counter(namespaces.values()).items() if n > 1]
        if clashes:
            raise BagError(f"several image topics map to {', '.join(f'{ns}/keypoints' for ns in clashes)}")
        if detector is None:
            arguments = detector_arguments(detector_parameters)
            overrides = {"weights": weights, "device": device, "backend": backend, "precision": precision}
            arguments.update({name: value for name, value in overrides.items() if value is not None})
            arguments.setdefault("weights", DEFAULT_WEIGHTS)
            # As the node does: int8 calibrated on the first frames starts as float32.
            on_frames = arguments.get("precision") == "int8" and arguments.get("calibration") == "frames"
            if on_frames:
                arguments["precision"] = "float32"
            try:
                detector = Detector(**arguments)
                if on_frames:
                    count = arguments.get("calibration_count", CALIBRATION_COUNT)
                    calibration = FrameCalibration(detector, count, logging.getLogger(PROGRAM))
            except (WeightsError, ValueError, TypeError) as error:
                raise BagError(" ".join(str(error).split())) from None
        cameras = {topic: Camera(topic, namespaces[topic]) for topic in selected}
        if tracking:
            _attach_tracking(list(cameras.values()), tracker_parameters)
        if overwrite:
            _remove(output)
        summary = Summary(str(input_path), str(output))
        if cut_note:
            summary.error = cut_note
        counts = {topic: reader.topics[topic].msgcount for topic in selected}
        for topic in selected:
            out = f"{cameras[topic].namespace}/keypoints"
            if list_topics:
                write_line(f"{PROGRAM}: {topic} ({reader.topics[topic].msgtype}, {counts[topic]} frames) -> {out}")
        _run(
            reader,
            output,
            storage,
            cameras,
            detector,
            calibration,
            batch or default_batch(detector),
            copy_input,
            vins,
            summary,
            progress,
            stop,
            write_line,
            sum(counts.values()) or None,
        )
    finally:
        reader.close()
    return summary


def _attach_tracking(cameras: list[Camera], parameters: dict) -> None:
    """One `Tracking` per camera, or with the tracker's `stereo: true` one for the pair whose
    namespaces are `<ns>/left` and `<ns>/right` (as the stereo tracker node in `<ns>` hears
    them), whose `feature` goes to `<ns>/feature`. Raises `BagError`."""
    if not parameters.get("stereo"):
        for camera in cameras:
            camera.tracking = Tracking(parameters, [camera.namespace], camera.namespace)
        return
    by_namespace = {camera.namespace: camera for camera in cameras}
    pairs = [
        (by_namespace[ns], by_namespace[ns.removesuffix("/left") + "/right"])
        for ns in by_namespace
        if ns.endswith("/left") and ns.removesuffix("/left") + "/right" in by_namespace
    ]
    if len(pairs) != 1 or len(cameras) != 2:
        found = ", ".join(sorted(by_namespace)) or "none"
        raise BagError(
            "stereo tracking needs exactly two image topics whose cameras are <namespace>/left and "
            f"<namespace>/right (pick them with --topics); cameras found: {found}"
        )
    left, right = pairs[0]
    tracking = Tracking(parameters, [left.namespace, right.namespace], left.namespace.removesuffix("/left"))
    left.tracking, right.tracking = tracking, tracking
    right.index = 1


def _run(
    reader: Reader,
    output: pathlib.Path,
    storage: str,
    cameras: dict[str, Camera],
    detector: Detector,
    calibration: FrameCalibration | None,
    batch: int,
    copy_input: bool,
    vins: bool,
    summary: Summary,
    progress: bool,
    stop: threading.Event | None,
    write_line: Callable[[str], None],
    total: int | None,
) -> None:
    info_topics = {camera.info_topic for camera in cameras.values()}
    connections = [
        c
        for c in reader.connections
        if (c.topic in cameras and c.msgtype in IMAGE_TYPES)
        or (c.topic in info_topics and c.msgtype == bag_messages.CAMERA_INFO)
    ]
    store = bag_messages.typestore()
    writer = Writer(output, version=9, storage_plugin=STORAGES[storage])
    writer.open()
    bar = tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True, leave=False)
    log = bar.write if progress else write_line
    skip_line = ThrottledLines(log, f"{PROGRAM}: {summary.input}: ")
    frames = FrameReader(reader, connections, cameras, READ_AHEAD_BATCHES * batch)
    try:
        outputs: dict[str, Connection] = {}

        def connection(topic: str, type_name: str) -> Connection:
            if topic not in outputs:
                outputs[topic] = writer.add_connection(topic, type_name, typestore=store)
            return outputs[topic]

        copies = {c.id: _copy_connection(writer, c) for c in connections} if copy_input else {}
        pending: list[Record] = []
        images = 0
        for record in frames:
            pending.append(record)
            images += record.image is not None
            # Skipped frames and CameraInfos wait with the batch, up to a bound on what is held.
            if images < batch and len(pending) < PENDING_LIMIT * batch:
                continue
            _flush(pending, detector, calibration, writer, connection, copies, vins, summary, skip_line, bar)
            pending, images = [], 0
            if stop is not None and stop.is_set():
                summary.interrupted = True
                break
        else:
            _flush(pending, detector, calibration, writer, connection, copies, vins, summary, skip_line, bar)
            if frames.error:
                summary.error = frames.error if not summary.error else f"{summary.error}; {frames.error}"
    finally:
        frames.close()
        bar.close()
        writer.close()
    summary.output_bytes = _tree_size(output)


def _flush(
    records: list[Record],
    detector: Detector,
    calibration: FrameCalibration | None,
    writer: Writer,
    connection: Callable[[str, str], Connection],
    copies: dict[int, Connection],
    vins: bool,
    summary: Summary,
    skip_line: ThrottledLines,
    bar,
) -> None:
    """Run the network on the images of `records` (grouped as the node groups a batch), then
    write everything in bag order."""
    groups: dict[tuple, list[Record]] = {}
    for record in records:
        if record.image is not None:
            pixels = record.image.pixels
            groups.setdefault((pixels.shape, pixels.dtype, record.image.channel_order), []).append(record)
    results: dict[int, Detections] = {}
    for (_, _, channel_order), group in groups.items():
        if calibration is not None and calibration.wants_frames:
            calibration.offer(group[0].image.pixels, channel_order)
        try:
            detections = detector.detect([record.image.pixels for record in group], channel_order)
        except Exception as error:  # as in the node: a failed batch costs its frames, not the run
            for record in group:
                record.image, record.skipped, record.problem = None, "inference failed", repr(error)
            continue
        results.update({id(record): result for record, result in zip(group, detections, strict=True)})
    for record in records:
        if record.connection.id in copies:
            writer.write(copies[record.connection.id], record.timestamp_ns, record.data)
        camera = record.camera
        if record.camera_info is not None:
            if camera.tracking is not None:
                try:
                    camera.tracking.set_camera_info(camera.index, record.camera_info)
                except ValueError as error:
                    skip_line(record.connection.topic, "CameraInfo ignored", str(error))
            continue
        if camera is None or record.connection.msgtype not in IMAGE_TYPES:
            continue
        summary.frames_read += 1
        bar.update(1)
        if record.image is None:
            summary.skipped[record.skipped] += 1
            skip_line(record.connection.topic, record.skipped, record.problem)
            continue
        detections = results[id(record)]
        height, width = record.image.pixels.shape[:2]
        message = bag_messages.keypoint_array(detections, record.header, height, width, detector.descriptor_size)
        keypoints_topic = f"{camera.namespace}/keypoints"
        writer.write(
            connection(keypoints_topic, bag_messages.KEYPOINT_ARRAY),
            record.timestamp_ns,
            bag_messages.serialize(message),
        )
        summary.processed += 1
        summary.keypoints += len(detections.scores)
        if camera.tracking is None:
            continue
        frame = TrackedFrame(record.header, height, width, detections, record.timestamp_ns)
        try:
            outputs = camera.tracking.offer(camera.index, frame)
        except ValueError as error:
            skip_line(record.connection.topic, "not tracked", str(error))
            continue
        for topic, type_name, output, timestamp_ns in outputs:
            if type_name != bag_messages.POINT_CLOUD or vins:
                writer.write(connection(topic, type_name), timestamp_ns, bag_messages.serialize(output))


def is_bag(path: pathlib.Path) -> bool:
    """A rosbag2 directory, or a single `.mcap` or `.db3` file."""
    if path.is_file():
        return path.suffix in (".mcap", ".db3")
    return path.is_dir() and ((path / "metadata.yaml").exists() or any(path.glob("*.mcap")) or any(path.glob("*.db3")))


def expand_inputs(inputs: Sequence[pathlib.Path]) -> tuple[list[pathlib.Path], bool]:
    """The bags named by `inputs` (a directory that is not a bag stands for the bags in it),
    and whether OUTPUT is then a directory of outputs. Raises `BagError`."""
    bags = []
    for path in inputs:
        if not path.exists():
            raise BagError(f"{path}: no such file or directory")
        if path.is_dir() and not is_bag(path):
            inside = sorted(p for p in path.iterdir() if is_bag(p))
            if not inside:
                raise BagError(f"{path}: not a rosbag2 bag, and no bag in it")
            bags.extend(inside)
        else:
            bags.append(path)
    return bags, len(bags) > 1 or len(inputs) > 1 or bags[0] not in inputs


def output_for(bag: pathlib.Path, directory: pathlib.Path) -> pathlib.Path:
    """`directory/<bag name>`, without the `.mcap` or `.db3` suffix of a single file."""
    return directory / (bag.stem if bag.is_file() else bag.name)


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        """One line and exit code 2, instead of the usage block."""
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    parser.add_argument(
        "paths",
        nargs="+",
        type=pathlib.Path,
        metavar="INPUT ... OUTPUT",
        help="bags (rosbag2 directories, .mcap or .db3 files, or a directory of bags), then OUTPUT",
    )
    parser.add_argument(
        "--topics",
        action="extend",
        type=lambda text: [topic for topic in text.split(",") if topic],
        help="image topics to process, comma-separated or repeated (default: every image topic)",
    )
    parser.add_argument("--storage", default="mcap", choices=STORAGES, help="output storage (default: %(default)s)")
    parser.add_argument("--tracking", action="store_true", help="also write FeatureTracks (<camera>/tracks)")
    parser.add_argument("--vins", action="store_true", help="also write VINS-Fusion PointClouds (<camera>/feature)")
    parser.add_argument("--copy-input", action="store_true", help="also copy the image and camera_info topics")
    parser.add_argument("--params-file", type=pathlib.Path, help="the nodes' YAML parameters file")
    parser.add_argument(
        "--weights", help=f"hub repo id, local directory or file, or 'random' (default: {DEFAULT_WEIGHTS})"
    )
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--backend", choices=BACKENDS, help="network engine (default: auto)")
    parser.add_argument("--precision", choices=PRECISIONS, help="default float32")
    parser.add_argument("--batch", type=int, help="frames per network run (default: 4 on the CPU, 16 on CUDA)")
    parser.add_argument("--jobs", type=int, default=1, help="bags processed at once, in worker processes")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or topic list")
    arguments = parser.parse_args(argv)
    if len(arguments.paths) < 2:
        parser.error("give INPUT and OUTPUT")
    if arguments.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {arguments.jobs}")
    return arguments


def _options(arguments: argparse.Namespace) -> dict:
    return {
        "topics": arguments.topics,
        "params_file": arguments.params_file,
        "weights": arguments.weights,
        "device": arguments.device,
        "backend": arguments.backend,
        "precision": arguments.precision,
        "batch": arguments.batch,
        "storage": arguments.storage,
        "tracking": arguments.tracking,
        "vins": arguments.vins,
        "copy_input": arguments.copy_input,
        "overwrite": arguments.overwrite,
    }


_worker_stop = None


def _start_worker(stop, threads: int) -> None:
    """In each `--jobs` worker: the parent's stop event, and a share of the CPU threads."""
    global _worker_stop
    import torch

    _worker_stop = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent sets `stop`
    torch.set_num_threads(threads)


def _process_in_worker(input_path: pathlib.Path, output: pathlib.Path, options: dict) -> Summary | str:
    try:
        return process(input_path, output, stop=_worker_stop, list_topics=False, **options)
    except BagError as error:
        return f"{PROGRAM}: {input_path}: {error}"


def main(argv: Sequence[str] | None = None) -> int:
    """The command; returns the exit code (see docs/bags.md)."""
    try:
        arguments = parse_arguments(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed in one line
        return exit_.code
    *inputs, output = arguments.paths
    stop = threading.Event()
    signals: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        signals.append(signum)
        stop.set()

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        bags, many = expand_inputs(inputs)
        if many:
            return _main_many(bags, output, arguments, stop, signals)
        summary = process(
            bags[0],
            output,
            progress=not arguments.quiet and sys.stderr.isatty(),
            stop=stop,
            list_topics=not arguments.quiet,
            **_options(arguments),
        )
    except BagError as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(summary.line(), file=sys.stderr)
    return 128 + signals[0] if summary.interrupted and signals else summary.exit_code


def _main_many(
    bags: list[pathlib.Path], output: pathlib.Path, arguments: argparse.Namespace, stop, signals: list[int]
) -> int:
    """One output per bag in the directory `output`, `--jobs` worker processes."""
    if output.exists() and not output.is_dir():
        raise BagError(f"output {output} must be a directory when there are several bags")
    outputs = [output_for(bag, output) for bag in bags]
    duplicates = [str(o) for o, n in collections.Counter(outputs).items() if n > 1]
    if duplicates:
        raise BagError(f"several bags would write {', '.join(duplicates)}")
    for bag, target in zip(bags, outputs, strict=True):
        _check_output(bag, target, arguments.overwrite)
    output.mkdir(parents=True, exist_ok=True)
    options = _options(arguments)
    context = multiprocessing.get_context("spawn")
    worker_stop = context.Event()
    threads = max(1, (os.cpu_count() or 1) // arguments.jobs)
    codes = []
    with concurrent.futures.ProcessPoolExecutor(
        arguments.jobs, mp_context=context, initializer=_start_worker, initargs=(worker_stop, threads)
    ) as pool:
        futures = [
            pool.submit(_process_in_worker, bag, target, options) for bag, target in zip(bags, outputs, strict=True)
        ]
        pending = set(futures)
        while pending:
            done, pending = concurrent.futures.wait(pending, timeout=0.2)
            if stop.is_set() and not worker_stop.is_set():
                worker_stop.set()
                for future in pending:
                    future.cancel()
            for future in done:
                if future.cancelled():
                    continue
                result = future.result()
                if isinstance(result, str):
                    print(result, file=sys.stderr)
                    codes.append(EXIT_USAGE)
                else:
                    print(result.line(), file=sys.stderr)
                    codes.append(result.exit_code)
    if signals:
        return 128 + signals[0]
    return max(codes, default=EXIT_OK)


if __name__ == "__main__":
    sys.exit(main())
