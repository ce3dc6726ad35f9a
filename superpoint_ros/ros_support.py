"""What our nodes share: parameter descriptors with ranges, error logs throttled per distinct
text, and `run_node`, the start-up and spin loop of both executables."""

import signal
import sys
import time
from collections.abc import Callable

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions

SIGNAL_CHECK_PERIOD_S = 0.2
STRING_ARRAY = ParameterType.PARAMETER_STRING_ARRAY


def describe(description: str, read_only: bool = False, **constraints) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, read_only=read_only, **constraints)


def integer_range(low: int, high: int) -> dict:
    return {"integer_range": [IntegerRange(from_value=low, to_value=high, step=1)]}


def float_range(low: float, high: float) -> dict:
    return {"floating_point_range": [FloatingPointRange(from_value=low, to_value=high, step=0.0)]}


def declare_string_list(node: Node, name: str, description: str) -> list[str]:
    """Declare a read-only string-array parameter whose default is the empty list; return its value.

    rclpy cannot declare `[]` as a string array (it reads as a byte array), and a parameter left
    unset makes rclpy's get_parameters service answer nothing at all, which leaves
    `ros2 param dump` of the node empty. So it is declared typed and writable, set to `[]` when
    nothing overrode it, and then made read-only. A YAML `[]` arrives unset and reads back `[]`.
    """
    node.declare_parameter(name, Parameter.Type.STRING_ARRAY, describe(description, type=STRING_ARRAY))
    if node.get_parameter_or(name).type_ == Parameter.Type.NOT_SET:
        node.set_parameters([Parameter(name, Parameter.Type.STRING_ARRAY, [])])
    node.set_descriptor(name, describe(description, read_only=True, type=STRING_ARRAY))
    return list(node.get_parameter(name).value)


class ErrorThrottle:
    """Says whether a text should be logged now: not if the same text was logged in the last
    `period_s` seconds."""

    def __init__(self, period_s: float = 5.0) -> None:
        self.period_s = period_s
        self._logged_at: dict[str, float] = {}

    def allows(self, text: str) -> bool:
        now_s = time.monotonic()
        if len(self._logged_at) > 1000:
            # Texts name sizes from the input, so a hostile publisher could make endless new ones.
            self._logged_at = {t: at_s for t, at_s in self._logged_at.items() if now_s - at_s < self.period_s}
        if now_s - self._logged_at.get(text, -self.period_s) < self.period_s:
            return False
        self._logged_at[text] = now_s
        return True


def one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def run_node(
    name: str, create: Callable[[], Node], startup_errors: tuple[type[Exception], ...], args: list[str] | None
) -> int:
    """Start the node `create()` makes and spin it until SIGINT, SIGTERM or shutdown.

    Returns 0 after a clean stop, 1 after one fatal log line (no traceback) when ROS cannot start
    or `create` raises one of `startup_errors`, and 130 when interrupted while starting.
    """
    try:
        # SIGINT and SIGTERM raise KeyboardInterrupt, seen between two short spins below. rclpy's
        # own handler now and then let a SIGINT go unnoticed while the node idled (seen when
        # started in the background, where the shell had set SIGINT to be ignored).
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as error:  # rclpy's RCLError: unusable --ros-args, such as an unreadable params file
        print(f"[FATAL] [{name}]: Cannot start: {one_line(error)}", file=sys.stderr)
        return 1
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        node = create()
    except startup_errors as error:
        rclpy.logging.get_logger(name).fatal(f"Cannot start: {one_line(error)}")
        rclpy.try_shutdown()
        return 1
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 130
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok():
            executor.spin_once(timeout_sec=SIGNAL_CHECK_PERIOD_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
