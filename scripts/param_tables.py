#!/usr/bin/env python3
"""Write the parameter tables of `docs/parameters.md` from the nodes' own declarations.

    ./scripts/run.sh python scripts/param_tables.py           # rewrite the tables in place
    ./scripts/run.sh python scripts/param_tables.py --check   # exit 1 if they are out of date

Each node is constructed (random weights, CPU) and every `declare_parameters` call it makes is
recorded: name, default as declared (before any override), type, range and description. Each
table lies between `<!-- BEGIN <node> -->` and `<!-- END <node> -->` markers, so the prose
around it stays hand-written. test/test_launch_parameters.py checks that the tables and
`config/detector.yaml` agree with the declarations.
"""

import argparse
import contextlib
import dataclasses
import os
import pathlib
import sys

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "parameters.md"
NODES = ("superpoint_detector", "superpoint_tracker")
# Declared by rclpy in every node, not by ours.
RCLPY_PARAMETERS = ("use_sim_time", "start_type_description_service")
UNSET = object()


@dataclasses.dataclass(frozen=True)
class Declaration:
    """One parameter as the node's code declares it. `default` is UNSET for a typed parameter
    declared without a value (`image_topics`)."""

    name: str
    type_name: str
    default: object
    descriptor: ParameterDescriptor


@contextlib.contextmanager
def _recording(declared: dict[str, tuple]):
    """Record the first (value, descriptor) each parameter is declared with, through rclpy's
    `Node.declare_parameters`, which `declare_parameter` also goes through."""
    original = Node.declare_parameters

    def record(node, namespace, parameters, ignore_override=False):
        for entry in parameters:
            name = f"{namespace}.{entry[0]}" if namespace else entry[0]
            value = entry[1] if len(entry) > 1 else None
            descriptor = entry[2] if len(entry) > 2 else ParameterDescriptor()
            declared.setdefault(name, (value, descriptor))
        return original(node, namespace, parameters, ignore_override)

    Node.declare_parameters = record
    try:
        yield
    finally:
        Node.declare_parameters = original


def declarations() -> dict[str, list[Declaration]]:
    """Every parameter our two nodes declare, by node name, in declaration order."""
    from superpoint_ros.ros.node import DetectorNode
    from superpoint_ros.ros.tracker_node import TrackerNode

    context = Context()
    # A domain above the tests' (1-100) and the launch recipes' (101-220): nothing is spun, but
    # the nodes must not appear in other graphs.
    rclpy.init(args=[], context=context, domain_id=221 + os.getpid() % 11)
    result = {}
    try:
        for node_name, node_class, overrides in (
            ("superpoint_detector", DetectorNode, {"weights": "random", "device": "cpu"}),
            ("superpoint_tracker", TrackerNode, {}),
        ):
            declared: dict[str, tuple] = {}
            with _recording(declared):
                node = node_class(
                    context=context,
                    parameter_overrides=[Parameter(name, value=value) for name, value in overrides.items()],
                )
            try:
                result[node_name] = [
                    _declaration(node, name, value, descriptor)
                    for name, (value, descriptor) in declared.items()
                    if name not in RCLPY_PARAMETERS
                ]
            finally:
                node.destroy_node()
    finally:
        context.try_shutdown()
    return result


def _declaration(node: Node, name: str, value: object, descriptor: ParameterDescriptor) -> Declaration:
    live = node.describe_parameter(name)
    if isinstance(value, Parameter.Type):
        # Declared by type alone: its default is what the node set when nothing overrode it.
        parameter = node.get_parameter_or(name)
        value = UNSET if parameter.type_ == Parameter.Type.NOT_SET else parameter.value
    return Declaration(name, Parameter.Type(live.type).name.lower(), value, live)


def format_value(value: object) -> str:
    """A default as YAML writes it: `""`, `true`, `0.005`, `[a, b]`; `(unset)` for none."""
    if value is UNSET:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if value == "" else value
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    return repr(value)


def format_range(descriptor: ParameterDescriptor) -> str:
    """`0 … 64`, `0.0 … 1.0`, the declared choices (`auto | cpu`) or empty."""
    if descriptor.integer_range:
        bounds = descriptor.integer_range[0]
        return f"{bounds.from_value} … {bounds.to_value}"
    if descriptor.floating_point_range:
        bounds = descriptor.floating_point_range[0]
        return f"{bounds.from_value!r} … {bounds.to_value!r}"
    return descriptor.additional_constraints


def table(parameters: list[Declaration]) -> str:
    """A Markdown table, one row per parameter in declaration order."""
    rows = [
        "| parameter | type | default | range | changeable at run time | description |",
        "|---|---|---|---|---|---|",
    ]
    for parameter in parameters:
        description = parameter.descriptor.description.replace("|", "\\|")
        choices = format_range(parameter.descriptor).replace("|", "\\|")
        runtime = "no" if parameter.descriptor.read_only else "yes"
        rows.append(
            f"| `{parameter.name}` | {parameter.type_name} | `{format_value(parameter.default)}` | {choices} "
            f"| {runtime} | {description} |"
        )
    return "\n".join(rows) + "\n"


def with_tables(text: str, tables: dict[str, str]) -> str:
    """`text` with the part between each node's markers replaced by its table."""
    for node_name, content in tables.items():
        begin, end = f"<!-- BEGIN {node_name} -->\n", f"<!-- END {node_name} -->"
        head, found, rest = text.partition(begin)
        if not found or end not in rest:
            raise SystemExit(f"{DOCS}: the markers {begin.strip()} … {end} are missing")
        text = head + begin + content + end + rest.split(end, 1)[1]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/parameters.md is out of date")
    arguments = parser.parse_args(argv)
    current = DOCS.read_text()
    updated = with_tables(current, {name: table(parameters) for name, parameters in declarations().items()})
    if arguments.check:
        if updated != current:
            print(f"{DOCS} is out of date: run ./scripts/run.sh python scripts/param_tables.py", file=sys.stderr)
            return 1
        return 0
    DOCS.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
