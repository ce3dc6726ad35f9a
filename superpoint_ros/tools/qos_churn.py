"""Publisher churn on an image topic, as short-lived tools make it (a `ros2 topic pub`, a probe):
best-effort `sensor_msgs/Image` publishers that appear, live `--lifetime` seconds and go, one
every `--period` seconds, each from a node of its own. They publish nothing: their coming and
going is the load. Used by the churn test and `bench_delivery --churn`.

```
python -m superpoint_ros.tools.qos_churn --topic /camera/image --count 50 --period 0.6 --lifetime 0.3
```

Prints `qos_churn: N publishers came and went` when done.
"""

import argparse
import sys
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

BEST_EFFORT = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m superpoint_ros.tools.qos_churn", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, default=50, help="publishers, one after the other")
    parser.add_argument("--period", type=float, default=0.6, help="seconds from one publisher's start to the next")
    parser.add_argument("--lifetime", type=float, default=0.3, help="seconds each publisher lives")
    arguments = parser.parse_args(argv)
    rclpy.init()
    executor = SingleThreadedExecutor()
    started_s = time.monotonic()
    try:
        for index in range(arguments.count):
            node = rclpy.create_node(f"qos_churn_{index}")
            executor.add_node(node)
            node.create_publisher(Image, arguments.topic, BEST_EFFORT)
            executor.spin_once(timeout_sec=arguments.lifetime)
            time.sleep(max(0.0, started_s + index * arguments.period + arguments.lifetime - time.monotonic()))
            executor.remove_node(node)
            node.destroy_node()
            time.sleep(max(0.0, started_s + (index + 1) * arguments.period - time.monotonic()))
    except KeyboardInterrupt:
        return 130
    finally:
        rclpy.try_shutdown()
    print(f"qos_churn: {arguments.count} publishers came and went", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
