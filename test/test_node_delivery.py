"""A reliable camera driver in another process, the way robots run one: default Fast DDS
settings, no profile file, the installed node with the shipped `config/detector.yaml`, 480×640
and 720×1280 frames, 95 % of them reaching the node and every frame it processed answered; and
the same with short-lived best-effort publishers coming and going on the topic.

Large frames between processes go over UDP loopback in fragments (the shared-memory segment is
512 KB), which a graph inside one process never exercises. The node's own counts
(`/diagnostics`) say which frames reached it; a frame it received while busy is dropped for a
newer one, by design (test_batcher.py), so how fast this machine is does not change the
outcome. The tests share one node process, as a robot's node outlives its camera drivers'
restarts. Random weights (no hub here); delivery does not depend on what the keypoints mean.
"""

import sys

import pytest

from node_processes import CameraProcess, ObservedNode
from processes import ChildProcess


@pytest.fixture(scope="module")
def node(graph):
    """One node for the module: its cameras are all reliable, so it subscribes once, and it
    exits cleanly on SIGINT after all of them."""
    observed = ObservedNode(graph)
    yield observed
    assert observed.process.stop() == 0, observed.process.output()


@pytest.mark.parametrize(("height", "width", "frames", "rate"), [(480, 640, 12, 4), (720, 1280, 6, 2)])
def test_a_reliable_camera_in_another_process_is_answered_with_the_shipped_config(
    node, processes, height, width, frames, rate
):
    frame_id = f"reliable_{height}"
    before = node.ready()
    camera = CameraProcess(
        node.topic, rate=rate, frames=frames, height=height, width=width, reliability="reliable", frame_id=frame_id
    )
    processes(camera)
    node.assert_delivered(before, frame_id, camera.published())
    assert "subscribing to" in node.process.line_with(f"'{node.topic}' reliable, following its 1 publisher: 1 reliable")
    assert {message.height for message in node.inbox.messages if message.header.frame_id == frame_id} == {height}


class ChurnProcess(ChildProcess):
    """`python -m superpoint_ros.tools.qos_churn`: short-lived best-effort publishers on `topic`."""

    def __init__(self, topic: str, count: int, period_s: float, lifetime_s: float) -> None:
        arguments = [sys.executable, "-m", "superpoint_ros.tools.qos_churn", "--topic", topic, "--count", str(count)]
        super().__init__(arguments + ["--period", str(period_s), "--lifetime", str(lifetime_s)])


def test_short_lived_best_effort_publishers_in_another_process_neither_flip_nor_starve_a_reliable_camera(
    node, processes
):
    """The short version of `bench_delivery --churn` (100 frames, in BENCHMARKS.md): as many frames
    delivered as the churn-free test above asks (95 %), and not one re-subscription in the node's
    life (all its other cameras were reliable too)."""
    rate_hz, frames = 4, 12
    churn = ChurnProcess(node.topic, count=int(frames / rate_hz / 0.5) + 2, period_s=0.5, lifetime_s=0.3)
    processes(churn)
    before = node.ready()
    camera = CameraProcess(
        node.topic, rate=rate_hz, frames=frames, height=480, width=640, reliability="reliable", frame_id="steady"
    )
    processes(camera)
    node.assert_delivered(before, "steady", camera.published(60.0 + 2 * frames / rate_hz))
    churn.line_with("came and went", timeout_s=60.0)
    choices = [line for line in node.process.lines if "subscribing to" in line]
    assert len(choices) == 1 and "reliable, following its 1 publisher: 1 reliable" in choices[0], choices
