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
"""

import dataclasses
from collections import OrderedDict, deque

import numpy as np
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud

from superpoint_ros.camera_model import CameraModel
from superpoint_ros.debug_output import DebugOutput
from superpoint_ros.drawing import TrackTrails, draw_tracks, grey_or_colour_to_bgr8
from superpoint_ros.feature_types import CameraTracks, Detections, TrackingSettings, Tracks
from superpoint_ros.image_codec import ImageDecodeError
from superpoint_ros.msg import FeatureTracks, KeypointArray
from superpoint_ros.parameters import RuntimeParameters, declare_parameters, parameter_values
from superpoint_ros.ros_messages import (
    camera_model_from_message,
    decode_image_message,
    detections_from_message,
    feature_tracks_message,
    image_message,
    keypoint_array_problem,
    point_cloud_message,
)
from superpoint_ros.ros_support import ErrorThrottle, ManagedStages, Stages, run_node
from superpoint_ros.tracker_parameters import MATCHING_PARAMETERS, PARAMETERS, RUNTIME_PARAMETERS, TrackerConfig
from superpoint_ros.vins_layout import CameraFeatures, Observations, normalized_velocities, vins_feature_arrays

NODE_NAME = "superpoint_tracker"
STARTUP_ERRORS = (ValueError, ParameterException, NameValidationException)
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Stereo frames waiting for their other half; a stamp older than this many is given up.
PENDING_STEREO_FRAMES = 10
DEBUG_IMAGES_KEPT = 30
# Stamps jitter: a frame due after one `vins_max_rate` period is not skipped for coming a little early.
RATE_TOLERANCE = 0.95


@dataclasses.dataclass
class TrackerCounters:
    """Counts since start. `rejected`: KeypointArrays dropped as malformed; `unpaired`: stereo
    frames whose other half never came; `vins_skipped`: frames with no VINS output for want of
    CameraInfo or because of `vins_max_rate`."""

    frames: int = 0
    rejected: int = 0
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
    model: CameraModel | None = None
    previous: Observations | None = None


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
        self._errors = ErrorThrottle()
        self.tracker = None  # a `tracking.Tracker` once configured
        self.cameras: list[Camera] = []
        self._subscriptions = []
        self._timers = []
        self.vins_publisher = None
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
        self._pending: OrderedDict[tuple[int, int], dict[int, KeypointArray]] = OrderedDict()
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
            self._timers.append(self.create_timer(config["statistics_period"], self._log_statistics))
        where = "two cameras (stereo)" if self._stereo else "one camera"
        self.get_logger().info(f"Tracking {where} on {self.tracker.device} with {self.tracker.settings}")

    def _activate(self) -> None:
        for camera in self.cameras:
            self._subscriptions.append(
                self.create_subscription(
                    KeypointArray, f"{camera.prefix}keypoints", lambda m, c=camera: self._on_keypoints(c, m), RELIABLE
                )
            )
            self._subscriptions.append(
                self.create_subscription(
                    CameraInfo,
                    f"{camera.prefix}camera_info",
                    lambda m, c=camera: self._on_camera_info(c, m),
                    qos_profile_sensor_data,
                )
            )

    def _deactivate(self) -> None:
        for subscription in self._subscriptions:
            self.destroy_subscription(subscription)
        self._subscriptions = []

    def _cleanup(self) -> None:
        self._deactivate()
        for timer in self._timers:
            self.destroy_timer(timer)
        self._timers = []
        for camera in self.cameras:
            self.destroy_publisher(camera.tracks_publisher)
        self.cameras = []
        if self.vins_publisher is not None:
            self.destroy_publisher(self.vins_publisher)
            self.vins_publisher = None
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
        if self._errors.allows(text):
            self.get_logger().error(text)

    def _warn(self, text: str) -> None:
        if self._errors.allows(text):
            self.get_logger().warning(text)

    def _on_camera_info(self, camera: Camera, message: CameraInfo) -> None:
        try:
            camera.model = camera_model_from_message(message, self._rectified_input)
        except ValueError as error:
            self._error(f"Ignored CameraInfo on '{camera.prefix}camera_info': {error}")

    def _on_keypoints(self, camera: Camera, message: KeypointArray) -> None:
        problem = keypoint_array_problem(message)
        if problem is not None:
            self.counters.rejected += 1
            self._error(f"Dropped a KeypointArray from '{camera.prefix}keypoints': {problem}")
            return
        if not self._stereo:
            self._track_safely([message])
            return
        key = stamp_key(message)
        halves = self._pending.setdefault(key, {})
        halves[camera.camera_id] = message
        if len(halves) == 2:
            del self._pending[key]
            self._track_safely([halves[0], halves[1]])
        while len(self._pending) > PENDING_STEREO_FRAMES:
            self._pending.popitem(last=False)
            self.counters.unpaired += 1

    def _track_safely(self, messages: list[KeypointArray]) -> None:
        try:
            self._track(messages)
        except Exception as error:  # one bad frame must not stop the executor, and with it the node
            self._error(f"Tracking failed, frame dropped: {error!r}")

    def _track(self, messages: list[KeypointArray]) -> None:
        """Track one frame: the left (or only) camera's `messages[0]`, and in stereo the right
        camera's `messages[1]`, whose keypoints take the ids of the left ones they match."""
        stamp = stamp_seconds(messages[0])
        if self._last_stamp is not None and stamp < self._last_stamp:
            self.get_logger().info("The stamps went back (a bag restarted?): tracks start afresh")
            self.tracker.reset()
            for camera in self.cameras:
                camera.previous = None
            self._last_vins_stamp = None
        self._last_stamp = stamp
        detections = [detections_from_message(message) for message in messages]
        try:
            tracks = self.tracker.update(detections[0], stamp)
        except ValueError as error:
            self.counters.rejected += 1
            self._error(f"Dropped a KeypointArray from '{self.cameras[0].prefix}keypoints': {error}")
            return
        self.counters.frames += 1
        left = detections[0]
        views = [CameraTracks(tracks.ids, tracks.lengths, tracks.ages, left.keypoints, np.arange(len(tracks.ids)))]
        if self._stereo:
            left_rows, right_rows = self._match_stereo(left, detections[1])
            views.append(
                CameraTracks(
                    tracks.ids[left_rows],
                    tracks.lengths[left_rows],
                    tracks.ages[left_rows],
                    detections[1].keypoints[right_rows],
                    right_rows,
                )
            )
        features = []
        for camera, message, view in zip(self.cameras, messages, views, strict=True):
            normalized = camera.model.normalized(view.keypoints) if camera.model is not None else None
            shown = np.flatnonzero(view.lengths >= self._min_track_length)
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

    def _match_stereo(self, left: Detections, right: Detections) -> tuple[np.ndarray, np.ndarray]:
        left_model, right_model = self.cameras[0].model, self.cameras[1].model
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

    def _on_debug_image(self, message: Image) -> None:
        self._debug_images.append(message)

    def _publish_debug(self, message: KeypointArray, tracks: Tracks, keypoints: np.ndarray) -> None:
        if self.debug is None or not self.debug.watched:
            return
        trails = self._trails.update(tracks.ids, keypoints)
        key = stamp_key(message)
        image = next((i for i in reversed(self._debug_images) if stamp_key(i) == key), None)
        canvas = np.zeros((message.height, message.width, 3), np.uint8)
        if image is not None:
            try:
                canvas = grey_or_colour_to_bgr8(decode_image_message(image).bgr_view())
            except ImageDecodeError as error:
                self._error(f"Debug image drawn without its camera image: {error}")
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
            f"rejected, {c.unpaired} stereo frames unpaired; VINS output {c.vins_published} published, "
            f"{c.vins_skipped} skipped"
        )


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
