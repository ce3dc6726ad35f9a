"""A node's parameters as one table: each row names a parameter, its default, range or choices,
description and whether it is read-only. `declare_parameters` declares the table on a node,
`parameter_values` reads it back, and a node's frozen config dataclass checks the values
together (`check_choices` among them), before anything slow (torch, weights, an engine) loads. Both nodes use this.

Run-time changes: `RuntimeParameters` validates a change as a whole (the node's settings
dataclass refuses bad combinations) and logs the accepted ones as one summary line per
`log_period_s` at most, so that a flood of changes cannot flood the log.
"""

import dataclasses
import threading
import time
from collections.abc import Callable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

PARAMETER_LOG_PERIOD_S = 1.0


@dataclasses.dataclass(frozen=True)
class Spec:
    """One parameter. `default` is its value, or a `Parameter.Type` for one left unset by default
    (a string array); `low`/`high` a range for numbers; `choices` the strings it accepts;
    `read_only` whether it is fixed once the node runs."""

    name: str
    default: object
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = True

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.low is not None and isinstance(self.default, bool):
            raise ValueError(f"{self.name}: a boolean has no range")
        if self.low is not None and isinstance(self.default, int):
            descriptor.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high), step=1)]
        elif self.low is not None:
            descriptor.floating_point_range = [FloatingPointRange(from_value=self.low, to_value=self.high, step=0.0)]
        if self.choices:
            descriptor.additional_constraints = " | ".join(self.choices)
        if self.default is Parameter.Type.STRING_ARRAY:
            descriptor.type = ParameterType.PARAMETER_STRING_ARRAY
        return descriptor


def declare_parameters(node: Node, table: tuple[Spec, ...]) -> None:
    """Declare every row of `table` on `node`.

    A string array left unset reads back as `[]`: rclpy cannot declare `[]` as a string array
    (it reads as a byte array), and one unset parameter makes rclpy's get_parameters service
    answer nothing at all, which leaves `ros2 param dump` of the node empty. So it is declared
    writable, set to `[]` when nothing overrode it, and only then made read-only.
    """
    for spec in table:
        descriptor = spec.descriptor()
        if spec.default is not Parameter.Type.STRING_ARRAY:
            node.declare_parameter(spec.name, spec.default, descriptor)
            continue
        node.declare_parameter(spec.name, spec.default, _writable(descriptor))
        if node.get_parameter_or(spec.name).type_ == Parameter.Type.NOT_SET:
            node.set_parameters([Parameter(spec.name, Parameter.Type.STRING_ARRAY, [])])
        node.set_descriptor(spec.name, descriptor)


def _writable(descriptor: ParameterDescriptor) -> ParameterDescriptor:
    return ParameterDescriptor(
        description=descriptor.description,
        type=descriptor.type,
        additional_constraints=descriptor.additional_constraints,
        read_only=False,
    )


def parameter_values(node: Node, table: tuple[Spec, ...]) -> dict[str, object]:
    """The values of `table`'s parameters by name (None for a typed one left unset)."""
    values = {}
    for spec in table:
        try:
            values[spec.name] = node.get_parameter(spec.name).value
        except ParameterUninitializedException:
            values[spec.name] = None
    return values


def check_choices(table: tuple[Spec, ...], values: dict[str, object]) -> None:
    """Raise `ValueError` naming the first parameter whose value is not one of its `choices`
    (rclpy enforces ranges itself, but not these)."""
    for spec in table:
        if spec.choices and values[spec.name] not in spec.choices:
            raise ValueError(f"{spec.name} must be one of {', '.join(spec.choices)}, got '{values[spec.name]}'")


class RuntimeParameters:
    """The validate and apply callbacks of the parameters `names` that may change at run time.

    `check(values)` raises `ValueError`/`TypeError` for a combination the node refuses;
    `apply(changed)` takes the accepted changes by name. Accepted changes are logged as one
    summary line per `log_period_s` at most (the last values, and how many changes)."""

    def __init__(
        self,
        node: Node,
        names: tuple[str, ...],
        current: Callable[[], dict[str, object]],
        check: Callable[[dict[str, object]], object],
        apply: Callable[[dict[str, object]], None],
        log_period_s: float = PARAMETER_LOG_PERIOD_S,
    ) -> None:
        self._node = node
        self._names = names
        self._current = current
        self._check = check
        self._apply = apply
        self._log_period_s = log_period_s
        self._lock = threading.Lock()
        self._unlogged: dict[str, object] = {}
        self._unlogged_count = 0
        self._logged_s = -float("inf")
        node.add_on_set_parameters_callback(self._validate)
        node.add_post_set_parameters_callback(self._accepted)
        self._timer = node.create_timer(log_period_s, self._log_summary)

    def _validate(self, parameters: list[Parameter]) -> SetParametersResult:
        values = dict(self._current())
        values.update({p.name: p.value for p in parameters if p.name in self._names})
        try:
            self._check(values)
        except (ValueError, TypeError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _accepted(self, parameters: list[Parameter]) -> None:
        changed = {p.name: p.value for p in parameters if p.name in self._names}
        if not changed:
            return
        self._apply(changed)
        with self._lock:
            self._unlogged.update(changed)
            self._unlogged_count += 1
        if time.monotonic() - self._logged_s >= self._log_period_s:
            self._log_summary()

    def _log_summary(self) -> None:
        with self._lock:
            if not self._unlogged:
                return
            changed, count = self._unlogged, self._unlogged_count
            self._unlogged, self._unlogged_count = {}, 0
            self._logged_s = time.monotonic()
        values = ", ".join(f"{name}={value!r}" for name, value in sorted(changed.items()))
        times = "1 change" if count == 1 else f"{count} changes in the last {self._log_period_s:g} s"
        self._node.get_logger().info(f"Parameters now {values} ({times})")
