"""What our nodes share: error logs throttled per distinct text, the lifecycle scaffolding, and
`run_node`, the start-up and spin loop of both executables.

A node's work is written once as a `Stages` mixin with `_configure`, `_activate`, `_deactivate`
and `_cleanup`. The plain node runs configure and activate in its constructor; with `--managed`
(before `--ros-args`) the executable builds the lifecycle variant (`rclpy.lifecycle`), whose
transitions run the same stages.
"""

import signal
import sys
import time
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

SIGNAL_CHECK_PERIOD_S = 0.2


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


MANAGED_FLAG = "--managed"


def split_managed_flag(args: list[str]) -> tuple[bool, list[str]]:
    """Whether `--managed` is among the arguments before `--ros-args`, and the arguments without it."""
    end = args.index("--ros-args") if "--ros-args" in args else len(args)
    managed = MANAGED_FLAG in args[:end]
    return managed, [a for i, a in enumerate(args) if not (i < end and a == MANAGED_FLAG)]


class Stages:
    """The stages of a node's life, shared by its plain and its lifecycle variant. Subclasses
    define `_startup_errors` (what `_configure` raises for a bad configuration, told in one log
    line), `_declare` (its parameters) and the four stages; `_cleanup` must undo whatever part of
    `_configure` ran."""

    def _startup_errors(self) -> tuple[type[Exception], ...]:
        raise NotImplementedError

    def _declare(self) -> None:
        raise NotImplementedError

    def _configure(self) -> None:
        raise NotImplementedError

    def _activate(self) -> None:
        raise NotImplementedError

    def _deactivate(self) -> None:
        raise NotImplementedError

    def _cleanup(self) -> None:
        raise NotImplementedError


class PlainStages(Node):
    """The stages run straight through at construction: declared, configured and active from the
    start (a failed configure cleans up and raises); cleaned up when destroyed."""

    def __init__(self, node_name: str, **node_options) -> None:
        super().__init__(node_name, **node_options)
        self._declare()
        try:
            self._configure()
        except BaseException:
            self._cleanup()
            raise
        self._activate()

    def destroy_node(self) -> None:
        self._cleanup()
        super().destroy_node()


class ManagedStages(LifecycleNode):
    """The lifecycle transitions as `Stages` calls: configure (a failure: one error line, then
    back to unconfigured), activate, deactivate, cleanup, and shutdown from any state. Declared
    and unconfigured after construction."""

    _configured = False
    _active = False

    def __init__(self, node_name: str, **node_options) -> None:
        super().__init__(node_name, **node_options)
        self._declare()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except self._startup_errors() as error:
            self.get_logger().error(f"Cannot configure: {one_line(error)}")
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        self._configured = True
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._activate()
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        self._configured = False
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active:
            self.on_deactivate(state)
        if self._configured:
            self.on_cleanup(state)
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.on_shutdown(state)
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        self.on_shutdown(None)
        super().destroy_node()


def run_node(
    name: str,
    create: Callable[[bool], Node],
    startup_errors: tuple[type[Exception], ...],
    args: list[str] | None,
) -> int:
    """Start the node `create(managed)` makes and spin it until SIGINT, SIGTERM or shutdown;
    `managed` is whether `--managed` came before `--ros-args` in `args` (default: `sys.argv`).

    Returns 0 after a clean stop, 1 after one fatal log line (no traceback) when ROS cannot start
    or `create` raises one of `startup_errors`, and 130 when interrupted while starting.
    """
    managed, args = split_managed_flag(sys.argv if args is None else args)
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
        node = create(managed)
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
