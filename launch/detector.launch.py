"""`ros2 launch superpoint_ros detector.launch.py [params_file:=...] [namespace:=...]
[image:=/camera/image_raw] [device:=cuda] [weights:=/path/to/model.safetensors]
[tracking:=true] [camera_info:=/camera/camera_info] [vins_feature_topic:=/feature_tracker/feature]`

Starts `superpoint_detector` with a parameter file (default: the installed
`config/detector.yaml`). `device` and `weights`, when given, override the file's values.
With `tracking:=true` it also starts `superpoint_tracker` (feature tracks from the keypoints)
with the same parameter file, so one file can configure both nodes.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

OVERRIDABLE = ("device", "weights")


def _detector_node(context):
    overrides = {name: LaunchConfiguration(name).perform(context) for name in OVERRIDABLE}
    return [
        Node(
            package="superpoint_ros",
            executable="detector",
            name="superpoint_detector",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), {n: v for n, v in overrides.items() if v}],
            remappings=[("image", LaunchConfiguration("image"))],
            output="screen",
            emulate_tty=True,
        )
    ]


def _tracker_node() -> Node:
    return Node(
        package="superpoint_ros",
        executable="tracker",
        name="superpoint_tracker",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file")],
        remappings=[
            ("image", LaunchConfiguration("image")),
            ("camera_info", LaunchConfiguration("camera_info")),
            ("feature", LaunchConfiguration("vins_feature_topic")),
        ],
        condition=IfCondition(LaunchConfiguration("tracking")),
        output="screen",
        emulate_tty=True,
    )


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare("superpoint_ros"), "config", "detector.yaml"])
    return LaunchDescription(
        [
            DeclareLaunchArgument("params_file", default_value=default_params, description="Node parameter YAML"),
            DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and its topics"),
            DeclareLaunchArgument(
                "image", default_value="image", description="Image topic the node's `image` input is remapped to"
            ),
            DeclareLaunchArgument(
                "device", default_value="", description="auto | cpu | cuda | cuda:N; empty: the params file's value"
            ),
            DeclareLaunchArgument(
                "weights",
                default_value="",
                description="Hub repo id, weights directory or file, or `random`; empty: the params file's value",
            ),
            DeclareLaunchArgument(
                "tracking", default_value="false", description="Also start superpoint_tracker (feature tracks)"
            ),
            DeclareLaunchArgument(
                "camera_info", default_value="camera_info", description="CameraInfo topic of the tracker's camera"
            ),
            DeclareLaunchArgument(
                "vins_feature_topic",
                default_value="/feature_tracker/feature",
                description="Topic of the tracker's VINS-Fusion output (with vins_output: true)",
            ),
            OpaqueFunction(function=_detector_node),
            _tracker_node(),
        ]
    )
