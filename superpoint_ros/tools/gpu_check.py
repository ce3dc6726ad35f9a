"""One-shot GPU check: parity, reduced-precision agreement, the benchmark and memory on CUDA, in one run.

```
make gpu-check                                   # = scripts/gpu_check.sh: CUDA, the full check
make gpu-check ARGS="--budget 300"               # the largest benchmark cases go first if time is short
scripts/gpu_check.sh --devices cpu --sizes 64x80 --batches 1,2   # the full check rehearsed on the CPU
scripts/gpu_check.sh --devices cpu --quick       # a smoke test: 64x80, batch 2, one run per case
```

Written for the lent GPU machine: a plain copy of the repository and its `python3` (torch with
CUDA, transformers, numpy, OpenCV, safetensors, onnxruntime; no ROS, no OpenVINO), so it
imports nothing else, and nothing from here may import ROS or OpenVINO at module level. On each
device of `--devices` it runs these steps, every one recorded under its name (`cuda: ...`):

1. `float32 parity`: the `Detector` against transformers' SuperPoint on the same device (four
   borders, near-tie flips explained, scores within 1e-5, descriptors within 1e-4), and against
   our own CPU result; with cuDNN's heuristics instead of its autotuner and TF32 off for both
   networks, the raw largest differences recorded before they are judged;
2. `CUDA graphs = eager` (CUDA): the same keypoints with and without CUDA graphs;
3. `float16 against float32`, `bfloat16 against float32` (CUDA): keypoint overlap, descriptor
   cosine and the correct-match share of `superpoint_ros.tools.bench`'s matching comparison;
4. `bench float32`, `bench float16` (CUDA): our pipeline timed per size × batch, one precision
   per step and no transformers in it (parity is step 1); a case that fails is recorded as
   failed and the others keep their timings;
5. `transformers baseline`: ours and transformers interleaved at the middle size, batch 1 (needs
   transformers' image processor, that is Pillow);
6. `eager float32 timing`: the pipeline without CUDA graphs at the middle size, batch 1;
7. `memory`: peak allocated and reserved GPU memory per size × batch, and for a node with two
   cameras (batches of 1 and 2 frames in turn, which must capture two graphs and no more);
   the process's peak resident memory on the CPU;
8. `onnxruntime parity`: the `onnxruntime` backend against transformers on the execution
   provider that loaded (on a GPU at one size only, and last: TensorRT builds an engine per
   shape, slowly).

A step the device cannot run is recorded as skipped, with the reason. The estimated duration is
printed first; `--budget SECONDS` drops the largest benchmark cases until the estimate fits, and
skips any case that would still overrun while running; what was skipped is recorded. The record
is written as JSON to `--output`, or to `$OUT/gpu_check.json` when `$OUT` is set, at the start
and after every step with `"complete": false`, so a run cut off by a time limit leaves what it
measured; `"complete": true` and `"passed"` come at the end. A failed step, whatever it raised
(`SystemExit` too), is recorded and the run goes on; the exit status is 1 if any check failed.
Random weights (`bench_scenes.benchmark_weights`): no hub is reachable there.

Why one module over 400 lines: it is copied to the GPU machine and run there as one script in
a few minutes of device time; its steps share the record that is rewritten after each one.
"""

import argparse
import dataclasses
import gc
import json
import os
import pathlib
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable

import numpy as np
import torch

from superpoint_ros import cuda_graphs
from superpoint_ros.backends import (
    CudaTorchNetwork,
    cuda_settings,
    onnxruntime_available,
    onnxruntime_cuda_mismatch,
    onnxruntime_cuda_version,
)
from superpoint_ros.detector import Detections, DetectionSettings, Detector
from superpoint_ros.images import to_grey_batch
from superpoint_ros.tools import bench
from superpoint_ros.tools.bench_scenes import benchmark_scene, benchmark_weights, record_head
from superpoint_ros.tools.reference import (
    check_against_reference,
    compare,
    load_reference_model,
    reference_processor_available,
    reference_raw_scores,
)

SIZES = ((240, 320), (480, 640), (720, 1280))
BATCHES = (1, 4, 16)
ODD_SIZE = (70, 93)  # not divisible by 8: the edges that pooling drops
PARITY_SIZES = ((240, 320), (480, 640), ODD_SIZE)
QUICK_SIZES = ((64, 80),)
QUICK_BATCHES = (2,)
REDUCED_PRECISIONS = ("float16", "bfloat16")
BENCH_PRECISIONS = ("float32", "float16")

# The duration estimate. Seconds of one pipeline run per megapixel in float32, and of building,
# autotuning and capturing per benchmark case: guesses from the FLOPs (52 GFLOP per 480×640 frame)
# for CUDA and from 2-core CPU runs; a GPU run's JSON records each step's seconds beside the
# estimate, to correct them.
RUN_SECONDS_PER_MEGAPIXEL = {"cuda": 0.01, "cpu": 3.0}
CASE_SECONDS = {"cuda": 1.5, "cpu": 0.3}
START_SECONDS = {"cuda": 30.0, "cpu": 10.0}  # imports, CUDA context, weights, one detector built
STEP_SECONDS = {"cuda": 3.0, "cpu": 1.0}  # each step's detectors and reference built
ONNX_EXPORT_SECONDS = 3.0
MATCH_IMAGES = 3 * (8 + 21)  # float32, noisy float32, reduced × (4 homography pairs, 20-frame sequence)

_CUDA_SWITCHES = ("cudnn.benchmark", "cudnn.allow_tf32", "cuda.matmul.allow_tf32")


def kind(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def megapixels(height: int, width: int, images: int = 1) -> float:
    return height * width * images / 1e6


@dataclasses.dataclass(frozen=True)
class BenchCase:
    """One timed case of a benchmark step, with its estimated seconds."""

    device: str
    precision: str
    height: int
    width: int
    batch: int
    runs: int

    @property
    def pixels(self) -> int:
        return self.height * self.width * self.batch

    @property
    def label(self) -> str:
        return f"{self.device} {self.precision} {self.height}x{self.width} batch {self.batch}"

    @property
    def seconds(self) -> float:
        device = kind(self.device)
        runs = bench.WARMUP_RUNS + self.runs + (cuda_graphs.WARMUP_RUNS + 1 if device == "cuda" else 0)
        return (
            CASE_SECONDS[device]
            + runs * megapixels(self.height, self.width, self.batch) * RUN_SECONDS_PER_MEGAPIXEL[device]
        )


def bench_precisions(device: str) -> tuple[str, ...]:
    return BENCH_PRECISIONS if kind(device) == "cuda" else ("float32",)


def bench_plan(devices: list[str], sizes, batches, runs: int | None) -> list[BenchCase]:
    """Every benchmark case of the run, in running order; runs by size unless `runs` is given."""
    return [
        BenchCase(device, precision, height, width, batch, runs or bench.runs_for(height, width, batch))
        for device in devices
        for precision in bench_precisions(device)
        for height, width in sizes
        for batch in batches
    ]


def other_steps_seconds(device: str, parity_sizes, sizes, batches, runs: int | None) -> float:
    """The estimated seconds of every step but the benchmark's on `device`."""
    rate, device_kind = RUN_SECONDS_PER_MEGAPIXEL[kind(device)], kind(device)
    cuda = device_kind == "cuda"
    parity_pixels = sum(megapixels(height, width, 2) for height, width in parity_sizes)
    middle = sizes[len(sizes) // 2]
    middle_runs = bench.WARMUP_RUNS + (runs or bench.runs_for(*middle, 1))
    seconds = {
        # ours and transformers, and ours on the CPU to compare a GPU with
        "parity": 2 * parity_pixels * rate + (parity_pixels * RUN_SECONDS_PER_MEGAPIXEL["cpu"] if cuda else 0),
        # three settings, three images, graphed and eager
        "graphs": (9 * parity_pixels * rate + 3 * len(parity_sizes) * CASE_SECONDS["cuda"]) if cuda else 0,
        "agreement": len(REDUCED_PRECISIONS) * (2 * parity_pixels + MATCH_IMAGES * megapixels(*middle)) * rate
        if cuda
        else 0,
        "baseline": 2 * middle_runs * megapixels(*middle) * rate,
        "eager": middle_runs * megapixels(*middle) * rate,
        "memory": sum(2 * megapixels(height, width, batch) * rate for height, width in sizes for batch in batches)
        + len(sizes) * len(batches) * CASE_SECONDS[device_kind]
        + 9 * megapixels(*middle) * rate,
        "onnxruntime": ONNX_EXPORT_SECONDS + 2 * (megapixels(*middle, 2) if cuda else parity_pixels) * rate,
    }
    return sum(seconds.values()) + len(seconds) * STEP_SECONDS[device_kind]


def fit_budget(cases: list[BenchCase], other_seconds: float, budget: float | None) -> tuple[list, list]:
    """`(kept, skipped)`: without a budget every case is kept; with one, the cases with the most
    pixels (size × batch; among equals the later ones) are dropped until the other steps'
    `other_seconds` plus the kept cases' estimates fit in `budget` seconds. Order is kept."""
    if budget is None:
        return list(cases), []
    by_size = sorted(range(len(cases)), key=lambda index: (cases[index].pixels, index))
    dropped: set[int] = set()
    total = other_seconds + sum(case.seconds for case in cases)
    while total > budget and by_size:
        index = by_size.pop()
        dropped.add(index)
        total -= cases[index].seconds
    return (
        [case for index, case in enumerate(cases) if index not in dropped],
        [case for index, case in enumerate(cases) if index in dropped],
    )


def cuda_switches() -> dict[str, bool]:
    """torch's process-wide cuDNN and TF32 switches (they exist on CPU builds too)."""
    return {
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }


def compare_detections(ours: list[Detections], theirs: list[Detections]) -> dict:
    """Two runs of our pipeline on the same images: keypoints on one side only, and the largest
    score and descriptor differences over the shared ones."""
    comparisons = [
        compare(
            mine,
            {
                "keypoints": np.rint(other.keypoints).astype(np.int64),
                "scores": other.scores,
                "descriptors": other.descriptors,
            },
        )
        for mine, other in zip(ours, theirs, strict=True)
    ]
    return {
        "keypoints": sum(comparison.count for comparison in comparisons),
        "only_one_side": sum(len(c.only_ours) + len(c.only_reference) for c in comparisons),
        "score_difference": max(comparison.score_difference for comparison in comparisons),
        "descriptor_difference": max(comparison.descriptor_difference for comparison in comparisons),
    }


def skipped(reason: str) -> tuple[dict, None]:
    """A step's result when the device cannot run it."""
    return {"skipped": reason}, None


class Check:
    """Collects each step's result, or its failure, and keeps going. The record is written to
    `output` at the start and after each step, with `"complete": false` and the step running,
    so that a run cut short by a time limit still reports truthfully."""

    def __init__(self, record: dict, output: pathlib.Path | None) -> None:
        self.record = record
        self.output = output
        self.steps: list[dict] = record.setdefault("steps", [])
        self.failed = False
        self.record["complete"] = False
        self.write()

    def write(self) -> None:
        """The record as it stands: `passed` is false after any failure, and true only once complete."""
        complete = self.record["complete"]
        self.record["passed"] = False if self.failed else (True if complete else None)
        if self.output is not None:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            # Whole or not at all: the device's time limit may kill the process mid-write.
            partial = self.output.with_name(self.output.name + ".partial")
            partial.write_text(json.dumps(self.record, indent=1, default=_json_default) + "\n")
            partial.replace(self.output)

    def finish(self) -> None:
        self.record.pop("running", None)
        self.record["complete"] = True
        self.write()

    def run(self, name: str, step: Callable, *args) -> dict:
        """Run `step(*args)`, which returns `(result, passed)` (passed None: measured, not judged),
        and record it; any exception, `SystemExit` included, is the step's failure."""
        self.record["running"] = name
        self.write()
        switches = cuda_switches()
        start = time.perf_counter()
        try:
            result, passed = step(*args)
        except (Exception, SystemExit) as error:  # noqa: BLE001 - one broken step must not end the run
            result, passed = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}, False
        seconds = time.perf_counter() - start
        if cuda_switches() != switches:
            result["leaked_cuda_switches"] = {"before": switches, "after": cuda_switches()}
            passed = False
        self.failed |= passed is False
        verdict = verdict_of(passed, result)
        self.steps.append({"name": name, "passed": passed, "seconds": round(seconds, 1), "result": result})
        shown = {key: value for key, value in result.items() if key not in ("traceback", "table", "cases")}
        print(f"[{verdict}] {name} ({seconds:.1f} s): {json.dumps(shown, default=str)}", flush=True)
        if "table" in result:
            print(result["table"], flush=True)
        self.write()
        return result


def verdict_of(passed: bool | None, result: dict) -> str:
    if "skipped" in result:
        return "skipped"
    return {True: "ok", False: "FAILED", None: "measured"}[passed]


def parity(weights: str, device: str, sizes, cpu_results: dict) -> tuple[dict, bool]:
    """The float32 Detector against transformers on `device`, and against our CPU result, both
    networks with cuDNN's heuristic algorithms and without TF32."""
    with cuda_settings(autotune=False, tf32=False):
        detector = Detector(weights=weights, device=device, backend="torch")
        if isinstance(detector.network, CudaTorchNetwork):
            detector.network.autotune = False
        reference = load_reference_model(weights, detector.device)
        settings = DetectionSettings()
        results, passed = {}, True
        for height, width in sizes:
            images = [benchmark_scene(height, width, seed) for seed in range(2)]
            with torch.inference_mode():
                ours_raw = detector.network(to_grey_batch(images, detector.device))[0].float().cpu()
            raw_difference = float((ours_raw - reference_raw_scores(reference, images).float().cpu()).abs().max())
            report = check_against_reference(detector, reference, images, settings)
            case = {
                "raw_score_difference": raw_difference,
                "keypoints": [comparison.count for comparison in report.comparisons],
                "near_tie_flips": report.rounding_flips,
                "score_difference": max(comparison.score_difference for comparison in report.comparisons),
                "descriptor_difference": max(comparison.descriptor_difference for comparison in report.comparisons),
            }
            problems = report.failures(bench.SCORE_TOLERANCE, bench.DESCRIPTOR_TOLERANCE)
            key = f"{height}x{width}"
            if device != "cpu":
                case["against_our_cpu"] = cpu = compare_detections(detector.detect_batch(images), cpu_results[key])
                if (
                    cpu["score_difference"] > bench.SCORE_TOLERANCE
                    or cpu["descriptor_difference"] > bench.DESCRIPTOR_TOLERANCE
                ):
                    problems.append(f"our CPU and {device} results differ beyond the tolerances")
            case["problems"] = problems
            passed &= not problems
            results[key] = case
    return results, passed


def cpu_reference_results(weights: str, sizes) -> dict:
    """Our CPU pipeline's detections on the parity images, to compare a GPU's with."""
    detector = Detector(weights=weights, device="cpu", backend="torch")
    return {
        f"{height}x{width}": detector.detect_batch([benchmark_scene(height, width, seed) for seed in range(2)])
        for height, width in sizes
    }


def graphs_against_eager(weights: str, device: str, sizes) -> tuple[dict, bool]:
    """CUDA graphs against the same pipeline run kernel by kernel: the same keypoints."""
    if kind(device) != "cuda":
        return skipped("CUDA graphs run on CUDA only")
    graphed = Detector(weights=weights, device=device, backend="torch")
    eager = Detector(weights=weights, device=device, backend="torch", cuda_graphs=False)
    results, passed = {}, True
    for height, width in sizes:
        for settings in (DetectionSettings(), DetectionSettings(0.0, 1, -1, 4), DetectionSettings(0.005, 4, 500, 4)):
            images = [benchmark_scene(height, width, seed) for seed in range(3)]
            difference = compare_detections(
                graphed.detect_batch(images, settings=settings), eager.detect_batch(images, settings=settings)
            )
            results[f"{height}x{width} {settings}"] = difference
            passed &= (
                difference["only_one_side"] == 0
                and difference["score_difference"] <= bench.SCORE_TOLERANCE
                and difference["descriptor_difference"] <= bench.DESCRIPTOR_TOLERANCE
            )
    results["graphs_active"] = graphed.graphs is not None
    return results, passed and graphed.graphs is not None


def reduced_precision(weights: str, device: str, precision: str, sizes, match_size) -> tuple[dict, None]:
    """Agreement of `precision` with float32 on the same device, and both precisions' matching
    figures at `match_size` (measured, not judged). float32 is offered everywhere, to test this."""
    if precision != "float32" and kind(device) != "cuda":
        return skipped(f"{precision} is not offered by the torch backend on {device}")
    float32 = Detector(weights=weights, device=device, backend="torch")
    reduced = Detector(weights=weights, device=device, backend="torch", precision=precision)
    results = {}
    for height, width in sizes:
        images = [benchmark_scene(height, width, seed) for seed in range(2)]
        results[f"{height}x{width}"] = bench.agreement(reduced.detect(images), float32.detect(images))
    rows = bench.match_rows_for(device, {"float32": float32, precision: reduced}, match_size)
    results["matches"] = rows
    results["table"] = bench.format_match_table(rows)
    return results, None


def benchmark(weights: str, device: str, precision: str, cases: list[BenchCase], deadline: float | None):
    """Our pipeline in `precision`, timed case by case without transformers. A case that fails is
    recorded with its error and the others keep their timings; a case that would end after
    `deadline` (a `time.perf_counter()` value) is skipped and recorded."""
    if precision not in bench_precisions(device):
        return skipped(f"{precision} is not offered by the torch backend on {device}")
    detector = Detector(weights=weights, device=device, backend="torch", precision=precision)
    timed, failures, late = [], [], []
    for case in cases:
        if deadline is not None and time.perf_counter() + case.seconds > deadline:
            late.append(case.label)
            continue
        try:
            images = [benchmark_scene(case.height, case.width, seed) for seed in range(case.batch)]
            keypoints = float(np.mean([len(result.scores) for result in detector.detect_batch(images)]))
            ours, _ = bench.time_case(detector, None, images, case.runs)
        except Exception as error:  # noqa: BLE001 - one case's failure must not discard the others' timings
            failures.append({"case": case.label, "error": f"{type(error).__name__}: {error}"})
            continue
        timed.append(
            bench.Case(
                device=device,
                backend=detector.backend,
                height=case.height,
                width=case.width,
                batch=case.batch,
                runs=case.runs,
                precision=precision,
                keypoints_per_image=keypoints,
                check="parity: own step",
                ours=ours,
                reference=None,
            )
        )
    result = {"cases": [dataclasses.asdict(case) for case in timed], "table": bench.format_table(timed)}
    if failures:
        result["failures"] = failures
    if late:
        result["skipped_for_time"] = late
    return result, not failures


def transformers_baseline(weights: str, device: str, size, runs: int) -> tuple[dict, None]:
    """Ours and transformers' forward + post-processing, interleaved run by run, batch 1, both
    with cuDNN's autotuner and without TF32."""
    if not reference_processor_available():
        return skipped("transformers' image processor does not import (it needs Pillow)")
    with cuda_settings(autotune=True, tf32=False):
        detector = Detector(weights=weights, device=device, backend="torch")
        reference = load_reference_model(weights, detector.device)
        ours, theirs = bench.time_case(detector, reference, [benchmark_scene(*size, 0)], runs)
    return {
        "size": f"{size[0]}x{size[1]}",
        "ours_ms": ours["total"],
        "transformers_ms": theirs["total"],
        "speedup": theirs["total"]["p50"] / ours["total"]["p50"],
    }, None


def eager_timing(weights: str, device: str, size, runs: int) -> tuple[dict, None]:
    """Pipeline p50/p90 without CUDA graphs, batch 1, for comparison with the graphed bench."""
    detector = Detector(weights=weights, device=device, backend="torch", cuda_graphs=False)
    images = [benchmark_scene(*size, 0)]
    ours, _ = bench.time_case(detector, None, images, runs)
    return {"size": f"{size[0]}x{size[1]}", "ms": ours}, None


def _fresh_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, float]:
    """MiB: on CUDA the peak allocated and reserved since `_fresh_peak`, and reserved now; on
    the CPU the process's peak resident memory (since it started: it never resets)."""
    if device.type == "cuda":
        return {
            "max_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20,
            "max_reserved_mib": torch.cuda.max_memory_reserved(device) / 2**20,
            "reserved_mib": torch.cuda.memory_reserved(device) / 2**20,
        }
    return {"process_max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def memory(weights: str, device: str, cases: list[tuple[int, int, int]], node_size) -> tuple[dict, bool | None]:
    """Peak memory of a float32 detector (weights, graphs and all) per `(height, width, batch)`,
    two runs each; then one detector fed batches of 1 and 2 frames in turn at `node_size`, as
    the node with two cameras does, which on CUDA must capture two graphs and no more."""
    results: dict[str, dict] = {}
    for height, width, batch in cases:
        _fresh_peak(torch.device(device))
        detector = Detector(weights=weights, device=device, backend="torch")
        images = [benchmark_scene(height, width, seed) for seed in range(batch)]
        for _ in range(2):
            detector.detect_batch(images)
        results[f"{height}x{width} batch {batch}"] = peak_memory(detector.device)
        del detector
    _fresh_peak(torch.device(device))
    detector = Detector(weights=weights, device=device, backend="torch")
    frames = [benchmark_scene(*node_size, seed) for seed in range(2)]
    for _ in range(3):
        detector.detect_batch(frames[:1])
        detector.detect_batch(frames)
    two_cameras = peak_memory(detector.device)
    passed = None
    if detector.graphs is not None:
        two_cameras["graphs_captured"] = detector.graphs.captures
        passed = detector.graphs.captures == 2
    results[f"two cameras {node_size[0]}x{node_size[1]}, batches 1 and 2 in turn"] = two_cameras
    return results, passed


def onnxruntime_parity(weights: str, device: str, sizes) -> tuple[dict, bool]:
    """The onnxruntime backend against transformers, on the provider that loaded."""
    if not onnxruntime_available():
        return skipped("onnxruntime is not installed")
    detector = Detector(weights=weights, device=device, backend="onnxruntime")
    with cuda_settings(autotune=False, tf32=False):
        reference = load_reference_model(weights, detector.device)
        results, passed = {"backend": detector.backend}, True
        mismatch = onnxruntime_cuda_mismatch(onnxruntime_cuda_version(), torch.version.cuda)
        if mismatch:
            results["cuda_mismatch"] = mismatch
        for height, width in sizes:
            images = [benchmark_scene(height, width, seed) for seed in range(2)]
            report = check_against_reference(detector, reference, images, DetectionSettings())
            problems = report.failures(bench.SCORE_TOLERANCE, bench.DESCRIPTOR_TOLERANCE)
            results[f"{height}x{width}"] = {
                "near_tie_flips": report.rounding_flips,
                "score_difference": max(comparison.score_difference for comparison in report.comparisons),
                "descriptor_difference": max(comparison.descriptor_difference for comparison in report.comparisons),
                "problems": problems,
            }
            passed &= not problems
    return results, passed


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    try:
        sizes = tuple(tuple(int(side) for side in size.lower().split("x")) for size in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW,HxW,... got {text!r}") from None
    if any(len(size) != 2 or min(size) < 8 for size in sizes):
        raise argparse.ArgumentTypeError(f"expected sizes HxW of at least 8x8, got {text!r}")
    return sizes


def _batches(text: str) -> tuple[int, ...]:
    try:
        batches = tuple(int(batch) for batch in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated batch sizes, got {text!r}") from None
    if min(batches) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be at least 1, got {text!r}")
    return batches


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m superpoint_ros.tools.gpu_check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--devices", default="cuda", help="comma-separated: cuda, cuda:N, cpu (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="64x80, batch 2, 1 run: a smoke test of this script")
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=None,
        help="HxW,... of the benchmark and memory steps; parity runs at these and 70x93 (default: "
        + ",".join(f"{height}x{width}" for height, width in SIZES)
        + ")",
    )
    parser.add_argument(
        "--batches", type=_batches, default=None, help=f"batch sizes (default: {','.join(map(str, BATCHES))})"
    )
    parser.add_argument("--runs", type=int, default=None, help="timed runs per benchmark case (default: by size)")
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds: drop the largest benchmark cases to fit (default: none)"
    )
    parser.add_argument("--output", type=pathlib.Path, default=None, help="JSON file (default: $OUT/gpu_check.json)")
    args = parser.parse_args(argv)
    args.devices = args.devices.split(",")
    if args.output is None and os.environ.get("OUT"):
        args.output = pathlib.Path(os.environ["OUT"]) / "gpu_check.json"
    if args.quick:
        args.sizes, args.batches, args.runs = args.sizes or QUICK_SIZES, args.batches or QUICK_BATCHES, args.runs or 1
        args.parity_sizes = args.sizes
    elif args.sizes is None:
        args.sizes, args.parity_sizes = SIZES, PARITY_SIZES
    else:
        args.parity_sizes = (*args.sizes, ODD_SIZE)
    args.batches = args.batches or BATCHES
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    started = time.perf_counter()
    record = {
        **record_head("superpoint_ros.tools.gpu_check", argv, python="python3"),
        "source": str(pathlib.Path(__file__).resolve().parents[1]),
        "load_average": list(os.getloadavg()),
        "cuda_switches_at_start": cuda_switches(),
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE"),
    }
    print(f"{record['date']}  {record['machine']}", flush=True)
    mismatch = onnxruntime_cuda_mismatch(onnxruntime_cuda_version(), torch.version.cuda)
    if mismatch:
        print(mismatch, flush=True)
    devices = [device for device in args.devices if kind(device) == "cpu" or torch.cuda.is_available()]
    plan = bench_plan(devices, args.sizes, args.batches, args.runs)
    other = sum(other_steps_seconds(d, args.parity_sizes, args.sizes, args.batches, args.runs) for d in devices)
    other += START_SECONDS["cuda" if any(kind(device) == "cuda" for device in devices) else "cpu"]
    kept, dropped = fit_budget(plan, other, args.budget)
    record["estimate"] = {
        "seconds": round(other + sum(case.seconds for case in kept)),
        "seconds_without_budget": round(other + sum(case.seconds for case in plan)),
        "benchmark_cases": {case.label: round(case.seconds, 1) for case in plan},
        "rates": {"run_seconds_per_megapixel": RUN_SECONDS_PER_MEGAPIXEL, "case_seconds": CASE_SECONDS},
    }
    record["budget_seconds"] = args.budget
    record["skipped_for_budget"] = [case.label for case in dropped]
    print(
        f"estimated duration: {record['estimate']['seconds']} s ({len(kept)} benchmark cases"
        + (f"; budget {args.budget:g} s, {len(dropped)} largest cases skipped" if args.budget is not None else "")
        + ")",
        flush=True,
    )
    deadline = started + args.budget if args.budget is not None else None
    check = Check(record, args.output)
    for device in args.devices:
        if device not in devices:
            check.run(f"{device}: available", lambda: ({"error": "torch sees no CUDA GPU"}, False))
    with tempfile.TemporaryDirectory(prefix="superpoint_gpu_check_") as scratch:
        prepared: dict = {}

        def prepare() -> tuple[dict, bool]:
            prepared["weights"] = str(benchmark_weights(pathlib.Path(scratch) / "weights"))
            gpus = [device for device in devices if kind(device) == "cuda"]
            prepared["cpu_results"] = cpu_reference_results(prepared["weights"], args.parity_sizes) if gpus else {}
            return {"weights": "random, hub layout (bench_scenes.benchmark_weights, seed 0)"}, True

        if devices:
            check.run("setup: weights, our CPU results", prepare)
        weights, cpu_results = prepared.get("weights"), prepared.get("cpu_results")
        middle = args.sizes[len(args.sizes) // 2]
        match_size = (480, 640) if (480, 640) in args.sizes else args.sizes[0]
        # Without weights no step can run; the setup step's error says why.
        for device in devices if weights else []:
            check.run(f"{device}: float32 parity", parity, weights, device, args.parity_sizes, cpu_results)
            check.run(f"{device}: CUDA graphs = eager", graphs_against_eager, weights, device, args.parity_sizes)
            for precision in REDUCED_PRECISIONS:
                check.run(
                    f"{device}: {precision} against float32",
                    reduced_precision,
                    weights,
                    device,
                    precision,
                    args.parity_sizes,
                    match_size,
                )
            for precision in BENCH_PRECISIONS:
                cases = [case for case in kept if (case.device, case.precision) == (device, precision)]
                check.run(f"{device}: bench {precision}", benchmark, weights, device, precision, cases, deadline)
            runs = args.runs or bench.runs_for(*middle, 1)
            check.run(f"{device}: transformers baseline", transformers_baseline, weights, device, middle, runs)
            check.run(f"{device}: eager float32 timing", eager_timing, weights, device, middle, runs)
            measured = sorted({(case.height, case.width, case.batch) for case in kept if case.device == device})
            check.run(f"{device}: memory", memory, weights, device, measured, middle)
            # Last: TensorRT, where onnxruntime has it, builds an engine per shape range (slow).
            sizes = args.parity_sizes if kind(device) == "cpu" else (middle,)
            check.run(f"{device}: onnxruntime parity", onnxruntime_parity, weights, device, sizes)
            if kind(device) == "cuda":
                torch.cuda.empty_cache()
    record["seconds"] = round(time.perf_counter() - started, 1)
    check.finish()
    print(f"\n{'all checks passed' if record['passed'] else 'SOME CHECKS FAILED'} in {record['seconds']} s")
    for step in check.steps:
        print(f"  {verdict_of(step['passed'], step['result']):8} {step['name']} ({step['seconds']} s)")
    if args.output is not None:
        print(f"wrote {args.output}")
    return 0 if record["passed"] else 1


def _json_default(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
