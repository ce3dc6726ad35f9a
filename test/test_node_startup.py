"""The node as a process: a start-up it cannot complete ends with one clear log line and a
non-zero exit status, never a traceback."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch
from ament_index_python.packages import get_package_prefix

from ros_graph import private_domain_id

TIMEOUT_S = 120


def start(arguments: list[str], executable: list[str] | None = None, preexec=None) -> subprocess.Popen:
    command = (executable or [sys.executable, "-m", "superpoint_ros.node"]) + ["--ros-args", *arguments]
    environment = {**os.environ, "ROS_DOMAIN_ID": str(private_domain_id()), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec
    )


@pytest.fixture(scope="module")
def corrupt_weights(tmp_path_factory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("corrupt_weights")
    (directory / "model.safetensors").write_bytes(b"this is not a safetensors file")
    return directory


def installed_detector() -> list[str]:
    """What `ros2 run superpoint_ros detector` executes."""
    return [str(pathlib.Path(get_package_prefix("superpoint_ros")) / "lib" / "superpoint_ros" / "detector")]


CASES = {
    "missing weights file": (["-p", "weights:=/nonexistent/superpoint.safetensors"], "does not exist"),
    "corrupt weights": (["-p", "weights:={corrupt}"], "is not a readable safetensors file"),
    "hub unreachable and nothing cached": ([], "Could not get model.safetensors of 'magic-leap-community/superpoint'"),
    "cuda without a GPU": (["-p", "weights:=random", "-p", "device:=cuda"], "torch sees no CUDA GPU"),
    "no such device": (["-p", "weights:=random", "-p", "device:=tpu"], "device must be 'auto', 'cpu', 'cuda'"),
    "unknown engine": (["-p", "weights:=random", "-p", "backend:=tensorrt"], "backend must be one of"),
    "out-of-range parameter": (["-p", "weights:=random", "-p", "nms_radius:=-3"], "nms_radius out of range"),
    "half a resize": (["-p", "weights:=random", "-p", "resize_height:=240"], "resize_height and resize_width"),
    "unknown input QoS": (["-p", "weights:=random", "-p", "input_qos:=fast"], "input_qos must be one of"),
    "invalid topic name": (["-p", "weights:=random", "-p", "image_topics:=[left cam]"], "Invalid topic name"),
    "unreadable params file": (["--params-file", "/nonexistent/detector.yaml"], "Couldn't parse params file"),
}


@pytest.fixture(scope="module")
def outcomes(corrupt_weights):
    """Every case started at once (each start pays for importing torch), then collected."""
    processes = {}
    for case, (arguments, _) in CASES.items():
        if case == "cuda without a GPU" and torch.cuda.is_available():
            continue
        processes[case] = start([argument.format(corrupt=corrupt_weights) for argument in arguments])
    processes["installed executable"] = start(["-p", "weights:=/nonexistent/dir/"], executable=installed_detector())
    results = {}
    for case, process in processes.items():
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        results[case] = (process.returncode, stdout, stderr)
    return results


@pytest.mark.parametrize("case", [*CASES, "installed executable"])
def test_a_failed_start_exits_non_zero_with_one_clear_line_and_no_traceback(outcomes, case):
    if case not in outcomes:
        pytest.skip("this machine has a CUDA GPU")
    expected = CASES[case][1] if case in CASES else "does not exist"
    returncode, stdout, stderr = outcomes[case]
    assert returncode != 0
    assert "Traceback" not in stdout + stderr
    fatal = [line for line in stderr.splitlines() if "[FATAL]" in line]
    assert len(fatal) == 1, stderr
    assert "[superpoint_detector]: Cannot start: " in fatal[0]
    assert stderr.strip().splitlines()[-1] == fatal[0], "the fatal line is the last word"
    assert expected in fatal[0]


def ignore_sigint() -> None:
    """What a shell does for a command it starts in the background."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("signum", "preexec"),
    [(signal.SIGINT, None), (signal.SIGINT, ignore_sigint), (signal.SIGTERM, None)],
    ids=["ctrl-c", "ctrl-c when started in the background", "sigterm"],
)
def test_a_running_node_stops_cleanly_on_a_signal(signum, preexec):
    process = start(["-p", "weights:=random", "-p", "device:=cpu"], preexec=preexec)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        started = ""
        while "SuperPoint runs on" not in started and time.monotonic() < deadline:
            started += process.stderr.readline()
        assert "SuperPoint runs on" in started
        time.sleep(0.5)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "Traceback" not in started + stdout + stderr
