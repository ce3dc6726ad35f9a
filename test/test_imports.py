"""The package's three layers, the direction of their imports, and the light modules staying light.

- the core (modules directly in `superpoint_ros/`) imports neither the ROS layer nor the tools, and
  loads no rclpy;
- the ROS layer (`superpoint_ros/ros/`) imports the core, never the tools;
- the tools (`superpoint_ros/tools/`) may import both;
- no import cycle between the package's modules, counting imports inside functions and under
  `TYPE_CHECKING`;
- a camera stand-in and the image codec load no torch.

The two forwarding modules kept for `python -m superpoint_ros.node` / `.tracker_node` are the one
exception to the first rule, and are checked to forward and nothing more.
"""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

from domains import private_domain_id

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "superpoint_ros"
FORWARDERS = {"superpoint_ros.node", "superpoint_ros.tracker_node"}


def module_name(path: pathlib.Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def package_modules() -> dict[str, pathlib.Path]:
    return {
        module_name(path): path
        for path in PACKAGE.rglob("*.py")
        if "msg" not in path.relative_to(PACKAGE).parts and "__pycache__" not in path.parts
    }


MODULES = package_modules()


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in ("ros", "tools") else "core"


def imported_modules(path: pathlib.Path, known=None) -> set[str]:
    """Every `superpoint_ros` module that `path` imports anywhere (module level, functions,
    TYPE_CHECKING blocks: they hide a cycle, they do not break it), resolved to the modules of
    `known` (default: the package's)."""
    known = MODULES if known is None else known
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            candidates = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in candidates if name in known and name.startswith("superpoint_ros.")}
    return found - {"superpoint_ros"}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """Each package module's imports of package modules (parsed when a test asks: every worker
    collects this module)."""
    return {name: imported_modules(path) for name, path in MODULES.items()}


def test_the_package_has_the_three_layers():
    layers = {layer(name) for name in MODULES}
    assert layers == {"core", "ros", "tools"}
    assert "superpoint_ros.detector" in MODULES and "superpoint_ros.ros.node" in MODULES


@pytest.mark.parametrize("name", sorted(set(MODULES) - FORWARDERS))
def test_imports_point_from_tools_to_ros_to_core(graph, name):
    allowed = {"core": {"core"}, "ros": {"core", "ros"}, "tools": {"core", "ros", "tools"}}[layer(name)]
    wrong = {target for target in graph[name] if layer(target) not in allowed}
    assert not wrong, f"{name} ({layer(name)}) imports {sorted(wrong)}"


@pytest.mark.parametrize("name", sorted(FORWARDERS))
def test_a_forwarding_module_only_re_exports_its_ros_node(graph, name):
    assert graph[name] == {name.replace("superpoint_ros.", "superpoint_ros.ros.")}
    assert len(MODULES[name].read_text().splitlines()) <= 12


def test_no_import_cycle_between_package_modules(graph):
    state: dict[str, str] = {}
    cycles = []

    def visit(name, path):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target] if target in path else [name, target])
            elif target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, f"import cycles: {cycles}"


def test_the_cycle_check_sees_an_import_hidden_in_a_function(tmp_path):
    (tmp_path / "a.py").write_text("from superpoint_ros.b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from superpoint_ros.a import y\n")
    known = {"superpoint_ros.a", "superpoint_ros.b"}
    assert imported_modules(tmp_path / "a.py", known) == {"superpoint_ros.b"}
    assert imported_modules(tmp_path / "b.py", known) == {"superpoint_ros.a"}


def loaded_after_import(modules: list[str]) -> set[str]:
    """Top-level names in `sys.modules` after a fresh interpreter imports `modules`."""
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules)
    code += "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_importing_every_core_module_loads_no_rclpy():
    core = sorted(name for name in MODULES if layer(name) == "core" and name not in FORWARDERS)
    loaded = loaded_after_import(core)
    assert "superpoint_ros" in loaded
    assert "rclpy" not in loaded


def test_the_camera_stand_in_and_the_image_codec_load_no_torch():
    loaded = loaded_after_import(["superpoint_ros.tools.camera_sim", "superpoint_ros.image_codec"])
    assert "rclpy" in loaded  # the camera stand-in is a ROS publisher: the check imported it
    assert "torch" not in loaded


LIGHT_MODULES = [
    "superpoint_ros.feature_types",
    "superpoint_ros.image_codec",
    "superpoint_ros.drawing",
    "superpoint_ros.ros.ros_messages",
    "superpoint_ros.tools.camera_sim",
    "superpoint_ros.ros.batcher",
    "superpoint_ros.ros.parameters",
    "superpoint_ros.ros.node",
    "superpoint_ros.ros.detector_parameters",
    "superpoint_ros.ros.tracker_parameters",
    "superpoint_ros.detector_choice",
    "superpoint_ros.openvino_detector",
    "superpoint_ros.openvino_ir",
    "superpoint_ros.openvino_engine",
    "superpoint_ros.numpy_images",
    "superpoint_ros.numpy_keypoints",
    "superpoint_ros.weights_files",
    # superpoint-bag: the tracker (torch) and int8 calibration on frames load on demand.
    "superpoint_ros.bags",
    # `make demo` and `superpoint-detect`: the detector is picked by detector_choice.
    "superpoint_ros.tools.demo",
    "superpoint_ros.cli",
]


def first_to_load_torch(modules: list[str], path: pathlib.Path | None = None) -> str | None:
    """In one fresh interpreter (with `path` first on its module path), import `modules` in
    turn: the first after whose import torch is loaded, or None. None proves that no module of
    the list loads torch, since each import below would have loaded it."""
    code = (
        "import importlib, sys\n"
        f"sys.path[:0] = {[str(path)] if path else []!r}\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'torch' in sys.modules:\n"
        "        print(name)\n"
        "        break\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() or None


def test_light_modules_load_no_torch():
    assert first_to_load_torch(LIGHT_MODULES) is None


def test_the_light_module_check_names_the_first_module_that_loads_torch(tmp_path):
    # A stand-in for a module that imports torch: it registers a module of that name.
    (tmp_path / "pulls_in_torch.py").write_text("import sys, types\nsys.modules['torch'] = types.ModuleType('torch')\n")
    modules = ["superpoint_ros.feature_types", "pulls_in_torch", "superpoint_ros.cli"]
    assert first_to_load_torch(modules, tmp_path) == "pulls_in_torch"
    assert first_to_load_torch(modules[:1] + modules[2:], tmp_path) is None


def test_the_moved_names_are_still_importable_from_their_old_modules():
    from superpoint_ros import backends, detector, feature_types, images, model, tracking, weights

    assert detector.DetectionSettings is feature_types.DetectionSettings
    assert detector.Detections is feature_types.Detections and callable(detector.Detector)
    assert tracking.Tracks is feature_types.Tracks and tracking.TrackingSettings is feature_types.TrackingSettings
    assert tracking.CameraTracks is feature_types.CameraTracks and tracking.VERIFICATIONS == feature_types.VERIFICATIONS
    assert images.MIN_SIDE == feature_types.MIN_SIDE == model.CELL_SIZE
    assert backends.BACKENDS == feature_types.BACKENDS and weights.RANDOM_WEIGHTS == feature_types.RANDOM_WEIGHTS


@pytest.mark.parametrize(
    ("module", "parameter", "reason"),
    [
        ("superpoint_ros.node", "input_qos:=fast", "input_qos must be one of"),
        ("superpoint_ros.tracker_node", "verification:=magic", "verification must be one of"),
    ],
)
def test_the_old_module_paths_still_start_the_nodes(module, parameter, reason):
    """`python -m superpoint_ros.node` / `.tracker_node`, as scripts wrote it before the ROS layer
    moved to `superpoint_ros.ros`: the node's own start-up runs and refuses a bad value in one line."""
    environment = {**os.environ, "ROS_DOMAIN_ID": str(private_domain_id())}
    command = [sys.executable, "-m", module, "--ros-args", "-p", parameter]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode != 0
    assert reason in result.stderr + result.stdout, result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_the_python_entry_points_of_the_core_still_import():
    from superpoint_ros.cli import main as detect_main
    from superpoint_ros.detector import Detections, DetectionSettings, Detector
    from superpoint_ros.export import main as export_main
    from superpoint_ros.tracking import Tracker

    assert all(callable(thing) for thing in (detect_main, export_main, Detector, Tracker))
    assert DetectionSettings().nms_radius == 4 and Detections.__dataclass_fields__.keys() == {
        "keypoints",
        "scores",
        "descriptors",
    }
