"""The message package: real colcon builds (copied and symlinked), and a populated
KeypointArray through a real rclpy publisher and subscription.

Both install modes are checked with one build from scratch: the overlay this suite runs from is
one mode (`make test` builds it with --symlink-install), and the fresh build here the other."""

import array
import os
import pathlib
import subprocess
import time

import numpy as np
import pytest
from ament_index_python.packages import get_package_prefix

ROOT = pathlib.Path(__file__).resolve().parent.parent


def installed_mode(install: pathlib.Path) -> str:
    """How colcon installed the package at `install`: it hands `--symlink-install` to CMake as
    AMENT_CMAKE_SYMLINK_INSTALL, which stays in the build directory's cache."""
    cache = install.parent.parent / "build" / install.name / "CMakeCache.txt"
    assert cache.is_file(), f"no CMake cache beside the overlay at {cache}"
    return "symlink" if "AMENT_CMAKE_SYMLINK_INSTALL:BOOL=1" in cache.read_text() else "copy"


@pytest.fixture(scope="module")
def overlay() -> tuple[pathlib.Path, str]:
    """The installed package this suite runs from (`make test` builds it with --symlink-install)."""
    install = pathlib.Path(get_package_prefix("superpoint_ros"))
    return install, installed_mode(install)


@pytest.fixture(scope="module")
def fresh_install(tmp_path_factory, overlay) -> tuple[pathlib.Path, str]:
    """A from-scratch colcon build in the install mode the overlay does not use, so that one
    build from scratch and the overlay together cover both modes."""
    mode = "copy" if overlay[1] == "symlink" else "symlink"
    workspace = tmp_path_factory.mktemp("ws")
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "superpoint_ros").symlink_to(ROOT)
    command = [
        "colcon",
        "--log-base",
        str(workspace / "log"),
        "build",
        "--base-paths",
        str(workspace / "src"),
        "--build-base",
        str(workspace / "build"),
        "--install-base",
        str(workspace / "install"),
        "--cmake-args",
        "-DBUILD_TESTING=OFF",
        f"-DPython3_EXECUTABLE={os.environ['VIRTUAL_ENV']}/bin/python",
    ]
    if mode == "symlink":
        command.append("--symlink-install")
    build = subprocess.run(command, cwd=workspace, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    install = workspace / "install" / "superpoint_ros"
    assert installed_mode(install) == mode
    return install, mode


@pytest.mark.parametrize("which", ["fresh_install", "overlay"])
def test_colcon_build_generates_python_and_cpp_message_support(request, which):
    install, mode = request.getfixturevalue(which)
    assert (install / "include/superpoint_ros/superpoint_ros/msg/keypoint_array.hpp").is_file()
    assert (install / "include/superpoint_ros/superpoint_ros/msg/feature_tracks.hpp").is_file()
    for program in ("detector", "tracker", "bag"):
        executable = install / "lib/superpoint_ros" / program
        assert executable.is_file() and os.access(executable, os.X_OK)
        # It starts with the Python it was built with, so a venv's packages are found without activating it.
        assert executable.read_text().startswith(f"#!{os.environ['VIRTUAL_ENV']}/bin/python\n")
    assert (install / "share/superpoint_ros/config").is_dir()
    assert (install / "share/superpoint_ros/launch/detector.launch.py").is_file()
    check = (
        f"source {install}/share/superpoint_ros/local_setup.bash && cd / && python -P -c '"
        "import superpoint_ros.msg, superpoint_ros.openvino_detector as detector; "
        "print(superpoint_ros.msg.__file__); print(detector.__file__)'"
    )
    imported = subprocess.run(["bash", "-c", check], capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    message_module, detector_module = imported.stdout.split()
    assert message_module.startswith(str(install))
    assert detector_module.startswith(str(install))
    assert pathlib.Path(detector_module).is_symlink() == (mode == "symlink")


def test_keypoint_array_round_trips_through_a_real_dds_graph():
    rclpy = pytest.importorskip("rclpy")
    from superpoint_ros.msg import KeypointArray

    rng = np.random.default_rng(0)
    count, size = 300, 256
    keypoints = rng.uniform(0, 640, (count, 2)).astype(np.float32)
    scores = np.sort(rng.uniform(0, 1, count).astype(np.float32))[::-1]
    descriptors = rng.normal(size=(count, size)).astype(np.float32)
    sent = KeypointArray()
    sent.header.stamp.sec, sent.header.stamp.nanosec, sent.header.frame_id = 12, 345, "camera_optical"
    sent.height, sent.width, sent.descriptor_size = 480, 640, size
    sent.keypoints = array.array("f", keypoints.tobytes())
    sent.scores = array.array("f", scores.tobytes())
    sent.descriptors = array.array("f", descriptors.tobytes())

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=77)
    try:
        node = rclpy.create_node("keypoint_array_round_trip", context=context)
        received = []
        node.create_subscription(KeypointArray, "round_trip", received.append, 10)
        publisher = node.create_publisher(KeypointArray, "round_trip", 10)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            publisher.publish(sent)
            executor.spin_once(timeout_sec=0.1)
        assert received, "no message came back within 10 s"
        got = received[0]
        assert got.header == sent.header
        assert (got.height, got.width, got.descriptor_size) == (480, 640, size)
        assert np.array_equal(np.frombuffer(got.keypoints, np.float32).reshape(-1, 2), keypoints)
        assert np.array_equal(np.frombuffer(got.scores, np.float32), scores)
        assert np.array_equal(np.frombuffer(got.descriptors, np.float32).reshape(-1, size), descriptors)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
