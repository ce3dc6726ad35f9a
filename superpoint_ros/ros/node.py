"""The `superpoint_detector` node: camera images in, SuperPoint keypoints out.

    ros2 run superpoint_ros detector --ros-args --params-file config/detector.yaml
    python -m superpoint_ros.ros.node --ros-args -p weights:=/path/to/model.safetensors

Topics, relative to the node's namespace:

- One camera (`image_topics` unset): subscribes to `image` (remap it), publishes `keypoints`
  (`superpoint_ros/msg/KeypointArray`) and `debug_image` (`sensor_msgs/Image`, bgr8).
- Several cameras: subscribes to each topic of `image_topics` and publishes
  `<name>/keypoints` and `<name>/debug_image`, where `<name>` is the matching entry of
  `camera_names`, or `camera0`, `camera1`, ... in `image_topics` order when that is unset.

Both outputs carry the source image's header unchanged. The debug image is drawn only while
someone subscribes to it. `image_transport: compressed` subscribes to `<topic>/compressed`
(`sensor_msgs/CompressedImage`, JPEG or PNG) instead, as image_transport names it.

Input QoS: with `input_qos: auto` (the default) each camera's subscription takes the reliability
of the publishers on its topic (all reliable: reliable; any best effort: best effort), keep-last
5; later changes follow the publishers present for `qos_settle_period` seconds, so that
short-lived ones do not flip it (see `superpoint_ros.ros.camera_input`); until a publisher appears
it waits. A topic whose publishers send nothing the node receives for `silence_warning_period`
seconds gets a warning that names the last frame's size, the likely cause and the fixes.
`/diagnostics` carries one status per camera, every second.

Latency stays bounded: only the newest frame of each camera waits for the network, several
cameras run as one batch (`superpoint_ros.ros.batcher`), and the frames replaced meanwhile are
counted as dropped and logged every `statistics_period` seconds. (Frames the middleware itself
discards never reach the node: with Fast DDS, best-effort frames over 512 KB between processes
need `config/fastdds_large_images.xml` in both processes.)

`keypoint_threshold`, `nms_radius`, `max_keypoints` and `border_removal_distance` can be set
at run time (the next frame uses them); every other parameter is read-only
(`superpoint_ros.ros.detector_parameters`).

With `--managed` (before `--ros-args`) it is a lifecycle node (`docs/lifecycle.md`): configure
loads the weights and builds the engine, activate subscribes, deactivate unsubscribes, cleanup
frees the engine.

Why one module over 400 lines: a fifth of it is this docstring and the imports; the rest is the
lifecycle stages (declare, configure, activate, deactivate, clean up), which share the node's
cameras and detector, while each part they wire (parameters, camera input, batcher,
diagnostics, messages) lives in a module of its own.
"""

import dataclasses
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.validate_topic_name import validate_topic_name
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from superpoint_ros.drawing import draw_detections, grey_or_colour_to_bgr8
from superpoint_ros.feature_types import LICENCES, RANDOM_WEIGHTS, Detections, DetectionSettings
from superpoint_ros.image_codec import ImageDecodeError
from superpoint_ros.msg import KeypointArray
from superpoint_ros.ros.batcher import FrameBatcher, PendingFrame
from superpoint_ros.ros.camera_input import CameraInput
from superpoint_ros.ros.debug_output import DebugOutput
from superpoint_ros.ros.detector_parameters import PARAMETERS, RUNTIME_PARAMETERS, DetectorConfig
from superpoint_ros.ros.diagnostics import FrameCounters, statistics_line
from superpoint_ros.ros.parameters import RuntimeParameters, declare_parameters, parameter_values
from superpoint_ros.ros.ros_messages import decode_frame_message, image_message, keypoint_array_message
from superpoint_ros.ros.ros_support import ErrorThrottle, ManagedStages, PlainStages, Stages, run_node

NODE_NAME = "superpoint_detector"
INPUT_TYPES = {"raw": Image, "compressed": CompressedImage}
OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
# diagnostic_updater's default: reliable, a few messages deep, published once a second.
DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
DIAGNOSTICS_PERIOD_S = 1.0
GRAPH_CHECK_PERIOD_S = 0.5
ERROR_LOG_PERIOD_S = 5.0
# What a bad configuration raises in `_configure`: one log line, no traceback.
STARTUP_ERRORS = (ValueError, ParameterException, NameValidationException)


@dataclasses.dataclass
class Camera:
    """One input (`input`, a `CameraInput`) and its outputs. `image_topic` is as configured."""

    name: str
    image_topic: str
    input: CameraInput
    keypoints_publisher: Publisher
    debug: DebugOutput | None

    @property
    def input_topic(self) -> str:
        return self.input.input_topic

    @property
    def reliability(self) -> ReliabilityPolicy | None:
        return self.input.reliability

    @property
    def subscription(self):
        return self.input.subscription

    @property
    def debug_publisher(self) -> Publisher | None:
        return self.debug.publisher if self.debug is not None else None

    @property
    def counters(self) -> FrameCounters:
        return self.input.counters


class DetectorStages(Stages):
    """The detector node's work, as stages (see `ros_support.Stages`)."""

    def _startup_errors(self) -> tuple[type[Exception], ...]:
        from superpoint_ros.weights_files import WeightsError

        return (WeightsError, *STARTUP_ERRORS)

    def _declare(self) -> None:
        # Values are read again in `_configure`: a managed node may be given new ones before it.
        declare_parameters(self, PARAMETERS)
        self.detector = None
        self._frame_calibration = None
        self.settings: DetectionSettings | None = None
        self.cameras: list[Camera] = []
        self._diagnostics_publisher = None
        self._publishing = False
        self._errors = ErrorThrottle(ERROR_LOG_PERIOD_S)
        self._batcher: FrameBatcher | None = None
        self._stage_timers = []
        self._logged_counters: dict[str, FrameCounters] = {}
        self._runtime = RuntimeParameters(
            self,
            RUNTIME_PARAMETERS,
            lambda: {name: self.get_parameter(name).value for name in RUNTIME_PARAMETERS},
            lambda values: DetectionSettings(**values),
            self._apply_settings,
        )

    def _configure(self) -> None:
        config = DetectorConfig.from_values(parameter_values(self, PARAMETERS))
        for camera in config.cameras:
            validate_topic_name(camera.image_topic)
        self.config = config
        self.settings = config.settings
        self.detector, self._frame_calibration = self._create_detector(config)
        if config.resize is not None:
            # Every frame reaches the network at this size: compile for it now, not on the first frame.
            self.detector.detect([np.zeros(config.resize, np.uint8)], "bgr", config.settings)
        self._show_engine_in_use()
        message_type = INPUT_TYPES[config["image_transport"]]
        self.cameras = []
        for layout in config.cameras:
            # image_transport resolves (and remaps) the base topic, then appends the transport.
            input_topic = self.resolve_topic_name(layout.image_topic)
            if config["image_transport"] == "compressed":
                input_topic += "/compressed"
            camera_input = CameraInput(
                self,
                layout.name,
                input_topic,
                message_type,
                config["input_qos"],
                lambda message, name=layout.name: self._batcher.offer(name, message),
                config["qos_settle_period"],
                config["silence_warning_period"],
            )
            debug = None
            if config["debug_image"]:
                debug = DebugOutput(self, f"{layout.prefix}debug_image", OUTPUT_QOS)
            keypoints = self.create_publisher(KeypointArray, f"{layout.prefix}keypoints", OUTPUT_QOS)
            self.cameras.append(Camera(layout.name, layout.image_topic, camera_input, keypoints, debug))
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self._batcher = FrameBatcher(
            [camera.name for camera in self.cameras],
            config["batch_timeout"],
            lambda frames: self._process(frames),
            self._on_batch_error,
            {camera.name: camera.counters for camera in self.cameras},
        )
        if config["statistics_period"] > 0:
            self._stage_timers.append(self.create_timer(config["statistics_period"], self._log_statistics))
        self._stage_timers.append(self.create_timer(GRAPH_CHECK_PERIOD_S, self._check_inputs))
        self._stage_timers.append(self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics))

    def _activate(self) -> None:
        self._publishing = True
        for camera in self.cameras:
            camera.input.open()

    def _deactivate(self) -> None:
        self._publishing = False
        for camera in self.cameras:
            camera.input.close()
        if self._batcher is not None:
            self._batcher.discard_pending()

    def _cleanup(self) -> None:
        self._deactivate()
        if self._batcher is not None:
            self._batcher.stop()
            self._batcher = None
        for timer in self._stage_timers:
            self.destroy_timer(timer)
        self._stage_timers = []
        for camera in self.cameras:
            self.destroy_publisher(camera.keypoints_publisher)
            if camera.debug is not None:
                camera.debug.close()
        if self._diagnostics_publisher is not None:
            self.destroy_publisher(self._diagnostics_publisher)
            self._diagnostics_publisher = None
        self.cameras = []
        self.settings = None
        if self.detector is not None:
            self.detector.release()
            self.detector = self._frame_calibration = None

    def _create_detector(self, config: DetectorConfig):
        """Load the weights and build the engine (slow: imported only now, after the checks); with
        int8 calibrated on frames, also the `FrameCalibration` that collects them, else None."""
        from superpoint_ros.detector_choice import create_detector

        requested_device = config["device"]
        on_frames = config["precision"] == "int8" and config["int8_calibration"] == "frames"
        detector = create_detector(
            weights=config["weights"],
            weights_revision=config["weights_revision"] or None,
            architecture=config["architecture"],
            device=requested_device,
            backend=config["backend"],
            precision="float32" if on_frames else config["precision"],
            tensorrt_cache_dir=config["tensorrt_cache_dir"] or None,
            calibration=config["int8_calibration"],
            calibration_count=config["int8_calibration_count"],
            quantization_cache_dir=config["int8_cache_dir"] or None,
            logger=self.get_logger(),
            resize=config.resize,
        )
        device = detector.device
        where = f"{device} ({_gpu_name(device)})" if device.type == "cuda" else "the CPU"
        reason = ", no CUDA GPU seen" if requested_device == "auto" and device.type == "cpu" else ""
        self.get_logger().info(
            f"SuperPoint runs on {where} (device '{requested_device}'{reason}) with the {detector.backend} engine "
            f"in {detector.precision}; weights: {config['weights']}"
        )
        calibration = None
        if on_frames:
            from superpoint_ros.frame_calibration import FrameCalibration

            calibration = FrameCalibration(detector, config["int8_calibration_count"], self.get_logger())
            self.get_logger().info("int8 takes over once it is calibrated on the first frames")
        licence = "untrained, no licence" if config["weights"] == RANDOM_WEIGHTS else LICENCES[detector.architecture]
        self.get_logger().info(f"Network: the {detector.architecture} architecture; {licence}")
        if config["weights"] == RANDOM_WEIGHTS:
            self.get_logger().warning("Random weights: the keypoints are not meaningful.")
        return detector, calibration

    def _show_engine_in_use(self) -> None:
        """`backend` and `architecture` become the engine and network that run (`Detector.backend`,
        `Detector.architecture`), read-only. rclpy refuses to change a read-only parameter even
        from the node itself, hence declared writable at first."""
        for name, value in (("backend", self.detector.backend), ("architecture", self.detector.architecture)):
            descriptor = self.describe_parameter(name)
            if descriptor.read_only:  # configured before, cleaned up: the engine is built again as it was
                continue
            self.undeclare_parameter(name)
            descriptor.read_only = True
            self.declare_parameter(name, value, descriptor, ignore_override=True)

    def _apply_settings(self, changed: dict) -> None:
        if self.settings is not None:  # else `_configure` reads the parameters
            self.settings = dataclasses.replace(self.settings, **changed)

    def _check_inputs(self) -> None:
        for camera in self.cameras:
            camera.input.check()

    def _publish_diagnostics(self) -> None:
        engine = {
            "device": str(self.detector.device),
            "backend": self.detector.backend,
            "precision": self.detector.precision,
            "weights": self.config["weights"],
            "image transport": self.config["image_transport"],
        }
        with self._batcher.lock:
            statuses = [camera.input.status(f"{self.get_name()}: {camera.name}", engine) for camera in self.cameras]
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics_publisher.publish(DiagnosticArray(header=header, status=statuses))

    def _on_batch_error(self, frames: list[PendingFrame], error: Exception) -> None:
        self._throttled_error(f"Handling {len(frames)} frame(s) failed: {error!r}")

    def _process(self, frames: list[PendingFrame]) -> None:
        cameras = {camera.name: camera for camera in self.cameras}
        batches: dict[tuple, list[tuple[Camera, PendingFrame, object]]] = {}
        for frame in frames:
            camera = cameras[frame.camera]
            try:
                image = decode_frame_message(frame.message)
            except ImageDecodeError as error:
                with self._batcher.lock:
                    camera.counters.rejected += 1
                self._throttled_error(f"Dropped a frame from '{camera.input_topic}': {error}")
                continue
            key = (image.pixels.shape, image.pixels.dtype, image.channel_order)
            batches.setdefault(key, []).append((camera, frame, image))
        settings = self.settings
        for (_, _, channel_order), batch in batches.items():
            if self._frame_calibration is not None and self._frame_calibration.wants_frames:
                self._frame_calibration.offer(batch[0][2].pixels, channel_order)
            # Each batch on its own: one that fails must not take another camera's frames with it.
            try:
                results = self._detect_batch(batch, channel_order, settings)
            except Exception as error:
                with self._batcher.lock:
                    for camera, _, _ in batch:
                        camera.counters.failed += 1
                        camera.input.health.consecutive_failures += 1
                        camera.input.health.last_failure = repr(error)
                topics = ", ".join(sorted({f"'{camera.input_topic}'" for camera, _, _ in batch}))
                self._throttled_error(f"Inference failed, {len(batch)} frame(s) from {topics} dropped: {error!r}")
                continue
            for (camera, frame, image), detections in zip(batch, results, strict=True):
                self._publish(camera, frame, image, detections)

    def _detect_batch(self, batch: list, channel_order: str, settings: DetectionSettings) -> list[Detections]:
        """Run one batch with `settings` and count it; the detections in `batch` order."""
        started_s = time.monotonic()
        results = self.detector.detect([image.pixels for _, _, image in batch], channel_order, settings)
        network_s_per_frame = (time.monotonic() - started_s) / len(batch)
        with self._batcher.lock:
            for camera, _, _ in batch:
                counters = camera.counters
                counters.processed += 1
                counters.batched_frames += len(batch) > 1
                counters.largest_batch = max(counters.largest_batch, len(batch))
                camera.input.health.consecutive_failures = 0
                camera.input.health.network_s.append(network_s_per_frame)
        return results

    def _publish(self, camera: Camera, frame: PendingFrame, image, detections: Detections) -> None:
        if not self._publishing:  # deactivated while this batch ran
            return
        header = frame.message.header
        height, width = image.pixels.shape[:2]
        camera.keypoints_publisher.publish(
            keypoint_array_message(detections, header, height, width, self.detector.descriptor_size)
        )
        with self._batcher.lock:
            camera.input.health.latencies_s.append(time.monotonic() - frame.received_s)
        if camera.debug is not None and camera.debug.watched:
            latency_ms = 1000 * (time.monotonic() - frame.received_s)
            caption = f"{len(detections.scores)} keypoints  {latency_ms:.0f} ms"
            if self.config["weights"] == RANDOM_WEIGHTS:
                caption += "  RANDOM WEIGHTS: not meaningful"
            overlay = draw_detections(grey_or_colour_to_bgr8(image.bgr_view()), detections, caption)
            camera.debug.publisher.publish(image_message(overlay, "bgr8", header))
            with self._batcher.lock:
                camera.counters.debug_images += 1

    def _throttled_error(self, message: str) -> None:
        """Log `message` unless the same text was logged in the last `ERROR_LOG_PERIOD_S`."""
        if self._errors.allows(message):
            self.get_logger().error(message)

    def statistics(self) -> dict[str, FrameCounters]:
        """A snapshot of each camera's counters, by camera name."""
        with self._batcher.lock:
            return {camera.name: dataclasses.replace(camera.counters) for camera in self.cameras}

    def _log_statistics(self) -> None:
        """One line per camera each period (`diagnostics.statistics_line`)."""
        statistics = self.statistics()
        for camera in self.cameras:
            counters = statistics[camera.name]
            before = self._logged_counters.get(camera.name, FrameCounters())
            self._logged_counters[camera.name] = counters
            line = statistics_line(camera.name, camera.input_topic, counters, before, self.config["statistics_period"])
            self.get_logger().info(line)


class DetectorNode(DetectorStages, PlainStages):
    """See the module docstring: configured and active from the start. Raises `WeightsError`,
    `ValueError`, a `ParameterException` or a `NameValidationException` when it cannot start;
    `main` turns those into one log line and a non-zero exit."""

    def __init__(self, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)


class ManagedDetectorNode(DetectorStages, ManagedStages):
    """The detector as a lifecycle node (`--managed`); unconfigured after construction."""

    def __init__(self, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)


def _gpu_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device)


def create(managed: bool = False, **node_options) -> Node:
    """The plain or the managed detector node."""
    return (ManagedDetectorNode if managed else DetectorNode)(**node_options)


def main(args: list[str] | None = None) -> int:
    """Run the node until shutdown; 1 (after one fatal log line) if it cannot start."""
    from superpoint_ros.weights_files import WeightsError

    return run_node(NODE_NAME, create, (WeightsError, *STARTUP_ERRORS), args)


if __name__ == "__main__":
    raise SystemExit(main())
