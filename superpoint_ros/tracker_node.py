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
import torch
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud

from superpoint_ros.camera_model import CameraModel
from superpoint_ros.drawing import TrackTrails, draw_tracks, grey_or_colour_to_bgr8
from superpoint_ros.feature_types import Detections
from superpoint_ros.image_codec import ImageDecodeError
from superpoint_ros.msg import FeatureTracks, KeypointArray
from superpoint_ros.ros_messages import (
    camera_model_from_message,
    decode_image_message,
    detections_from_message,
    feature_tracks_message,
    image_message,
    keypoint_array_problem,
    point_cloud_message,
)
from superpoint_ros.ros_support import ErrorThrottle, describe, float_range, integer_range, run_node
from superpoint_ros.tracking import VERIFICATIONS, CameraTracks, Tracker, TrackingSettings, Tracks, match_stereo
from superpoint_ros.vins_layout import CameraFeatures, Observations, normalized_velocities, vins_feature_arrays

NODE_NAME = "superpoint_tracker"
MATCHING_PARAMETERS = ("nn_threshold", "ratio_threshold", "max_track_gap", "verification", "ransac_threshold")
RUNTIME_PARAMETERS = (*MATCHING_PARAMETERS, "stereo_row_tolerance", "min_track_length", "vins_max_rate")
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


class TrackerNode(Node):
    """See the module docstring. Raises `ValueError` or a `ParameterException` when it cannot
    start; `main` turns those into one log line and a non-zero exit."""

    def __init__(self, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)
        self._declare_parameters()
        self.counters = TrackerCounters()
        self._errors = ErrorThrottle()
        self.tracker = Tracker(
            device=self._parameter("device"), **{name: self._parameter(name) for name in MATCHING_PARAMETERS}
        )
        self._stereo = self._parameter("stereo")
        self._rectified_input = self._parameter("images_rectified")
        self._row_tolerance = self._parameter("stereo_row_tolerance")
        self._min_track_length = self._parameter("min_track_length")
        self._vins_period_s = self._rate_to_period(self._parameter("vins_max_rate"))
        self._last_vins_stamp: float | None = None
        self._last_stamp: float | None = None
        self._pending: OrderedDict[tuple[int, int], dict[int, KeypointArray]] = OrderedDict()
        prefixes = ["left/", "right/"] if self._stereo else [""]
        self.cameras = [
            Camera(prefix, index, self.create_publisher(FeatureTracks, f"{prefix}tracks", RELIABLE))
            for index, prefix in enumerate(prefixes)
        ]
        for camera in self.cameras:
            self.create_subscription(
                KeypointArray, f"{camera.prefix}keypoints", lambda m, c=camera: self._on_keypoints(c, m), RELIABLE
            )
            self.create_subscription(
                CameraInfo,
                f"{camera.prefix}camera_info",
                lambda m, c=camera: self._on_camera_info(c, m),
                qos_profile_sensor_data,
            )
        self.vins_publisher = (
            self.create_publisher(PointCloud, "feature", RELIABLE) if self._parameter("vins_output") else None
        )
        self.debug_publisher = None
        self._debug_subscription = None
        self._debug_images: deque[Image] = deque(maxlen=DEBUG_IMAGES_KEPT)
        self._trails = TrackTrails()
        if self._parameter("debug_image"):
            self.debug_publisher = self.create_publisher(Image, "debug_image", RELIABLE)
            self.create_timer(0.5, self._follow_debug_subscribers)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        period = self._parameter("statistics_period")
        if period > 0:
            self._logged_counters = TrackerCounters()
            self.create_timer(period, self._log_statistics)
        where = "two cameras (stereo)" if self._stereo else "one camera"
        self.get_logger().info(f"Tracking {where} on {self.tracker.device} with {self.tracker.settings}")

    def _declare_parameters(self) -> None:
        settings = TrackingSettings()
        self.declare_parameter(
            "device", "cpu", describe("Where descriptors are matched: cpu, cuda, cuda:N or auto.", read_only=True)
        )
        self.declare_parameter(
            "threads",
            1,
            describe(
                "CPU threads for matching (torch), set for the tracker executable's process. 1 keeps it from "
                "competing with the detector's inference threads.",
                read_only=True,
                **integer_range(1, 256),
            ),
        )
        self.declare_parameter(
            "stereo",
            False,
            describe("Two cameras: left/ and right/ keypoints, paired by stamp (see the README).", read_only=True),
        )
        self.declare_parameter(
            "images_rectified",
            False,
            describe(
                "The keypoints come from rectified images: CameraInfo's P is the camera matrix, with no "
                "distortion, and stereo rows are compared as they are.",
                read_only=True,
            ),
        )
        self.declare_parameter(
            "nn_threshold",
            settings.nn_threshold,
            describe("Largest L2 distance between unit descriptors of a match.", **float_range(0.0, 2.0)),
        )
        self.declare_parameter(
            "ratio_threshold",
            settings.ratio_threshold,
            describe(
                "A track's best match must be at most this fraction of the distance to its second best "
                "(1: no ratio test); must be above 0.",
                **float_range(0.0, 1.0),
            ),
        )
        self.declare_parameter(
            "max_track_gap",
            settings.max_track_gap,
            describe("Frames a track may go unseen and still keep its id.", **integer_range(0, 1000)),
        )
        self.declare_parameter(
            "verification",
            settings.verification,
            describe(
                "Geometric verification by RANSAC: auto (homography for planar or distant scenes, else "
                "fundamental matrix), fundamental, homography or none.",
                additional_constraints=" | ".join(VERIFICATIONS),
            ),
        )
        self.declare_parameter(
            "ransac_threshold",
            settings.ransac_threshold,
            describe("Pixels; inlier distance of the geometric verification.", **float_range(0.1, 100.0)),
        )
        self.declare_parameter(
            "stereo_row_tolerance",
            2.0,
            describe("Pixels; a stereo pair's rectified rows may differ by this much.", **float_range(0.0, 100.0)),
        )
        self.declare_parameter(
            "min_track_length",
            1,
            describe(
                "Publish only tracks seen in at least this many frames (1: every keypoint).", **integer_range(1, 1000)
            ),
        )
        self.declare_parameter(
            "vins_output",
            False,
            describe(
                "Publish `feature` (sensor_msgs/PointCloud) in VINS-Fusion's layout; needs CameraInfo.", read_only=True
            ),
        )
        self.declare_parameter(
            "vins_max_rate",
            0.0,
            describe(
                "Hz; publish `feature` at most this often, by image stamps (0: every frame).",
                **float_range(0.0, 1000.0),
            ),
        )
        self.declare_parameter(
            "debug_image",
            True,
            describe("Publish debug_image (drawn only while subscribed).", read_only=True),
        )
        self.declare_parameter(
            "debug_image_topic",
            "image",
            describe(
                "Camera image the debug trails are drawn on; subscribed only while debug_image is.", read_only=True
            ),
        )
        self.declare_parameter(
            "statistics_period",
            5.0,
            describe(
                "Seconds between log lines with frame and track counts (0: never).",
                read_only=True,
                **float_range(0.0, 3600.0),
            ),
        )

    def _parameter(self, name: str):
        return self.get_parameter(name).value

    @staticmethod
    def _rate_to_period(rate_hz: float) -> float:
        return 1.0 / rate_hz if rate_hz > 0 else 0.0

    def _validate_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        values = {name: getattr(self.tracker.settings, name) for name in MATCHING_PARAMETERS}
        values.update({p.name: p.value for p in parameters if p.name in MATCHING_PARAMETERS})
        try:
            TrackingSettings(**values)
        except (ValueError, TypeError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        changed = {p.name: p.value for p in parameters}
        matching = {name: value for name, value in changed.items() if name in MATCHING_PARAMETERS}
        if matching:
            self.tracker.settings = dataclasses.replace(self.tracker.settings, **matching)
            self.get_logger().info(f"Tracking settings now {self.tracker.settings}")
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

    def _follow_debug_subscribers(self) -> None:
        """Subscribe to the camera image while someone watches `debug_image`, and only then."""
        watched = self.debug_publisher.get_subscription_count() > 0
        if watched and self._debug_subscription is None:
            self._debug_subscription = self.create_subscription(
                Image, self._parameter("debug_image_topic"), self._on_debug_image, qos_profile_sensor_data
            )
        elif not watched and self._debug_subscription is not None:
            self.destroy_subscription(self._debug_subscription)
            self._debug_subscription = None
            self._debug_images.clear()

    def _on_debug_image(self, message: Image) -> None:
        self._debug_images.append(message)

    def _publish_debug(self, message: KeypointArray, tracks: Tracks, keypoints: np.ndarray) -> None:
        if self.debug_publisher is None or self.debug_publisher.get_subscription_count() == 0:
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
        self.debug_publisher.publish(image_message(overlay, "bgr8", message.header))
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


def _start(managed: bool = False) -> TrackerNode:
    node = TrackerNode()
    # The detector's inference keeps every core busy; a second pool of spinning threads here made
    # matching slower, not faster (BENCHMARKS.md, feature tracker).
    torch.set_num_threads(node.get_parameter("threads").value)
    return node


def main(args: list[str] | None = None) -> int:
    """Run the node until shutdown; 1 (after one fatal log line) if it cannot start."""
    return run_node(NODE_NAME, _start, (ValueError, ParameterException, NameValidationException), args)


if __name__ == "__main__":
    raise SystemExit(main())
