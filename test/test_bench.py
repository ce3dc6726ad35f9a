"""The benchmark's bookkeeping: what it writes, that it keeps earlier entries, and that it
reports nothing when our keypoints are wrong. Nothing here is timed."""

import json

import pytest

from superpoint_ros import bench
from superpoint_ros.detector import Detector

pytest.importorskip("transformers")

QUICK = ["--sizes", "240x320", "--batches", "1", "--runs", "1", "--no-node"]


def test_a_run_appends_an_entry_and_writes_json_keeping_earlier_entries(tmp_path):
    assert bench.main([*QUICK, "--output-dir", str(tmp_path)]) == 0
    assert bench.main([*QUICK, "--output-dir", str(tmp_path)]) == 0
    markdown = (tmp_path / "BENCHMARKS.md").read_text()
    assert markdown.count("\n## ") == 2
    assert "| cpu |" in markdown and "= transformers" in markdown
    record = json.loads((tmp_path / "benchmarks" / "latest.json").read_text())
    assert {"date", "command", "machine", "load_average", "cases"} <= record.keys()
    (case,) = record["cases"]
    assert (case["height"], case["width"], case["batch"]) == (240, 320, 1)
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
