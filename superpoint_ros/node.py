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
someone subscribes to it. `image_transport: compressed` subscribes to `<topic>/compressed`
(`sensor_msgs/CompressedImage`, JPEG or PNG) instead, as image_transport names it.

Input QoS: with `input_qos: auto` (the default) each camera's subscription takes the reliability
of the publishers on its topic (all reliable: reliable; any best effort: best effort), keep-last
5, and follows them when they change; until a publisher appears it waits. A topic whose
publishers send nothing the node receives for `silence_warning_period` seconds gets a warning
that names the likely cause and the fixes. `/diagnostics` carries one status per camera, every
second.

Latency stays bounded: the subscription callback only keeps the newest frame of each camera;
a worker thread runs the network on whatever is pending, all cameras in one batch, and frames
replaced before the worker took them are counted as dropped and logged every
`statistics_period` seconds (a period in which nothing arrived is logged too, naming the
topic). (Frames the middleware itself discards never reach the node and are not counted. With
Fast DDS, best-effort frames over 512 KB between processes need
`config/fastdds_large_images.xml` in both processes.)

`keypoint_threshold`, `nms_radius`, `max_keypoints` and `border_removal_distance` can be set
at run time (the next frame uses them); every other parameter is read-only.
"""

import collections
import dataclasses
import threading
import time

import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import (
    SetParametersResult,
)
from rclpy.event_handler import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.exceptions import NameValidationException, ParameterException, ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import HistoryPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.subscription import Subscription
from rclpy.topic_endpoint_info import TopicEndpointInfo
from rclpy.validate_topic_name import validate_topic_name
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from superpoint_ros.backends import BACKENDS, PRECISIONS
from superpoint_ros.calibration import CALIBRATION_COUNT
from superpoint_ros.detector import Detections, DetectionSettings, Detector
from superpoint_ros.diagnostics import CameraHealth, FrameCounters, camera_status
from superpoint_ros.drawing import draw_detections, grey_or_colour_to_bgr8
from superpoint_ros.image_codec import DecodedImage, ImageDecodeError
from superpoint_ros.model import ARCHITECTURES
from superpoint_ros.msg import KeypointArray
from superpoint_ros.ros_messages import decode_frame_message, image_message, keypoint_array_message
from superpoint_ros.ros_support import (
    ErrorThrottle,
    declare_string_list,
    describe,
    float_range,
    integer_range,
    run_node,
)
from superpoint_ros.weights import AUTO_ARCHITECTURE, DEFAULT_WEIGHTS, LICENCES, RANDOM_WEIGHTS, WeightsError

NODE_NAME = "superpoint_detector"
RUNTIME_PARAMETERS = ("keypoint_threshold", "nms_radius", "max_keypoints", "border_removal_distance")
INPUT_QOS_CHOICES = ("auto", "sensor_data", "reliable")
TRANSPORTS = ("raw", "compressed")
INPUT_TYPES = {"raw": Image, "compressed": CompressedImage}
OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
# diagnostic_updater's default: reliable, a few messages deep, published once a second.
DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
DIAGNOSTICS_PERIOD_S = 1.0
# The subscription's history, as sensor_data's. The newest frame still wins: the callback only
# replaces the pending frame, so a deeper history adds no latency.
INPUT_DEPTH = 5
GRAPH_CHECK_PERIOD_S = 0.5
ERROR_LOG_PERIOD_S = 5.0
LARGE_IMAGES_PROFILE = "config/fastdds_large_images.xml"


@dataclasses.dataclass
class Camera:
    """One input. `image_topic` is as configured; `input_topic` is what is subscribed: the
    resolved, remapped name, with `/compressed` appended for the compressed transport.
    `reliability` is the subscription's (None: not subscribed yet, waiting for a publisher).
    `waiting_since_s` is when the node began to expect frames: start, the latest subscription,
    or the moment publishers appeared."""

    name: str
    image_topic: str
    input_topic: str
    keypoints_publisher: Publisher
    debug_publisher: Publisher | None
    health: CameraHealth = dataclasses.field(default_factory=CameraHealth)
    subscription: Subscription | None = None
    reliability: ReliabilityPolicy | None = None
    waiting_since_s: float = dataclasses.field(default_factory=time.monotonic)
    publisher_count: int = 0
    silence_logged_s: float = -float("inf")

    @property
    def counters(self) -> FrameCounters:
        return self.health.counters


@dataclasses.dataclass
class Frame:
    camera: Camera
    message: Image | CompressedImage
    received_s: float
    image: DecodedImage | None = None


def following_reliability(publishers: list[TopicEndpointInfo]) -> ReliabilityPolicy | None:
    """The reliability a subscription needs to hear every publisher in `publishers` well, as
    `ros2 topic echo` and rosbag2 choose it: reliable when all offer reliable, best effort when
    any offers best effort (a reliable subscription cannot match it), None when there are none."""
    if not publishers:
        return None
    if all(info.qos_profile.reliability == ReliabilityPolicy.RELIABLE for info in publishers):
        return ReliabilityPolicy.RELIABLE
    return ReliabilityPolicy.BEST_EFFORT


def reliability_name(reliability: ReliabilityPolicy | None) -> str:
    return {ReliabilityPolicy.RELIABLE: "reliable", ReliabilityPolicy.BEST_EFFORT: "best effort"}.get(
        reliability, "unknown"
    )


def describe_publishers(publishers: list[TopicEndpointInfo]) -> str:
    """`"2 publishers: 1 reliable, 1 best effort"`."""
    kinds = collections.Counter(reliability_name(info.qos_profile.reliability) for info in publishers)
    plural = "s" if len(publishers) != 1 else ""
    return f"{len(publishers)} publisher{plural}: " + ", ".join(f"{count} {kind}" for kind, count in kinds.items())


def _type_name(message_type: type) -> str:
    """`sensor_msgs/msg/Image` for `sensor_msgs.msg.Image`, as the graph reports topic types."""
    return f"{message_type.__module__.split('.')[0]}/msg/{message_type.__name__}"


def _large_images_profile_path() -> str:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        return f"{get_package_share_directory('superpoint_ros')}/{LARGE_IMAGES_PROFILE}"
    except (ImportError, PackageNotFoundError):
        return f"$(ros2 pkg prefix superpoint_ros)/share/superpoint_ros/{LARGE_IMAGES_PROFILE}"


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
        self._errors = ErrorThrottle(ERROR_LOG_PERIOD_S)
        self._logged_counters: dict[str, FrameCounters] = {}
        self._batch_timeout_s = self._parameter("batch_timeout")
        self._silence_s = self._parameter("silence_warning_period")
        # Configuration mistakes are reported before the (slow) weights are loaded.
        layout, self._input_qos_choice, self._transport = self._camera_layout(), self._input_qos(), self._transport_()
        self._input_type_name = _type_name(INPUT_TYPES[self._transport])
        self.detector = self._create_detector()
        self._show_engine_in_use()
        self._random_weights = self._parameter("weights") == RANDOM_WEIGHTS
        self._large_images_profile = _large_images_profile_path()
        self.cameras = self._create_cameras(layout)
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._worker = threading.Thread(target=self._work, name="superpoint_inference", daemon=True)
        self._worker.start()
        period = self._parameter("statistics_period")
        if period > 0:
            self.create_timer(period, self._log_statistics)
        self.create_timer(GRAPH_CHECK_PERIOD_S, self._check_inputs)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)

    def _show_engine_in_use(self) -> None:
        """`backend` and `architecture` become the engine and network that run (`Detector.backend`,
        `Detector.architecture`), read-only. rclpy refuses to change a read-only parameter even
        from the node itself, hence declared writable at first."""
        for name, value in (("backend", self.detector.backend), ("architecture", self.detector.architecture)):
            descriptor = self.describe_parameter(name)
            self.undeclare_parameter(name)
            descriptor.read_only = True
            self.declare_parameter(name, value, descriptor, ignore_override=True)

    def _declare_parameters(self) -> None:
        settings = DetectionSettings()
        self.declare_parameter(
            "weights",
            DEFAULT_WEIGHTS,
            describe(
                "Hugging Face repo id, local directory holding model.safetensors, a .safetensors or "
                "MagicLeap .pth file, rpautrat/SuperPoint's MIT-licensed superpoint_v6_from_tf.pth, "
                f"or '{RANDOM_WEIGHTS}' (untrained, for tests: keypoints are not meaningful).",
                read_only=True,
            ),
        )
        # Writable only until the detector exists: then `_show_engine_in_use` makes it read-only.
        self.declare_parameter(
            "architecture",
            AUTO_ARCHITECTURE,
            describe(
                "Network the weights hold: auto (read off the file), magicleap or mit (a file of the other "
                "is refused). Reads back as the one in use.",
                additional_constraints=" | ".join((AUTO_ARCHITECTURE, *ARCHITECTURES)),
            ),
        )
        self.declare_parameter(
            "weights_revision", "", describe("Hub revision (branch, tag or commit); empty: main.", read_only=True)
        )
        self.declare_parameter(
            "device", "auto", describe("auto (CUDA when present, else CPU), cpu, cuda or cuda:N.", read_only=True)
        )
        # Writable only until the detector exists: then `_show_engine_in_use` makes it read-only.
        self.declare_parameter(
            "backend",
            "auto",
            describe(
                "Network engine: auto (OpenVINO on the CPU when installed, else PyTorch), torch, openvino or "
                "onnxruntime (TensorRT, CUDA or CPU provider, whichever is installed). torch on the CPU is "
                "bit-exact with the reference and about 3x slower. Reads back as the engine in use, with "
                "ONNX Runtime's execution provider: onnxruntime (TensorrtExecutionProvider).",
                additional_constraints=" | ".join(BACKENDS),
            ),
        )
        self.declare_parameter(
            "precision",
            "float32",
            describe(
                "float32, or an opt-in faster mode whose output drifts from the reference: bfloat16 "
                "(OpenVINO on CPU, CUDA), float16 (CUDA) or int8 (OpenVINO on CPU, needs nncf).",
                read_only=True,
                additional_constraints=" | ".join(PRECISIONS),
            ),
        )
        self.declare_parameter(
            "tensorrt_cache_dir",
            "",
            describe(
                "Directory where ONNX Runtime's TensorRT provider keeps the engines it builds (backend "
                "onnxruntime); empty: ~/.cache/superpoint_ros/tensorrt.",
                read_only=True,
            ),
        )
        self.declare_parameter(
            "int8_calibration",
            "scenes",
            describe(
                "With precision int8, what quantisation is calibrated on: scenes (generated, photograph-like), "
                "frames (this camera's first int8_calibration_count frames; float32 runs until int8 is ready) "
                "or a directory of images.",
                read_only=True,
            ),
        )
        self.declare_parameter(
            "int8_calibration_count",
            CALIBRATION_COUNT,
            describe("Images or frames int8 is calibrated on.", read_only=True, **integer_range(1, 1000)),
        )
        self.declare_parameter(
            "int8_cache_dir",
            "",
            describe(
                "Directory of quantised int8 models; empty: $XDG_CACHE_HOME/superpoint_ros or ~/.cache/superpoint_ros.",
                read_only=True,
            ),
        )
        for side in ("height", "width"):
            self.declare_parameter(
                f"resize_{side}",
                0,
                describe(
                    f"Pixels; images are resized to this {side} before the network (0 with the other 0: native "
                    "size). Keypoints are always in source pixels.",
                    read_only=True,
                    **integer_range(0, 8192),
                ),
            )
        self.declare_parameter(
            "keypoint_threshold",
            settings.keypoint_threshold,
            describe("Keep keypoints scoring above this; must be below 1.", **float_range(0.0, 1.0)),
        )
        self.declare_parameter(
            "nms_radius",
            settings.nms_radius,
            describe(
                "Pixels; a keypoint must be the best of its (2r+1)² window (0: no suppression).",
                **integer_range(0, 64),
            ),
        )
        self.declare_parameter(
            "max_keypoints",
            settings.max_keypoints,
            describe("Keep at most this many best keypoints per image; -1 keeps all.", **integer_range(-1, 100000)),
        )
        self.declare_parameter(
            "border_removal_distance",
            settings.border_removal_distance,
            describe("Pixels; drop keypoints closer than this to the image edge.", **integer_range(0, 256)),
        )
        declare_string_list(self, "image_topics", "Several cameras: their image topics. Empty: one camera on 'image'.")
        declare_string_list(
            self,
            "camera_names",
            "With image_topics: output namespace of each camera (<name>/keypoints, <name>/debug_image). "
            "Empty: camera0, camera1, ...",
        )
        self.declare_parameter(
            "input_qos",
            "auto",
            describe(
                "Image subscription QoS. auto: the reliability of the topic's publishers (all reliable: "
                "reliable; any best effort: best effort), keep-last 5, re-chosen when they change; waits for "
                "a publisher. sensor_data: best effort. reliable: reliable.",
                read_only=True,
                additional_constraints=" | ".join(INPUT_QOS_CHOICES),
            ),
        )
        self.declare_parameter(
            "image_transport",
            "raw",
            describe(
                "raw: sensor_msgs/Image on each image topic. compressed: sensor_msgs/CompressedImage (JPEG or "
                "PNG) on <image topic>/compressed, as image_transport's compressed transport publishes.",
                read_only=True,
                additional_constraints=" | ".join(TRANSPORTS),
            ),
        )
        self.declare_parameter(
            "silence_warning_period",
            5.0,
            describe(
                "Seconds; warn (throttled to once per period) when a topic has publishers but no frame "
                "arrived for this long, and report the camera as WARN on /diagnostics (0: never warn).",
                read_only=True,
                **float_range(0.0, 3600.0),
            ),
        )
        self.declare_parameter(
            "debug_image",
            True,
            describe("Publish debug_image overlays (drawn only while subscribed).", read_only=True),
        )
        self.declare_parameter(
            "batch_timeout",
            0.005,
            describe(
                "Seconds; with several cameras, how long a frame waits for the other cameras' frames so "
                "that all run as one batch.",
                read_only=True,
                **float_range(0.0, 0.1),
            ),
        )
        self.declare_parameter(
            "statistics_period",
            5.0,
            describe(
                "Seconds between log lines counting received, processed and dropped frames (0: never).",
                read_only=True,
                **float_range(0.0, 3600.0),
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
            architecture=self._parameter("architecture"),
            device=requested_device,
            # Also as the parameter reads back, `onnxruntime (CPUExecutionProvider)`, so that the
            # file `ros2 param dump` writes starts the node again.
            backend=self._parameter("backend").split(" (", 1)[0],
            precision=self._parameter("precision"),
            tensorrt_cache_dir=self._parameter("tensorrt_cache_dir") or None,
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
        licence = "untrained, no licence" if weights == RANDOM_WEIGHTS else LICENCES[detector.architecture]
        self.get_logger().info(f"Network: the {detector.architecture} architecture; {licence}")
        if weights == RANDOM_WEIGHTS:
            self.get_logger().warning("Random weights: the keypoints are not meaningful.")
        return detector

    def _camera_layout(self) -> list[tuple[str, str, str]]:
        """(name, image topic, output prefix) of each camera; raises `InvalidTopicNameException`."""
        topics = self._parameter("image_topics")
        names = self._parameter("camera_names")
        for topic in topics or []:
            validate_topic_name(topic)
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

    def _input_qos(self) -> str:
        qos_name = self._parameter("input_qos")
        if qos_name not in INPUT_QOS_CHOICES:
            raise ValueError(f"input_qos must be one of {', '.join(INPUT_QOS_CHOICES)}, got '{qos_name}'")
        return qos_name

    def _transport_(self) -> str:
        transport = self._parameter("image_transport")
        if transport not in TRANSPORTS:
            raise ValueError(f"image_transport must be one of {', '.join(TRANSPORTS)}, got '{transport}'")
        return transport

    def _create_cameras(self, layout: list[tuple[str, str, str]]) -> list[Camera]:
        debug = self._parameter("debug_image")
        cameras = []
        for name, topic, prefix in layout:
            # image_transport resolves (and remaps) the base topic, then appends the transport.
            input_topic = self.resolve_topic_name(topic)
            if self._transport == "compressed":
                input_topic += "/compressed"
            camera = Camera(
                name=name,
                image_topic=topic,
                input_topic=input_topic,
                keypoints_publisher=self.create_publisher(KeypointArray, f"{prefix}keypoints", OUTPUT_QOS),
                debug_publisher=self.create_publisher(Image, f"{prefix}debug_image", OUTPUT_QOS) if debug else None,
            )
            if self._input_qos_choice == "auto":
                self.get_logger().info(
                    f"Camera '{name}': waiting for a publisher on '{input_topic}' to choose the input QoS "
                    "(input_qos: auto)"
                )
            else:
                reliable = self._input_qos_choice == "reliable"
                self._subscribe(camera, ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
            cameras.append(camera)
        return cameras

    def _subscribe(self, camera: Camera, reliability: ReliabilityPolicy) -> None:
        """(Re)create the camera's subscription with `reliability`."""
        if camera.subscription is not None:
            self.destroy_subscription(camera.subscription)
        if self._input_qos_choice == "sensor_data":
            qos = qos_profile_sensor_data
        else:
            # Keep-last, depth INPUT_DEPTH: see its comment.
            qos = QoSProfile(depth=INPUT_DEPTH, history=HistoryPolicy.KEEP_LAST, reliability=reliability)
        camera.subscription = self.create_subscription(
            INPUT_TYPES[self._transport],
            camera.input_topic,
            lambda message, camera=camera: self._on_image(camera, message),
            qos,
            event_callbacks=SubscriptionEventCallbacks(
                incompatible_qos=lambda event, camera=camera: self._on_incompatible_qos(camera, event)
            ),
        )
        camera.reliability = reliability
        camera.waiting_since_s = time.monotonic()

    def _on_incompatible_qos(self, camera: Camera, event: QoSRequestedIncompatibleQoSInfo) -> None:
        policy = QoSPolicyKind(event.last_policy_kind).name.lower()
        self.get_logger().warning(
            f"Camera '{camera.name}': a publisher on '{camera.input_topic}' offers a QoS this subscription "
            f"({reliability_name(camera.reliability)}, input_qos: {self._input_qos_choice}) cannot match; "
            f"clashing policy: {policy}. Its frames will not arrive. input_qos: auto follows the publishers."
        )

    def _check_inputs(self) -> None:
        """Follow each camera's publishers (input_qos auto) and warn about silent topics."""
        now_s = time.monotonic()
        for camera in self.cameras:
            publishers = [
                info
                for info in self.get_publishers_info_by_topic(camera.input_topic)
                if info.topic_type == self._input_type_name
            ]
            if publishers and not camera.publisher_count:
                camera.waiting_since_s = now_s
            camera.publisher_count = len(publishers)
            wanted = following_reliability(publishers)
            if self._input_qos_choice == "auto" and wanted is not None and wanted != camera.reliability:
                self._subscribe(camera, wanted)
                self.get_logger().info(
                    f"Camera '{camera.name}': subscribing to '{camera.input_topic}' {reliability_name(wanted)}, "
                    f"following its {describe_publishers(publishers)} (input_qos: auto)"
                )
            self._warn_if_silent(camera, publishers, now_s)

    def _warn_if_silent(self, camera: Camera, publishers: list[TopicEndpointInfo], now_s: float) -> None:
        if not publishers or camera.subscription is None or self._silence_s <= 0:
            return
        quiet_s = camera.health.quiet_s(now_s, camera.waiting_since_s)
        if quiet_s < self._silence_s or now_s - camera.silence_logged_s < self._silence_s:
            return
        camera.silence_logged_s = now_s
        if camera.reliability == ReliabilityPolicy.RELIABLE:
            cause = (
                "with default Fast DDS settings, images over 512 KB between processes travel as UDP fragments, "
                "and on a busy machine lost fragments are resent only after the publisher's next heartbeat "
                "(seconds)."
            )
            fixes = "use the compressed transport (image_transport: compressed)"
        else:
            cause = (
                "with default Fast DDS settings, images over 512 KB sent best effort between processes are "
                "lost in UDP fragments."
            )
            fixes = "have the camera publish reliable and keep input_qos: auto (or set input_qos: reliable)"
        self.get_logger().warning(
            f"Camera '{camera.name}': no frame on '{camera.input_topic}' for {quiet_s:.0f} s, although it has "
            f"{describe_publishers(publishers)}; this node subscribes {reliability_name(camera.reliability)}. "
            f"Likely cause: {cause} Fixes: {fixes}, or export FASTRTPS_DEFAULT_PROFILES_FILE="
            f"{self._large_images_profile} for both the camera driver and this node."
        )

    def _publish_diagnostics(self) -> None:
        now_s = time.monotonic()
        settings = {
            "device": str(self.detector.device),
            "backend": self.detector.backend,
            "precision": self.detector.precision,
            "weights": self._parameter("weights"),
            "image transport": self._transport,
        }
        statuses = []
        with self._lock:
            for camera in self.cameras:
                if camera.reliability is None:
                    chosen = "waiting for a publisher"
                else:
                    chosen = reliability_name(camera.reliability)
                values = {
                    **settings,
                    "topic": camera.input_topic,
                    "input QoS": f"{chosen} (input_qos: {self._input_qos_choice})",
                    "publishers": str(camera.publisher_count),
                }
                name = f"{self.get_name()}: {camera.name}"
                silence_s = self._silence_s if self._silence_s > 0 else float("inf")
                statuses.append(camera_status(name, camera.health, now_s, silence_s, camera.waiting_since_s, values))
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics_publisher.publish(DiagnosticArray(header=header, status=statuses))

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

    def _on_image(self, camera: Camera, message: Image | CompressedImage) -> None:
        now_s = time.monotonic()
        with self._lock:
            camera.counters.received += 1
            camera.health.last_frame_s = now_s
            camera.health.frame_id = message.header.frame_id
            if camera.name in self._pending:
                camera.counters.dropped += 1
            self._pending[camera.name] = Frame(camera, message, now_s)
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
            except Exception as error:  # whatever else goes wrong must not end inference for good
                self._throttled_error(f"Handling {len(frames)} frame(s) failed: {error!r}")

    def _process(self, frames: list[Frame]) -> None:
        batches: dict[tuple, list[Frame]] = {}
        for frame in frames:
            try:
                frame.image = decode_frame_message(frame.message)
            except ImageDecodeError as error:
                with self._lock:
                    frame.camera.counters.rejected += 1
                self._throttled_error(f"Dropped a frame from '{frame.camera.input_topic}': {error}")
                continue
            pixels = frame.image.pixels
            batches.setdefault((pixels.shape, pixels.dtype, frame.image.channel_order), []).append(frame)
        for (_, _, channel_order), batch in batches.items():
            if self.detector.wants_calibration_frames:
                self.detector.offer_calibration_frame(batch[0].image.pixels, channel_order)
            # Each batch on its own: one that fails must not take another camera's frames with it.
            try:
                results = self._detect_batch(batch, channel_order)
            except Exception as error:
                with self._lock:
                    for frame in batch:
                        frame.camera.counters.failed += 1
                        frame.camera.health.consecutive_failures += 1
                        frame.camera.health.last_failure = repr(error)
                topics = ", ".join(sorted({f"'{frame.camera.input_topic}'" for frame in batch}))
                self._throttled_error(f"Inference failed, {len(batch)} frame(s) from {topics} dropped: {error!r}")
                continue
            for frame, detections in zip(batch, results, strict=True):
                self._publish(frame, detections)

    def _detect_batch(self, batch: list[Frame], channel_order: str) -> list[Detections]:
        """Run one batch and count it; the detections in `batch` order."""
        started_s = time.monotonic()
        results = self.detector.detect([frame.image.pixels for frame in batch], channel_order)
        network_s_per_frame = (time.monotonic() - started_s) / len(batch)
        with self._lock:
            for frame in batch:
                counters = frame.camera.counters
                counters.processed += 1
                counters.batched_frames += len(batch) > 1
                counters.largest_batch = max(counters.largest_batch, len(batch))
                frame.camera.health.consecutive_failures = 0
                frame.camera.health.network_s.append(network_s_per_frame)
        return results

    def _publish(self, frame: Frame, detections: Detections) -> None:
        message = frame.message
        camera = frame.camera
        height, width = frame.image.pixels.shape[:2]
        camera.keypoints_publisher.publish(
            keypoint_array_message(detections, message.header, height, width, self.detector.descriptor_size)
        )
        with self._lock:
            camera.health.latencies_s.append(time.monotonic() - frame.received_s)
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
        if self._errors.allows(message):
            self.get_logger().error(message)

    def statistics(self) -> dict[str, FrameCounters]:
        """A snapshot of each camera's counters, by camera name."""
        with self._lock:
            return {camera.name: dataclasses.replace(camera.counters) for camera in self.cameras}

    def _log_statistics(self) -> None:
        """One line per camera each period; when nothing came, it names the topic listened to,
        so that a wrong remapping shows."""
        period_s = self._parameter("statistics_period")
        statistics = self.statistics()
        for camera in self.cameras:
            counters = statistics[camera.name]
            new = counters.received - self._logged_counters.get(camera.name, FrameCounters()).received
            self._logged_counters[camera.name] = counters
            if new:
                recent = f"{new} frames received"
            else:
                recent = f"nothing received on '{camera.input_topic}'"
            self.get_logger().info(
                f"{camera.name}: {recent} in the last {period_s:g} s; since start {counters.received} frames received, "
                f"{counters.processed} processed, {counters.dropped} dropped for newer frames, "
                f"{counters.rejected} rejected as undecodable or too small, "
                f"{counters.failed} lost to inference errors; "
                f"{counters.batched_frames} ran batched with other cameras (largest batch {counters.largest_batch})"
            )

    def destroy_node(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._worker.join(timeout=10.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the node until shutdown; 1 (after one fatal log line) if it cannot start."""
    return run_node(
        NODE_NAME, DetectorNode, (WeightsError, ValueError, ParameterException, NameValidationException), args
    )


if __name__ == "__main__":
    raise SystemExit(main())
