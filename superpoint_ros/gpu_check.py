"""One-shot GPU check: parity, reduced-precision agreement and the benchmark on CUDA, in one run.

```
make gpu-check                                  # = scripts/gpu_check.sh: CUDA, the full check
PYTHONPATH=. python3 -m superpoint_ros.gpu_check
python3 -m superpoint_ros.gpu_check --devices cpu --quick    # the same code on the CPU, small
```

Written for the lent GPU machine: a plain copy of the repository and its `python3` (torch with
CUDA, transformers, numpy, OpenCV, safetensors; no ROS, no OpenVINO, maybe no Pillow), so it
imports nothing else, and nothing from here may import ROS or OpenVINO at module level. It
runs, on each device of `--devices`:

1. parity in float32 (TF32 off): the `Detector` against transformers' SuperPoint on the same
   device (four borders, near-tie flips explained, scores within 1e-5, descriptors within
   1e-4), against our own CPU result, and, on CUDA, with CUDA graphs against without;
2. float16 and bfloat16 (CUDA only) against float32: keypoint overlap, descriptor cosine;
3. the benchmark (`superpoint_ros.bench`) at 240×320, 480×640, 720×1280 with batches 1, 4 and
   16, in float32 and float16, plus float32 without CUDA graphs at 480×640, batch 1;
4. the `onnxruntime` backend against transformers, on the execution provider it picks (on a
   GPU at 480×640 only, and last: a TensorRT provider builds an engine per shape, slowly);

then prints a summary and writes it as JSON to `--output`, or to `$OUT/gpu_check.json` when
`$OUT` is set. A failed step is recorded and the run goes on, so one run on a lent machine
reports everything; the exit status is 1 if any check failed. Random weights
(`bench_scenes.benchmark_weights`): no hub is reachable there.
"""

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import time
import traceback

import numpy as np
import torch

from superpoint_ros import bench
from superpoint_ros.backends import onnxruntime_available
from superpoint_ros.bench_scenes import benchmark_scene, benchmark_weights, record_head
from superpoint_ros.detector import Detections, DetectionSettings, Detector
from superpoint_ros.reference import (
    check_against_reference,
    compare,
    load_reference_model,
    reference_processor_available,
)

SIZES = ((240, 320), (480, 640), (720, 1280))
BATCHES = (1, 4, 16)
PARITY_SIZES = ((240, 320), (480, 640), (70, 93))
QUICK_SIZES = ((64, 80),)
QUICK_BATCHES = (2,)
VERDICTS = {True: "ok", False: "FAILED", None: "measured"}  # a step's `passed`: None when only measured


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


class Check:
    """Collects each step's result, or its failure, and keeps going. After each step the record
    so far is written to `output`, so that a run cut short by a time limit still reports."""

    def __init__(self, record: dict, output: pathlib.Path | None) -> None:
        self.record = record
        self.output = output
        self.steps: list[dict] = record.setdefault("steps", [])
        self.failed = False

    def write(self) -> None:
        self.record["passed"] = not self.failed
        if self.output is not None:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            self.output.write_text(json.dumps(self.record, indent=1, default=_json_default) + "\n")

    def run(self, name: str, step, *args) -> object:
        start = time.perf_counter()
        try:
            result, passed = step(*args)
        except Exception as error:  # noqa: BLE001 - one broken step must not hide the others' results
            result, passed = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}, False
        seconds = time.perf_counter() - start
        self.failed |= passed is False
        verdict = VERDICTS[passed]
        self.steps.append({"name": name, "passed": passed, "seconds": round(seconds, 1), "result": result})
        shown = {key: value for key, value in result.items() if key not in ("traceback", "table", "cases")}
        print(f"[{verdict}] {name} ({seconds:.1f} s): {json.dumps(shown, default=str)}", flush=True)
        if "table" in result:
            print(result["table"], flush=True)
        self.write()
        return result


def parity(weights: str, device: str, sizes, cpu_results: dict) -> tuple[dict, bool]:
    """The float32 Detector against transformers on `device`, and against our CPU result."""
    detector = Detector(weights=weights, device=device, backend="torch")
    reference = load_reference_model(weights, detector.device)
    settings = DetectionSettings()
    results, passed = {}, True
    for height, width in sizes:
        images = [benchmark_scene(height, width, seed) for seed in range(2)]
        report = check_against_reference(detector, reference, images, settings)
        problems = report.failures(bench.SCORE_TOLERANCE, bench.DESCRIPTOR_TOLERANCE)
        case = {
            "keypoints": [comparison.count for comparison in report.comparisons],
            "near_tie_flips": report.rounding_flips,
            "score_difference": max(comparison.score_difference for comparison in report.comparisons),
            "descriptor_difference": max(comparison.descriptor_difference for comparison in report.comparisons),
            "problems": problems,
        }
        key = f"{height}x{width}"
        if device != "cpu":
            case["against_our_cpu"] = cpu = compare_detections(detector.detect_batch(images), cpu_results[key])
            if (
                cpu["score_difference"] > bench.SCORE_TOLERANCE
                or cpu["descriptor_difference"] > bench.DESCRIPTOR_TOLERANCE
            ):
                problems.append(f"our CPU and {device} results differ beyond the tolerances")
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


def reduced_precision(weights: str, device: str, precision: str, sizes) -> tuple[dict, None]:
    """Agreement of `precision` with float32 on the same device (measured, not judged)."""
    float32 = Detector(weights=weights, device=device, backend="torch")
    reduced = Detector(weights=weights, device=device, backend="torch", precision=precision)
    results = {}
    for height, width in sizes:
        images = [benchmark_scene(height, width, seed) for seed in range(2)]
        results[f"{height}x{width}"] = bench.agreement(reduced.detect(images), float32.detect(images))
    return results, None


def onnxruntime_parity(weights: str, device: str, sizes) -> tuple[dict, bool]:
    """The onnxruntime backend against transformers, on the provider it picks."""
    detector = Detector(weights=weights, device=device, backend="onnxruntime")
    reference = load_reference_model(weights, detector.device)
    results, passed = {"backend": detector.backend}, True
    for height, width in sizes:
        images = [benchmark_scene(height, width, seed) for seed in range(2)]
        report = check_against_reference(detector, reference, images, DetectionSettings())
        problems = report.failures(bench.SCORE_TOLERANCE, bench.DESCRIPTOR_TOLERANCE)
        results[f"{height}x{width}"] = {"near_tie_flips": report.rounding_flips, "problems": problems}
        passed &= not problems
    return results, passed


def benchmark(weights: str, device: str, precision: str, sizes, batches, runs, with_reference) -> tuple[dict, bool]:
    """`superpoint_ros.bench`'s pipeline benchmark; it checks parity before timing. Its matching
    comparison runs at 480×640 when that is among `sizes`, else at the first size."""
    match_height, match_width = (480, 640) if (480, 640) in sizes else sizes[0]
    # Through the bench's own parser, so that every option it reads has its default.
    args = bench.parse_arguments(
        ["--devices", device, "--backend", "torch", "--precision", precision, "--runs", str(runs), "--no-node"]
        + ["--sizes", ",".join(f"{height}x{width}" for height, width in sizes)]
        + ["--batches", ",".join(map(str, batches)), "--match-size", f"{match_height}x{match_width}"]
        + ([] if with_reference else ["--no-reference"])
    )
    try:
        record = bench.run_pipeline_benchmark(args, weights, "random, hub layout")
    except bench.ParityError as error:
        return {"error": f"parity: {error}"}, False
    return {"cases": record["cases"], "table": record["table"]}, True


def eager_timing(weights: str, device: str, size, runs: int) -> tuple[dict, None]:
    """Pipeline p50/p90 without CUDA graphs, batch 1, for comparison with the graphed bench."""
    detector = Detector(weights=weights, device=device, backend="torch", cuda_graphs=False)
    images = [benchmark_scene(*size, 0)]
    ours, _ = bench.time_case(detector, None, images, runs)
    return {"size": f"{size[0]}x{size[1]}", "ms": ours}, None


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m superpoint_ros.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="cuda", help="comma-separated: cuda, cpu (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="64x80, batch 2, 1 run: a smoke test of this script")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per benchmark case (default: by size)")
    parser.add_argument("--output", type=pathlib.Path, default=None, help="JSON file (default: $OUT/gpu_check.json)")
    args = parser.parse_args(argv)
    args.devices = args.devices.split(",")
    if args.output is None and os.environ.get("OUT"):
        args.output = pathlib.Path(os.environ["OUT"]) / "gpu_check.json"
    if args.quick:
        args.sizes, args.batches, args.parity_sizes, args.runs = QUICK_SIZES, QUICK_BATCHES, QUICK_SIZES, args.runs or 1
    else:
        args.sizes, args.batches, args.parity_sizes = SIZES, BATCHES, PARITY_SIZES
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    started = time.perf_counter()
    record = {
        **record_head("superpoint_ros.gpu_check", argv, python="python3"),
        "source": str(pathlib.Path(__file__).resolve().parent),
        "load_average": list(os.getloadavg()),
    }
    print(f"{record['date']}  {record['machine']}", flush=True)
    # transformers' post-processing (timed as the baseline) lives in its image processor, which
    # needs Pillow; without it the benchmark times ours only and parity is checked as above.
    with_reference = reference_processor_available()
    record["transformers_baseline_timed"] = with_reference
    check = Check(record, args.output)
    devices = []
    for device in args.devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            check.run(f"{device}: available", lambda: ({"error": "torch sees no CUDA GPU"}, False))
        else:
            devices.append(device)
    with tempfile.TemporaryDirectory(prefix="superpoint_gpu_check_") as scratch:
        weights = str(benchmark_weights(pathlib.Path(scratch) / "weights")) if devices else ""
        gpus = [device for device in devices if device != "cpu"]
        cpu_results = cpu_reference_results(weights, args.parity_sizes) if gpus else {}
        for device in devices:
            check.run(f"{device}: float32 parity", parity, weights, device, args.parity_sizes, cpu_results)
            if device.startswith("cuda"):
                check.run(f"{device}: CUDA graphs = eager", graphs_against_eager, weights, device, args.parity_sizes)
                for precision in ("float16", "bfloat16"):
                    check.run(
                        f"{device}: {precision} against float32",
                        reduced_precision,
                        weights,
                        device,
                        precision,
                        args.parity_sizes,
                    )
            precisions = ("float32", "float16") if device.startswith("cuda") else ("float32",)
            for precision in precisions:
                check.run(
                    f"{device}: bench {precision}",
                    benchmark,
                    weights,
                    device,
                    precision,
                    args.sizes,
                    args.batches,
                    args.runs,
                    with_reference,
                )
            if device.startswith("cuda"):
                middle = args.sizes[len(args.sizes) // 2]
                check.run(f"{device}: eager float32 timing", eager_timing, weights, device, middle, args.runs or 20)
                torch.cuda.empty_cache()
            if onnxruntime_available():
                # Last: TensorRT, where onnxruntime has it, builds an engine per shape range (slow).
                sizes = args.parity_sizes if device == "cpu" else args.parity_sizes[1:2]
                check.run(f"{device}: onnxruntime parity", onnxruntime_parity, weights, device, sizes)
    record["seconds"] = round(time.perf_counter() - started, 1)
    check.write()
    print(f"\n{'all checks passed' if record['passed'] else 'SOME CHECKS FAILED'} in {record['seconds']} s")
    for step in check.steps:
        print(f"  {VERDICTS[step['passed']]:8} {step['name']} ({step['seconds']} s)")
    if args.output is not None:
        print(f"wrote {args.output}")
    return 0 if record["passed"] else 1


def _json_default(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
