"""A debug image publisher that knows whether anyone watches it, from the middleware's matched
events (as image_pipeline's nodes do in Jazzy) rather than by polling the subscription count, so
that overlays are drawn only while subscribed and the node can start or stop what they need."""

from collections.abc import Callable

from rclpy.event_handler import PublisherEventCallbacks, QoSPublisherMatchedInfo
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image


class DebugOutput:
    """`publisher` of `sensor_msgs/Image` on `topic`; `watched` is True while it has subscribers.
    `on_change(watched)` runs in the executor when that turns."""

    def __init__(
        self, node: Node, topic: str, qos: QoSProfile, on_change: Callable[[bool], None] | None = None
    ) -> None:
        self.watched = False
        self._node = node
        self._on_change = on_change
        self.publisher = node.create_publisher(
            Image, topic, qos, event_callbacks=PublisherEventCallbacks(matched=self._matched)
        )

    def _matched(self, info: QoSPublisherMatchedInfo) -> None:
        watched = info.current_count > 0
        if watched != self.watched:
            self.watched = watched
            if self._on_change is not None:
                self._on_change(watched)

    def close(self) -> None:
        self._node.destroy_publisher(self.publisher)
        if self.watched and self._on_change is not None:
            self._on_change(False)
        self.watched = False
