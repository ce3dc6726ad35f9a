"""The memory benchmark's readings, and the memory the OpenVINO engine keeps per batch size."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from superpoint_ros.tools.bench_memory import TARGETS_MB, format_breakdown, format_node_table, process_memory

MEGABYTES = 100


def test_process_memory_sees_another_process_touch_a_hundred_megabytes():
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import numpy; print('ready', flush=True); input(); "
            f"block = numpy.ones({MEGABYTES} * 10**6 // 8); print('touched', flush=True); input()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        before = process_memory(child.pid)
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "touched"
        after = process_memory(child.pid)
    finally:
        child.kill()
        child.wait()
    assert MEGABYTES - 1 <= after["rss_mb"] - before["rss_mb"] <= MEGABYTES + 10
    assert MEGABYTES - 1 <= after["anon_mb"] - before["anon_mb"] <= MEGABYTES + 10
    assert after["file_mb"] == pytest.approx(before["file_mb"], abs=5)
    assert after["peak_mb"] >= after["rss_mb"]


def test_the_node_table_judges_each_row_by_the_issues_target_and_leaves_others_unjudged():
    def row(precision: str, cameras: int, rss_mb: float) -> dict:
        return {
            "precision": precision,
            "cameras": cameras,
            "rss_mb": rss_mb,
            "anon_mb": rss_mb - 300,
            "file_mb": 300.0,
            "peak_mb": rss_mb + 1,
            "processed": {"left": 10},
        }

    assert TARGETS_MB == {("float32", 2): 600, ("int8", 2): 500, ("float32", 1): 500}
    lines = format_node_table(
        [row("float32", 2, 599.6), row("float32", 2, 600.6), row("int8", 2, 499.0), row("bfloat16", 2, 900.0)]
    ).splitlines()[2:]
    assert lines[0].startswith("| float32, 2 camera(s) | 600 | 300 / 300 | 601 | ≤ 600: PASS |")
    assert "≤ 600: FAIL" in lines[1]
    assert "≤ 500: PASS" in lines[2]
    assert "| 900 | 600 / 300 | 901 | – |" in lines[3]


def test_the_breakdown_puts_a_step_of_one_process_only_after_its_predecessor_and_dashes_the_others():
    def entry(name: str, steps: list[tuple[str, float]]) -> dict:
        return {
            "precision": name,
            "steps": [{"stage": stage, "rss_mb": rss, "added_mb": 1.0, "anon_mb": 2.0} for stage, rss in steps],
            "weights_mb": 5.2,
            "tooling_imported": [],
        }

    table = format_breakdown(
        [
            entry("with torch", [("python", 15), ("torch", 380), ("first frame", 700)]),
            entry("without", [("python", 15), ("engine compiled", 216), ("first frame", 389)]),
        ]
    )
    rows = [line.split(" | ") for line in table.splitlines()[2:6]]
    assert [row[0] for row in rows] == ["| python", "| engine compiled", "| torch", "| first frame"]
    assert rows[1][1:] == ["–", "216 (+1; 2) |"] and rows[2][1:] == ["380 (+1; 2)", "– |"]


def test_openvino_runs_a_batch_image_by_image_in_one_compiled_model(hf_weights):
    pytest.importorskip("openvino")
    from superpoint_ros.backends import OpenVinoNetwork
    from superpoint_ros.weights import load_model

    network = OpenVinoNetwork(load_model(str(hf_weights)))
    rng = np.random.default_rng(0)
    grey = torch.from_numpy(rng.random((2, 1, 240, 320), dtype=np.float32))
    alone = [network(grey[index : index + 1]) for index in range(2)]
    first_image_mb = process_memory()["anon_mb"]
    scores, descriptor_map = network(grey)
    added_mb = process_memory()["anon_mb"] - first_image_mb
    assert scores.shape == (2, 240, 320) and descriptor_map.shape == (2, 256, 30, 40)
    for index, (image_scores, image_descriptors) in enumerate(alone):
        torch.testing.assert_close(scores[index : index + 1], image_scores, rtol=0, atol=0)
        torch.testing.assert_close(descriptor_map[index : index + 1], image_descriptors, rtol=0, atol=0)
    # A model compiled for batch 2 would hold two images' activations: two 64-channel float32
    # maps of 240×320 each, ~80 MB. The batch's own outputs are ~3 MB.
    assert added_mb < 20
