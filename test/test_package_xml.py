"""package.xml names only rosdep keys that resolve on Ubuntu 24.04 with ROS 2 Jazzy, so the
README's `rosdep install` works as written.

No rosdep or apt ROS exists here, so the keys below were checked by hand against the rosdistro
database, github.com/ros/rosdistro at commit 8468e88 (2026-08-22), on 2026-11-27: ROS packages
are released in `jazzy/distribution.yaml`; system keys have an `ubuntu` rule in
`rosdep/python.yaml` that names an apt package. A key added to package.xml must be checked the
same way and added here.
"""

import pathlib

from catkin_pkg.package import parse_package

ROOT = pathlib.Path(__file__).resolve().parent.parent
# What rosdep and colcon evaluate `condition` attributes with on Jazzy.
JAZZY = {"ROS_DISTRO": "jazzy", "ROS_VERSION": "2", "ROS_PYTHON_VERSION": "3"}

JAZZY_PACKAGES = {
    "ament_cmake",
    "ament_cmake_pytest",
    "ament_cmake_python",
    "ament_index_python",
    "builtin_interfaces",
    "diagnostic_msgs",
    # Like diagnostic_msgs and sensor_msgs, part of the common_interfaces repository that Jazzy
    # releases (the ros-jazzy-geometry-msgs wheel on PyPI is built from that release).
    "geometry_msgs",
    "launch",
    "launch_ros",
    "launch_testing",
    "launch_testing_ros",
    "rcl_interfaces",
    "rclpy",
    "rosidl_default_generators",
    "rosidl_default_runtime",
    "sensor_msgs",
    "std_msgs",
}
# Each maps to the apt package of the same name on every Ubuntu release.
UBUNTU_APT_KEYS = {"python3-numpy", "python3-opencv", "python3-pytest", "python3-yaml"}
# Checked the same way on 2026-12-01 (shared/ENVIRONMENT.md): apt python3-tqdm, for superpoint-bag.
UBUNTU_APT_KEYS |= {"python3-tqdm"}


def keys_on_jazzy() -> set[str]:
    """Every dependency key of package.xml that rosdep resolves on Jazzy (conditions evaluated)."""
    package = parse_package(ROOT / "package.xml")
    package.evaluate_conditions(JAZZY)
    groups = ("build", "buildtool", "build_export", "buildtool_export", "exec", "test", "doc")
    dependencies = [d for group in groups for d in getattr(package, f"{group}_depends")]
    return {d.name for d in dependencies if d.evaluated_condition}


def test_package_xml_declares_the_ros_and_apt_dependencies():
    assert {"rclpy", "sensor_msgs", "python3-numpy", "python3-opencv"} <= keys_on_jazzy()


def test_every_key_was_checked_against_rosdistro_for_jazzy_on_noble():
    unchecked = keys_on_jazzy() - JAZZY_PACKAGES - UBUNTU_APT_KEYS
    assert not unchecked, f"not checked against rosdistro (see this file's docstring): {sorted(unchecked)}"


def test_no_pip_key_which_rosdep_refuses_on_a_pep_668_system_python():
    assert not [key for key in keys_on_jazzy() if key.endswith("-pip")]


def test_python3_torch_is_not_asked_of_apt_on_jazzy():
    # rosdep maps python3-torch to apt python3-torch, which Ubuntu 24.04 does not ship.
    assert "python3-torch" not in keys_on_jazzy()
