"""`superpoint_ros.bags.process`: one bag in, one bag of keypoints (and tracks) out. The network
runs batch after batch while `bag_reading.FrameReader` decodes the next frames; the outputs are
written in bag order, each stamped with its image's receive time."""

import collections
import dataclasses
import logging
import os
import pathlib
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from tqdm import tqdm

from superpoint_ros import bag_messages
from superpoint_ros.bag_parameters import BagError, detector_arguments, output_namespaces, read_parameters
from superpoint_ros.bag_reading import (
    IMAGE_TYPES,
    Camera,
    FrameReader,
    Record,
    image_topics_of,
    open_reader,
    select_topics,
)
from superpoint_ros.calibration import CALIBRATION_COUNT
from superpoint_ros.detector_choice import create_detector
from superpoint_ros.feature_types import DEFAULT_WEIGHTS, Detections
from superpoint_ros.frame_tracking import Problem
from superpoint_ros.weights_files import WeightsError

if TYPE_CHECKING:  # torch: imported only where it is used (tracking, int8 on frames), not by a plain run
    from superpoint_ros.detector import Detector
    from superpoint_ros.frame_calibration import FrameCalibration

PROGRAM = "superpoint-bag"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
EXIT_OK, EXIT_READ_ERROR, EXIT_USAGE = 0, 1, 2
# Frames the reader thread may decode ahead of the network, in batches.
READ_AHEAD_BATCHES = 2
PENDING_LIMIT = 8
SKIP_LOG_PERIOD_S = 5.0


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


class ThrottledLines:
    """Prints a line per (topic, reason) at most every `period_s`, with the count so far, and
    the tracker's problems as throttled."""

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

    def report(self, problems: list[Problem]) -> None:
        """Print the tracker's problems, each at most every `period_s` (by `Problem.key`)."""
        now_s = time.monotonic()
        for problem in problems:
            key = ("tracker", problem.key or problem.text)
            if now_s - self._last_s.get(key, -self._period_s) >= self._period_s:
                self._last_s[key] = now_s
                self._write(f"{self._prefix}{problem.text}")


def default_batch(detector: "Detector") -> int:
    """Batch size when none is given: larger on a GPU, whose throughput grows with it."""
    return 16 if detector.device.type == "cuda" else 4


def _tree_size(path: pathlib.Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_output(input_path: pathlib.Path, output: pathlib.Path, overwrite: bool) -> None:
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
    detector: "Detector | None" = None,
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
    check_output(input_path, output, overwrite)
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
                detector = create_detector(**arguments)
                if on_frames:
                    from superpoint_ros.frame_calibration import FrameCalibration

                    count = arguments.get("calibration_count", CALIBRATION_COUNT)
                    calibration = FrameCalibration(detector, count, logging.getLogger(PROGRAM))
            except (WeightsError, ValueError, TypeError) as error:
                raise BagError(" ".join(str(error).split())) from None
        cameras = {topic: Camera(topic, namespaces[topic]) for topic in selected}
        if tracking:
            from superpoint_ros.bag_tracking import trackings

            by_namespace = trackings([camera.namespace for camera in cameras.values()], tracker_parameters, vins)
            for camera in cameras.values():
                camera.tracking, camera.camera_id = by_namespace[camera.namespace]
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
            summary,
            progress,
            stop,
            write_line,
            sum(counts.values()) or None,
        )
    finally:
        reader.close()
    return summary


def _run(
    reader: Reader,
    output: pathlib.Path,
    storage: str,
    cameras: dict[str, Camera],
    detector: "Detector",
    calibration: "FrameCalibration | None",
    batch: int,
    copy_input: bool,
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
            _flush(pending, detector, calibration, writer, connection, copies, summary, skip_line, bar)
            pending, images = [], 0
            if stop is not None and stop.is_set():
                summary.interrupted = True
                break
        else:
            _flush(pending, detector, calibration, writer, connection, copies, summary, skip_line, bar)
            if frames.error:
                summary.error = frames.error if not summary.error else f"{summary.error}; {frames.error}"
    finally:
        frames.close()
        bar.close()
        writer.close()
    summary.output_bytes = _tree_size(output)


def _flush(
    records: list[Record],
    detector: "Detector",
    calibration: "FrameCalibration | None",
    writer: Writer,
    connection: Callable[[str, str], Connection],
    copies: dict[int, Connection],
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
                skip_line.report(camera.tracking.frames.offer_camera_info(camera.camera_id, record.camera_info))
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
        outputs, problems = camera.tracking.offer_keypoints(camera.camera_id, message, record.timestamp_ns)
        skip_line.report(problems)
        for topic, type_name, output, timestamp_ns in outputs:
            writer.write(connection(topic, type_name), timestamp_ns, bag_messages.serialize(output))
