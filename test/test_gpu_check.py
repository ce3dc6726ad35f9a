"""`make gpu-check` on the CPU: the same script and module the GPU machine runs, started the way
it is started there (its own python, PYTHONPATH at a plain source tree) with the packages that
machine lacks made unimportable. Nothing here is timed."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ABSENT_ON_THE_GPU_MACHINE = ("rclpy", "openvino", "PIL", "torchvision", "ament_index_python", "rosidl_runtime_py")

pytest.importorskip("transformers")


@pytest.fixture
def environment(tmp_path) -> dict[str, str]:
    """A process environment whose Python cannot import what the GPU machine does not have."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        f"import sys\nfor name in {ABSENT_ON_THE_GPU_MACHINE!r}:\n    sys.modules[name] = None\n"
    )
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": str(blocker),
        "PYTHON": sys.executable,
        "OUT": str(tmp_path / "out"),
    }


def run_gpu_check(environment: dict[str, str], devices: str) -> subprocess.CompletedProcess:
    """`scripts/gpu_check.sh --devices DEVICES --quick`, as the GPU machine starts it."""
    return subprocess.run(
        [str(ROOT / "scripts" / "gpu_check.sh"), "--devices", devices, "--quick"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_blocker_makes_ros_openvino_and_pillow_unimportable(environment):
    for name in ABSENT_ON_THE_GPU_MACHINE[:3]:
        result = subprocess.run([sys.executable, "-c", f"import {name}"], env=environment, capture_output=True)
        assert result.returncode != 0, name


def test_the_gpu_check_runs_on_the_cpu_from_the_source_tree_and_writes_its_json(environment):
    result = run_gpu_check(environment, "cpu")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "all checks passed" in result.stdout
    record = json.loads((pathlib.Path(environment["OUT"]) / "gpu_check.json").read_text())
    assert record["source"] == str(ROOT / "superpoint_ros")
    assert record["machine"]["openvino"] is None and record["transformers_baseline_timed"] is False
    steps = {step["name"]: step for step in record["steps"]}
    assert set(steps) == {"cpu: float32 parity", "cpu: onnxruntime parity", "cpu: bench float32"}
    assert all(step["passed"] for step in steps.values())
    assert steps["cpu: float32 parity"]["result"]["64x80"]["problems"] == []
    (case,) = steps["cpu: bench float32"]["result"]["cases"]
    assert (case["height"], case["width"], case["batch"], case["backend"]) == (64, 80, 2, "torch")
    assert case["ours"]["total"]["p50"] > 0
    # Matching runs at the benchmark's own size, not at 480×640 (which would take a minute here).
    assert "| cpu | float32 | 64×80 moving camera (20 pairs) |" in steps["cpu: bench float32"]["result"]["table"]


def test_a_missing_cuda_device_is_a_failed_check_not_a_crash(environment):
    result = run_gpu_check(environment, "cuda")
    assert result.returncode == 1
    assert "[FAILED] cuda: available" in result.stdout and "torch sees no CUDA GPU" in result.stdout
