"""A real rclpy graph for node tests: one context on a private domain, an executor spinning in a
background thread, and a probe node that publishes, subscribes and calls services like any
other node would (nothing is mocked)."""

import os
import threading
import time
from collections.abc import Callable

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.context import Context
from rclpy.exceptions import InvalidHandle
from rclpy.executors import ExternalShutdownException, ShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from superpoint_ros.msg import KeypointArray
from superpoint_ros.ros.ros_messages import detections_from_message

from domains import private_domain_id

WAIT_S = 20.0


def header(sequence: int, frame_id: str = "camera") -> Header:
    return Header(stamp=Time(sec=1_700_000_000 + sequence, nanosec=123_456_789), frame_id=frame_id)


def wait_until(condition: Callable[[], object], timeout_s: float = WAIT_S, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.005)
    return value


class Inbox:
    """Messages a subscription received, with the monotonic time each arrived."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list = []
        self.arrival_s: list[float] = []
        self.subscription = None

    def __call__(self, message) -> None:
        with self._lock:
            self.messages.append(message)
            self.arrival_s.append(time.monotonic())

    def __len__(self) -> int:
        with self._lock:
            return len(self.messages)

    def find(self, predicate: Callable, timeout_s: float = WAIT_S, what: str = "a matching message"):
        def found():
            with self._lock:
                return next((m for m in self.messages if predicate(m)), None)

        return wait_until(found, timeout_s, what)


class Graph:
    """The context, executor and probe node; `add`/`remove` nodes under test."""

    def __init__(self) -> None:
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        self.context = Context()
        rclpy.init(args=[], context=self.context, domain_id=private_domain_id())
        self.executor = SingleThreadedExecutor(context=self.context)
        self.probe = Node("probe", context=self.context)
        self.executor.add_node(self.probe)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        """Spin until `close`. A callback the executor took up just before `remove` can run after
        its node was destroyed and find its handles gone (`InvalidHandle`, seen with the detector's
        diagnostics timer); that node is finished with, and the other nodes must keep spinning."""
        while not self._closing.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except InvalidHandle:
                continue
            except (ShutdownException, ExternalShutdownException):
                return

    def add(self, node: Node) -> Node:
        self.executor.add_node(node)
        return node

    def remove(self, node: Node) -> None:
        self.executor.remove_node(node)
        node.destroy_node()

    def subscribe(self, message_type, topic: str, qos: QoSProfile | int = 10) -> Inbox:
        inbox = Inbox()
        inbox.subscription = self.probe.create_subscription(message_type, topic, inbox, qos)
        return inbox

    def unsubscribe(self, inbox: Inbox) -> None:
        self.probe.destroy_subscription(inbox.subscription)

    def rosout(self) -> Inbox:
        qos = QoSProfile(
            depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        from rcl_interfaces.msg import Log

        return self.subscribe(Log, "/rosout", qos)

    def publisher(self, message_type, topic: str, qos: QoSProfile = qos_profile_sensor_data):
        return self.probe.create_publisher(message_type, topic, qos)

    def call(self, client, request, timeout_s: float = WAIT_S):
        wait_until(client.service_is_ready, timeout_s, f"service {client.srv_name}")
        future = client.call_async(request)
        wait_until(future.done, timeout_s, f"a reply from {client.srv_name}")
        return future.result()

    def close(self) -> None:
        """Stop spinning first, then shut down: a `spin_once` under way when the context goes
        raised RCLError ("failed to create timer: the given context is not valid") in the thread."""
        self._closing.set()
        self._thread.join(timeout=5.0)
        self.executor.shutdown()
        self.probe.destroy_node()
        self.context.try_shutdown()

    def assert_parameters_described(self, node_path: str, runtime_parameters: tuple[str, ...]) -> None:
        """Every parameter of the node at `node_path` has a description, exactly `runtime_parameters`
        can change at run time, and every number has a range."""
        from rcl_interfaces.msg import ParameterType
        from rcl_interfaces.srv import DescribeParameters, ListParameters

        listing = self.probe.create_client(ListParameters, f"{node_path}/list_parameters")
        names = [n for n in self.call(listing, ListParameters.Request()).result.names if n != "use_sim_time"]
        describe = self.probe.create_client(DescribeParameters, f"{node_path}/describe_parameters")
        descriptors = self.call(describe, DescribeParameters.Request(names=names)).descriptors
        assert set(runtime_parameters) <= set(names)
        for descriptor in descriptors:
            assert descriptor.description, descriptor.name
            assert descriptor.read_only == (descriptor.name not in runtime_parameters), descriptor.name
            if descriptor.type == ParameterType.PARAMETER_INTEGER:
                assert descriptor.integer_range, descriptor.name
            if descriptor.type == ParameterType.PARAMETER_DOUBLE:
                assert descriptor.floating_point_range, descriptor.name


def connect(graph: Graph, node, namespace: str, camera: str = "", input_qos: QoSProfile | None = None):
    """A publisher to the detector node's input for `camera` (default: its only camera) and an
    inbox of that camera's keypoints, matched both ways."""
    camera_index = next(i for i, c in enumerate(node.cameras) if c.name == (camera or "image"))
    prefix = f"{namespace}/{camera}/" if camera else f"{namespace}/"
    image_topic = node.cameras[camera_index].image_topic
    image_topic = image_topic if image_topic.startswith("/") else f"{namespace}/{image_topic}"
    publisher = graph.publisher(Image, image_topic, **({"qos": input_qos} if input_qos else {}))
    inbox = graph.subscribe(KeypointArray, f"{prefix}keypoints")
    wait_until(lambda: publisher.get_subscription_count() > 0, what="the node to subscribe")
    wait_until(lambda: node.cameras[camera_index].keypoints_publisher.get_subscription_count() > 0, what="a match")
    return publisher, inbox


def output_for(inbox: Inbox, stamp: Time, **find):
    """The first message in `inbox` stamped `stamp` (waiting for it)."""
    return inbox.find(lambda m: m.header.stamp == stamp, what=f"output stamped {stamp.sec}", **find)


def exchange(publisher, inbox, message):
    """Publish `message` (again every few seconds: best effort may lose the first) until its
    output arrives; return that output."""
    for _ in range(5):
        publisher.publish(message)
        try:
            return output_for(inbox, message.header.stamp, timeout_s=4.0)
        except AssertionError:
            continue
    raise AssertionError("the node never answered")


def assert_detections_equal(message, expected):
    received = detections_from_message(message)
    np.testing.assert_array_equal(received.keypoints, expected.keypoints)
    np.testing.assert_array_equal(received.scores, expected.scores)
    np.testing.assert_array_equal(received.descriptors, expected.descriptors)
