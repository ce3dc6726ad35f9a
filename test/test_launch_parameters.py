"""One source of truth for parameters: the docs' tables and every shipped YAML agree with what
the running nodes declare (names, types, defaults, ranges)."""

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest
import yaml
from ament_index_python.packages import get_package_share_directory

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG = pathlib.Path(get_package_share_directory("superpoint_ros")) / "config"
SECTIONS = {"superpoint_detector": "/**/superpoint_detector", "superpoint_tracker": "/**/superpoint_tracker"}
PYTHON_TYPES = {"bool": bool, "integer": int, "double": float, "string": str, "string_array": list}


def _load_param_tables():
    spec = importlib.util.spec_from_file_location("param_tables", ROOT / "scripts" / "param_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


param_tables = _load_param_tables()


@pytest.fixture(scope="module")
def declared() -> dict:
    """{node: {name: Declaration}} from the nodes themselves, constructed once."""
    return {node: {d.name: d for d in parameters} for node, parameters in param_tables.declarations().items()}


def shipped_yamls() -> list[str]:
    return sorted(path.name for path in CONFIG.glob("*.yaml"))


def section(name: str, node: str) -> dict | None:
    document = yaml.safe_load((CONFIG / name).read_text())
    return (document.get(SECTIONS[node]) or {}).get("ros__parameters")


def test_the_docs_tables_are_generated_from_the_current_declarations(declared):
    text = param_tables.DOCS.read_text()
    tables = {node: param_tables.table(list(parameters.values())) for node, parameters in declared.items()}
    assert param_tables.with_tables(text, tables) == text, (
        "docs/parameters.md is out of date: run ./scripts/run.sh python scripts/param_tables.py"
    )


def test_a_table_row_reads_name_type_default_range_and_whether_it_changes_at_run_time():
    text = param_tables.DOCS.read_text()
    assert "| `nms_radius` | integer | `4` | 0 … 64 | yes |" in text
    assert "| `vins_max_rate` | double | `0.0` | 0.0 … 1000.0 | yes |" in text
    assert "| `input_qos` | string | `auto` | auto \\| sensor_data \\| reliable | no |" in text
    assert "| `image_topics` | string_array | `[]` |  | no |" in text


@pytest.mark.parametrize("node", SECTIONS)
def test_detector_yaml_lists_every_declared_parameter_with_its_declared_default(declared, node):
    values = section("detector.yaml", node)
    text = (CONFIG / "detector.yaml").read_text()
    for name, declaration in declared[node].items():
        if declaration.default is param_tables.UNSET:
            # YAML has no "unset": such a parameter is shown as a commented-out example.
            assert name not in values, name
            assert re.search(rf"^\s*# {name}: ", text, re.MULTILINE), f"{name} has no commented-out example"
            continue
        assert name in values, f"{node}.{name} is missing from config/detector.yaml"
        assert type(values[name]) is PYTHON_TYPES[declaration.type_name], f"{name}: {values[name]!r}"
        assert values[name] == declaration.default, name
    assert set(values) <= set(declared[node]), f"not declared by {node}: {set(values) - set(declared[node])}"


@pytest.mark.parametrize("name", shipped_yamls())
def test_a_shipped_yaml_only_overrides_declared_parameters_with_their_types(declared, name):
    for node in SECTIONS:
        values = section(name, node) or {}
        for parameter, value in values.items():
            assert parameter in declared[node], f"{name}: {node} declares no {parameter}"
            declaration = declared[node][parameter]
            # A double written `10` is refused by ROS 2; the files keep the decimal point.
            assert type(value) is PYTHON_TYPES[declaration.type_name], f"{name}: {parameter}: {value!r}"
            if name != "detector.yaml" and parameter != "input_qos":
                assert value != declaration.default, f"{name}: {parameter} repeats the default"


@pytest.mark.parametrize("name", shipped_yamls())
def test_every_detector_section_follows_the_cameras_qos(name):
    values = section(name, "superpoint_detector")
    if values is not None:
        assert values.get("input_qos") == "auto", name


def test_an_integer_for_a_double_stops_the_node_with_one_line_that_says_a_double_is_expected():
    started = subprocess.run(
        [sys.executable, "-m", "superpoint_ros.ros.tracker_node", "--ros-args", "-p", "vins_max_rate:=10"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 1
    assert "Traceback" not in started.stderr
    fatal = [line for line in started.stderr.splitlines() if "Cannot start" in line]
    assert len(fatal) == 1 and "vins_max_rate" in fatal[0] and "DOUBLE" in fatal[0], started.stderr
