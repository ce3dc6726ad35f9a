"""`ros2 launch superpoint_ros detector.launch.py [params_file:=...] [namespace:=...]
[image:=/camera/image_raw] [device:=cuda] [weights:=/path/to/model.safetensors]`

Starts `superpoint_detector` with a parameter file (default: the installed
`config/detector.yaml`). `device` and `weights`, when given, override the file's values.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
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
            OpaqueFunction(function=_detector_node),
        ]
    )
