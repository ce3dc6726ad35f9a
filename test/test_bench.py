"""The benchmark's bookkeeping: what it writes, that it keeps earlier entries, and that it
reports nothing when our keypoints are wrong. Nothing here is timed."""

import json

import numpy as np
import torch

from superpoint_ros.detector import Detections, Detector
from superpoint_ros.tools import bench

from helpers import needs

pytestmark = needs("transformers")

QUICK = [
    "--sizes",
    "120x160",
    "--batches",
    "1",
    "--runs",
    "1",
    "--no-node",
    "--precision",
    "float32",
    "--match-size",
    "120x160",
]


def test_a_run_appends_an_entry_and_writes_json_keeping_earlier_entries(tmp_path):
    assert bench.main([*QUICK, "--output-dir", str(tmp_path)]) == 0
    first = json.loads((tmp_path / "benchmarks" / "latest.json").read_text())
    assert bench.main([*QUICK, "--weights-seed", "1", "--output-dir", str(tmp_path)]) == 0
    markdown = (tmp_path / "BENCHMARKS.md").read_text()
    assert markdown.count("\n## ") == 2
    assert "`bench_scenes.benchmark_weights`, seed 0)" in markdown and "seed 1)" in markdown
    assert "| cpu |" in markdown and "= transformers" in markdown
    record = json.loads((tmp_path / "benchmarks" / "latest.json").read_text())
    assert {"date", "command", "machine", "load_average", "cases"} <= record.keys()
    # Another seed is another network: the same scene gives other keypoints.
    assert record["cases"][0]["keypoints_per_image"] != first["cases"][0]["keypoints_per_image"]
    (case,) = record["cases"]
    assert (case["height"], case["width"], case["batch"]) == (120, 160, 1)
    assert case["speedup"] > 0 and case["keypoints_per_image"] > 0
    assert set(case["ours"]) == {*bench.STAGES, "total"}


def test_wrong_keypoints_stop_the_run_before_any_timing_is_written(tmp_path, monkeypatch):
    class OffByOnePixel(Detector):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            network = self.network

            def shifted(grey):
                scores, descriptors = network(grey)
                return scores.roll(1, dims=-1), descriptors

            self.network = shifted

    monkeypatch.setattr(bench, "Detector", OffByOnePixel)
    assert bench.main([*QUICK, "--output-dir", str(tmp_path)]) == 1
    assert not (tmp_path / "BENCHMARKS.md").exists()
    assert not (tmp_path / "benchmarks").exists()


def test_mutual_nearest_neighbours_and_the_correct_share_follow_the_homography():
    # Three keypoints seen in both views, shifted by (+10, +5); descriptors chosen by hand:
    # 0↔0 and 1↔1 are mutual, 2's nearest (row 1) prefers keypoint 1, so 2 has no match.
    shift = np.array([[1.0, 0, 10], [0, 1.0, 5], [0, 0, 1]])
    descriptors = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0.8, 0.6]], np.float32)
    first = Detections(np.array([[20, 20], [40, 30], [60, 50]], np.float32), np.ones(3, np.float32), descriptors)
    # View two: keypoint 0 where the shift puts it, keypoint 1 four pixels off.
    second_points = np.array([[30, 25], [54, 35], [70, 55]], np.float32)
    second = Detections(second_points, np.ones(3, np.float32), descriptors[[0, 1, 1]] * [1, 1, 0.5])
    np.testing.assert_array_equal(bench.mutual_matches(first, second), [[0, 0], [1, 1]])

    class Fixed:
        def detect(self, images):
            return [first, second][: len(images)]

    view_a, view_b = np.zeros((2, 4, 4), np.uint8)
    figures = bench.match_figures(Fixed(), [(view_a, view_b, shift)])
    # Margins of first's keypoints: 1 − 0, 1 − 1 and 0.8 − 0.8.
    assert figures == {"matches_per_pair": 2.0, "correct_share": 0.5, "nearest_margin_median": 0.0}


def test_the_nearest_margin_is_the_best_similarity_minus_the_second_best():
    first = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0.8, 0.6]], np.float32)
    second = np.array([[1.0, 0, 0], [0, 1.0, 0], [0.6, 0.8, 0]], np.float32)
    # Similarities per row: (1, 0, 0.6), (0, 1, 0.8), (0, 0.8, 0.64).
    margins = bench.nearest_margins(*(Detections(np.zeros((3, 2), np.float32), np.ones(3), d) for d in (first, second)))
    np.testing.assert_allclose(margins, [0.4, 0.2, 0.16], atol=1e-6)


def test_the_noise_yardstick_perturbs_the_input_by_the_stated_grey_levels_the_same_way_each_run():
    seen = []
    noisy = bench.InputNoise(lambda grey: seen.append(grey.clone()), grey_levels=2.0)
    clean = torch.full((1, 1, 200, 300), 0.5)
    noisy(clean)
    noisy(clean)
    assert torch.equal(seen[0], seen[1])
    assert abs(float((seen[0] - clean).std()) - 2.0 / 255) < 0.05 * 2.0 / 255


def test_a_run_with_int8_reports_its_agreement_and_matches_beside_float32(tmp_path):
    # Small and without transformers (the first test covers the float32 check): int8 is what is new.
    arguments = [*QUICK, "--sizes", "64x80", "--no-reference", "--precision", "float32,int8"]
    arguments += ["--calibration-count", "2", "--calibration-shape", "64x80", "--match-size", "64x80"]
    arguments += ["--quantization-cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path)]
    assert bench.main(arguments) == 0
    record = json.loads((tmp_path / "benchmarks" / "latest.json").read_text())
    float32, int8 = record["cases"]
    assert (float32["precision"], int8["precision"]) == ("float32", "int8")
    assert int8["check"].startswith("vs float32:") and "% of keypoints, cosine ≥" in int8["check"]
    assert [(row["precision"], row["views"].split(" ", 1)[1]) for row in record["matches"]] == [
        ("float32", "scene + warped copy (4 pairs)"),
        ("float32 + noise σ 1/255", "scene + warped copy (4 pairs)"),
        ("int8", "scene + warped copy (4 pairs)"),
        ("float32", "moving camera (20 pairs)"),
        ("float32 + noise σ 1/255", "moving camera (20 pairs)"),
        ("int8", "moving camera (20 pairs)"),
    ]
    assert all(row["matches_per_pair"] > 0 for row in record["matches"])
    assert all(0 <= row["nearest_margin_median"] <= 2 for row in record["matches"])
    assert "| int8 |" in (tmp_path / "BENCHMARKS.md").read_text()
