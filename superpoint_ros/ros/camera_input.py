"""One camera's input, as both nodes meet it: the subscription, `input_qos: auto` following the
topic's publishers without flapping, the incompatible-QoS log, the silence warning, and the
camera's health and counters (`diagnostics.CameraHealth`).

`input_qos: auto` takes the reliability of the topic's publishers (all reliable: reliable; any
best effort: best effort). The first choice follows the publishers at once; after that only
publishers seen for at least `settle_period_s` count, so that a short-lived publisher (a
`ros2 topic pub`, a probe) does not flip a steady camera's subscription and back, even when such
publishers keep coming and going. A new subscription is made before the old one is destroyed:
the old one keeps delivering until the new one is matched.
"""

import collections
import dataclasses
import time
from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.event_handler import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.subscription import Subscription
from rclpy.topic_endpoint_info import TopicEndpointInfo

from superpoint_ros.ros.diagnostics import CameraHealth, FrameCounters, camera_status

INPUT_QOS_CHOICES = ("auto", "sensor_data", "reliable")
# The subscription's history, as sensor_data's. The newest frame still wins: the callback only
# replaces the pending frame, so a deeper history adds no latency.
INPUT_DEPTH = 5
# Fast DDS's shared-memory segment: a larger frame between processes travels as UDP fragments.
SHARED_MEMORY_SEGMENT_BYTES = 512 * 1024
LARGE_IMAGES_PROFILE = "config/fastdds_large_images.xml"


def following_reliability(publishers: list[TopicEndpointInfo]) -> ReliabilityPolicy | None:
    """The reliability a subscription needs to hear every publisher in `publishers` well, as
    `ros2 topic echo` and rosbag2 choose it: reliable when all offer reliable, best effort when
    any offers best effort (a reliable subscription cannot match it), None when there are none."""
    if not publishers:
        return None
    if all(info.qos_profile.reliability == ReliabilityPolicy.RELIABLE for info in publishers):
        return ReliabilityPolicy.RELIABLE
    return ReliabilityPolicy.BEST_EFFORT


def reliability_name(reliability: ReliabilityPolicy | None) -> str:
    return {ReliabilityPolicy.RELIABLE: "reliable", ReliabilityPolicy.BEST_EFFORT: "best effort"}.get(
        reliability, "unknown"
    )


def describe_publishers(publishers: list[TopicEndpointInfo]) -> str:
    """`"2 publishers: 1 reliable, 1 best effort"`."""
    kinds = collections.Counter(reliability_name(info.qos_profile.reliability) for info in publishers)
    plural = "s" if len(publishers) != 1 else ""
    return f"{len(publishers)} publisher{plural}: " + ", ".join(f"{count} {kind}" for kind, count in kinds.items())


def type_name(message_type: type) -> str:
    """`sensor_msgs/msg/Image` for `sensor_msgs.msg.Image`, as the graph reports topic types."""
    return f"{message_type.__module__.split('.')[0]}/msg/{message_type.__name__}"


def large_images_profile_path() -> str:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        return f"{get_package_share_directory('superpoint_ros')}/{LARGE_IMAGES_PROFILE}"
    except (ImportError, PackageNotFoundError):
        return f"$(ros2 pkg prefix superpoint_ros)/share/superpoint_ros/{LARGE_IMAGES_PROFILE}"


@dataclasses.dataclass(frozen=True)
class FrameSize:
    """What the silence warning says of the last frame: `width`×`height` `encoding`, `nbytes` of data."""

    width: int
    height: int
    encoding: str
    nbytes: int

    def __str__(self) -> str:
        shape = f"{self.width}x{self.height} {self.encoding}" if self.width else self.encoding
        return f"{shape}, {self.nbytes / 1024:.0f} KB"


def frame_size(message) -> FrameSize:
    """The size of a `sensor_msgs/Image` or `CompressedImage` (which has no width or height)."""
    encoding = getattr(message, "encoding", None) or getattr(message, "format", "") or "compressed"
    return FrameSize(getattr(message, "width", 0), getattr(message, "height", 0), encoding, len(message.data))


def silence_cause(size: FrameSize | None, reliability: ReliabilityPolicy | None, profile_path: str) -> str:
    """Why a matched publisher's frames may not arrive, and the fixes, given the last frame seen
    (None: none yet) and the subscription's reliability.

    Lost UDP fragments are named only for frames that exceed the shared-memory segment, or when
    no frame ever came and its size is unknown."""
    if size is not None and size.nbytes <= SHARED_MEMORY_SEGMENT_BYTES:
        return (
            f"Its last frame ({size}) fits the transport's limits, so the publisher is matched but silent: "
            "it stopped publishing, or publishes nothing yet."
        )
    if size is not None:
        seen = f"Its last frame ({size}) is over Fast DDS's 512 KB shared-memory segment."
    else:
        seen = "No frame has arrived yet, so its size is unknown."
    profile = f", or export FASTRTPS_DEFAULT_PROFILES_FILE={profile_path} for both the camera driver and this node."
    if reliability == ReliabilityPolicy.RELIABLE:
        return (
            f"{seen} Likely cause: between processes, frames over 512 KB travel as UDP fragments, and on a busy "
            "machine lost fragments are resent only after the publisher's next heartbeat (seconds). Fixes: use "
            "the compressed transport (image_transport: compressed)" + profile
        )
    return (
        f"{seen} Likely cause: between processes, best-effort frames over 512 KB are lost in UDP fragments. "
        "Fixes: have the camera publish reliable and keep input_qos: auto (or set input_qos: reliable)" + profile
    )


class CameraInput:
    """The subscription to one camera topic and what the node knows of it.

    `input_topic` is the resolved topic subscribed; `reliability` the subscription's (None: not
    subscribed yet, waiting for a publisher). `on_message(message)` runs in the executor for each
    frame, after the counters and health were updated (under no lock: the caller's callback locks
    what it shares). Call `check()` periodically (the node's graph timer) and `close()` to
    unsubscribe.
    """

    def __init__(
        self,
        node: Node,
        name: str,
        input_topic: str,
        message_type: type,
        input_qos: str,
        on_message: Callable[[object], None],
        settle_period_s: float,
        silence_s: float,
    ) -> None:
        if input_qos not in INPUT_QOS_CHOICES:
            raise ValueError(f"input_qos must be one of {', '.join(INPUT_QOS_CHOICES)}, got '{input_qos}'")
        self.name = name
        self.input_topic = input_topic
        self.health = CameraHealth()
        self.subscription: Subscription | None = None
        self.reliability: ReliabilityPolicy | None = None
        self.waiting_since_s = time.monotonic()
        self.publisher_count = 0
        self.resubscriptions = 0
        self.last_size: FrameSize | None = None
        self._node = node
        self._message_type = message_type
        self._type_name = type_name(message_type)
        self._input_qos = input_qos
        self._on_message = on_message
        self._settle_period_s = settle_period_s
        self._silence_s = silence_s
        self._silence_logged_s = -float("inf")
        # When each publisher (by endpoint gid) was first seen on the topic.
        self._first_seen_s: dict[bytes, float] = {}
        # The subscription being replaced, kept until its successor is matched (make before break).
        self._previous: Subscription | None = None
        self._last_stamp: tuple | None = None
        self._profile_path = large_images_profile_path()

    @property
    def counters(self) -> FrameCounters:
        return self.health.counters

    @property
    def input_qos(self) -> str:
        return self._input_qos

    def open(self) -> None:
        """Subscribe now for a fixed `input_qos`; with `auto`, wait for a publisher (`check`)."""
        if self._input_qos == "auto":
            self._node.get_logger().info(
                f"Camera '{self.name}': waiting for a publisher on '{self.input_topic}' to choose the input QoS "
                "(input_qos: auto)"
            )
        else:
            reliable = self._input_qos == "reliable"
            self._subscribe(ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)

    def close(self) -> None:
        """Destroy the subscriptions; `open` starts again."""
        for subscription in (self.subscription, self._previous):
            if subscription is not None:
                self._node.destroy_subscription(subscription)
        self.subscription = self._previous = None
        self.reliability = None
        self._first_seen_s = {}

    def _subscribe(self, reliability: ReliabilityPolicy) -> None:
        if self._input_qos == "sensor_data":
            qos = qos_profile_sensor_data
        else:
            qos = QoSProfile(depth=INPUT_DEPTH, history=HistoryPolicy.KEEP_LAST, reliability=reliability)
        if self._previous is not None:
            self._node.destroy_subscription(self._previous)
        self._previous = self.subscription
        self.subscription = self._node.create_subscription(
            self._message_type,
            self.input_topic,
            self._receive,
            qos,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos),
        )
        self.reliability = reliability
        self.waiting_since_s = time.monotonic()

    def _receive(self, message) -> None:
        stamp = (message.header.stamp.sec, message.header.stamp.nanosec, message.header.frame_id)
        if self._previous is not None and stamp == self._last_stamp:
            return  # the same frame through both subscriptions while one replaces the other
        self._last_stamp = stamp
        self.health.counters.received += 1
        self.health.last_frame_s = time.monotonic()
        self.health.frame_id = message.header.frame_id
        self.last_size = frame_size(message)
        self._on_message(message)

    def _on_incompatible_qos(self, event: QoSRequestedIncompatibleQoSInfo) -> None:
        policy = QoSPolicyKind(event.last_policy_kind).name.lower()
        self._node.get_logger().warning(
            f"Camera '{self.name}': a publisher on '{self.input_topic}' offers a QoS this subscription "
            f"({reliability_name(self.reliability)}, input_qos: {self._input_qos}) cannot match; "
            f"clashing policy: {policy}. Its frames will not arrive. input_qos: auto follows the publishers."
        )

    def status(self, name: str, static_values: dict[str, str]) -> DiagnosticStatus:
        """This camera's `/diagnostics` status, named `name` (`diagnostics.camera_status`), with
        its topic, input QoS and publishers beside `static_values`."""
        chosen = reliability_name(self.reliability) if self.reliability else "waiting for a publisher"
        values = {
            **static_values,
            "topic": self.input_topic,
            "input QoS": f"{chosen} (input_qos: {self._input_qos})",
            "publishers": str(self.publisher_count),
        }
        silence_s = self._silence_s if self._silence_s > 0 else float("inf")
        return camera_status(name, self.health, time.monotonic(), silence_s, self.waiting_since_s, values)

    def publishers(self) -> list[TopicEndpointInfo]:
        infos = self._node.get_publishers_info_by_topic(self.input_topic)
        return [info for info in infos if info.topic_type == self._type_name]

    def check(self, now_s: float | None = None) -> None:
        """Follow the publishers (input_qos auto), retire a replaced subscription once its successor
        is matched, and warn when the topic has publishers but is silent."""
        now_s = time.monotonic() if now_s is None else now_s
        publishers = self.publishers()
        if publishers and not self.publisher_count:
            self.waiting_since_s = now_s
        self.publisher_count = len(publishers)
        ids = [bytes(info.endpoint_gid) for info in publishers]
        self._first_seen_s = {gid: self._first_seen_s.get(gid, now_s) for gid in ids}
        if self._previous is not None and (
            self.subscription.get_publisher_count() > 0 or now_s - self.waiting_since_s >= self._settle_period_s
        ):
            self._node.destroy_subscription(self._previous)
            self._previous = None
        if self._input_qos == "auto":
            self._follow(publishers, ids, now_s)
        self._warn_if_silent(publishers, now_s)

    def _follow(self, publishers: list[TopicEndpointInfo], ids: list[bytes], now_s: float) -> None:
        """Subscribe with the reliability the settled publishers need: those seen for at least the
        settle period, so that short-lived ones (which never settle) are not followed. The first
        choice follows every publisher at once: there is nothing to flap from yet."""
        if self.reliability is not None:
            publishers = [
                info
                for info, gid in zip(publishers, ids, strict=True)
                if now_s - self._first_seen_s[gid] >= self._settle_period_s
            ]
        wanted = following_reliability(publishers)
        if wanted is None or wanted == self.reliability:
            return
        self.resubscriptions += self.reliability is not None
        self._subscribe(wanted)
        self._node.get_logger().info(
            f"Camera '{self.name}': subscribing to '{self.input_topic}' {reliability_name(wanted)}, "
            f"following its {describe_publishers(publishers)} (input_qos: auto)"
        )

    def _warn_if_silent(self, publishers: list[TopicEndpointInfo], now_s: float) -> None:
        if not publishers or self.subscription is None or self._silence_s <= 0:
            return
        quiet_s = self.health.quiet_s(now_s, self.waiting_since_s)
        if quiet_s < self._silence_s or now_s - self._silence_logged_s < self._silence_s:
            return
        self._silence_logged_s = now_s
        self._node.get_logger().warning(
            f"Camera '{self.name}': no frame on '{self.input_topic}' for {quiet_s:.0f} s, although it has "
            f"{describe_publishers(publishers)}; this node subscribes {reliability_name(self.reliability)}. "
            f"{silence_cause(self.last_size, self.reliability, self._profile_path)}"
        )
