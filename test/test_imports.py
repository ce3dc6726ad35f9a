"""The light modules stay light: a camera stand-in, the codec, the drawing and the messages load no
torch, and no module of the package imports another that imports it back."""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "superpoint_ros"


def loaded_after_import(module: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after `import module`."""
    code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(result.stdout.split())


@pytest.mark.parametrize(
    "module",
    [
        "superpoint_ros.feature_types",
        "superpoint_ros.image_codec",
        "superpoint_ros.drawing",
        "superpoint_ros.ros_messages",
        "superpoint_ros.camera_sim",
        "superpoint_ros.batcher",
        "superpoint_ros.parameters",
        "superpoint_ros.node",
        "superpoint_ros.detector_parameters",
        "superpoint_ros.tracker_parameters",
    ],
)
def test_light_modules_load_no_torch(module):
    assert "torch" not in loaded_after_import(module)


def package_imports(path: pathlib.Path) -> set[str]:
    """The `superpoint_ros` modules `path` imports, at any depth of its code (function-local and
    `TYPE_CHECKING` imports included: they hide a cycle, they do not break it)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("superpoint_ros."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("superpoint_ros."))
    return names - {"msg"}


def test_no_module_of_the_package_takes_part_in_an_import_cycle():
    graph = {path.stem: package_imports(path) for path in PACKAGE.glob("*.py")}
    finished: set[str] = set()
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        for imported in sorted(graph.get(module, ())):
            if imported in trail:
                cycles.append([*trail[trail.index(imported) :], imported])
            elif imported not in finished:
                visit(imported, [*trail, imported])
        finished.add(module)

    for module in sorted(graph):
        if module not in finished:
            visit(module, [module])
    assert not cycles, f"import cycles: {cycles}"


def test_the_cycle_check_sees_a_cycle_hidden_in_a_function(tmp_path):
    (tmp_path / "a.py").write_text("from superpoint_ros.b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from superpoint_ros.a import y\n")
    assert package_imports(tmp_path / "a.py") == {"b"} and package_imports(tmp_path / "b.py") == {"a"}


def test_the_moved_names_are_still_importable_from_their_old_modules():
    from superpoint_ros import backends, detector, feature_types, images, model, tracking, weights

    assert detector.DetectionSettings is feature_types.DetectionSettings
    assert detector.Detections is feature_types.Detections and callable(detector.Detector)
    assert tracking.Tracks is feature_types.Tracks and tracking.TrackingSettings is feature_types.TrackingSettings
    assert tracking.CameraTracks is feature_types.CameraTracks and tracking.VERIFICATIONS == feature_types.VERIFICATIONS
    assert images.MIN_SIDE == feature_types.MIN_SIDE == model.CELL_SIZE
    assert backends.BACKENDS == feature_types.BACKENDS and weights.RANDOM_WEIGHTS == feature_types.RANDOM_WEIGHTS
