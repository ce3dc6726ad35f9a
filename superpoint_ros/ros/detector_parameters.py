"""The detector node's parameters (`PARAMETERS`, one row each) and `DetectorConfig`, the frozen,
checked values. No torch: a bad configuration is refused before anything slow loads."""

import dataclasses

from rclpy.parameter import Parameter

from superpoint_ros.feature_types import (
    ARCHITECTURES,
    AUTO_ARCHITECTURE,
    BACKENDS,
    DEFAULT_WEIGHTS,
    PRECISIONS,
    RANDOM_WEIGHTS,
    DetectionSettings,
)
from superpoint_ros.ros.camera_input import INPUT_QOS_CHOICES
from superpoint_ros.ros.parameters import Spec, check_choices

# calibration.CALIBRATION_COUNT, which imports OpenCV's scene drawing; test_config pins them equal.
CALIBRATION_COUNT = 16
TRANSPORTS = ("raw", "compressed")
_settings = DetectionSettings()

PARAMETERS = (
    Spec(
        "weights",
        DEFAULT_WEIGHTS,
        "Hugging Face repo id, local directory holding model.safetensors, a .safetensors or MagicLeap .pth file, "
        "rpautrat/SuperPoint's MIT-licensed superpoint_v6_from_tf.pth, "
        f"or '{RANDOM_WEIGHTS}' (untrained, for tests: keypoints are not meaningful).",
    ),
    # Writable at first: the node makes it read-only once it reads back as the network in use.
    Spec(
        "architecture",
        AUTO_ARCHITECTURE,
        "Network the weights hold: auto (read off the file), magicleap or mit (a file of the other is refused). "
        "Reads back as the one in use.",
        choices=(AUTO_ARCHITECTURE, *ARCHITECTURES),
        read_only=False,
    ),
    Spec("weights_revision", "", "Hub revision (branch, tag or commit); empty: main."),
    Spec("device", "auto", "auto (CUDA when present, else CPU), cpu, cuda or cuda:N."),
    # Writable at first: the node makes it read-only once it reads back as the engine in use.
    Spec(
        "backend",
        "auto",
        "Network engine: auto (OpenVINO on the CPU when installed, else PyTorch), torch, openvino or onnxruntime "
        "(TensorRT, CUDA or CPU provider, whichever is installed). torch on the CPU is bit-exact with the "
        "reference and about 3x slower. Reads back as the engine in use, with ONNX Runtime's execution provider: "
        "onnxruntime (TensorrtExecutionProvider).",
        choices=BACKENDS,
        read_only=False,
    ),
    Spec(
        "precision",
        "float32",
        "float32, or an opt-in faster mode whose output drifts from the reference: bfloat16 (OpenVINO on CPU, "
        "CUDA), float16 (CUDA) or int8 (OpenVINO on CPU, needs nncf).",
        choices=PRECISIONS,
    ),
    Spec(
        "tensorrt_cache_dir",
        "",
        "Directory where ONNX Runtime's TensorRT provider keeps the engines it builds (backend onnxruntime); "
        "empty: ~/.cache/superpoint_ros/tensorrt.",
    ),
    Spec(
        "int8_calibration",
        "scenes",
        "With precision int8, what quantisation is calibrated on: scenes (generated, photograph-like), frames "
        "(this camera's first int8_calibration_count frames; float32 runs until int8 is ready) or a directory "
        "of images.",
    ),
    Spec("int8_calibration_count", CALIBRATION_COUNT, "Images or frames int8 is calibrated on.", 1, 1000),
    Spec(
        "int8_cache_dir",
        "",
        "Directory of quantised int8 models; empty: $XDG_CACHE_HOME/superpoint_ros or ~/.cache/superpoint_ros.",
    ),
    *(
        Spec(
            f"resize_{side}",
            0,
            f"Pixels; images are resized to this {side} before the network (0 with the other 0: native size). "
            "Keypoints are always in source pixels.",
            0,
            8192,
        )
        for side in ("height", "width")
    ),
    Spec(
        "keypoint_threshold",
        _settings.keypoint_threshold,
        "Keep keypoints scoring above this; must be below 1.",
        0.0,
        1.0,
        read_only=False,
    ),
    Spec(
        "nms_radius",
        _settings.nms_radius,
        "Pixels; a keypoint must be the best of its (2r+1)² window (0: no suppression).",
        0,
        64,
        read_only=False,
    ),
    Spec(
        "max_keypoints",
        _settings.max_keypoints,
        "Keep at most this many best keypoints per image; -1 keeps all.",
        -1,
        100000,
        read_only=False,
    ),
    Spec(
        "border_removal_distance",
        _settings.border_removal_distance,
        "Pixels; drop keypoints closer than this to the image edge.",
        0,
        256,
        read_only=False,
    ),
    Spec(
        "image_topics",
        Parameter.Type.STRING_ARRAY,
        "Several cameras: their image topics. Unset: one camera on 'image'.",
    ),
    Spec(
        "camera_names",
        Parameter.Type.STRING_ARRAY,
        "With image_topics: output namespace of each camera (<name>/keypoints, <name>/debug_image). "
        "Unset: camera0, camera1, ...",
    ),
    Spec(
        "input_qos",
        "auto",
        "Image subscription QoS. auto: the reliability of the topic's publishers (all reliable: reliable; any "
        "best effort: best effort), keep-last 5, re-chosen from the publishers present for "
        "qos_settle_period; waits for a publisher. sensor_data: best effort. reliable: reliable.",
        choices=INPUT_QOS_CHOICES,
    ),
    Spec(
        "qos_settle_period",
        2.0,
        "Seconds; with input_qos auto, a publisher counts once it has been on the topic this long, so that "
        "short-lived publishers do not flip the subscription's reliability (0: every publisher at once).",
        0.0,
        60.0,
    ),
    Spec(
        "image_transport",
        "raw",
        "raw: sensor_msgs/Image on each image topic. compressed: sensor_msgs/CompressedImage (JPEG or PNG) on "
        "<image topic>/compressed, as image_transport's compressed transport publishes.",
        choices=TRANSPORTS,
    ),
    Spec(
        "silence_warning_period",
        5.0,
        "Seconds; warn (throttled to once per period) when a topic has publishers but no frame arrived for this "
        "long, and report the camera as WARN on /diagnostics (0: never warn).",
        0.0,
        3600.0,
    ),
    Spec("debug_image", True, "Publish debug_image overlays (drawn only while subscribed)."),
    Spec(
        "batch_timeout",
        0.005,
        "Seconds; with several cameras, how long a frame waits for the other cameras' frames so that all run "
        "as one batch.",
        0.0,
        0.1,
    ),
    Spec(
        "statistics_period",
        5.0,
        "Seconds between log lines counting received, processed and dropped frames (0: never).",
        0.0,
        3600.0,
    ),
)
RUNTIME_PARAMETERS = ("keypoint_threshold", "nms_radius", "max_keypoints", "border_removal_distance")


@dataclasses.dataclass(frozen=True)
class CameraLayout:
    """One camera as configured: its `name`, `image_topic` and output `prefix` (`""` or `"<name>/"`)."""

    name: str
    image_topic: str
    prefix: str


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """The node's parameters, checked together: `from_values` raises `ValueError` naming the
    problem (topic names are checked by the node, which knows its namespace)."""

    values: dict
    cameras: tuple[CameraLayout, ...]
    settings: DetectionSettings
    resize: tuple[int, int] | None

    @classmethod
    def from_values(cls, values: dict) -> "DetectorConfig":
        # The engine in use reads back with ONNX Runtime's provider, `onnxruntime (CPUExecutionProvider)`,
        # and that value, as `ros2 param dump` writes it, must start the node again.
        values = {**values, "backend": values["backend"].split(" (", 1)[0]}
        check_choices(PARAMETERS, values)
        resize = (values["resize_height"], values["resize_width"])
        if (resize[0] == 0) != (resize[1] == 0):
            raise ValueError(f"resize_height and resize_width must both be 0 or both be set, got {resize}")
        settings = DetectionSettings(**{name: values[name] for name in RUNTIME_PARAMETERS})
        cameras = camera_layout(values["image_topics"], values["camera_names"])
        return cls(dict(values), cameras, settings, resize if resize[0] else None)

    def __getitem__(self, name: str):
        return self.values[name]


def camera_layout(topics: list[str] | None, names: list[str] | None) -> tuple[CameraLayout, ...]:
    """The cameras `image_topics` and `camera_names` describe."""
    if not topics:
        if names:
            raise ValueError("camera_names is set but image_topics is not")
        return (CameraLayout("image", "image", ""),)
    names = names or [f"camera{index}" for index in range(len(topics))]
    if len(names) != len(topics):
        raise ValueError(f"camera_names has {len(names)} entries but image_topics has {len(topics)}")
    if len(set(names)) != len(names) or not all(names):
        raise ValueError(f"camera_names must be distinct and non-empty, got {names}")
    return tuple(CameraLayout(name, topic, f"{name}/") for name, topic in zip(names, topics, strict=True))
