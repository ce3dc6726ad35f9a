"""detector.launch.py's arguments as users see them through the real `ros2 launch`: the names
the issue fixes, descriptions that name their effect, and one clear line for a bad value."""

import importlib.util
import pathlib
import re
import subprocess

import pytest
from ament_index_python.packages import get_package_share_directory

from superpoint_ros.backends import BACKENDS, PRECISIONS

from helpers import needs_ros2_launch

ARGUMENTS = (
    "params_file",
    "namespace",
    "image",
    "camera_info",
    "stereo",
    "left_image",
    "right_image",
    "left_camera_info",
    "right_camera_info",
    "image_transport",
    "device",
    "backend",
    "precision",
    "weights",
    "tracking",
    "vins",
    "vins_feature_topic",
    "log_level",
    "managed",
)

pytestmark = needs_ros2_launch()


def test_the_launch_file_accepts_exactly_the_backends_and_precisions_the_detector_knows():
    # The launch file keeps its own copy so that it need not import torch.
    path = pathlib.Path(get_package_share_directory("superpoint_ros")) / "launch" / "detector.launch.py"
    spec = importlib.util.spec_from_file_location("detector_launch", path)
    launch_file = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch_file)
    assert (launch_file.BACKENDS, launch_file.PRECISIONS) == (BACKENDS, PRECISIONS)


def ros2_launch(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ros2", "launch", "superpoint_ros", "detector.launch.py", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_show_args_lists_every_argument_with_a_description_and_its_default():
    shown = ros2_launch("--show-args")
    assert shown.returncode == 0, shown.stderr
    listed = dict(re.findall(r"^    '(\w+)':\n        (.+)$", shown.stdout, re.MULTILINE))
    assert tuple(listed) == ARGUMENTS
    assert all(len(description) > 20 for description in listed.values()), listed
    defaults = dict(re.findall(r"^    '(\w+)':\n(?:        .+\n)*?        \(default: '(.*)'\)$", shown.stdout, re.M))
    assert defaults["left_image"] == "left/image_raw" and defaults["vins_feature_topic"] == "/feature_tracker/feature"
    assert (defaults["stereo"], defaults["tracking"], defaults["vins"], defaults["managed"]) == ("false",) * 4
    assert defaults["log_level"] == "info" and defaults["device"] == ""


@pytest.mark.parametrize(
    ("argument", "accepted"),
    [
        ("stereo:=yes", "true | false"),
        ("vins:=1", "true | false"),
        ("image_transport:=theora", "raw | compressed"),
        ("device:=gpu", "auto | cpu | cuda | cuda:N"),
        ("backend:=tensorrt", "auto | torch | openvino | onnxruntime"),
        ("precision:=fp16", "float32 | float16 | bfloat16 | int8"),
        ("log_level:=loud", "debug | info | warn | error | fatal"),
    ],
)
def test_a_bad_value_stops_the_launch_with_one_line_naming_the_argument_and_the_accepted_values(argument, accepted):
    launched = ros2_launch(argument)
    output = launched.stdout + launched.stderr
    assert launched.returncode != 0
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "[ERROR]" in line]
    name, value = argument.split(":=")
    assert len(errors) == 1 and f"{name}:='{value}'" in errors[0] and accepted in errors[0], output
    assert "process started" not in output, "a node started before the arguments were checked"
