"""`make demo` (`python -m superpoint_ros.tools.demo`) as a user runs it, on small frames."""

import os
import subprocess
import sys

import pytest

from domains import private_domain_id

SMALL = ["--frames", "3", "--height", "64", "--width", "80", "--overlays", "2"]


def run_demo(arguments: list[str]) -> subprocess.Popen:
    environment = {**os.environ, "ROS_DOMAIN_ID": str(private_domain_id()), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "superpoint_ros.tools.demo", *arguments]
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, hf_weights):
    """The three ways to run the demo, started together (each pays for importing torch)."""
    random_output = tmp_path_factory.mktemp("random_demo")
    local_output = tmp_path_factory.mktemp("local_demo")
    processes = {
        "random": (run_demo(["--random-weights", "--output", str(random_output), *SMALL]), random_output),
        "local": (run_demo(["--weights", str(hf_weights), "--output", str(local_output), *SMALL]), local_output),
        "hub": (run_demo(["--output", str(tmp_path_factory.mktemp("hub_demo")), *SMALL]), None),
    }
    results = {}
    for name, (process, output) in processes.items():
        stdout, stderr = process.communicate(timeout=120)
        results[name] = (process.returncode, stdout, stderr, output)
    return results


def frame_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("frame ")]


def test_random_weights_demo_labels_every_line_and_saves_overlays(outcomes):
    returncode, stdout, stderr, output = outcomes["random"]
    assert returncode == 0, stderr
    assert len(frame_lines(stdout)) == 3
    assert all("keypoints are not meaningful" in line for line in stdout.splitlines()), stdout
    assert all("keypoints, latency" in line and " ms" in line for line in frame_lines(stdout))
    assert sorted(path.name for path in output.glob("*.png")) == ["overlay_000.png", "overlay_002.png"]


def test_local_weights_demo_prints_counts_and_latency_without_the_random_label(outcomes):
    returncode, stdout, stderr, output = outcomes["local"]
    assert returncode == 0, stderr
    assert len(frame_lines(stdout)) == 3
    assert "not meaningful" not in stdout
    assert "End-to-end latency over 3 frames: median" in stdout
    assert len(list(output.glob("overlay_*.png"))) == 2


def test_demo_without_reachable_hub_or_local_weights_fails_with_the_loaders_sentence(outcomes):
    returncode, stdout, stderr, _ = outcomes["hub"]
    assert returncode != 0
    assert "Traceback" not in stdout + stderr
    assert "superpoint-demo: Could not get model.safetensors of 'magic-leap-community/superpoint'" in stderr
    assert not frame_lines(stdout)
