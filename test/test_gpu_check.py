"""`make gpu-check` on the CPU: the same script and module the GPU machine runs, started the way
it is started there (its own python, PYTHONPATH at a plain source tree) with the packages that
machine lacks made unimportable, in full mode (the rehearsal of the GPU run). The one step that
needs Pillow, and the check's bookkeeping (failed steps, the record on disk, the budget,
per-case failures), run in this process. Nothing here is timed."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest
import torch

from superpoint_ros.tools import gpu_check
from superpoint_ros.tools.gpu_check import BenchCase, Check, fit_budget

from helpers import needs

pytestmark = needs("transformers")

ROOT = pathlib.Path(__file__).resolve().parents[1]
ABSENT_ON_THE_GPU_MACHINE = ("rclpy", "openvino", "ament_index_python", "rosidl_runtime_py")
PILLOW_AND_TORCHVISION = ("PIL", "torchvision")
FULL_MODE_STEPS = [
    "setup: weights, our CPU results",
    "cpu: float32 parity",
    "cpu: CUDA graphs = eager",
    "cpu: float16 against float32",
    "cpu: bfloat16 against float32",
    "cpu: bench float32",
    "cpu: bench float16",
    "cpu: transformers baseline",
    "cpu: eager float32 timing",
    "cpu: memory",
    "cpu: onnxruntime parity",
]


def blocking_environment(tmp_path: pathlib.Path, absent: tuple[str, ...]) -> dict[str, str]:
    """A process environment whose Python cannot import `absent`."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(f"import sys\nfor name in {absent!r}:\n    sys.modules[name] = None\n")
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": str(blocker),
        "PYTHON": sys.executable,
        "OUT": str(tmp_path / "out"),
        # One torch thread: on a loaded 2-core machine more threads only thrash.
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture
def environment(tmp_path) -> dict[str, str]:
    """Nothing the GPU machine lacks, nor Pillow and torchvision."""
    return blocking_environment(tmp_path, ABSENT_ON_THE_GPU_MACHINE + PILLOW_AND_TORCHVISION)


def run_gpu_check(environment: dict[str, str], *arguments: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`scripts/gpu_check.sh ARGUMENTS`, as the GPU machine starts it, and the JSON it wrote."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "gpu_check.sh"), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = pathlib.Path(environment["OUT"]) / "gpu_check.json"
    return result, json.loads(output.read_text()) if output.exists() else {}


def test_the_blocker_makes_ros_openvino_and_pillow_unimportable(environment):
    for name in ("rclpy", "openvino", "PIL"):
        result = subprocess.run([sys.executable, "-c", f"import {name}"], env=environment, capture_output=True)
        assert result.returncode != 0, name


def test_the_full_check_rehearsed_on_the_cpu_runs_every_step_from_the_source_tree(environment):
    result, record = run_gpu_check(environment, "--devices", "cpu", "--sizes", "64x80", "--batches", "1,2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "all checks passed" in result.stdout and "estimated duration:" in result.stdout
    assert record["source"] == str(ROOT / "superpoint_ros")
    assert record["complete"] is True and record["passed"] is True and "running" not in record
    assert record["machine"]["openvino"] is None and record["hf_hub_offline"] == "1"
    steps = {step["name"]: step for step in record["steps"]}
    assert list(steps) == FULL_MODE_STEPS
    assert not [name for name, step in steps.items() if step["passed"] is False]
    for judged in (
        "setup: weights, our CPU results",
        "cpu: float32 parity",
        "cpu: bench float32",
        "cpu: onnxruntime parity",
    ):
        assert steps[judged]["passed"] is True, judged
    # What the CPU cannot run, or this machine lacks, is recorded as skipped with its reason.
    assert "CUDA only" in steps["cpu: CUDA graphs = eager"]["result"]["skipped"]
    assert "not offered" in steps["cpu: bench float16"]["result"]["skipped"]
    assert "Pillow" in steps["cpu: transformers baseline"]["result"]["skipped"]
    parity = steps["cpu: float32 parity"]["result"]
    assert set(parity) == {"64x80", "70x93"}  # the given size and the one not divisible by 8
    assert parity["64x80"]["problems"] == [] and parity["64x80"]["raw_score_difference"] <= 1e-5
    cases = steps["cpu: bench float32"]["result"]["cases"]
    # Full mode: runs by size, 30·480·640 / (64·80) clipped to 40, where the old check passed "None".
    assert [(case["height"], case["width"], case["batch"], case["runs"]) for case in cases] == [
        (64, 80, 1, 40),
        (64, 80, 2, 40),
    ]
    assert all(case["ours"]["total"]["p50"] > 0 and case["reference"] is None for case in cases)
    assert steps["cpu: eager float32 timing"]["result"]["ms"]["total"]["p50"] > 0
    memory = steps["cpu: memory"]["result"]
    assert set(memory) == {"64x80 batch 1", "64x80 batch 2", "two cameras 64x80, batches 1 and 2 in turn"}
    assert all(row["process_max_rss_mib"] > 0 for row in memory.values())
    assert steps["cpu: onnxruntime parity"]["result"]["backend"] == "onnxruntime (CPUExecutionProvider)"
    assert record["estimate"]["seconds"] > 0 and record["skipped_for_budget"] == []


def test_with_pillow_importable_the_baseline_step_times_transformers_beside_ours(hf_weights):
    """The step the rehearsal above records as skipped (Pillow blocked there), run here, where
    Pillow imports: it times both pipelines. In this process, not in a second full check: the
    step imports nothing the rehearsal has not shown to load from the source tree."""
    pytest.importorskip("PIL")
    result, passed = gpu_check.transformers_baseline(str(hf_weights), "cpu", (64, 80), runs=2)
    assert passed is None and "skipped" not in result
    assert result["size"] == "64x80"
    assert result["transformers_ms"]["p50"] > 0 and result["ours_ms"]["p50"] > 0 and result["speedup"] > 0


def test_a_missing_cuda_device_is_a_failed_check_not_a_crash(tmp_path, capsys):
    output = tmp_path / "gpu_check.json"
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu_check.main(["--devices", "cuda", "--quick", "--output", str(output)]) == 1
    printed = capsys.readouterr().out
    assert "[FAILED] cuda: available" in printed and "torch sees no CUDA GPU" in printed
    record = json.loads(output.read_text())
    assert record["complete"] is True and record["passed"] is False
    assert [step["name"] for step in record["steps"]] == ["cuda: available"]


def test_a_step_that_exits_is_recorded_as_failed_and_the_next_step_runs(tmp_path):
    output = tmp_path / "gpu_check.json"
    check = Check({}, output)
    on_disk_during_the_second_step = {}

    def exits() -> tuple[dict, bool]:
        raise SystemExit(2)  # what argparse does on a bad option, as the old bench step did

    def reads_the_record() -> tuple[dict, bool]:
        on_disk_during_the_second_step.update(json.loads(output.read_text()))
        return {"value": 1}, True

    check.run("exits", exits)
    check.run("reads the record", reads_the_record)
    # A run cut off here: the record on disk says which step ran, and that it is neither complete nor passed.
    assert on_disk_during_the_second_step["complete"] is False
    assert on_disk_during_the_second_step["running"] == "reads the record"
    assert on_disk_during_the_second_step["passed"] is False
    assert [step["name"] for step in on_disk_during_the_second_step["steps"]] == ["exits"]
    assert on_disk_during_the_second_step["steps"][0]["result"]["error"] == "SystemExit: 2"
    check.finish()
    record = json.loads(output.read_text())
    assert record["complete"] is True and record["passed"] is False
    assert [step["passed"] for step in record["steps"]] == [False, True]
    assert not list(tmp_path.glob("*.partial"))  # each write replaced the record whole


def test_an_unfinished_record_without_failures_has_not_passed_yet(tmp_path):
    output = tmp_path / "gpu_check.json"
    check = Check({}, output)
    check.run("fine", lambda: ({}, True))
    assert json.loads(output.read_text())["passed"] is None
    check.finish()
    assert json.loads(output.read_text())["passed"] is True


def test_a_step_that_leaves_cudnn_autotuning_on_fails(tmp_path):
    check = Check({}, None)
    saved = torch.backends.cudnn.benchmark

    def leaks() -> tuple[dict, bool]:
        torch.backends.cudnn.benchmark = not saved
        return {}, True

    try:
        check.run("leaks", leaks)
    finally:
        torch.backends.cudnn.benchmark = saved
    (step,) = check.steps
    assert step["passed"] is False
    assert step["result"]["leaked_cuda_switches"]["after"]["cudnn.benchmark"] is (not saved)


def case(height: int, width: int, batch: int, precision: str = "float32", device: str = "cuda") -> BenchCase:
    return BenchCase(device, precision, height, width, batch, runs=10)


def test_the_budget_drops_the_cases_with_the_most_pixels_first_and_keeps_the_order():
    cases = [case(240, 320, 1), case(720, 1280, 1), case(480, 640, 4), case(240, 320, 16), case(480, 640, 1)]
    total = sum(item.seconds for item in cases)
    assert fit_budget(cases, 10.0, None) == (cases, [])
    assert fit_budget(cases, 10.0, 10.0 + total) == (cases, [])
    # 480×640×4 and 240×320×16 are 1 228 800 pixels each, the most: the later one goes first, and
    # the other too when that is not enough; 720×1280×1 (921 600) stays.
    budget = 10.0 + total - cases[3].seconds - cases[2].seconds / 2
    kept, dropped = fit_budget(cases, 10.0, budget)
    assert dropped == [cases[2], cases[3]] and kept == [cases[0], cases[1], cases[4]]
    assert fit_budget(cases, 10.0, 10.0 + total - cases[3].seconds) == ([*cases[:3], cases[4]], [cases[3]])
    assert fit_budget(cases, 10.0, 5.0) == ([], cases)


def test_the_estimate_grows_with_pixels_and_runs_and_a_gpu_run_is_estimated_faster():
    assert case(480, 640, 4).seconds > case(480, 640, 1).seconds > case(240, 320, 1).seconds
    assert dataclasses.replace(case(480, 640, 1), runs=40).seconds > case(480, 640, 1).seconds
    assert case(480, 640, 1, device="cpu").seconds > case(480, 640, 1, device="cuda:1").seconds


def test_full_mode_chooses_runs_by_size_and_quick_mode_one_run():
    full = gpu_check.parse_arguments(["--sizes", "64x80,48x64", "--batches", "1,2"])
    assert full.runs is None and full.sizes == ((64, 80), (48, 64)) and full.batches == (1, 2)
    assert full.parity_sizes == ((64, 80), (48, 64), (70, 93))
    default = gpu_check.parse_arguments([])
    assert (default.sizes, default.batches, default.parity_sizes) == (
        gpu_check.SIZES,
        gpu_check.BATCHES,
        gpu_check.PARITY_SIZES,
    )
    plan = gpu_check.bench_plan(["cuda", "cpu"], full.sizes, full.batches, full.runs)
    assert [(item.device, item.precision) for item in plan[::4]] == [
        ("cuda", "float32"),
        ("cuda", "float16"),
        ("cpu", "float32"),
    ]
    assert {item.runs for item in plan} == {40}
    quick = gpu_check.parse_arguments(["--quick"])
    assert (quick.sizes, quick.batches, quick.runs) == (((64, 80),), (2,), 1)


@pytest.mark.parametrize("arguments", [["--sizes", "64"], ["--sizes", "4x80"], ["--batches", "0"]])
def test_a_bad_size_or_batch_is_refused_with_a_message(arguments, capsys):
    with pytest.raises(SystemExit):
        gpu_check.parse_arguments(arguments)
    assert "error:" in capsys.readouterr().err


def test_a_failed_benchmark_case_is_recorded_and_the_other_cases_keep_their_timings(hf_weights):
    cases = [
        BenchCase("cpu", "float32", 64, 80, 1, runs=1),
        BenchCase("cpu", "float32", 4, 80, 1, runs=1),  # pooled to nothing: the network fails
        BenchCase("cpu", "float32", 64, 72, 1, runs=1),
    ]
    result, passed = gpu_check.benchmark(str(hf_weights), "cpu", "float32", cases, deadline=None)
    assert passed is False
    assert [(row["height"], row["width"]) for row in result["cases"]] == [(64, 80), (64, 72)]
    (failure,) = result["failures"]
    assert failure["case"] == "cpu float32 4x80 batch 1" and failure["error"]


def test_a_benchmark_case_that_would_end_after_the_deadline_is_skipped_and_recorded(hf_weights):
    cases = [BenchCase("cpu", "float32", 64, 80, 1, runs=1)]
    result, passed = gpu_check.benchmark(str(hf_weights), "cpu", "float32", cases, deadline=time.perf_counter())
    assert passed is True and result["cases"] == []
    assert result["skipped_for_time"] == ["cpu float32 64x80 batch 1"]


def test_the_agreement_step_finds_float32_in_full_agreement_with_itself(hf_weights):
    result, passed = gpu_check.reduced_precision(str(hf_weights), "cpu", "float32", ((64, 80),), (64, 80))
    assert passed is None
    assert result["64x80"]["keypoint_overlap"] == 1.0 and result["64x80"]["cosine_min"] > 0.9999
    plain = [row for row in result["matches"] if row["precision"] == "float32"]
    assert [row["versus_float32"] for row in plain] == ["–", "–"]  # both pair sets, float32 the yardstick
    assert "moving camera" in result["table"]


def test_the_agreement_step_skips_a_precision_the_cpu_does_not_offer(hf_weights):
    result, passed = gpu_check.reduced_precision(str(hf_weights), "cpu", "float16", ((64, 80),), (64, 80))
    assert passed is None and "not offered" in result["skipped"]
