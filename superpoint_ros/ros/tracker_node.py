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

The work per message is `superpoint_ros.frame_tracking.FrameTracking`, which `superpoint-bag
--tracking` runs too; this node subscribes, logs what it reports, and publishes its outputs.

Inputs are validated before use (`superpoint_ros.tracker_inputs`, docs/tracking.md): a
malformed KeypointArray or CameraInfo is dropped (the last valid CameraInfo stays in use), bad
keypoint rows are dropped, each with one throttled log line naming the topic and the reason,
and counted in the statistics line and on `/diagnostics` (status `superpoint_tracker: input`).
"""

import dataclasses
from collections import deque

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
from superpoint_ros.feature_types import TrackingSettings, Tracks
from superpoint_ros.frame_tracking import (
    INFO,
    WARNING,
    CameraState,
    FrameTracking,
    Problem,
    TrackedFrame,
    TrackerCounters,
    stamp_key,
)
from superpoint_ros.image_codec import ImageDecodeError
from superpoint_ros.msg import FeatureTracks, KeypointArray
from superpoint_ros.ros.debug_output import DebugOutput
from superpoint_ros.ros.parameters import RuntimeParameters, declare_parameters, parameter_values
from superpoint_ros.ros.ros_messages import (
    decode_image_message,
    feature_tracks_message,
    image_message,
    point_cloud_message,
)
from superpoint_ros.ros.ros_support import ErrorThrottle, ManagedStages, PlainStages, Stages, run_node
from superpoint_ros.ros.tracker_parameters import MATCHING_PARAMETERS, PARAMETERS, RUNTIME_PARAMETERS, TrackerConfig

NODE_NAME = "superpoint_tracker"
STARTUP_ERRORS = (ValueError, ParameterException, NameValidationException)
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
DEBUG_IMAGES_KEPT = 30
# Without its camera image, the debug overlay is drawn on a black canvas of the frame's size; a
# frame larger than this (4K UHD, 25 MB) gets no overlay rather than a canvas sized by its header.
MAX_BLANK_CANVAS_PIXELS = 3840 * 2160
# diagnostic_updater's default: reliable, a few messages deep, published once a second.
DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
DIAGNOSTICS_PERIOD_S = 1.0
# The counters whose growth turns the input status to WARN.
TROUBLE_COUNTERS = ("rejected", "keypoints_dropped", "camera_info_rejected", "stereo_unmatched", "non_finite_dropped")


@dataclasses.dataclass
class TrackerNodeCounters(TrackerCounters):
    """`frame_tracking.TrackerCounters`, and `debug_images`: overlays published."""

    debug_images: int = 0


@dataclasses.dataclass
class Camera:
    """One input camera: its topics' prefix and tracks publisher; `state`, its calibration and
    last observations, is kept by `FrameTracking`."""

    prefix: str
    tracks_publisher: Publisher
    state: CameraState

    @property
    def model(self) -> CameraModel | None:
        return self.state.model


class TrackerStages(Stages):
    """The tracker node's work, as stages (see `ros_support.Stages`)."""

    def _declare(self) -> None:
        declare_parameters(self, PARAMETERS)
        self.counters = TrackerNodeCounters()
        self._logged_counters = TrackerNodeCounters()
        self._reported_counters = TrackerNodeCounters()
        self._last_problem = ""
        self._frame_id = ""
        self._errors = ErrorThrottle()
        self.tracker = None  # a `tracking.Tracker` once configured
        self.frames: FrameTracking | None = None
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
        import torch

        from superpoint_ros.tracking import Tracker

        # The detector's inference keeps every core busy; a second pool of spinning threads here
        # made matching slower, not faster (BENCHMARKS.md, feature tracker).
        torch.set_num_threads(config["threads"])
        self.config = config
        self.tracker = Tracker(device=config["device"], **dataclasses.asdict(config.settings))
        self.frames = FrameTracking(
            self.tracker,
            self.counters,
            stereo=config["stereo"],
            rectified_input=config["images_rectified"],
            row_tolerance=config["stereo_row_tolerance"],
            min_track_length=config["min_track_length"],
            vins_output=config["vins_output"],
            vins_max_rate=config["vins_max_rate"],
            max_input_keypoints=config["max_input_keypoints"],
        )
        prefixes = ["left/", "right/"] if config["stereo"] else [""]
        self.cameras = [
            Camera(prefix, self.create_publisher(FeatureTracks, f"{prefix}tracks", RELIABLE), state)
            for prefix, state in zip(prefixes, self.frames.cameras, strict=True)
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
        where = "two cameras (stereo)" if config["stereo"] else "one camera"
        self.get_logger().info(f"Tracking {where} on {self.tracker.device} with {self.tracker.settings}")

    def _activate(self) -> None:
        for index, camera in enumerate(self.cameras):
            keypoints = self.create_subscription(
                KeypointArray, f"{camera.prefix}keypoints", lambda m, i=index: self._on_keypoints(i, m), RELIABLE
            )
            camera_info = self.create_subscription(
                CameraInfo,
                f"{camera.prefix}camera_info",
                lambda m, i=index: self._log(self.frames.offer_camera_info(i, m)),
                qos_profile_sensor_data,
            )
            camera.state.keypoints_topic, camera.state.camera_info_topic = keypoints.topic_name, camera_info.topic_name
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
        self.frames = None

    @property
    def debug_publisher(self):
        return self.debug.publisher if self.debug is not None else None

    def _apply_parameters(self, changed: dict) -> None:
        if self.tracker is None:  # not configured: `_configure` reads the parameters
            return
        matching = {name: value for name, value in changed.items() if name in MATCHING_PARAMETERS}
        if matching:
            self.tracker.settings = dataclasses.replace(self.tracker.settings, **matching)
        self.frames.row_tolerance = changed.get("stereo_row_tolerance", self.frames.row_tolerance)
        self.frames.min_track_length = changed.get("min_track_length", self.frames.min_track_length)
        self.frames.vins_max_rate = changed.get("vins_max_rate", self.frames.vins_max_rate)

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

    def _log(self, problems: list[Problem]) -> None:
        """Log what `FrameTracking` reported, throttled as `_error` and `_warn` do."""
        for problem in problems:
            if problem.level == INFO:
                self.get_logger().info(problem.text)
            elif problem.level == WARNING:
                self._warn(problem.text, problem.key)
            else:
                self._error(problem.text)
            if problem.diagnosed:
                self._last_problem = problem.text

    def _on_keypoints(self, camera_id: int, message: KeypointArray) -> None:
        outcome = self.frames.offer_keypoints(camera_id, message)
        if outcome.accepted:
            self._frame_id = message.header.frame_id
        self._log(outcome.problems)
        if outcome.frame is None:
            return
        try:
            self._publish(outcome.frame)
        except Exception as error:  # one bad frame must not stop the executor, and with it the node
            self._error(f"Tracking failed, frame dropped: {error!r}")

    def _publish(self, frame: TrackedFrame) -> None:
        """The tracked frame's messages: tracks per camera, the VINS-Fusion cloud, the overlay."""
        for camera, output in zip(self.cameras, frame.cameras, strict=True):
            message = output.received.message
            camera.tracks_publisher.publish(
                feature_tracks_message(message.header, message.height, message.width, output.tracks, output.normalized)
            )
        left = frame.cameras[0].received.message
        if frame.vins is not None:
            self.vins_publisher.publish(point_cloud_message(left.header, *frame.vins))
        self._publish_debug(left, frame.tracks, frame.keypoints)

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


class TrackerNode(TrackerStages, PlainStages):
    """See the module docstring: configured and active from the start. Raises `ValueError` or a
    `ParameterException` when it cannot start; `main` turns those into one log line and a
    non-zero exit."""

    def __init__(self, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)


class ManagedTrackerNode(TrackerStages, ManagedStages):
    """The tracker as a lifecycle node (`--managed`); unconfigured after construction."""

    def __init__(self, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)


def create(managed: bool = False, **node_options) -> Node:
    """The plain or the managed tracker node (torch's threads are set from `threads` when it is
    configured)."""
    return (ManagedTrackerNode if managed else TrackerNode)(**node_options)


def main(args: list[str] | None = None) -> int:
    """Run the node until shutdown; 1 (after one fatal log line) if it cannot start."""
    return run_node(NODE_NAME, create, STARTUP_ERRORS, args)


if __name__ == "__main__":
    raise SystemExit(main())
