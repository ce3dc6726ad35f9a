"""One tracker's work, message by message, without ROS: what the `superpoint_tracker` node does
with each KeypointArray and CameraInfo, and what `superpoint-bag --tracking` does with each
image's keypoints, written once so that both give the same tracks and VINS-Fusion features.

`FrameTracking` serves one camera, or a stereo pair whose frames pair by identical stamps. It
validates the inputs (`tracker_inputs`), runs the `Tracker` on the left (or only) camera, gives
the right camera's keypoints the ids of the left ones they match on the same rectified row,
computes normalized coordinates (dropping non-finite ones: the last guard), and the VINS-Fusion
arrays when `vins_max_rate` lets them out. It returns what to output and the `Problem`s to log;
the callers turn those into messages and log lines. It takes any object with the fields of a
`KeypointArray` or `CameraInfo` (rclpy's messages, `rosbags`' ones). Pixels: x right, y down,
(0, 0) the centre of the top-left pixel; stamps in seconds.

Why one module over 400 lines: the mono and stereo paths, the normalized coordinates and the
VINS-Fusion rate limit act on one frame's state in turn; split, each part would reach into the
others' per-camera state.
"""

import dataclasses
from collections import OrderedDict

import numpy as np

from superpoint_ros.camera_model import CameraModel
from superpoint_ros.feature_types import CameraTracks, Detections, Tracks
from superpoint_ros.tracker_inputs import (
    DEFAULT_MAX_INPUT_KEYPOINTS,
    OVER_CAP,
    InputRejected,
    KeypointInput,
    camera_model_input,
    keypoint_input,
    stereo_problem,
)
from superpoint_ros.vins_layout import (
    CameraFeatures,
    Observations,
    finite_features,
    normalized_velocities,
    vins_feature_arrays,
)

# Stamps jitter: a frame due after one `vins_max_rate` period is not skipped for coming a little early.
RATE_TOLERANCE = 0.95
# Stereo frames waiting for their other half; a stamp older than this many is given up.
PENDING_STEREO_FRAMES = 10
INFO, WARNING, ERROR = "info", "warning", "error"


@dataclasses.dataclass
class TrackerCounters:
    """Counts since start. `rejected`: KeypointArrays dropped as malformed; `keypoints_dropped`:
    rows dropped from accepted ones (non-finite, zero descriptor, outside the image, over
    `max_input_keypoints`); `keypoints_renormalised`: descriptors rescaled to unit length;
    `camera_info_rejected`: CameraInfos ignored as invalid; `stereo_unmatched`: stereo frames
    whose right camera could not be matched (invalid pair of CameraInfos, other descriptor size);
    `non_finite_dropped`: observations the last guard kept from the outputs; `restarts`: new
    streams (descriptor size change, stamps going back); `unpaired`: stereo frames whose other
    half never came; `vins_published`, `vins_skipped`: frames with and without VINS output
    (without: for want of CameraInfo, or because of `vins_max_rate`)."""

    frames: int = 0
    rejected: int = 0
    keypoints_dropped: int = 0
    keypoints_renormalised: int = 0
    camera_info_rejected: int = 0
    stereo_unmatched: int = 0
    non_finite_dropped: int = 0
    restarts: int = 0
    unpaired: int = 0
    vins_published: int = 0
    vins_skipped: int = 0


@dataclasses.dataclass(frozen=True)
class Problem:
    """A line for the log. `level`: INFO, WARNING or ERROR; `key`: what repeats are throttled by
    (the text when None; a key without the counts keeps varying counts from flooding);
    `diagnosed`: the latest problem to show on /diagnostics (every error is)."""

    level: str
    text: str
    key: str | None = None
    diagnosed: bool = False


def _error(text: str) -> Problem:
    return Problem(ERROR, text, diagnosed=True)


def stamp_seconds(message) -> float:
    """The header stamp of `message` in seconds."""
    return message.header.stamp.sec + message.header.stamp.nanosec * 1e-9


def stamp_key(message) -> tuple[int, int]:
    """The header stamp of `message` as `(sec, nanosec)`, exact for pairing."""
    return message.header.stamp.sec, message.header.stamp.nanosec


@dataclasses.dataclass
class CameraState:
    """One input camera: the topic names its problems mention, its latest valid calibration, the
    `(width, height)` of its last accepted KeypointArray (a CameraInfo must describe that image)
    and its last observations (for velocities)."""

    camera_id: int
    keypoints_topic: str = ""
    camera_info_topic: str = ""
    model: CameraModel | None = None
    image_size: tuple[int, int] | None = None
    previous: Observations | None = None


@dataclasses.dataclass(frozen=True)
class Received:
    """One camera's accepted KeypointArray: the `message` (its header and size go on the
    outputs), its usable rows `valid`, and `received_ns` as offered (a bag's receive time)."""

    message: object
    valid: KeypointInput
    received_ns: int | None


@dataclasses.dataclass(frozen=True)
class CameraOutput:
    """One camera's share of a tracked frame: its input `received`; `tracks`, the observations
    shown (tracks seen in at least `min_track_length` frames, with finite normalized
    coordinates); `normalized` `(N, 2)` theirs, or None without a CameraInfo for this image."""

    received: Received
    tracks: CameraTracks
    normalized: np.ndarray | None


@dataclasses.dataclass(frozen=True)
class TrackedFrame:
    """A tracked frame: `cameras`, the left (or only) one first; `tracks`, the left camera's
    `Tracks`, row i for its keypoint i of `keypoints` `(N, 2)` (for the debug overlay); `vins`,
    VINS-Fusion's `(points (M, 3), channels (9, M))` when that output is on and due, else None."""

    cameras: list[CameraOutput]
    tracks: Tracks
    keypoints: np.ndarray
    vins: tuple[np.ndarray, np.ndarray] | None


@dataclasses.dataclass
class Outcome:
    """What one offered KeypointArray led to: `accepted` (False: refused whole), the `frame`
    when it completed one and tracking succeeded, and the `problems` to log, in order."""

    accepted: bool = False
    frame: TrackedFrame | None = None
    problems: list[Problem] = dataclasses.field(default_factory=list)


class FrameTracking:
    """The per-frame work of one tracker (see the module docstring). `tracker`: a
    `tracking.Tracker`; `counters` are updated in place. `min_track_length`, `row_tolerance`
    (pixels) and `vins_max_rate` (Hz, 0: every frame) may change between frames."""

    def __init__(
        self,
        tracker,
        counters: TrackerCounters,
        *,
        stereo: bool = False,
        rectified_input: bool = False,
        row_tolerance: float = 2.0,
        min_track_length: int = 1,
        vins_output: bool = False,
        vins_max_rate: float = 0.0,
        max_input_keypoints: int = DEFAULT_MAX_INPUT_KEYPOINTS,
    ) -> None:
        self.tracker = tracker
        self.counters = counters
        self.cameras = [CameraState(camera_id) for camera_id in range(2 if stereo else 1)]
        self.rectified_input = rectified_input
        self.row_tolerance = row_tolerance
        self.min_track_length = min_track_length
        self.vins_output = vins_output
        self.vins_max_rate = vins_max_rate
        self.max_input_keypoints = max_input_keypoints
        self._last_stamp: float | None = None
        self._last_vins_stamp: float | None = None
        self._pending: OrderedDict[tuple[int, int], dict[int, Received]] = OrderedDict()

    @property
    def stereo(self) -> bool:
        return len(self.cameras) == 2

    def offer_camera_info(self, camera_id: int, message) -> list[Problem]:
        """Take `message` (a CameraInfo) as the calibration of camera `camera_id` (0: left or
        only) unless it is invalid or describes another image size than the keypoints'; then
        the last valid one stays in use, and the problem is returned."""
        camera = self.cameras[camera_id]
        try:
            model = camera_model_input(message, self.rectified_input)
        except InputRejected as error:
            return [self._reject_camera_info(camera, str(error))]
        if camera.image_size is not None and (model.width, model.height) != camera.image_size:
            width, height = camera.image_size
            problem = f"it is {model.width}×{model.height} but the keypoints' image is {width}×{height}"
            return [self._reject_camera_info(camera, problem)]
        camera.model = model
        return []

    def _reject_camera_info(self, camera: CameraState, problem: str) -> Problem:
        self.counters.camera_info_rejected += 1
        kept = "the last valid one stays in use" if camera.model is not None else "no valid one yet"
        return _error(f"Ignored CameraInfo on '{camera.camera_info_topic}' ({kept}): {problem}")

    def offer_keypoints(self, camera_id: int, message, received_ns: int | None = None) -> Outcome:
        """Validate `message` (a KeypointArray) of camera `camera_id` and track it (in stereo,
        once the other camera's half with the same stamp came)."""
        camera = self.cameras[camera_id]
        outcome = Outcome()
        try:
            valid = keypoint_input(message, self.max_input_keypoints)
        except InputRejected as error:
            self.counters.rejected += 1
            outcome.problems.append(_error(f"Dropped a KeypointArray from '{camera.keypoints_topic}': {error}"))
            return outcome
        outcome.accepted = True
        camera.image_size = (message.width, message.height)
        outcome.problems += self._dropped_rows(camera, message, valid)
        halves = self._pair(camera_id, Received(message, valid, received_ns))
        if halves:
            try:
                outcome.frame = self._track(halves, outcome.problems)
            except Exception as error:  # one bad frame must not end the stream (the node's executor, a bag's run)
                outcome.problems.append(_error(f"Tracking failed, frame dropped: {error!r}"))
        return outcome

    def _dropped_rows(self, camera: CameraState, message, valid: KeypointInput) -> list[Problem]:
        self.counters.keypoints_dropped += valid.dropped_total
        self.counters.keypoints_renormalised += valid.renormalised
        problems = []
        topic = camera.keypoints_topic
        if valid.dropped:
            reasons = ", ".join(f"{rows} {reason}" for reason, rows in valid.dropped.items())
            text = (
                f"Dropped {valid.dropped_total} of {len(message.scores)} keypoints of a "
                f"{message.width}×{message.height} frame from '{topic}': {reasons}"
            )
            if OVER_CAP in valid.dropped:
                text += f" (max_input_keypoints: {self.max_input_keypoints})"
            problems.append(Problem(WARNING, text, key=f"{topic}: {', '.join(valid.dropped)}", diagnosed=True))
        if valid.renormalised:
            text = f"Renormalised {valid.renormalised} descriptors of non-unit length from '{topic}'"
            problems.append(Problem(WARNING, text, key=f"{topic}: renormalised"))
        return problems

    def _pair(self, camera_id: int, received: Received) -> list[Received]:
        """The frame to track now: `[received]` for one camera; in stereo `[left, right]` once
        both halves of a stamp came, else nothing."""
        if not self.stereo:
            return [received]
        key = stamp_key(received.message)
        halves = self._pending.setdefault(key, {})
        halves[camera_id] = received
        pair = []
        if len(halves) == 2:
            del self._pending[key]
            pair = [halves[0], halves[1]]
        while len(self._pending) > PENDING_STEREO_FRAMES:
            self._pending.popitem(last=False)
            self.counters.unpaired += 1
        return pair

    def _restart(self) -> None:
        self.counters.restarts += 1
        for camera in self.cameras:
            camera.previous = None
        self._last_vins_stamp = None

    def _track(self, halves: list[Received], problems: list[Problem]) -> TrackedFrame:
        """Track one frame: the left (or only) camera's `halves[0]`, and in stereo the right
        camera's `halves[1]`, whose keypoints take the ids of the left ones they match."""
        stamp = stamp_seconds(halves[0].message)
        if self._last_stamp is not None and stamp < self._last_stamp:
            problems.append(Problem(INFO, "The stamps went back (a bag restarted?): tracks start afresh"))
            self.tracker.reset()
            self._restart()
        self._last_stamp = stamp
        detections = [Detections(h.valid.keypoints, h.valid.scores, h.valid.descriptors) for h in halves]
        left = detections[0]
        size_before = self.tracker.descriptor_size
        tracks = self.tracker.update(left, stamp)
        if tracks.restarted:
            self._restart()
            size = left.descriptors.shape[1]
            problems.append(
                Problem(
                    WARNING,
                    f"The descriptor size on '{self.cameras[0].keypoints_topic}' changed from {size_before} to "
                    f"{size} (another detector or model?): tracks start afresh",
                    key=f"restart {size_before} {size}",
                )
            )
        self.counters.frames += 1
        views = [CameraTracks(tracks.ids, tracks.lengths, tracks.ages, left.keypoints, halves[0].valid.rows)]
        if self.stereo:
            left_rows, right_rows = self._match_stereo(left, detections[1], problems)
            views.append(
                CameraTracks(
                    tracks.ids[left_rows],
                    tracks.lengths[left_rows],
                    tracks.ages[left_rows],
                    detections[1].keypoints[right_rows],
                    halves[1].valid.rows[right_rows],
                )
            )
        outputs, features = [], []
        for camera, received, view in zip(self.cameras, halves, views, strict=True):
            normalized = self._normalized(camera, received.message, view.keypoints, problems)
            shown = view.lengths >= self.min_track_length
            if normalized is not None:
                # The last guard: no non-finite value leaves in the normalized coordinates.
                finite = np.isfinite(normalized).all(axis=1)
                self.counters.non_finite_dropped += int(np.count_nonzero(shown & ~finite))
                shown &= finite
            shown = np.flatnonzero(shown)
            outputs.append(
                CameraOutput(received, view.select(shown), normalized[shown] if normalized is not None else None)
            )
            if normalized is not None:
                current = Observations(view.ids, normalized, stamp)
                velocities = normalized_velocities(current, camera.previous)
                camera.previous = current
                features.append(
                    CameraFeatures(
                        camera.camera_id, view.ids[shown], view.keypoints[shown], normalized[shown], velocities[shown]
                    )
                )
        vins = self._vins(features if len(features) == len(views) else [], stamp, problems)
        return TrackedFrame(outputs, tracks, left.keypoints, vins)

    def _normalized(
        self, camera: CameraState, message, pixels: np.ndarray, problems: list[Problem]
    ) -> np.ndarray | None:
        """`(N, 2)` normalized coordinates of `pixels` by the camera's CameraInfo, or None when
        there is none for an image of this message's size."""
        model = camera.model
        if model is None:
            return None
        if (model.width, model.height) != (message.width, message.height):
            problems.append(
                _error(
                    f"CameraInfo on '{camera.camera_info_topic}' is {model.width}×{model.height} but the keypoints' "
                    f"image is {message.width}×{message.height}: no normalized coordinates until they agree"
                )
            )
            return None
        return model.normalized(pixels)

    def _match_stereo(
        self, left: Detections, right: Detections, problems: list[Problem]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of `left` and `right` that match (`tracking.match_stereo`); none, with a problem,
        when the pair cannot be matched."""
        left_model, right_model = self.cameras[0].model, self.cameras[1].model
        problem = None
        if left.descriptors.shape[1] != right.descriptors.shape[1]:
            problem = (
                f"left descriptors have {left.descriptors.shape[1]} dimensions, right ones {right.descriptors.shape[1]}"
            )
        elif left_model is not None and right_model is not None:
            problem = stereo_problem(left_model, right_model)
        if problem:
            self.counters.stereo_unmatched += 1
            problems.append(_error(f"Right keypoints not matched: {problem}"))
            return np.empty(0, np.int64), np.empty(0, np.int64)
        if left_model is not None and right_model is not None:
            left_rows, right_rows = left_model.rectified(left.keypoints), right_model.rectified(right.keypoints)
        else:
            if not self.rectified_input:
                problems.append(
                    Problem(WARNING, "No CameraInfo on both cameras yet: stereo pairs are matched on raw pixel rows")
                )
            left_rows, right_rows = left.keypoints, right.keypoints
        # Imported here: torch loads with the tracker, after the configuration was checked.
        from superpoint_ros.tracking import match_stereo

        return match_stereo(
            left.descriptors,
            left_rows,
            right.descriptors,
            right_rows,
            self.tracker.settings.nn_threshold,
            self.row_tolerance,
            self.tracker.device,
        )

    def _vins(
        self, features: list[CameraFeatures], stamp: float, problems: list[Problem]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """VINS-Fusion's `(points, channels)` of `features` (one per camera, or none without
        CameraInfo), or None when that output is off, lacks CameraInfo or is not due yet."""
        if not self.vins_output:
            return None
        if not features:
            self.counters.vins_skipped += 1
            problems.append(Problem(WARNING, "No CameraInfo yet: the VINS-Fusion output waits for it"))
            return None
        period_s = 1.0 / self.vins_max_rate if self.vins_max_rate > 0 else 0.0
        if self._last_vins_stamp is not None and stamp - self._last_vins_stamp < RATE_TOLERANCE * period_s:
            self.counters.vins_skipped += 1
            return None
        self._last_vins_stamp = stamp
        features, non_finite = finite_features(features)
        self.counters.non_finite_dropped += non_finite
        self.counters.vins_published += 1
        return vins_feature_arrays(features)
