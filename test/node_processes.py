"""The node and its camera as child processes, for the tests that send frames from one to the
other (test_node_delivery.py, test_node_processes.py): the installed node with the shipped
config, `camera_sim` cameras, and the node's own counts of what reached it (`/diagnostics`)."""

import dataclasses
import pathlib
import sys

from ament_index_python.packages import get_package_share_directory
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy

from processes import START_S, ChildProcess
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


class NodeCounts:
    """The node's counts from `/diagnostics` (published every second), read in this process.

    What the test needs of delivery does not depend on how loaded the machine is: a frame that
    reached the node is `received`, whether it was then processed or, the node being busy,
    dropped for a newer one (the batcher's tests hold that policy). So these tests pace nothing
    by the machine's speed and can run beside others."""

    def __init__(self, graph) -> None:
        self._inbox = graph.subscribe(DiagnosticArray, "/diagnostics", RELIABLE)

    def latest(self) -> FrameCounts | None:
        for array in reversed(list(self._inbox.messages)):
            for status in array.status:
                if status.name == STATUS_NAME:
                    values = {value.key: value.value for value in status.values}
                    names = ("frames received", "frames processed", "dropped for newer frames", "rejected")
                    return FrameCounts(*(int(values[name]) for name in names), int(values["inference failures"]))
        return None

    def settled(self, timeout_s: float = START_S) -> FrameCounts:
        """The newest counts once the node has handled every frame it received."""
        return wait_until(lambda: (counts := self.latest()) and counts.settled and counts, timeout_s, "settled counts")

    def after(self, before: FrameCounts, published: int, share: float = 0.95) -> FrameCounts:
        """The counts since `before`, once `share` of `published` frames reached the node and
        every one of them was handled."""

        def done():
            counts = self.latest()
            return counts and counts.settled and (counts - before).received >= share * published and counts - before

        return wait_until(done, 30.0, f"{share:.0%} of {published} frames received and handled by the node")


def assert_delivered(counts: NodeCounts, before: FrameCounts, inbox, frame_id: str, published: int) -> None:
    """95 % of the `published` frames reached the node (its counts since `before`), it rejected
    none and no inference failed, and every frame it processed was answered on `inbox`."""
    delivered = counts.after(before, published)
    assert delivered.rejected == delivered.failed == 0, delivered
    assert delivered.processed >= 1, delivered
    # The count can reach /diagnostics before the last answers reach this process.
    wait_until(lambda: answers(inbox, frame_id) >= delivered.processed, 20.0, f"{delivered.processed} answers")
    assert answers(inbox, frame_id) == delivered.processed, delivered


def answers(inbox, frame_id: str) -> int:
    return sum(1 for message in list(inbox.messages) if message.header.frame_id == frame_id)


def matched(inbox) -> None:
    """Wait until the node's keypoints publisher has discovered `inbox`'s subscription: a volatile
    publisher keeps nothing for a subscriber that comes later."""
    wait_until(lambda: inbox.subscription.get_publisher_count() > 0, START_S, "the node's keypoints publisher")
