"""The node and its camera as child processes, for the tests that send frames from one to the
other (test_node_delivery.py, test_node_processes.py): the installed node with the shipped
config, `camera_sim` cameras, and the node's own counts of what reached it (`/diagnostics`)."""

import dataclasses
import pathlib
import sys

from ament_index_python.packages import get_package_share_directory
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy

from superpoint_ros.msg import KeypointArray

from processes import START_S, ChildProcess, new_namespace
from ros_graph import wait_until

SHIPPED_CONFIG = pathlib.Path(get_package_share_directory("superpoint_ros")) / "config" / "detector.yaml"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# The shipped config's only camera, as the node names its `/diagnostics` status.
STATUS_NAME = "superpoint_detector: image"


class NodeProcess(ChildProcess):
    """The node with the shipped parameter file, random weights on the CPU, in `namespace`."""

    def __init__(self, namespace: str, **parameters) -> None:
        arguments = [sys.executable, "-m", "superpoint_ros.ros.node", "--ros-args", "-r", f"__ns:={namespace}"]
        arguments += ["--params-file", str(SHIPPED_CONFIG), "-p", "weights:=random", "-p", "device:=cpu"]
        for name, value in parameters.items():
            arguments += ["-p", f"{name}:={value}"]
        super().__init__(arguments)
        self.line_with("waiting for a publisher")


class CameraProcess(ChildProcess):
    """`python -m superpoint_ros.tools.camera_sim` publishing on `topic`."""

    def __init__(self, topic: str, **options) -> None:
        arguments = [sys.executable, "-m", "superpoint_ros.tools.camera_sim", "--topic", topic]
        for name, value in options.items():
            arguments += [f"--{name.replace('_', '-')}", str(value)]
        super().__init__(arguments)

    def published(self, timeout_s: float = 120.0) -> int:
        """Wait until all frames are out; how many were published."""
        return int(self.line_with("camera_sim: published", timeout_s).split()[-1])


@dataclasses.dataclass(frozen=True)
class FrameCounts:
    """What the node counted for its camera since it started (its `/diagnostics` status)."""

    received: int
    processed: int
    dropped: int
    rejected: int
    failed: int

    @property
    def settled(self) -> bool:
        """Every frame received has been handled: nothing pending or in inference."""
        return self.received == self.processed + self.dropped + self.rejected + self.failed

    def __sub__(self, earlier: "FrameCounts") -> "FrameCounts":
        pairs = zip(dataclasses.astuple(self), dataclasses.astuple(earlier), strict=True)
        return FrameCounts(*(now - then for now, then in pairs))


class ObservedNode:
    """A `NodeProcess` in a namespace of its own, and what this process sees of it: its keypoints
    (`inbox`) and its counts from `/diagnostics` (published every second).

    What the tests need of delivery does not depend on how loaded the machine is: a frame that
    reached the node is `received`, whether it was then processed or, the node being busy,
    dropped for a newer one (the batcher's tests hold that policy). So they pace nothing by the
    machine's speed and can run beside others."""

    def __init__(self, graph, **parameters) -> None:
        self.namespace = new_namespace()
        self.topic = f"{self.namespace}/image"
        self.inbox = graph.subscribe(KeypointArray, f"{self.namespace}/keypoints", RELIABLE)
        self._diagnostics = graph.subscribe(DiagnosticArray, "/diagnostics", RELIABLE)
        self.process = NodeProcess(self.namespace, **parameters)

    def counts(self) -> FrameCounts | None:
        """The newest counts the node published, if any."""
        for array in reversed(list(self._diagnostics.messages)):
            for status in array.status:
                if status.name == STATUS_NAME:
                    values = {value.key: value.value for value in status.values}
                    names = ("frames received", "frames processed", "dropped for newer frames", "rejected")
                    return FrameCounts(*(int(values[name]) for name in names), int(values["inference failures"]))
        return None

    def ready(self) -> FrameCounts:
        """Wait until the node's keypoints publisher has discovered `inbox` (a volatile publisher
        keeps nothing for a subscriber it finds later) and the node has handled every frame it
        received; its counts then, to start a camera from."""
        wait_until(lambda: self.inbox.subscription.get_publisher_count() > 0, START_S, "the keypoints publisher")
        return wait_until(lambda: (counts := self.counts()) and counts.settled and counts, START_S, "settled counts")

    def assert_delivered(self, before: FrameCounts, frame_id: str, published: int, share: float = 0.95) -> None:
        """`share` of the `published` frames reached the node (its counts since `before`), it
        rejected none and no inference failed, and every frame it processed was answered."""

        def delivered() -> FrameCounts | None:
            counts = self.counts()
            if counts is None or not counts.settled:
                return None
            since = counts - before
            return since if since.received >= share * published else None

        since = wait_until(delivered, 30.0, f"{share:.0%} of {published} frames received and handled by the node")
        assert since.rejected == since.failed == 0, since
        assert since.processed >= 1, since
        # The count can reach /diagnostics before the last answers reach this process.
        wait_until(lambda: answers(self.inbox, frame_id) >= since.processed, 20.0, f"{since.processed} answers")
        assert answers(self.inbox, frame_id) == since.processed, since


def answers(inbox, frame_id: str) -> int:
    return sum(1 for message in list(inbox.messages) if message.header.frame_id == frame_id)
