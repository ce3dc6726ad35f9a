"""The test graph itself (`ros_graph.Graph`): every node test in a module shares one, so a node
removed at the end of one test must not stop the spinning for the next."""

import time

from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_msgs.msg import String

from ros_graph import wait_until


def test_removing_a_node_in_the_middle_of_its_timer_callback_leaves_the_graph_spinning(graph):
    # The callback sleeps before it publishes, so removal lands inside it in most rounds, as it
    # did with the detector's diagnostics timer in CI.
    for round_number in range(30):
        node = Node(f"busy_{round_number}", context=graph.context)
        publisher = node.create_publisher(String, "busy", 10)

        def publish_slowly(publisher=publisher):
            time.sleep(0.005)
            publisher.publish(String(data="late"))

        node.create_timer(0.002, publish_slowly)
        graph.add(node)
        time.sleep(0.02)
        graph.remove(node)
    inbox = graph.subscribe(String, "still_spinning")
    publisher = graph.publisher(String, "still_spinning", QoSProfile(depth=10))
    wait_until(lambda: publisher.get_subscription_count() > 0, what="the probe's own subscription")
    publisher.publish(String(data="hello"))
    wait_until(lambda: inbox.messages, what="a message through the graph after the removals")
