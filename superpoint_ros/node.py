"""The `superpoint_detector` node: camera images in, SuperPoint keypoints out.

    ros2 run superpoint_ros detector --ros-args --params-file config/detector.yaml
    python -m superpoint_ros.node --ros-args -p weights:=/path/to/model.safetensors

Topics, relative to the node's namespace:

- One camera (`image_topics` unset): subscribes to `image` (remap it), publishes `keypoints`
  (`superpoint_ros/msg/KeypointArray`) and `debug_image` (`sensor_msgs/Image`, bgr8).
- Several cameras: subscribes to each topic of `image_topics` and publishes
  `<name>/keypoints` and `<name>/debug_image`, where `<name>` is the matching entry of
  `camera_names`, or `camera0`, `camera1`, ... in `image_topics` order when that is unset.

Both outputs carry the source image's header unchanged. The debug image is drawn only while
someone subscribes to it.

Latency stays bounded: the subscription callback only keeps the newest frame of each camera;
a worker thread runs the network on whatever is pending, all cameras in one batch, and frames
replaced before the worker took them are counted as dropped and logged every
`statistics_period` seconds. (Frames the middleware itself discards never reach the node and
are not counted: its queue keeps the newest 5. With Fast DDS, best-effort frames over 512 KB
between processes need `config/fastdds_large_images.xml`.)

`keypoint_threshold`, `nms_radius`, `max_keypoints` and `border_removal_distance` can be set
at run time (the next frame uses them); every other parameter is read-only.
"""

import dataclasses
import signal
import sys
import threading
import time

import rclpy
import torch
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import NameValidationException, ParameterException, ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image

from superpoint_ros.backends import BACKENDS, PRECISIONS
from superpoint_ros.calibration import CALIBRATION_COUNT
from superpoint_ros.detector import Detections, DetectionSettings, Detector
from superpoint_ros.drawing import draw_detections, grey_or_colour_to_bgr8
from superpoint_ros.image_codec import DecodedImage, ImageDecodeError
from superpoint_ros.msg import KeypointArray
from superpoint_ros.ros_messages import decode_image_message, image_message, keypoint_array_message
from superpoint_ros.weights import DEFAULT_WEIGHTS, RANDOM_WEIGHTS, WeightsError

NODE_NAME = "superpoint_detector"
RUNTIME_PARAMETERS = ("keypoint_threshold", "nms_radius", "max_keypoints", "border_removal_distance")
INPUT_QOS_CHOICES = ("sensor_data", "reliable")
OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
ERROR_LOG_PERIOD_S = 5.0
SIGNAL_CHECK_PERIOD_S = 0.2


@dataclasses.dataclass
class FrameCounters:
    """Counts since start. `dropped`: frames replaced by a newer one before inference;
    `rejected`: frames that could not be decoded; `batched_frames`: frames that shared a network
    run with frames of other cameras; `debug_images`: overlays drawn and published."""

    received: int = 0
    dropped: int = 0
    rejected: int = 0
    processed: int = 0
    batched_frames: int = 0
    largest_batch: int = 0
    debug_images: int = 0


@dataclasses.dataclass
class Camera:
    name: str
    image_topic: str
    keypoints_publisher: Publisher
    debug_publisher: Publisher | None
    counters: FrameCounters = dataclasses.field(default_factory=FrameCounters)


@dataclasses.dataclass
class Frame:
    camera: Camera
    message: Image
    received_s: float
    image: DecodedImage | None = None


def _descriptor(description: str, read_only: bool = False, **constraints) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, read_only=read_only, **constraints)


def _integer_range(low: int, high: int) -> dict:
    return {"integer_range": [IntegerRange(from_value=low, to_value=high, step=1)]}


def _float_range(low: float, high: float) -> dict:
    return {"floating_point_range": [FloatingPointRange(from_value=low, to_value=high, step=0.0)]}


class DetectorNode(Node):
    """See the module docstring. Raises `WeightsError`, `ValueError`, a `ParameterException` or
    a `NameValidationException` when it cannot start; `main` turns those into one log line and a
    non-zero exit."""

    def __init__(self, **node_options) -> None:
        super().__init__(NODE_NAME, **node_options)
        self._declare_parameters()
        self._lock = threading.Condition()
        self._pending: dict[str, Frame] = {}
        self._stopping = False
        self._error_log_times: dict[str, float] = {}
        self._logged_counters: dict[str, FrameCounters] = {}
        self._batch_timeout_s = self._parameter("batch_timeout")
        # Configuration mistakes are reported before the (slow) weights are loaded.
        layout, input_qos = self._camera_layout(), self._input_qos()
        self.detector = self._create_detector()
        self._random_weights = self._parameter("weights") == RANDOM_WEIGHTS
        self.cameras = self._create_cameras(layout, input_qos)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._worker = threading.Thread(target=self._work, name="superpoint_inference", daemon=True)
        self._worker.start()
        period = self._parameter("statistics_period")
        if period > 0:
            self.create_timer(period, self._log_statistics)

    def _declare_parameters(self) -> None:
        settings = DetectionSettings()
        self.declare_parameter(
            "weights",
            DEFAULT_WEIGHTS,
            _descriptor(
                "Hugging Face repo id, local directory holding model.safetensors, a .safetensors or "
                f"MagicLeap .pth file, or '{RANDOM_WEIGHTS}' (untrained, for tests: keypoints are not meaningful).",
                read_only=True,
            ),
        )
        self.declare_parameter(
            "weights_revision", "", _descriptor("Hub revision (branch, tag or commit); empty: main.", read_only=True)
        )
        self.declare_parameter(
            "device", "auto", _descriptor("auto (CUDA when present, else CPU), cpu, cuda or cuda:N.", read_only=True)
        )
        self.declare_parameter(
            "backend",
            "auto",
            _descriptor(
                "Network engine: auto (OpenVINO on the CPU when installed, else PyTorch), torch or openvino. "
                "torch on the CPU is bit-exact with the reference and about 3x slower.",
                read_only=True,
                additional_constraints=" | ".join(BACKENDS),
            ),
        )
        self.declare_parameter(
            "precision",
            "float32",
            _descriptor(
                "float32, or an opt-in faster mode whose output drifts from the reference: bfloat16 "
                "(OpenVINO on CPU, CUDA), float16 (CUDA) or int8 (OpenVINO on CPU, needs nncf).",
                read_only=True,
                additional_constraints=" | ".join(PRECISIONS),
            ),
        )
        self.declare_parameter(
            "int8_calibration",
            "scenes",
            _descriptor(
                "With precision int8, what quantisation is calibrated on: scenes (generated, photograph-like), "
                "frames (this camera's first int8_calibration_count frames; float32 runs until int8 is ready) "
                "or a directory of images.",
                read_only=True,
            ),
        )
        self.declare_parameter(
            "int8_calibration_count",
            CALIBRATION_COUNT,
            _descriptor("Images or frames int8 is calibrated on.", read_only=True, **_integer_range(1, 1000)),
        )
        self.declare_parameter(
            "int8_cache_dir",
            "",
            _descriptor(
                "Directory of quantised int8 models; empty: $XDG_CACHE_HOME/superpoint_ros or ~/.cache/superpoint_ros.",
                read_only=True,
            ),
        )
        for side in ("height", "width"):
            self.declare_parameter(
                f"resize_{side}",
                0,
                _descriptor(
                    f"Pixels; images are resized to this {side} before the network (0 with the other 0: native "
                    "size). Keypoints are always in source pixels.",
                    read_only=True,
                    **_integer_range(0, 8192),
                ),
            )
        self.declare_parameter(
            "keypoint_threshold",
            settings.keypoint_threshold,
            _descriptor("Keep keypoints scoring above this; must be below 1.", **_float_range(0.0, 1.0)),
        )
        self.declare_parameter(
            "nms_radius",
            settings.nms_radius,
            _descriptor(
                "Pixels; a keypoint must be the best of its (2r+1)² window (0: no suppression).",
                **_integer_range(0, 64),
            ),
        )
        self.declare_parameter(
            "max_keypoints",
            settings.max_keypoints,
            _descriptor("Keep at most this many best keypoints per image; -1 keeps all.", **_integer_range(-1, 100000)),
        )
        self.declare_parameter(
            "border_removal_distance",
            settings.border_removal_distance,
            _descriptor("Pixels; drop keypoints closer than this to the image edge.", **_integer_range(0, 256)),
        )
        self.declare_parameter(
            "image_topics",
            Parameter.Type.STRING_ARRAY,
            _descriptor(
                "Several cameras: their image topics. Unset: one camera on 'image'.",
                read_only=True,
                type=ParameterType.PARAMETER_STRING_ARRAY,
            ),
        )
        self.declare_parameter(
            "camera_names",
            Parameter.Type.STRING_ARRAY,
            _descriptor(
                "With image_topics: output namespace of each camera (<name>/keypoints, <name>/debug_image). "
                "Unset: camera0, camera1, ...",
                read_only=True,
                type=ParameterType.PARAMETER_STRING_ARRAY,
            ),
        )
        self.declare_parameter(
            "input_qos",
            "sensor_data",
            _descriptor(
                "Image subscription QoS: sensor_data (best effort) or reliable (for bags and drivers that "
                "publish reliable).",
                read_only=True,
                additional_constraints="sensor_data | reliable",
            ),
        )
        self.declare_parameter(
            "debug_image",
            True,
            _descriptor("Publish debug_image overlays (drawn only while subscribed).", read_only=True),
        )
        self.declare_parameter(
            "batch_timeout",
            0.005,
            _descriptor(
                "Seconds; with several cameras, how long a frame waits for the other cameras' frames so "
                "that all run as one batch.",
                read_only=True,
                **_float_range(0.0, 0.1),
            ),
        )
        self.declare_parameter(
            "statistics_period",
            5.0,
            _descriptor(
                "Seconds between log lines counting received, processed and dropped frames (0: never).",
                read_only=True,
                **_float_range(0.0, 3600.0),
            ),
        )

    def _parameter(self, name: str):
        """The value of `name`; None for a typed parameter left unset (`image_topics`)."""
        try:
            return self.get_parameter(name).value
        except ParameterUninitializedException:
            return None

    def _create_detector(self) -> Detector:
        resize = (self._parameter("resize_height"), self._parameter("resize_width"))
        if (resize[0] == 0) != (resize[1] == 0):
            raise ValueError(f"resize_height and resize_width must both be 0 or both be set, got {resize}")
        weights = self._parameter("weights")
        requested_device = self._parameter("device")
        detector = Detector(
            weights=weights,
            weights_revision=self._parameter("weights_revision") or None,
            device=requested_device,
            backend=self._parameter("backend"),
            precision=self._parameter("precision"),
            calibration=self._parameter("int8_calibration"),
            calibration_count=self._parameter("int8_calibration_count"),
            quantization_cache_dir=self._parameter("int8_cache_dir") or None,
            logger=self.get_logger(),
            resize=resize if resize[0] else None,
            **{name: self._parameter(name) for name in RUNTIME_PARAMETERS},
        )
        device = detector.device
        where = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "the CPU"
        reason = ", no CUDA GPU seen" if requested_device == "auto" and device.type == "cpu" else ""
        self.get_logger().info(
            f"SuperPoint runs on {where} (device '{requested_device}'{reason}) with the {detector.backend} engine "
            f"in {detector.precision}; weights: {weights}"
        )
        if detector.wants_calibration_frames:
            self.get_logger().info("int8 takes over once it is calibrated on the first frames")
        if weights == RANDOM_WEIGHTS:
            self.get_logger().warning("Random weights: the keypoints are not meaningful.")
        return detector

    def _camera_layout(self) -> list[tuple[str, str, str]]:
        """(name, image topic, output prefix) of each camera."""
        topics = self._parameter("image_topics")
        names = self._parameter("camera_names")
        if not topics:
            if names:
                raise ValueError("camera_names is set but image_topics is not")
            return [("image", "image", "")]
        names = names or [f"camera{index}" for index in range(len(topics))]
        if len(names) != len(topics):
            raise ValueError(f"camera_names has {len(names)} entries but image_topics has {len(topics)}")
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"camera_names must be distinct and non-empty, got {names}")
        return [(name, topic, f"{name}/") for name, topic in zip(names, topics, strict=True)]

    def _input_qos(self) -> QoSProfile:
        qos_name = self._parameter("input_qos")
        if qos_name not in INPUT_QOS_CHOICES:
            raise ValueError(f"input_qos must be one of {', '.join(INPUT_QOS_CHOICES)}, got '{qos_name}'")
        if qos_name == "sensor_data":
            return qos_profile_sensor_data
        return QoSProfile(depth=qos_profile_sensor_data.depth, reliability=ReliabilityPolicy.RELIABLE)

    def _create_cameras(self, layout: list[tuple[str, str, str]], input_qos: QoSProfile) -> list[Camera]:
        debug = self._parameter("debug_image")
        cameras = []
        for name, topic, prefix in layout:
            camera = Camera(
                name=name,
                image_topic=topic,
                keypoints_publisher=self.create_publisher(KeypointArray, f"{prefix}keypoints", OUTPUT_QOS),
                debug_publisher=self.create_publisher(Image, f"{prefix}debug_image", OUTPUT_QOS) if debug else None,
            )
            self.create_subscription(
                Image, topic, lambda message, camera=camera: self._on_image(camera, message), input_qos
            )
            cameras.append(camera)
        return cameras

    def _validate_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        values = {name: getattr(self.detector.settings, name) for name in RUNTIME_PARAMETERS}
        values.update({p.name: p.value for p in parameters if p.name in RUNTIME_PARAMETERS})
        try:
            DetectionSettings(**values)
        except (ValueError, TypeError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        changed = {p.name: p.value for p in parameters if p.name in RUNTIME_PARAMETERS}
        if changed:
            self.detector.settings = dataclasses.replace(self.detector.settings, **changed)
            self.get_logger().info(f"Detection settings now {self.detector.settings}")

    def _on_image(self, camera: Camera, message: Image) -> None:
        with self._lock:
            camera.counters.received += 1
            if camera.name in self._pending:
                camera.counters.dropped += 1
            self._pending[camera.name] = Frame(camera, message, time.monotonic())
            self._lock.notify()

    def _take_pending(self) -> list[Frame] | None:
        """Block until a frame is pending; with several cameras, wait up to `batch_timeout`
        for the others too. None once the node is stopping."""
        with self._lock:
            self._lock.wait_for(lambda: self._pending or self._stopping)
            if len(self.cameras) > 1 and not self._stopping:
                first_s = min(frame.received_s for frame in self._pending.values())
                deadline_s = first_s + self._batch_timeout_s
                while len(self._pending) < len(self.cameras) and not self._stopping:
                    remaining_s = deadline_s - time.monotonic()
                    if remaining_s <= 0:
                        break
                    self._lock.wait(remaining_s)
            if self._stopping:
                return None
            frames = list(self._pending.values())
            self._pending.clear()
            return frames

    def _work(self) -> None:
        while (frames := self._take_pending()) is not None:
            try:
                self._process(frames)
            except Exception as error:  # one bad batch must not end inference for good
                self._throttled_error(f"Inference failed, {len(frames)} frame(s) dropped: {error!r}")

    def _process(self, frames: list[Frame]) -> None:
        batches: dict[tuple, list[Frame]] = {}
        for frame in frames:
            try:
                frame.image = decode_image_message(frame.message)
            except ImageDecodeError as error:
                with self._lock:
                    frame.camera.counters.rejected += 1
                self._throttled_error(f"Dropped a frame from '{frame.camera.image_topic}': {error}")
                continue
            pixels = frame.image.pixels
            batches.setdefault((pixels.shape, pixels.dtype, frame.image.channel_order), []).append(frame)
        for (_, _, channel_order), batch in batches.items():
            if self.detector.wants_calibration_frames:
                self.detector.offer_calibration_frame(batch[0].image.pixels, channel_order)
            results = self.detector.detect([frame.image.pixels for frame in batch], channel_order)
            with self._lock:
                for frame in batch:
                    counters = frame.camera.counters
                    counters.processed += 1
                    counters.batched_frames += len(batch) > 1
                    counters.largest_batch = max(counters.largest_batch, len(batch))
            for frame, detections in zip(batch, results, strict=True):
                self._publish(frame, detections)

    def _publish(self, frame: Frame, detections: Detections) -> None:
        message = frame.message
        camera = frame.camera
        camera.keypoints_publisher.publish(
            keypoint_array_message(
                detections, message.header, message.height, message.width, self.detector.descriptor_size
            )
        )
        if camera.debug_publisher is not None and camera.debug_publisher.get_subscription_count() > 0:
            latency_ms = 1000 * (time.monotonic() - frame.received_s)
            caption = f"{len(detections.scores)} keypoints  {latency_ms:.0f} ms"
            if self._random_weights:
                caption += "  RANDOM WEIGHTS: not meaningful"
            overlay = draw_detections(grey_or_colour_to_bgr8(frame.image.bgr_view()), detections, caption)
            camera.debug_publisher.publish(image_message(overlay, "bgr8", message.header))
            with self._lock:
                camera.counters.debug_images += 1

    def _throttled_error(self, message: str) -> None:
        """Log `message` unless the same text was logged in the last `ERROR_LOG_PERIOD_S`."""
        now_s = time.monotonic()
        if len(self._error_log_times) > 1000:
            # Messages name sizes and encodings, so a hostile publisher could make endless new ones.
            recent = {text: at_s for text, at_s in self._error_log_times.items() if now_s - at_s < ERROR_LOG_PERIOD_S}
            self._error_log_times = recent
        if now_s - self._error_log_times.get(message, -ERROR_LOG_PERIOD_S) >= ERROR_LOG_PERIOD_S:
            self._error_log_times[message] = now_s
            self.get_logger().error(message)

    def statistics(self) -> dict[str, FrameCounters]:
        """A snapshot of each camera's counters, by camera name."""
        with self._lock:
            return {camera.name: dataclasses.replace(camera.counters) for camera in self.cameras}

    def _log_statistics(self) -> None:
        for name, counters in self.statistics().items():
            if self._logged_counters.get(name, FrameCounters()) == counters:
                continue
            self._logged_counters[name] = counters
            self.get_logger().info(
                f"{name}: {counters.received} frames received, {counters.processed} processed, "
                f"{counters.dropped} dropped for newer frames, {counters.rejected} rejected as undecodable; "
                f"{counters.batched_frames} ran batched with other cameras (largest batch {counters.largest_batch})"
            )

    def destroy_node(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._worker.join(timeout=10.0)
        super().destroy_node()


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def main(args: list[str] | None = None) -> int:
    """Run the node until shutdown; 1 (after one fatal log line) if it cannot start."""
    try:
        # SIGINT and SIGTERM raise KeyboardInterrupt, seen between two short spins below. rclpy's
        # own handler now and then let a SIGINT go unnoticed while the node idled (seen when
        # started in the background, where the shell had set SIGINT to be ignored).
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as error:  # rclpy's RCLError: unusable --ros-args, such as an unreadable params file
        print(f"[FATAL] [{NODE_NAME}]: Cannot start: {_one_line(error)}", file=sys.stderr)
        return 1
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        node = DetectorNode()
    except (WeightsError, ValueError, ParameterException, NameValidationException) as error:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"Cannot start: {_one_line(error)}")
        rclpy.try_shutdown()
        return 1
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 130
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok():
            executor.spin_once(timeout_sec=SIGNAL_CHECK_PERIOD_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
