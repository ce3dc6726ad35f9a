"""`ros2 launch superpoint_ros detector.launch.py [argument:=value ...]`

Starts `superpoint_detector`, and with `tracking:=true` or `vins:=true` also `superpoint_tracker`,
both with one parameter file (default: the installed `config/detector.yaml`). An argument
overrides the file only when it is given; `--show-args` lists them all.

- Mono (default): the detector subscribes `image`, the tracker `camera_info`.
- `stereo:=true`: the detector subscribes `left_image` and `right_image` as one batch and
  publishes `left/keypoints` and `right/keypoints` in the namespace; the tracker pairs them by
  stamp and reads `left_camera_info` and `right_camera_info`.
- `vins:=true`: the tracker also publishes VINS-Fusion's feature cloud on `vins_feature_topic`.

A bad value stops the launch with one line naming the argument and the values it accepts.
"""

import re

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

# As superpoint_ros.backends declares them; copied so that the launch file need not import torch.
BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
PRECISIONS = ("float32", "float16", "bfloat16", "int8")
TRANSPORTS = ("raw", "compressed")
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
BOOLEANS = ("true", "false")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
TOPIC_ARGUMENTS = ("image", "camera_info", "left_image", "right_image", "left_camera_info", "right_camera_info")

ARGUMENTS = (
    # (name, default, description): each description names the argument's effect.
    ("params_file", None, "Parameter YAML for both nodes (default: the installed config/detector.yaml)"),
    ("namespace", "", "Namespace of both nodes and of their relative topics"),
    ("image", "image", "Mono: the camera's image topic the detector subscribes (and the tracker draws on)"),
    ("camera_info", "camera_info", "Mono: the camera's CameraInfo topic the tracker subscribes"),
    (
        "stereo",
        "false",
        "true: two cameras, left and right; the detector publishes left/keypoints and "
        "right/keypoints and the tracker pairs them by stamp. false: the params file's camera layout",
    ),
    ("left_image", "left/image_raw", "Stereo: the left camera's image topic"),
    ("right_image", "right/image_raw", "Stereo: the right camera's image topic"),
    ("left_camera_info", "left/camera_info", "Stereo: the left camera's CameraInfo topic"),
    ("right_camera_info", "right/camera_info", "Stereo: the right camera's CameraInfo topic"),
    (
        "image_transport",
        "",
        "raw | compressed (subscribes <image>/compressed); empty: the params file's "
        "value (raw in config/detector.yaml)",
    ),
    ("device", "", "auto | cpu | cuda | cuda:N, where the detector's network runs; empty: the params file's value"),
    ("backend", "", "auto | torch | openvino | onnxruntime, the detector's engine; empty: the params file's value"),
    ("precision", "", "float32 | bfloat16 | float16 | int8, the detector's precision; empty: the params file's value"),
    (
        "weights",
        "",
        "Hub repo id, weights directory or file, or random (untrained, for tests); empty: the params file's value",
    ),
    ("tracking", "false", "true: also start superpoint_tracker, which publishes feature tracks on tracks"),
    ("vins", "false", "true: start superpoint_tracker with its VINS-Fusion output on (implies tracking)"),
    (
        "vins_feature_topic",
        "/feature_tracker/feature",
        "Where the tracker publishes the VINS-Fusion feature cloud (sensor_msgs/PointCloud)",
    ),
    ("log_level", "info", "debug | info | warn | error | fatal, the log level of both nodes"),
    (
        "managed",
        "false",
        "true: start both nodes as lifecycle nodes (--managed), configured and activated with ros2 lifecycle",
    ),
)


class ArgumentError(ValueError):
    """A launch argument with a value the launch file does not accept. `ros2 launch` prints its
    message as one line and stops, without a traceback."""


def _choice(context: LaunchContext, name: str, choices: tuple[str, ...], allow_empty: bool = False) -> str:
    value = LaunchConfiguration(name).perform(context)
    if (value == "" and allow_empty) or value in choices:
        return value
    accepted = " | ".join(choices) + (" or empty" if allow_empty else "")
    raise ArgumentError(f"launch argument {name}:={value!r} is not accepted; use {accepted}")


def _device(context: LaunchContext) -> str:
    value = LaunchConfiguration("device").perform(context)
    if value and not DEVICE_PATTERN.fullmatch(value):
        accepted = "auto | cpu | cuda | cuda:N or empty"
        raise ArgumentError(f"launch argument device:={value!r} is not accepted; use {accepted}")
    return value


def _nodes(context: LaunchContext) -> list[Node]:
    """Both nodes, after every argument is checked (before any process starts)."""
    flags = {name: _choice(context, name, BOOLEANS) == "true" for name in ("stereo", "tracking", "vins", "managed")}
    log_level = _choice(context, "log_level", LOG_LEVELS)
    overrides = {
        "device": _device(context),
        "backend": _choice(context, "backend", BACKENDS, allow_empty=True),
        "precision": _choice(context, "precision", PRECISIONS, allow_empty=True),
        "image_transport": _choice(context, "image_transport", TRANSPORTS, allow_empty=True),
        "weights": LaunchConfiguration("weights").perform(context),
    }
    detector_overrides = {name: value for name, value in overrides.items() if value}
    topic = {name: LaunchConfiguration(name).perform(context) for name in TOPIC_ARGUMENTS}
    tracker_overrides: dict = {}
    if flags["stereo"]:
        detector_overrides["image_topics"] = [topic["left_image"], topic["right_image"]]
        detector_overrides["camera_names"] = ["left", "right"]
        tracker_overrides.update(stereo=True, debug_image_topic=topic["left_image"])
        detector_remappings = []
        tracker_remappings = [
            ("left/camera_info", topic["left_camera_info"]),
            ("right/camera_info", topic["right_camera_info"]),
        ]
    else:
        detector_remappings = [("image", topic["image"])]
        tracker_remappings = [("image", topic["image"]), ("camera_info", topic["camera_info"])]
    if flags["vins"]:
        tracker_overrides["vins_output"] = True
    tracker_remappings.append(("feature", LaunchConfiguration("vins_feature_topic").perform(context)))
    common = {
        "package": "superpoint_ros",
        "namespace": LaunchConfiguration("namespace"),
        "ros_arguments": ["--log-level", log_level],
        "arguments": ["--managed"] if flags["managed"] else [],
        "output": "screen",
        "emulate_tty": True,
    }
    params_file = LaunchConfiguration("params_file")
    nodes = [
        Node(
            executable="detector",
            name="superpoint_detector",
            parameters=[params_file, detector_overrides],
            remappings=detector_remappings,
            **common,
        )
    ]
    if flags["tracking"] or flags["vins"]:
        nodes.append(
            Node(
                executable="tracker",
                name="superpoint_tracker",
                parameters=[params_file, tracker_overrides],
                remappings=tracker_remappings,
                **common,
            )
        )
    return nodes


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare("superpoint_ros"), "config", "detector.yaml"])
    declared = [
        DeclareLaunchArgument(name, default_value=default_params if default is None else default, description=text)
        for name, default, text in ARGUMENTS
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
