"""The node's start-up: one it cannot complete ends with one clear log line and a non-zero exit
status, never a traceback; a running node stops cleanly on a signal.

The configuration mistakes run the executable's `main` in this process (the same code from
`rclpy.init` to the fatal line, without paying for a cold interpreter and torch each time); two
failed starts and the three signals run as real processes."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch
from ament_index_python.packages import get_package_prefix

from superpoint_ros.ros import node
from superpoint_ros.ros.node import NODE_NAME

from domains import private_domain_id

TIMEOUT_S = 120


def start(arguments: list[str], executable: list[str] | None = None, preexec=None) -> subprocess.Popen:
    command = (executable or [sys.executable, "-m", "superpoint_ros.ros.node"]) + ["--ros-args", *arguments]
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
    "cuda without a GPU": (["-p", "weights:=random", "-p", "device:=cuda"], "torch sees no CUDA GPU"),
    "no such device": (["-p", "weights:=random", "-p", "device:=tpu"], "device must be 'auto', 'cpu', 'cuda'"),
    "unknown engine": (["-p", "weights:=random", "-p", "backend:=tensorrt"], "backend must be one of"),
    "out-of-range parameter": (["-p", "weights:=random", "-p", "nms_radius:=-3"], "nms_radius out of range"),
    "half a resize": (["-p", "weights:=random", "-p", "resize_height:=240"], "resize_height and resize_width"),
    "unknown input QoS": (["-p", "weights:=random", "-p", "input_qos:=fast"], "input_qos must be one of"),
    "invalid topic name": (["-p", "weights:=random", "-p", "image_topics:=[left cam]"], "Invalid topic name"),
    "unreadable params file": (["--params-file", "/nonexistent/detector.yaml"], "Couldn't parse params file"),
}
# Started as processes: the executable `ros2 run` starts, and `python -m` with the hub made
# unreachable before the interpreter starts (huggingface_hub reads HF_HUB_OFFLINE on import).
PROCESS_CASES = {
    "installed executable": (["-p", "weights:=/nonexistent/dir/"], "does not exist"),
    "hub unreachable and nothing cached": ([], "Could not get model.safetensors of 'magic-leap-community/superpoint'"),
}


@pytest.fixture(scope="module")
def process_outcomes():
    """The process cases started at once (each pays for importing torch), then collected."""
    processes = {
        "installed executable": start(PROCESS_CASES["installed executable"][0], executable=installed_detector()),
        "hub unreachable and nothing cached": start(PROCESS_CASES["hub unreachable and nothing cached"][0]),
    }
    outcomes = {}
    for case, process in processes.items():
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        outcomes[case] = (process.returncode, stdout, stderr)
    return outcomes


@pytest.fixture
def run_main(capfd, monkeypatch):
    """`superpoint_ros.ros.node.main` in this process, as the executable calls it with `--ros-args`:
    `run_main(arguments) -> (exit status, stdout, stderr)`. Like the processes, it runs on this
    test's domain; the signal handlers it installs are put back afterwards."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setenv("ROS_DOMAIN_ID", str(private_domain_id()))
    capfd.readouterr()

    def run(arguments: list[str]) -> tuple[int, str, str]:
        returncode = node.main([NODE_NAME, "--ros-args", *arguments])
        captured = capfd.readouterr()
        return returncode, captured.out, captured.err

    yield run
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def assert_one_clear_fatal_line(returncode: int, stdout: str, stderr: str, expected: str) -> None:
    assert returncode != 0
    assert "Traceback" not in stdout + stderr
    fatal = [line for line in stderr.splitlines() if "[FATAL]" in line]
    assert len(fatal) == 1, stderr
    assert "[superpoint_detector]: Cannot start: " in fatal[0]
    assert stderr.strip().splitlines()[-1] == fatal[0], "the fatal line is the last word"
    assert expected in fatal[0]


@pytest.mark.parametrize("case", CASES)
def test_a_failed_start_exits_non_zero_with_one_clear_line_and_no_traceback(run_main, corrupt_weights, case):
    if case == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    arguments, expected = CASES[case]
    outcome = run_main([argument.format(corrupt=corrupt_weights) for argument in arguments])
    assert_one_clear_fatal_line(*outcome, expected)


@pytest.mark.parametrize("case", PROCESS_CASES)
def test_a_failed_start_of_the_process_exits_non_zero_with_one_clear_line_and_no_traceback(process_outcomes, case):
    assert_one_clear_fatal_line(*process_outcomes[case], PROCESS_CASES[case][1])


def ignore_sigint() -> None:
    """What a shell does for a command it starts in the background."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


SIGNALS = {
    "ctrl-c": (signal.SIGINT, None),
    "ctrl-c when started in the background": (signal.SIGINT, ignore_sigint),
    "sigterm": (signal.SIGTERM, None),
}


@pytest.fixture(scope="module")
def stopped_by_signal():
    """A node started for each of `SIGNALS` (all at once), each sent its signal once it spins:
    by case, (exit status, everything it wrote)."""
    # A statistics line comes from a timer, so once one is logged the node is spinning.
    arguments = ["-p", "weights:=random", "-p", "device:=cpu", "-p", "statistics_period:=0.1"]
    processes = {case: start(arguments, preexec=preexec) for case, (_, preexec) in SIGNALS.items()}
    outcomes = {}
    try:
        for case, process in processes.items():
            deadline = time.monotonic() + TIMEOUT_S
            started = ""
            while " in the last 0.1 s" not in started and time.monotonic() < deadline and process.poll() is None:
                started += process.stderr.readline()
            process.send_signal(SIGNALS[case][0])
            stdout, stderr = process.communicate(timeout=30)
            outcomes[case] = (process.returncode, started, started + stdout + stderr)
    finally:
        for process in processes.values():
            process.kill()
    return outcomes


@pytest.mark.parametrize("case", SIGNALS)
def test_a_running_node_stops_cleanly_on_a_signal(stopped_by_signal, case):
    returncode, started, output = stopped_by_signal[case]
    assert "SuperPoint runs on" in started
    assert " in the last 0.1 s" in started, "it was spinning when signalled"
    assert returncode == 0, output
    assert "Traceback" not in output
