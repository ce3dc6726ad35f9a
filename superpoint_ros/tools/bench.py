"""Pipeline benchmark: our `Detector`, stage by stage, against transformers' SuperPoint.

```
python -m superpoint_ros.tools.bench                 # all sizes and batches, CPU (+ CUDA), node benchmark
python -m superpoint_ros.tools.bench --quick         # 480×640, batch 1, a few runs, no node benchmark
python -m superpoint_ros.tools.bench --sizes 480x640 --batches 1,4 --runs 20 --weights path/to/weights
python -m superpoint_ros.tools.bench --precision float32,int8 --backend openvino --no-node
```

For every device × size × batch it first checks that both pipelines find the same keypoints
(`superpoint_ros.tools.reference`: four borders, near-tie flips of non-PyTorch engines explained), and
stops without reporting anything if they do not. Each reduced `--precision` (by default
bfloat16 and int8 where the CPU engine offers them) is compared with float32 instead (keypoint
overlap, descriptor cosine) and timed in a row of its own. Then it times ours and the baseline
interleaved, run by run, on the same images and weights:

- ours: `Detector.detect_batch`, split at its stages `preprocess` (numpy → grey tensor on the
  device), `network`, `postprocess` (NMS, threshold, borders, top-k), `descriptors` (sampling)
  and `to_host` (numpy results). On CUDA every stage boundary synchronises.
- the baseline: `SuperPointForKeypointDetection` forward plus `post_process_keypoint_detection`
  on pixel values prepared beforehand (its image processor is not timed).

Matching follows (`--match-size`, default 480×640) for every precision on the same images: the mutual nearest
neighbours between the descriptors of two views related by a known homography, and the share
of them whose keypoint lands within 3 px of where the homography puts it; over pairs of a
benchmark scene and its warped copy, and over consecutive frames of the demo's moving camera
(`scenes.camera_view`). With random weights these absolute figures say nothing about
SuperPoint's quality; the difference between precisions on identical weights is the figure.
Two yardsticks stand beside it: float32 fed input noise of one grey level (`NOISE_GREY_LEVELS`),
and each row's median nearest-neighbour margin (best minus second-best descriptor similarity),
which tells how small a perturbation of the descriptors can already change the matches.

The node benchmark (`bench_node`) follows when ROS is importable. The results are printed as
tables, written to `benchmarks/<date>.json` (and `benchmarks/latest.json`) and appended to
`BENCHMARKS.md`, under `--output-dir` (default: the current directory). Without `--weights` it
builds random weights in the hub layout (`benchmark_weights`): no hub is needed or assumed.

Why one module over 400 lines: it is one command whose table rows (stages, precisions, the
transformers baseline, the node and memory rows) are printed and recorded together.
"""

import argparse
import copy
import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np
import torch

from superpoint_ros.backends import openvino_available
from superpoint_ros.detector import Detections, DetectionSettings, Detector
from superpoint_ros.tools.bench_scenes import (
    benchmark_scene,
    benchmark_weights,
    homography_pairs,
    moving_sequence_pairs,
    percentiles,
    record_head,
)

STAGES = ("preprocess", "network", "postprocess", "descriptors", "to_host")
SIZES = ((240, 320), (480, 640), (720, 1280))
BATCHES = (1, 4)
SCORE_TOLERANCE = 1e-5
DESCRIPTOR_TOLERANCE = 1e-4
WARMUP_RUNS = 2
DEFAULT_PRECISIONS = ("float32", "bfloat16", "int8")
CORRECT_MATCH_PIXELS = 3.0
MATCH_SHARE_MARGIN = 0.03  # int8/bf16 may lose at most 3 points of correct-match share to float32
NOISE_GREY_LEVELS = 1.0  # standard deviation of the noise row's Gaussian input noise, in 1/255


def runs_for(height: int, width: int, batch: int) -> int:
    """Timed runs of one case: fewer for big inputs, so that a full CPU run takes minutes."""
    pixels = height * width * batch
    return int(np.clip(round(30 * 480 * 640 / pixels), 5, 40))


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclasses.dataclass
class Case:
    device: str
    backend: str
    height: int
    width: int
    batch: int
    runs: int
    precision: str
    keypoints_per_image: float
    check: str  # how the keypoints were checked, and the result
    ours: dict[str, dict[str, float]]
    reference: dict[str, dict[str, float]] | None

    @property
    def speedup(self) -> float | None:
        if self.reference is None:
            return None
        return self.reference["total"]["p50"] / self.ours["total"]["p50"]


class ParityError(RuntimeError):
    """Our keypoints differ from the reference's: no timing may be reported."""


def time_case(detector: Detector, reference_model, images: list[np.ndarray], runs: int) -> tuple[dict, dict | None]:
    """Per-stage and total times of ours and of the reference, interleaved run by run."""
    from superpoint_ros.tools.reference import configure_reference, reference_pixel_values, reference_processor

    device = detector.device
    ours: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "total")}
    theirs: dict[str, list[float]] = {"forward": [], "post_process": [], "total": []}
    if reference_model is not None:
        configure_reference(reference_model, detector.settings)
        pixel_values = reference_pixel_values(images).to(device)
        sizes = [image.shape[:2] for image in images]
        post_process = reference_processor().post_process_keypoint_detection

    def run_ours(record: bool) -> None:
        stamps: list[tuple[str, float]] = []

        def mark(stage: str) -> None:
            _synchronise(device)
            stamps.append((stage, time.perf_counter()))

        _synchronise(device)
        start = time.perf_counter()
        detector.detect_batch(images, mark=mark)
        if record:
            previous = start
            for stage, stamp in stamps:
                ours[stage].append(stamp - previous)
                previous = stamp
            ours["total"].append(previous - start)

    def run_theirs(record: bool) -> None:
        _synchronise(device)
        start = time.perf_counter()
        with torch.inference_mode():
            outputs = reference_model(pixel_values=pixel_values)
            _synchronise(device)
            middle = time.perf_counter()
            post_process(outputs, sizes)
            _synchronise(device)
        end = time.perf_counter()
        if record:
            theirs["forward"].append(middle - start)
            theirs["post_process"].append(end - middle)
            theirs["total"].append(end - start)

    steps = [run_ours] if reference_model is None else [run_ours, run_theirs]
    for run in range(WARMUP_RUNS + runs):
        # Alternate who goes first, so that neither always runs on the other's warm caches.
        for step in steps if run % 2 == 0 else steps[::-1]:
            step(record=run >= WARMUP_RUNS)
    ours_summary = {name: percentiles(samples) for name, samples in ours.items()}
    if reference_model is None:
        return ours_summary, None
    return ours_summary, {name: percentiles(samples) for name, samples in theirs.items()}


def check_parity(detector: Detector, reference_model, images: list[np.ndarray]) -> str:
    """A note on how `detector` agrees with the reference; raises `ParityError` on a real difference."""
    from superpoint_ros.tools.reference import check_against_reference

    report = check_against_reference(detector, reference_model, images, detector.settings)
    problems = report.failures(SCORE_TOLERANCE, DESCRIPTOR_TOLERANCE)
    if problems:
        raise ParityError("; ".join(problems))
    if report.rounding_flips:
        return f"= transformers ({report.rounding_flips} near-tie flips)"
    return "= transformers"


def agreement(candidate: list[Detections], baseline: list[Detections]) -> dict[str, float]:
    """How far a reduced-precision run strays from float32 on the same images.

    `keypoint_overlap`: the share of `baseline` keypoints that `candidate` finds at the same
    pixel; `cosine_min`/`cosine_median`: between the two descriptors of each shared keypoint.
    """
    found, total, cosines = 0, 0, []
    for ours, theirs in zip(candidate, baseline, strict=True):
        rows = {tuple(point): row for row, point in enumerate(np.rint(ours.keypoints).astype(int).tolist())}
        for row, point in enumerate(np.rint(theirs.keypoints).astype(int).tolist()):
            match = rows.get(tuple(point))
            if match is not None:
                found += 1
                cosines.append(float(ours.descriptors[match] @ theirs.descriptors[row]))
        total += len(theirs.keypoints)
    return {
        "keypoint_overlap": found / total if total else 1.0,
        "cosine_min": min(cosines, default=1.0),
        "cosine_median": float(np.median(cosines)) if cosines else 1.0,
    }


def mutual_matches(first: Detections, second: Detections) -> np.ndarray:
    """`(M, 2)` row indices `(i, j)` where `second`'s descriptor j is the nearest to `first`'s i
    and the other way round (largest dot product of the unit descriptors)."""
    if len(first.descriptors) == 0 or len(second.descriptors) == 0:
        return np.zeros((0, 2), np.int64)
    similarity = first.descriptors @ second.descriptors.T
    nearest, back = similarity.argmax(axis=1), similarity.argmax(axis=0)
    rows = np.flatnonzero(back[nearest] == np.arange(len(nearest)))
    return np.stack((rows, nearest[rows]), axis=1)


def nearest_margins(first: Detections, second: Detections) -> np.ndarray:
    """For each of `first`'s descriptors, its largest similarity to `second`'s minus the second
    largest (0 where `second` has fewer than two keypoints)."""
    if len(first.descriptors) == 0 or len(second.descriptors) < 2:
        return np.zeros(len(first.descriptors), np.float32)
    similarity = first.descriptors @ second.descriptors.T
    second_best, best = np.partition(similarity, -2, axis=1)[:, -2:].T
    return best - second_best


def match_figures(detector: Detector, pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mutual-nearest-neighbour matches per pair of views, the share whose keypoint in the
    second view lies within `CORRECT_MATCH_PIXELS` of the first's mapped by the pair's homography,
    and the median `nearest_margins` of the first views' keypoints."""
    distinct = {id(image): image for pair in pairs for image in pair[:2]}
    found = dict(zip(distinct, detector.detect(list(distinct.values())), strict=True))
    matches, correct, margins = 0, 0, []
    for view_a, view_b, homography in pairs:
        first, second = found[id(view_a)], found[id(view_b)]
        margins.append(nearest_margins(first, second))
        pairs_found = mutual_matches(first, second)
        points = np.concatenate([first.keypoints[pairs_found[:, 0]], np.ones((len(pairs_found), 1))], axis=1)
        mapped = points @ homography.T
        mapped = mapped[:, :2] / mapped[:, 2:]
        error = np.linalg.norm(mapped - second.keypoints[pairs_found[:, 1]], axis=1)
        matches += len(pairs_found)
        correct += int((error <= CORRECT_MATCH_PIXELS).sum())
    all_margins = np.concatenate(margins)
    return {
        "matches_per_pair": matches / len(pairs),
        "correct_share": correct / matches if matches else 0.0,
        "nearest_margin_median": float(np.median(all_margins)) if len(all_margins) else 0.0,
    }


class InputNoise:
    """`network` fed its grey input plus Gaussian noise of `grey_levels` / 255 (a fixed seed, so
    every run sees the same noise): a perturbation of known size to compare a precision's loss with."""

    def __init__(self, network, grey_levels: float, seed: int = 0) -> None:
        self.network, self.sigma, self.seed = network, grey_levels / 255, seed

    def __call__(self, grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator(device=grey.device).manual_seed(self.seed)
        noise = torch.randn(grey.shape, generator=generator, device=grey.device, dtype=grey.dtype)
        return self.network(grey + self.sigma * noise)


def with_input_noise(detector: Detector, grey_levels: float) -> Detector:
    """A shallow copy of `detector` whose network sees `InputNoise` (CUDA graphs off, so that it
    does)."""
    noisy = copy.copy(detector)
    noisy.network, noisy.graphs = InputNoise(detector.network, grey_levels), None
    return noisy


def format_match_table(rows: list[dict]) -> str:
    """One line per device × precision × pair set, with the difference to float32's share."""
    lines = [
        f"| device | precision | views | matches / pair | correct ≤ {CORRECT_MATCH_PIXELS:.0f} px | vs float32 "
        "| nearest margin |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['device']} | {row['precision']} | {row['views']} | {row['matches_per_pair']:.0f} | "
            f"{100 * row['correct_share']:.1f}% | {row['versus_float32']} | {row['nearest_margin_median']:.2g} |"
        )
    return "\n".join(lines)


def format_table(cases: list[Case]) -> str:
    """Milliseconds per batch; stage columns are medians, `ours`/`transformers` are p50 / p90."""
    header = (
        "| device | backend | precision | size | batch | kp/img | check | "
        + " | ".join(STAGES)
        + " | ours p50 / p90 | transformers p50 / p90 (fwd + post) | speed-up |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for case in cases:
        stages = " | ".join(f"{case.ours[stage]['p50']:.1f}" for stage in STAGES)
        ours = f"{case.ours['total']['p50']:.1f} / {case.ours['total']['p90']:.1f}"
        if case.reference is None:
            theirs, speedup = "not run", "–"
        else:
            reference = case.reference
            theirs = (
                f"{reference['total']['p50']:.1f} / {reference['total']['p90']:.1f} "
                f"({reference['forward']['p50']:.1f} + {reference['post_process']['p50']:.1f})"
            )
            speedup = f"{case.speedup:.2f}×"
        lines.append(
            f"| {case.device} | {case.backend} | {case.precision} | {case.height}×{case.width} | {case.batch} | "
            f"{case.keypoints_per_image:.0f} | {case.check} | {stages} | {ours} | {theirs} | {speedup} |"
        )
    return "\n".join(lines)


def write_reports(output_dir: pathlib.Path, record: dict, table: str) -> tuple[pathlib.Path, pathlib.Path]:
    """Write `benchmarks/<date>.json`, copy it to `benchmarks/latest.json`, and append an entry to
    `BENCHMARKS.md` (created if absent)."""
    directory = output_dir / "benchmarks"
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{record['timestamp']}.json"
    text = json.dumps(record, indent=1) + "\n"
    json_path.write_text(text)
    (directory / "latest.json").write_text(text)
    markdown = output_dir / "BENCHMARKS.md"
    if not markdown.exists():
        markdown.write_text(
            "# Benchmarks\n\nEntries appended by `make bench` (`python -m superpoint_ros.tools.bench`), newest last.\n"
        )
    machine = record["machine"]
    load_start, load_end = record["load_average"]["start"], record["load_average"]["end"]
    entry = [
        "",
        f"## {record['date']}: {machine['cpu']}, GPU {machine['gpu'] or 'none'}",
        "",
        f"- Command: `{record['command']}`",
        f"- Machine: {machine['cores']} cores ({machine['torch_threads']} torch threads), Python "
        f"{machine['python']}, torch {machine['torch']}, OpenVINO {machine['openvino'] or 'not installed'}, "
        f"transformers {machine['transformers'] or 'not installed'}",
        f"- Load average (1/5/15 min) at start {_load(load_start)}, at end {_load(load_end)}",
        f"- Weights: {record['weights']}; settings: {record['settings']}",
        "- check: `= transformers` means the same keypoints as transformers' (four borders; a near-tie "
        "flip is a keypoint that float rounding moved to an equal-scoring neighbour, see "
        "`superpoint_ros/tools/reference.py`), scores within 1e-5 and descriptors within 1e-4; reduced precision is "
        "compared with float32 instead (keypoint overlap, minimum descriptor cosine)",
        "- Matches: mutual nearest neighbours between two views related by a known homography, correct "
        f"within {CORRECT_MATCH_PIXELS:.0f} px; with random weights only the difference between precisions "
        "means something",
        *(f"- {note}" for note in record.get("notes", [])),
        f"- Milliseconds per batch; stage columns are medians. JSON: `benchmarks/{json_path.name}`",
        "",
        table,
        "",
    ]
    with markdown.open("a") as stream:
        stream.write("\n".join(entry))
    return json_path, markdown


def _load(load: list[float]) -> str:
    return " / ".join(f"{value:.2f}" for value in load)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m superpoint_ros.tools.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="480x640, batch 1, 5 runs: a smoke test")
    parser.add_argument("--sizes", default=",".join(f"{h}x{w}" for h, w in SIZES), help="HxW,HxW,...")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="comma-separated batch sizes")
    parser.add_argument("--devices", default="auto", help="cpu,cuda or auto (the CPU, and CUDA when present)")
    parser.add_argument("--backend", default="auto", help="Detector backend: auto, torch, openvino or onnxruntime")
    parser.add_argument(
        "--precision",
        default=",".join(DEFAULT_PRECISIONS),
        help="comma-separated: float32 and the opt-in speed modes bfloat16, float16, int8 (see backends.py); "
        "float32 is always run; a mode the device's engine does not offer is skipped with a note",
    )
    parser.add_argument("--match-size", default="480x640", help="HxW of the matching comparison")
    parser.add_argument("--calibration", default="scenes", help="int8 calibration: scenes or a directory of images")
    parser.add_argument("--calibration-count", type=int, default=16, help="int8 calibration images")
    parser.add_argument("--calibration-shape", default="480x640", help="HxW of the int8 calibration images")
    parser.add_argument("--quantization-cache-dir", default=None, help="int8 model cache (default: ~/.cache/...)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per case (default: by size)")
    parser.add_argument("--weights", default=None, help="weights for both pipelines (hub-layout dir)")
    parser.add_argument(
        "--weights-seed",
        type=int,
        default=0,
        help="without --weights: the seed of the random benchmark weights (another seed, another network)",
    )
    parser.add_argument("--no-reference", action="store_true", help="skip transformers (no parity check!)")
    parser.add_argument("--output-dir", type=pathlib.Path, default=pathlib.Path.cwd())
    parser.add_argument("--no-write", action="store_true", help="print only; write no files")
    parser.add_argument(
        "--node",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the ROS node benchmark too (default: when rclpy and our messages import, except with --quick)",
    )
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure the node's memory too (`bench_memory`; default: as --node)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.runs = "480x640", "1", args.runs or 5
    args.sizes = [tuple(int(side) for side in size.lower().split("x")) for size in args.sizes.split(",")]
    args.batches = [int(batch) for batch in args.batches.split(",")]
    args.precision = ["float32", *(name for name in args.precision.split(",") if name != "float32")]
    args.match_size = tuple(int(side) for side in args.match_size.lower().split("x"))
    args.calibration_shape = tuple(int(side) for side in args.calibration_shape.lower().split("x"))
    if args.node is None:
        args.node = not args.quick and _ros_available()
    if args.memory is None:
        args.memory = args.node
    if args.devices == "auto":
        args.devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    else:
        args.devices = args.devices.split(",")
    return args


def _ros_available() -> bool:
    try:
        import rclpy  # noqa: F401

        import superpoint_ros.msg  # noqa: F401
    except ImportError:
        return False
    return True


def precisions_offered(device: str, backend: str, wanted: list[str]) -> tuple[list[str], list[str]]:
    """The precisions of `wanted` that `backend` runs on `device`, and a note for each skipped one."""
    cpu_bfloat16 = False
    if device == "cpu" and openvino_available():
        import openvino

        cpu_bfloat16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    openvino_cpu = device == "cpu" and backend in ("auto", "openvino") and openvino_available()
    runs = {
        "float32": True,
        "bfloat16": device != "cpu" or (openvino_cpu and cpu_bfloat16),
        "float16": device != "cpu",
        "int8": openvino_cpu,
    }
    offered = [name for name in wanted if runs.get(name, True)]
    notes = [
        f"{name} skipped on {device}: not offered by its engine on this machine"
        for name in wanted
        if name not in offered
    ]
    return offered, notes


def run_pipeline_benchmark(args: argparse.Namespace, weights: str, weights_note: str) -> dict:
    settings = DetectionSettings()
    cases: list[Case] = []
    match_rows: list[dict] = []
    notes: list[str] = []
    for device in args.devices:
        precisions, skipped = precisions_offered(device, args.backend, args.precision)
        notes += skipped
        for note in skipped:
            print(note, flush=True)
        detectors = {
            precision: Detector(
                weights=weights,
                device=device,
                backend=args.backend,
                precision=precision,
                calibration=args.calibration,
                calibration_count=args.calibration_count,
                calibration_shape=args.calibration_shape,
                quantization_cache_dir=args.quantization_cache_dir,
            )
            for precision in precisions
        }
        float32_detector = detectors["float32"]
        reference_model = None
        if not args.no_reference:
            from superpoint_ros.tools.reference import load_reference_model

            reference_model = load_reference_model(weights, float32_detector.device)
        for height, width in args.sizes:
            for batch in args.batches:
                images = [benchmark_scene(height, width, seed) for seed in range(batch)]
                check = "not checked"
                if reference_model is not None:
                    check = check_parity(float32_detector, reference_model, images)
                float32_results = float32_detector.detect(images)
                for precision, detector in detectors.items():
                    results = detector.detect(images)
                    if detector is not float32_detector:
                        close = agreement(results, float32_results)
                        check = (
                            f"vs float32: {100 * close['keypoint_overlap']:.1f}% of keypoints, "
                            f"cosine ≥ {close['cosine_min']:.5f}"
                        )
                    keypoints = float(np.mean([len(result.scores) for result in results]))
                    runs = args.runs or runs_for(height, width, batch)
                    baseline = reference_model if detector is float32_detector else None
                    ours, theirs = time_case(detector, baseline, images, runs)
                    case = Case(
                        device=device,
                        backend=detector.backend,
                        height=height,
                        width=width,
                        batch=batch,
                        runs=runs,
                        precision=precision,
                        keypoints_per_image=keypoints,
                        check=check,
                        ours=ours,
                        reference=theirs,
                    )
                    cases.append(case)
                    print(format_table([case]).splitlines()[-1], f"load {_load(os.getloadavg())}", flush=True)
        match_rows += match_rows_for(device, detectors, args.match_size)
    return {
        "settings": dataclasses.asdict(settings),
        "weights": weights_note,
        "cases": [{**dataclasses.asdict(case), "speedup": case.speedup} for case in cases],
        "matches": match_rows,
        "notes": notes,
        "table": format_table(cases) + "\n\n" + format_match_table(match_rows),
    }


def match_rows_for(device: str, detectors: dict[str, Detector], size: tuple[int, int]) -> list[dict]:
    """`match_figures` of every precision on the same two sets of view pairs of `size` (h, w),
    with float32 under `NOISE_GREY_LEVELS` of input noise after float32."""
    height, width = size
    pair_sets = {
        f"{height}×{width} scene + warped copy (4 pairs)": homography_pairs(height, width),
        f"{height}×{width} moving camera (20 pairs)": moving_sequence_pairs(height, width),
    }
    float32, *reduced = detectors.items()
    noise = (f"float32 + noise σ {NOISE_GREY_LEVELS:g}/255", with_input_noise(float32[1], NOISE_GREY_LEVELS))
    rows = []
    for views, pairs in pair_sets.items():
        float32_share = None
        for precision, detector in (float32, noise, *reduced):
            figures = match_figures(detector, pairs)
            if float32_share is None:
                float32_share, versus = figures["correct_share"], "–"
            else:
                points = 100 * (figures["correct_share"] - float32_share)
                within = "within" if points >= -100 * MATCH_SHARE_MARGIN else "NOT within"
                versus = f"{points:+.1f} points ({within} 3)"
            row = {"device": device, "precision": precision, "views": views, **figures, "versus_float32": versus}
            rows.append(row)
            print(format_match_table([row]).splitlines()[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    load_start = os.getloadavg()
    record = record_head("superpoint_ros.tools.bench", argv)
    print(f"{record['date']}  {record['machine']}  load {_load(load_start)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="superpoint_bench_") as scratch:
        if args.weights is None:
            weights = str(benchmark_weights(pathlib.Path(scratch) / "weights", seed=args.weights_seed))
            weights_note = f"random, hub layout (`bench_scenes.benchmark_weights`, seed {args.weights_seed})"
        else:
            weights, weights_note = args.weights, args.weights
        try:
            record.update(run_pipeline_benchmark(args, weights, weights_note))
        except ParityError as error:
            print(f"Not reporting timings: our keypoints differ from transformers': {error}", file=sys.stderr)
            return 1
        if args.node:
            from superpoint_ros.tools.bench_node import run_node_benchmark

            print("node benchmark: 480×640, 1 and 2 cameras, over DDS", flush=True)
            record["node"] = run_node_benchmark(weights)
        if args.memory:
            from superpoint_ros.tools.bench_memory import run_memory_benchmark

            offered = precisions_offered("cpu", "auto", args.precision)[0]
            precisions = tuple(name for name in ("float32", "int8") if name in offered)
            print(f"memory benchmark: the node's RSS after warm-up, 480×640, {', '.join(precisions)}", flush=True)
            record["memory"] = run_memory_benchmark(weights, precisions)
    record["load_average"] = {"start": list(load_start), "end": list(os.getloadavg())}
    print()
    print(record["table"])
    if "node" in record:
        print()
        print(record["node"]["table"])
    if "memory" in record:
        print()
        print(record["memory"]["table"])
    if not args.no_write:
        entry = record["table"] + _node_section(record) + _memory_section(record)
        for path in write_reports(args.output_dir, record, entry):
            print(f"wrote {path}")
    return 0


def _node_section(record: dict) -> str:
    if "node" not in record:
        return ""
    return "\n\nNode benchmark (ROS 2 graph, one process):\n\n" + record["node"]["table"]


def _memory_section(record: dict) -> str:
    if "memory" not in record:
        return ""
    return (
        f"\n\nMemory ({record['machine']['cpu']}; `bench_memory`, each process measured on its own):\n\n"
        + record["memory"]["table"]
    )


if __name__ == "__main__":
    sys.exit(main())
