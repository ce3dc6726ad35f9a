"""launch_testing: `detector.launch.py` starts the node, and an image in gives keypoints out.

Runs where `launch_testing` is installed (`colcon test` on a normal ROS 2 install); reported
as skipped where it is not, as in the pip-only environment. test_node.py covers the node's
behaviour over DDS in both.
"""

import pathlib
import time
import unittest

import pytest

pytest.importorskip("launch_testing")

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from superpoint_ros.msg import KeypointArray  # noqa: E402
from superpoint_ros.ros.ros_messages import image_message  # noqa: E402

IMAGE_TOPIC = "/launch_test/camera/image_raw"
KEYPOINTS_TOPIC = "/launch_test/keypoints"


@pytest.mark.launch_test
def generate_test_description():
    launch_file = pathlib.Path(get_package_share_directory("superpoint_ros")) / "launch" / "detector.launch.py"
    detector = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(launch_file)),
        launch_arguments={
            "namespace": "launch_test",
            "image": IMAGE_TOPIC,
            "weights": "random",
            "device": "cpu",
        }.items(),
    )
    return launch.LaunchDescription([detector, launch_testing.actions.ReadyToTest()])


class TestKeypointsArrive(unittest.TestCase):
    def setUp(self):
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("launch_test_probe", context=self.context)

    def tearDown(self):
        self.node.destroy_node()
        self.context.try_shutdown()

    def test_an_image_published_to_the_remapped_topic_gives_keypoints(self):
        received = []
        self.node.create_subscription(KeypointArray, KEYPOINTS_TOPIC, received.append, 10)
        publisher = self.node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
        image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(self.node)
        deadline = time.monotonic() + 60.0
        next_publish = 0.0
        while not received and time.monotonic() < deadline:
            if time.monotonic() >= next_publish:
                publisher.publish(image_message(image, "bgr8"))
                next_publish = time.monotonic() + 1.0
            executor.spin_once(timeout_sec=0.1)
        self.assertTrue(received, f"no KeypointArray on {KEYPOINTS_TOPIC} within 60 s")
        self.assertEqual((received[0].height, received[0].width, received[0].descriptor_size), (120, 160, 256))


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_the_node_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
