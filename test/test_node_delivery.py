"""A reliable camera driver in another process, the way robots run one: default Fast DDS
settings, no profile file, the installed node with the shipped `config/detector.yaml`, 480×640
and 720×1280 frames paced below the node's capacity, 95 % of them answered; and the same with
short-lived best-effort publishers coming and going on the topic.

Large frames between processes go over UDP loopback in fragments (the shared-memory segment is
512 KB), which a graph inside one process never exercises. Every test here paces its camera by
the node's speed measured when it starts, so all are `timing`: `make test` runs them after its
parallel pass, alone on the machine. They share one node process, as a robot's node outlives
its camera drivers' restarts. Random weights (no hub here); delivery does not depend on
what the keypoints mean.
"""

import sys

import pytest

from superpoint_ros.msg import KeypointArray

from node_processes import RELIABLE, CameraProcess, NodeProcess, answers, rate_below_capacity, warm_up
from processes import ChildProcess, new_namespace
from ros_graph import wait_until

pytestmark = pytest.mark.timing


class SharedNode:
    """The node process the tests here share, in its own namespace, with the probe's
    subscription to its keypoints. Each test's camera sends frames under a frame id of its own;
    the node is warmed up once per frame size, and the pace for a size is measured once."""

    def __init__(self, graph) -> None:
        self.namespace = new_namespace()
        self.topic = f"{self.namespace}/image"
        self.inbox = graph.subscribe(KeypointArray, f"{self.namespace}/keypoints", RELIABLE)
        self.process = NodeProcess(self.namespace)
        self._rates: dict[tuple[int, int], float] = {}

    def rate_for(self, processes, height: int, width: int) -> float:
        """A pace below the node's capacity at this size, with its engine compiled for it."""
        if (height, width) not in self._rates:
            warm_up(processes, self.inbox, self.topic, height, width, reliability="reliable")
            self._rates[height, width] = rate_below_capacity(height, width)
        return self._rates[height, width]

    def answered(self, frame_id: str, share: float, published: int) -> None:
        wait_until(
            lambda: answers(self.inbox, frame_id) >= share * published, 20.0, f"{share:.0%} of {published} answers"
        )


@pytest.fixture(scope="module")
def node(graph):
    """One node for the module: its cameras are all reliable, so it subscribes once, and it
    exits cleanly on SIGINT after all of them."""
    shared = SharedNode(graph)
    yield shared
    assert shared.process.stop() == 0, shared.process.output()


@pytest.mark.parametrize(("height", "width", "frames"), [(480, 640, 12), (720, 1280, 6)])
def test_a_reliable_camera_in_another_process_is_answered_with_the_shipped_config(
    node, processes, height, width, frames
):
    frame_id = f"reliable_{height}"
    camera = CameraProcess(
        node.topic, rate=node.rate_for(processes, height, width), frames=frames, height=height, width=width,
        reliability="reliable", frame_id=frame_id,
    )  # fmt: skip
    processes(camera)
    node.answered(frame_id, 0.95, camera.published())
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
    answered as the churn-free test above asks (95%), and not one re-subscription in the node's
    life (all its other cameras were reliable too)."""
    rate_hz = node.rate_for(processes, 480, 640)
    frames = 10
    churn = ChurnProcess(node.topic, count=int(frames / rate_hz / 0.5) + 2, period_s=0.5, lifetime_s=0.3)
    processes(churn)
    camera = CameraProcess(
        node.topic, rate=rate_hz, frames=frames, height=480, width=640, reliability="reliable", frame_id="steady",
    )  # fmt: skip
    processes(camera)
    published = camera.published(timeout_s=60.0 + 2 * frames / rate_hz)
    churn.line_with("came and went", timeout_s=60.0)
    node.answered("steady", 0.95, published)
    choices = [line for line in node.process.lines if "subscribing to" in line]
    assert len(choices) == 1 and "reliable, following its 1 publisher: 1 reliable" in choices[0], choices
