"""A reliable camera driver in another process, the way robots run one: default Fast DDS
settings, no profile file, the installed node with the shipped `config/detector.yaml`, 480×640
and 720×1280 frames paced below the node's capacity, 95 % of them answered; and the same with
short-lived best-effort publishers coming and going on the topic.

Large frames between processes go over UDP loopback in fragments (the shared-memory segment is
512 KB), which a graph inside one process never exercises. Every test here paces its camera by
the node's speed measured when it starts, so all are `timing`: `make test` runs them after its
parallel pass, alone on the machine. Random weights (no hub here); delivery does not depend on
what the keypoints mean.
"""

import sys

import pytest

from superpoint_ros.msg import KeypointArray

from node_processes import RELIABLE, CameraProcess, NodeProcess, answers, rate_below_capacity, warm_up
from processes import ChildProcess, new_namespace
from ros_graph import wait_until

pytestmark = pytest.mark.timing


@pytest.mark.parametrize(("height", "width", "frames"), [(480, 640, 12), (720, 1280, 6)])
def test_a_reliable_camera_in_another_process_is_answered_with_the_shipped_config(
    graph, processes, height, width, frames
):
    namespace = new_namespace()
    inbox = graph.subscribe(KeypointArray, f"{namespace}/keypoints", RELIABLE)
    node = NodeProcess(namespace)
    processes(node)
    warm_up(processes, inbox, f"{namespace}/image", height, width, reliability="reliable")
    frame_id = f"reliable_{height}"
    camera = CameraProcess(
        f"{namespace}/image", rate=rate_below_capacity(height, width), frames=frames, height=height, width=width,
        reliability="reliable", frame_id=frame_id,
    )  # fmt: skip
    processes(camera)
    published = camera.published()
    wait_until(lambda: answers(inbox, frame_id) >= 0.95 * published, 20.0, f"95% of {published} answers")
    assert "subscribing to" in node.line_with(f"'{namespace}/image' reliable, following its 1 publisher: 1 reliable")
    assert {message.height for message in inbox.messages} == {height}
    assert node.stop() == 0


class ChurnProcess(ChildProcess):
    """`python -m superpoint_ros.tools.qos_churn`: short-lived best-effort publishers on `topic`."""

    def __init__(self, topic: str, count: int, period_s: float, lifetime_s: float) -> None:
        arguments = [sys.executable, "-m", "superpoint_ros.tools.qos_churn", "--topic", topic, "--count", str(count)]
        super().__init__(arguments + ["--period", str(period_s), "--lifetime", str(lifetime_s)])


def test_short_lived_best_effort_publishers_in_another_process_neither_flip_nor_starve_a_reliable_camera(
    graph, processes
):
    """The short version of `bench_delivery --churn` (100 frames, in BENCHMARKS.md): as many frames
    answered as the churn-free test above asks (95%), and not one re-subscription."""
    namespace = new_namespace()
    inbox = graph.subscribe(KeypointArray, f"{namespace}/keypoints", RELIABLE)
    node = NodeProcess(namespace)
    processes(node)
    warm_up(processes, inbox, f"{namespace}/image", 480, 640, reliability="reliable")
    rate_hz = rate_below_capacity(480, 640)
    frames = 10
    churn = ChurnProcess(f"{namespace}/image", count=int(frames / rate_hz / 0.5) + 2, period_s=0.5, lifetime_s=0.3)
    processes(churn)
    camera = CameraProcess(
        f"{namespace}/image", rate=rate_hz, frames=frames, height=480, width=640, reliability="reliable",
        frame_id="steady",
    )  # fmt: skip
    processes(camera)
    published = camera.published(timeout_s=60.0 + 2 * frames / rate_hz)
    churn.line_with("came and went", timeout_s=60.0)
    wait_until(lambda: answers(inbox, "steady") >= 0.95 * published, 20.0, f"95% of {published} answers")
    choices = [line for line in node.lines if "subscribing to" in line]
    assert len(choices) == 1 and "reliable, following its 1 publisher: 1 reliable" in choices[0], choices
