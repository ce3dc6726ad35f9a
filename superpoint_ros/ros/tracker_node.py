"""The `superpoint_tracker` node: `KeypointArray`s in, feature tracks out.

    ros2 run superpoint_ros tracker
    ros2 launch superpoint_ros detector.launch.py tracking:=true

It runs beside the detector (any `KeypointArray` source works) and gives every keypoint the id
of the physical point it shows, with `superpoint_ros.tracking.Tracker`. Topics, relative to
the node's namespace, for one camera (`stereo: false`):

- subscribes `keypoints` (`KeypointArray`, reliable) and `camera_info` (`sensor_msgs/CameraInfo`,
  needed for normalized coordinates and the VINS-Fusion output);
- publishes `tracks` (`superpoint_ros/FeatureTracks`), `feature` (`sensor_msgs/PointCloud` in
  VINS-Fusion's layout, with `vins_output`; remap it to `/feature_tracker/feature`) and
  `debug_image` (trails on the camera image, drawn only while subscribed).

With `stereo: true` the inputs are `left/keypoints`, `right/keypoints`, `left/camera_info` and
`right/camera_info`. Frames pair by identical header stamps; the left camera is tracked, and
each right keypoint takes the id of the left keypoint it matches on the same rectified row.
Outputs: `left/tracks`, `right/tracks` (matched points only), `feature` (both cameras) and
`debug_image` (left).

The debug image needs the camera image: the node subscribes to `debug_image_topic` only while
`debug_image` has a subscriber, and draws on the image with the same stamp, or on a black
canvas of the frame's size when that image has not arrived.

Every output carries the KeypointArray's header unchanged. Matching parameters, the row
tolerance, `min_track_length` and `vins_max_rate` can change at run time.

Inputs are validated before use (`superpoint_ros.tracker_inputs`, docs/tracking.md): a
malformed KeypointArray or CameraInfo is dropped (the last valid CameraInfo stays in use), bad
keypoint rows are dropped, each with one throttled log line naming the topic and the reason,
and counted in the statistics line and on `/diagnostics` (status `superpoint_tracker: input`).
"""

import dataclasses
from collections import OrderedDict, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud
from std_msgs.msg import Header

from superpoint_ros.camera_model import CameraModel
from superpoint_ros.drawing import TrackTrails, draw_tracks, grey_or_colour_to_bgr8
from superpoint_ros.feature_types import CameraTracks, Detections, TrackingSettings, Tracks
from superpoint_ros.image_codec import ImageDecodeError
from superpoint_ros.msg import FeatureTracks, KeypointArray
from superpoint_ros.ros.debug_output import DebugOutput
from superpoint_ros.ros.parameters import RuntimeParameters, declare_parameters, parameter_values
from superpoint_ros.ros.ros_messages import (
    camera_model_from_message,
    decode_image_message,
    feature_tracks_message,
    image_message,
    point_cloud_message,
)
from superpoint_ros.ros.ros_support import ErrorThrottle, ManagedStages, Stages, run_node
from superpoint_ros.ros.tracker_parameters import MATCHING_PARAMETERS, PARAMETERS, RUNTIME_PARAMETERS, TrackerConfig
from superpoint_ros.tracker_inputs import OVER_CAP, InputRejected, KeypointInput, keypoint_input, stereo_problem
from superpoint_ros.vins_layout import (
    CameraFeatures,
    Observations,
    finite_features,
    normalized_velocities,
    vins_feature_arrays,
)

NODE_NAME = "superpoint_tracker"
STARTUP_ERRORS = (ValueError, ParameterException, NameValidationException)
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Stereo frames waiting for their other half; a stamp older than this many is given up.
PENDING_STEREO_FRAMES = 10
DEBUG_IMAGES_KEPT = 30
# Stamps jitter: a frame due after one `vins_max_rate` period is not skipped for coming a little early.
RATE_TOLERANCE = 0.95
# Without its camera image, the debug overlay is drawn on a black canvas of the frame's size; a
# frame larger than this (4K UHD, 25 MB) gets no overlay rather than a canvas sized by its header.
MAX_BLANK_CANVAS_PIXELS = 3840 * 2160
# diagnostic_updater's default: reliable, a few messages deep, published once a second.
DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
DIAGNOSTICS_PERIOD_S = 1.0
# The counters whose growth turns the input status to WARN.
TROUBLE_COUNTERS = ("rejected", "keypoints_dropped", "camera_info_rejected", "stereo_unmatched", "non_finite_dropped")


@dataclasses.dataclass
class TrackerCounters:
    """Counts since start. `rejected`: KeypointArrays dropped as malformed; `keypoints_dropped`:
    rows dropped from accepted ones (non-finite, zero descriptor, outside the image, over
    `max_input_keypoints`); `keypoints_renormalised`: descriptors rescaled to unit length;
    `camera_info_rejected`: CameraInfos ignored as invalid; `stereo_unmatched`: stereo frames
    whose right camera could not be matched (invalid pair of CameraInfos, other descriptor size);
    `non_finite_dropped`: observations the last guard kept from the outputs; `restarts`: new
    streams (descriptor size change, stamps going back); `unpaired`: stereo frames whose other
    half never came; `vins_skipped`: frames with no VINS output for want of CameraInfo or
    because of `vins_max_rate`."""

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
    debug_images: int = 0


@dataclasses.dataclass
class Camera:
    """One input camera: its topics' prefix, latest calibration and last observations."""

    prefix: str
    camera_id: int
    tracks_publisher: Publisher
    keypoints_topic: str = ""
    camera_info_topic: str = ""
    model: CameraModel | None = None
    previous: Observations | None = None
    # (width, height) of the last accepted KeypointArray; a CameraInfo must describe that image.
    image_size: tuple[int, int] | None = None


def stamp_seconds(message) -> float:
    return message.header.stamp.sec + message.header.stamp.nanosec * 1e-9


def stamp_key(message) -> tuple[int, int]:
    return message.header.stamp.sec, message.header.stamp.nanosec


class TrackerStages(Stages):
    """The tracker node's work, as stages (see `ros_support.Stages`)."""

    def _declare(self) -> None:
        declare_parameters(self, PARAMETERS)
        self.counters = TrackerCounters()
        self._logged_counters = TrackerCounters()
        self._reported_counters = TrackerCounters()
        self._last_problem = ""
        self._frame_id = ""
        self._errors = ErrorThrottle()
        self.tracker = None  # a `tracking.Tracker` once configured
        self.cameras: list[Camera] = []
        # Not `_subscriptions`/`_timers`: rclpy's Node keeps its own lists under those names.
        self._input_subscriptions = []
        self._stage_timers = []
        self.vins_publisher = None
        self._diagnostics_publisher = None
        self.debug: DebugOutput | None = None
        self._debug_subscription = None
        self._debug_images: deque[Image] = deque(maxlen=DEBUG_IMAGES_KEPT)
        self._trails = TrackTrails()
        self._runtime = RuntimeParameters(
            self,
            RUNTIME_PARAMETERS,
            lambda: {name: self.get_parameter(name).value for name in RUNTIME_PARAMETERS},
            lambda values: TrackingSettings(**{name: values[name] for name in MATCHING_PARAMETERS}),
            self._apply_parameters,
        )

    def _startup_errors(self) -> tuple[type[Exception], ...]:
        return STARTUP_ERRORS

    def _configure(self) -> None:
        config = TrackerConfig.from_values(parameter_values(self, PARAMETERS))
        # Imported only now: a bad configuration is refused before torch loads.
        from superpoint_ros.tracking import Tracker

        self.config = config
        self.tracker = Tracker(device=config["device"], **dataclasses.asdict(config.settings))
        self._stereo = config["stereo"]
        self._rectified_input = config["images_rectified"]
        self._row_tolerance = config["stereo_row_tolerance"]
        self._min_track_length = config["min_track_length"]
        self._vins_period_s = self._rate_to_period(config["vins_max_rate"])
        self._last_vins_stamp: float | None = None
        self._last_stamp: float | None = None
        self._max_input_keypoints = config["max_input_keypoints"]
        self._pending: OrderedDict[tuple[int, int], dict[int, tuple[KeypointArray, KeypointInput]]] = OrderedDict()
        prefixes = ["left/", "right/"] if self._stereo else [""]
        self.cameras = [
            Camera(prefix, index, self.create_publisher(FeatureTracks, f"{prefix}tracks", RELIABLE))
            for index, prefix in enumerate(prefixes)
        ]
        if config["vins_output"]:
            self.vins_publisher = self.create_publisher(PointCloud, "feature", RELIABLE)
        if config["debug_image"]:
            self.debug = DebugOutput(self, "debug_image", RELIABLE, self._follow_debug_subscribers)
        if config["statistics_period"] > 0:
            self._stage_timers.append(self.create_timer(config["statistics_period"], self._log_statistics))
        # As the detector's: /diagnostics keeps its status while configured (docs/lifecycle.md).
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self._stage_timers.append(self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics))
        where = "two cameras (stereo)" if self._stereo else "one camera"
        self.get_logger().info(f"Tracking {where} on {self.tracker.device} with {self.tracker.settings}")

    def _activate(self) -> None:
        for camera in self.cameras:
            keypoints = self.create_subscription(
                KeypointArray, f"{camera.prefix}keypoints", lambda m, c=camera: self._on_keypoints(c, m), RELIABLE
            )
            camera_info = self.create_subscription(
                CameraInfo,
                f"{camera.prefix}camera_info",
                lambda m, c=camera: self._on_camera_info(c, m),
                qos_profile_sensor_data,
            )
            camera.keypoints_topic, camera.camera_info_topic = keypoints.topic_name, camera_info.topic_name
            self._input_subscriptions += [keypoints, camera_info]

    def _deactivate(self) -> None:
        for subscription in self._input_subscriptions:
            self.destroy_subscription(subscription)
        self._input_subscriptions = []

    def _cleanup(self) -> None:
        self._deactivate()
        for timer in self._stage_timers:
            self.destroy_timer(timer)
        self._stage_timers = []
        for camera in self.cameras:
            self.destroy_publisher(camera.tracks_publisher)
        self.cameras = []
        if self.vins_publisher is not None:
            self.destroy_publisher(self.vins_publisher)
            self.vins_publisher = None
        if self._diagnostics_publisher is not None:
            self.destroy_publisher(self._diagnostics_publisher)
            self._diagnostics_publisher = None
        if self.debug is not None:
            self.debug.close()
            self.debug = None
        self.tracker = None

    @property
    def debug_publisher(self):
        return self.debug.publisher if self.debug is not None else None

    @staticmethod
    def _rate_to_period(rate_hz: float) -> float:
        return 1.0 / rate_hz if rate_hz > 0 else 0.0

    def _apply_parameters(self, changed: dict) -> None:
        if self.tracker is None:  # not configured: `_configure` reads the parameters
            return
        matching = {name: value for name, value in changed.items() if name in MATCHING_PARAMETERS}
        if matching:
            self.tracker.settings = dataclasses.replace(self.tracker.settings, **matching)
        self._row_tolerance = changed.get("stereo_row_tolerance", self._row_tolerance)
        self._min_track_length = changed.get("min_track_length", self._min_track_length)
        if "vins_max_rate" in changed:
            self._vins_period_s = self._rate_to_period(changed["vins_max_rate"])

    def _error(self, text: str) -> None:
        """Log `text` as an error, at most once per `ErrorThrottle` period; the latest problem
        goes to /diagnostics."""
        if self._errors.allows(text):
            self.get_logger().error(text)
        self._last_problem = text

    def _warn(self, text: str, key: str | None = None) -> None:
        """Log `text` as a warning, at most once per `ErrorThrottle` period for each `key` (the
        text itself by default; a key without the counts keeps varying counts from flooding)."""
        if self._errors.allows(key or text):
            self.get_logger().warning(text)

    def _on_camera_info(self, camera: Camera, message: CameraInfo) -> None:
        try:
            model = camera_model_from_message(message, self._rectified_input)
        except InputRejected as error:
            self._reject_camera_info(camera, str(error))
            return
        if camera.image_size is not None and (model.width, model.height) != camera.image_size:
            width, height = camera.image_size
            self._reject_camera_info(
                camera, f"it is {model.width}×{model.height} but the keypoints' image is {width}×{height}"
            )
            return
        camera.model = model

    def _reject_camera_info(self, camera: Camera, problem: str) -> None:
        self.counters.camera_info_rejected += 1
        kept = "the last valid one stays in use" if camera.model is not None else "no valid one yet"
        self._error(f"Ignored CameraInfo on '{camera.camera_info_topic}' ({kept}): {problem}")

    def _on_keypoints(self, camera: Camera, message: KeypointArray) -> None:
        try:
            valid = keypoint_input(message, self._max_input_keypoints)
        except InputRejected as error:
            self.counters.rejected += 1
            self._error(f"Dropped a KeypointArray from '{camera.keypoints_topic}': {error}")
            return
        camera.image_size = (message.width, message.height)
        self._frame_id = message.header.frame_id
        self._report_dropped_rows(camera, message, valid)
        if not self._stereo:
            self._track_safely([(message, valid)])
            return
        key = stamp_key(message)
        halves = self._pending.setdefault(key, {})
        halves[camera.camera_id] = (message, valid)
        if len(halves) == 2:
            del self._pending[key]
            self._track_safely([halves[0], halves[1]])
        while len(self._pending) > PENDING_STEREO_FRAMES:
            self._pending.popitem(last=False)
            self.counters.unpaired += 1

    def _report_dropped_rows(self, camera: Camera, message: KeypointArray, valid: KeypointInput) -> None:
        self.counters.keypoints_dropped += valid.dropped_total
        self.counters.keypoints_renormalised += valid.renormalised
        if valid.dropped:
            reasons = ", ".join(f"{rows} {reason}" for reason, rows in valid.dropped.items())
            text = (
                f"Dropped {valid.dropped_total} of {len(message.scores)} keypoints of a "
                f"{message.width}×{message.height} frame from '{camera.keypoints_topic}': {reasons}"
            )
            if OVER_CAP in valid.dropped:
                text += f" (max_input_keypoints: {self._max_input_keypoints})"
            self._warn(text, key=f"{camera.keypoints_topic}: {', '.join(valid.dropped)}")
            self._last_problem = text
        if valid.renormalised:
            self._warn(
                f"Renormalised {valid.renormalised} descriptors of non-unit length from '{camera.keypoints_topic}'",
                key=f"{camera.keypoints_topic}: renormalised",
            )

    def _track_safely(self, messages: list[tuple[KeypointArray, KeypointInput]]) -> None:
        try:
            self._track(messages)
        except Exception as error:  # one bad frame must not stop the executor, and with it the node
            self._error(f"Tracking failed, frame dropped: {error!r}")

    def _restart(self) -> None:
        self.counters.restarts += 1
        for camera in self.cameras:
            camera.previous = None
        self._last_vins_stamp = None

    def _track(self, inputs: list[tuple[KeypointArray, KeypointInput]]) -> None:
        """Track one frame: the left (or only) camera's `inputs[0]`, and in stereo the right
        camera's `inputs[1]`, whose keypoints take the ids of the left ones they match."""
        messages = [message for message, _ in inputs]
        valid = [rows for _, rows in inputs]
        stamp = stamp_seconds(messages[0])
        if self._last_stamp is not None and stamp < self._last_stamp:
            self.get_logger().info("The stamps went back (a bag restarted?): tracks start afresh")
            self.tracker.reset()
            self._restart()
        self._last_stamp = stamp
        detections = [Detections(v.keypoints, v.scores, v.descriptors) for v in valid]
        size_before = self.tracker.descriptor_size
        tracks = self.tracker.update(detections[0], stamp)
        if tracks.restarted:
            self._restart()
            self._warn(
                f"The descriptor size on '{self.cameras[0].keypoints_topic}' changed from {size_before} to "
                f"{detections[0].descriptors.shape[1]} (another detector or model?): tracks start afresh",
                key=f"restart {size_before} {detections[0].descriptors.shape[1]}",
            )
        self.counters.frames += 1
        left = detections[0]
        views = [CameraTracks(tracks.ids, tracks.lengths, tracks.ages, left.keypoints, valid[0].rows)]
        if self._stereo:
            left_rows, right_rows = self._match_stereo(left, detections[1])
            views.append(
                CameraTracks(
                    tracks.ids[left_rows],
                    tracks.lengths[left_rows],
                    tracks.ages[left_rows],
                    detections[1].keypoints[right_rows],
                    valid[1].rows[right_rows],
                )
            )
        features = []
        for camera, message, view in zip(self.cameras, messages, views, strict=True):
            normalized = self._normalized(camera, message, view.keypoints)
            shown = view.lengths >= self._min_track_length
            if normalized is not None:
                # The last guard: no non-finite value leaves in FeatureTracks.normalized.
                finite = np.isfinite(normalized).all(axis=1)
                self.counters.non_finite_dropped += int(np.count_nonzero(shown & ~finite))
                shown &= finite
            shown = np.flatnonzero(shown)
            camera.tracks_publisher.publish(
                feature_tracks_message(
                    message.header,
                    message.height,
                    message.width,
                    view.select(shown),
                    normalized[shown] if normalized is not None else None,
                )
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
        self._publish_vins(messages[0], features if len(features) == len(views) else [], stamp)
        self._publish_debug(messages[0], tracks, left.keypoints)

    def _normalized(self, camera: Camera, message: KeypointArray, pixels: np.ndarray) -> np.ndarray | None:
        """`(N, 2)` normalized coordinates of `pixels` by the camera's CameraInfo, or None when
        there is none for an image of this message's size."""
        model = camera.model
        if model is None:
            return None
        if (model.width, model.height) != (message.width, message.height):
            self._error(
                f"CameraInfo on '{camera.camera_info_topic}' is {model.width}×{model.height} but the keypoints' "
                f"image is {message.width}×{message.height}: no normalized coordinates until they agree"
            )
            return None
        return model.normalized(pixels)

    def _match_stereo(self, left: Detections, right: Detections) -> tuple[np.ndarray, np.ndarray]:
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
            self._error(f"Right keypoints not matched: {problem}")
            return np.empty(0, np.int64), np.empty(0, np.int64)
        if left_model is not None and right_model is not None:
            left_rows, right_rows = left_model.rectified(left.keypoints), right_model.rectified(right.keypoints)
        else:
            if not self._rectified_input:
                self._warn("No CameraInfo on both cameras yet: stereo pairs are matched on raw pixel rows")
            left_rows, right_rows = left.keypoints, right.keypoints
        from superpoint_ros.tracking import match_stereo

        return match_stereo(
            left.descriptors,
            left_rows,
            right.descriptors,
            right_rows,
            self.tracker.settings.nn_threshold,
            self._row_tolerance,
            self.tracker.device,
        )

    def _publish_vins(self, message: KeypointArray, features: list[CameraFeatures], stamp: float) -> None:
        if self.vins_publisher is None:
            return
        if not features:
            self.counters.vins_skipped += 1
            self._warn("No CameraInfo yet: the VINS-Fusion output waits for it")
            return
        if self._last_vins_stamp is not None and stamp - self._last_vins_stamp < RATE_TOLERANCE * self._vins_period_s:
            self.counters.vins_skipped += 1
            return
        self._last_vins_stamp = stamp
        features, non_finite = finite_features(features)
        self.counters.non_finite_dropped += non_finite
        points, channels = vins_feature_arrays(features)
        self.vins_publisher.publish(point_cloud_message(message.header, points, channels))
        self.counters.vins_published += 1

    def _follow_debug_subscribers(self, watched: bool) -> None:
        """Subscribe to the camera image while someone watches `debug_image`, and only then."""
        if watched and self._debug_subscription is None:
            self._debug_subscription = self.create_subscription(
                Image, self.config["debug_image_topic"], self._on_debug_image, qos_profile_sensor_data
            )
        elif not watched and self._debug_subscription is not None:
            self.destroy_subscription(self._debug_subscription)
            self._debug_subscription = None
            self._debug_images.clear()
            self._trails = TrackTrails()

    def _on_debug_image(self, message: Image) -> None:
        self._debug_images.append(message)

    def _publish_debug(self, message: KeypointArray, tracks: Tracks, keypoints: np.ndarray) -> None:
        if self.debug is None or not self.debug.watched:
            return
        trails = self._trails.update(tracks.ids, keypoints)
        key = stamp_key(message)
        image = next((i for i in reversed(self._debug_images) if stamp_key(i) == key), None)
        canvas = None
        if image is not None:
            try:
                canvas = grey_or_colour_to_bgr8(decode_image_message(image).bgr_view())
            except ImageDecodeError as error:
                self._error(f"Debug image drawn without its camera image: {error}")
        if canvas is None:
            if message.height * message.width > MAX_BLANK_CANVAS_PIXELS:
                self._warn(
                    f"No debug image for {message.width}×{message.height} frames without their camera image "
                    f"(a blank canvas is drawn up to {MAX_BLANK_CANVAS_PIXELS} pixels)"
                )
                return
            canvas = np.zeros((message.height, message.width, 3), np.uint8)
        new = int(tracks.new.sum())
        caption = f"{len(tracks.ids) - new} tracked  {new} new  {tracks.lost} lost"
        overlay = draw_tracks(np.ascontiguousarray(canvas), trails, tracks.lengths, caption)
        self.debug.publisher.publish(image_message(overlay, "bgr8", message.header))
        self.counters.debug_images += 1

    def _log_statistics(self) -> None:
        if self.counters == self._logged_counters:
            return
        self._logged_counters = dataclasses.replace(self.counters)
        c = self.counters
        self.get_logger().info(
            f"{c.frames} frames tracked, {self.tracker.live_tracks} live tracks; {c.rejected} KeypointArrays "
            f"rejected, {c.keypoints_dropped} keypoints dropped, {c.keypoints_renormalised} renormalised, "
            f"{c.camera_info_rejected} CameraInfos ignored, {c.non_finite_dropped} non-finite outputs dropped, "
            f"{c.restarts} restarts, {c.unpaired} stereo frames unpaired, {c.stereo_unmatched} unmatched; "
            f"VINS output {c.vins_published} published, {c.vins_skipped} skipped"
        )

    def _publish_diagnostics(self) -> None:
        """One status, `<node name>: input`: WARN while inputs were refused or rows dropped since
        the previous report (the message is the latest problem), OK otherwise; every counter."""
        counters, before = self.counters, self._reported_counters
        troubled = any(getattr(counters, name) > getattr(before, name) for name in TROUBLE_COUNTERS)
        self._reported_counters = dataclasses.replace(counters)
        status = DiagnosticStatus(
            level=DiagnosticStatus.WARN if troubled else DiagnosticStatus.OK,
            name=f"{self.get_name()}: input",
            message=self._last_problem if troubled else "inputs valid",
            hardware_id=self._frame_id,
            values=[KeyValue(key=name, value=str(value)) for name, value in dataclasses.asdict(counters).items()]
            + [KeyValue(key="live tracks", value=str(self.tracker.live_tracks))],
        )
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics_publisher.publish(DiagnosticArray(header=header, status=[status]))


class TrackerNode(TrackerStages, Node):
    """See the module docstring: configured and active from the start. Raises `ValueError` or a
    `ParameterException` when it cannot start; `main` turns those into one log line and a
    non-zero exit."""

    def __init__(self, **node_options) -> None:
        Node.__init__(self, NODE_NAME, **node_options)
        self._declare()
        try:
            self._configure()
        except BaseException:
            self._cleanup()
            raise
        self._activate()

    def destroy_node(self) -> None:
        self._cleanup()
        super().destroy_node()


class ManagedTrackerNode(TrackerStages, ManagedStages):
    """The tracker as a lifecycle node (`--managed`); unconfigured after construction."""

    def __init__(self, **node_options) -> None:
        ManagedStages.__init__(self, NODE_NAME, **node_options)
        self._declare()


def create(managed: bool = False, **node_options) -> Node:
    """The plain or the managed tracker node, with torch's threads set from `threads`."""
    import torch

    node = (ManagedTrackerNode if managed else TrackerNode)(**node_options)
    # The detector's inference keeps every core busy; a second pool of spinning threads here made
    # matching slower, not faster (BENCHMARKS.md, feature tracker).
    torch.set_num_threads(node.get_parameter("threads").value)
    return node


def main(args: list[str] | None = None) -> int:
    """Run the node until shutdown; 1 (after one fatal log line) if it cannot start."""
    return run_node(NODE_NAME, create, STARTUP_ERRORS, args)


if __name__ == "__main__":
    raise SystemExit(main())
