"""The parameter tables: descriptors as declared, configurations refused before anything slow
loads, and run-time changes under a flood from another process (every request answered, one
summary log line per second)."""

import os
import pathlib
import subprocess
import sys
import time

import pytest
from rcl_interfaces.msg import ParameterType
from rclpy.parameter import Parameter

from superpoint_ros.ros import detector_parameters, tracker_parameters
from superpoint_ros.ros.detector_parameters import DetectorConfig
from superpoint_ros.ros.parameters import Spec, check_choices

from domains import private_domain_id

FLOOD = pathlib.Path(__file__).with_name("parameter_flood.py")


def test_a_row_becomes_a_descriptor_with_its_range_choices_and_read_only_flag():
    integer = Spec("count", 3, "How many.", 0, 10).descriptor()
    assert (integer.integer_range[0].from_value, integer.integer_range[0].to_value) == (0, 10)
    assert integer.read_only and integer.description == "How many."
    floating = Spec("rate", 0.5, "Hz.", 0.0, 2.0, read_only=False).descriptor()
    assert floating.floating_point_range[0].to_value == 2.0 and not floating.read_only
    choice = Spec("mode", "a", "Which.", choices=("a", "b")).descriptor()
    assert choice.additional_constraints == "a | b"
    typed = Spec("topics", Parameter.Type.STRING_ARRAY, "Topics.").descriptor()
    assert typed.type == ParameterType.PARAMETER_STRING_ARRAY


def test_every_numeric_row_of_both_tables_has_a_range_and_every_row_a_description():
    for spec in (*detector_parameters.PARAMETERS, *tracker_parameters.PARAMETERS):
        assert spec.description, spec.name
        if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool):
            assert spec.low is not None and spec.low <= spec.default <= spec.high, spec.name


def test_the_runtime_names_are_exactly_the_writable_rows():
    writable = {spec.name for spec in detector_parameters.PARAMETERS if not spec.read_only}
    # backend and architecture are writable only until the engine and network in use are shown,
    # read-only (node._show_engine_in_use).
    assert writable == {*detector_parameters.RUNTIME_PARAMETERS, "backend", "architecture"}
    writable = {spec.name for spec in tracker_parameters.PARAMETERS if not spec.read_only}
    assert writable == set(tracker_parameters.RUNTIME_PARAMETERS)


def defaults() -> dict:
    values = {spec.name: spec.default for spec in detector_parameters.PARAMETERS}
    return {**values, "image_topics": None, "camera_names": None}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"input_qos": "fast"}, "input_qos must be one of auto, sensor_data, reliable, got 'fast'"),
        ({"resize_height": 240}, "resize_height and resize_width must both be 0 or both be set"),
        ({"camera_names": ["a"]}, "camera_names is set but image_topics is not"),
        ({"image_topics": ["a", "b"], "camera_names": ["x", "x"]}, "camera_names must be distinct"),
        ({"keypoint_threshold": 1.0}, "keypoint_threshold must be in [0, 1)"),
        ({"backend": "tensorflow"}, "backend must be one of"),
    ],
)
def test_a_bad_detector_configuration_is_refused_with_its_reason(changes, reason):
    with pytest.raises(ValueError) as raised:
        DetectorConfig.from_values({**defaults(), **changes})
    assert reason in str(raised.value)


def test_check_choices_names_the_parameter():
    with pytest.raises(ValueError, match="mode must be one of a, b, got 'c'"):
        check_choices((Spec("mode", "a", "Which.", choices=("a", "b")),), {"mode": "c"})


def test_the_backend_as_it_reads_back_with_its_provider_is_a_valid_configuration():
    config = DetectorConfig.from_values({**defaults(), "backend": "onnxruntime (CPUExecutionProvider)"})
    assert config["backend"] == "onnxruntime"


@pytest.mark.parametrize(
    ("module", "parameter", "value", "reason"),
    [
        ("superpoint_ros.ros.node", "input_qos", "fast", "input_qos must be one of"),
        ("superpoint_ros.ros.tracker_node", "verification", "magic", "verification must be one of"),
    ],
)
def test_a_bad_configuration_stops_the_node_before_torch_is_imported(module, parameter, value, reason):
    """Through `create`, which the executables' `main` calls."""
    code = (
        "import sys, rclpy\n"
        "from rclpy.context import Context\n"
        "from rclpy.parameter import Parameter\n"
        f"from {module} import create\n"
        "context = Context()\n"
        f"rclpy.init(args=[], context=context, domain_id={private_domain_id()})\n"
        "try:\n"
        f"    create(context=context, parameter_overrides=[Parameter({parameter!r}, value={value!r})])\n"
        "except ValueError as error:\n"
        "    print('refused:', error)\n"
        "print('torch loaded:', 'torch' in sys.modules, 'openvino loaded:', 'openvino' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert f"refused: {reason}" in result.stdout, result.stdout + result.stderr
    assert "torch loaded: False openvino loaded: False" in result.stdout, result.stdout + result.stderr


def test_a_flood_of_500_changes_per_second_from_another_process_is_answered_and_logged_once_a_second(graph, start_node):
    rosout = graph.rosout()
    node, namespace = start_node()
    count, rate_hz = 1000, 500.0
    flood = subprocess.run(
        [sys.executable, str(FLOOD), f"{namespace}/superpoint_detector", "keypoint_threshold", str(rate_hz)]
        + [str(count), "0.01", "0.02"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "ROS_DOMAIN_ID": str(private_domain_id())},
    )
    words = flood.stdout.split()
    assert words[:6] == ["sent", str(count), "answered", str(count), "accepted", str(count)], flood.stdout
    sent_s = float(words[-2])
    assert node.settings.keypoint_threshold == float(words[7]) == 0.02, "the last change wins"
    time.sleep(1.5)  # the summary of the last second's changes
    summaries = [log for log in rosout.messages if log.name.startswith(namespace[1:]) and "Parameters now" in log.msg]
    assert 1 <= len(summaries) <= sent_s + 3, [log.msg for log in summaries]
    assert "keypoint_threshold=0.02" in summaries[-1].msg
