"""Run as a script by test_parameters.py: a hostile client in its own process that sends
SetParameters requests to a node at a fixed rate and reports how many were answered.

    python parameter_flood.py NODE_PATH PARAMETER RATE_HZ COUNT VALUE_A VALUE_B [CLIENT_QOS]

CLIENT_QOS is `parameters` (the default: rclpy's parameter QoS, keep-last 1000, as the node's
parameter services use) or `services_default` (keep-last 10: a client that floods faster than it
spins loses replies in its own history). Prints one line:
`sent N answered M accepted K last VALUE over SECONDS s`.
"""

import sys
import time

import rclpy
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_parameters, qos_profile_services_default


def main() -> None:
    node_path, name, rate_hz, count, value_a, value_b = sys.argv[1:7]
    rate_hz, count, values = float(rate_hz), int(count), (float(value_a), float(value_b))
    qos = {"parameters": qos_profile_parameters, "services_default": qos_profile_services_default}[
        sys.argv[7] if len(sys.argv) > 7 else "parameters"
    ]
    rclpy.init()
    node = rclpy.create_node("parameter_flood")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    client = node.create_client(SetParameters, f"{node_path}/set_parameters", qos_profile=qos)
    if not client.wait_for_service(timeout_sec=30.0):
        print("no service", flush=True)
        return
    futures = []
    started_s = time.monotonic()
    for index in range(count):
        value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=values[index % 2])
        request = SetParameters.Request(parameters=[Parameter(name=name, value=value)])
        futures.append(client.call_async(request))
        while time.monotonic() < started_s + (index + 1) / rate_hz:
            executor.spin_once(timeout_sec=0.0005)
    deadline_s = time.monotonic() + 10.0
    while not all(future.done() for future in futures) and time.monotonic() < deadline_s:
        executor.spin_once(timeout_sec=0.01)
    answered = [future.result() for future in futures if future.done()]
    accepted = sum(result.results[0].successful for result in answered)
    sent_s = (count - 1) / rate_hz
    print(
        f"sent {count} answered {len(answered)} accepted {accepted} last {values[(count - 1) % 2]} over {sent_s:.2f} s",
        flush=True,
    )
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
