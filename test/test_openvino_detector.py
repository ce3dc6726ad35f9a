"""The torch-free OpenVINO detector (openvino_detector, openvino_ir, detector_choice): the same
keypoints as `Detector` on the same engine, no torch in its process, its network cache, its
errors, and when it is chosen.

`Detector(backend="openvino")` is the oracle here: test_backends holds it to transformers'
SuperPoint. Both run the same OpenVINO graph, so keypoints and scores must be equal bit for bit;
descriptors agree to the rounding of the numpy sampling (test_numpy_keypoints.py).
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("openvino")

from superpoint_ros import calibration, detector_choice, openvino_ir  # noqa: E402
from superpoint_ros.detector import Detector  # noqa: E402
from superpoint_ros.feature_types import MIT, DetectionSettings  # noqa: E402
from superpoint_ros.images import ImageError  # noqa: E402
from superpoint_ros.openvino_detector import OpenVinoDetector  # noqa: E402
from superpoint_ros.weights_files import WeightsError  # noqa: E402

from conftest import make_hf_weights, structured_image  # noqa: E402
from helpers import CONFIGURATIONS  # noqa: E402

ROUNDING = 1e-6


@pytest.fixture(scope="module")
def network_cache(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("openvino_networks")


@pytest.fixture(scope="module")
def detector_pair(sharp_hf_weights, network_cache):
    return (
        OpenVinoDetector(weights=str(sharp_hf_weights), network_cache_dir=network_cache),
        Detector(weights=str(sharp_hf_weights), device="cpu", backend="openvino"),
    )


def assert_same_detections(found, expected) -> None:
    assert len(found) == len(expected)
    for ours, theirs in zip(found, expected, strict=True):
        np.testing.assert_array_equal(ours.keypoints, theirs.keypoints)
        np.testing.assert_array_equal(ours.scores, theirs.scores)
        np.testing.assert_allclose(ours.descriptors, theirs.descriptors, rtol=0, atol=ROUNDING)


@pytest.mark.parametrize("settings", CONFIGURATIONS, ids=str)
def test_it_finds_what_detector_finds_on_the_same_engine(detector_pair, settings):
    ours, theirs = detector_pair
    frames = [structured_image(120, 160, seed) for seed in range(2)]
    found, expected = ours.detect(frames, settings=settings), theirs.detect(frames, settings=settings)
    assert sum(len(result.scores) for result in expected) > 0
    assert_same_detections(found, expected)


def test_mixed_shapes_grey_frames_and_odd_sizes_come_back_in_order(detector_pair):
    ours, theirs = detector_pair
    colour = structured_image(70, 93, 3)
    frames = [colour, colour[..., 0].copy(), structured_image(64, 80, 4), colour[::-1].copy()]
    assert_same_detections(ours.detect(frames), theirs.detect(frames))
    with pytest.raises(ImageError, match="at least 8x8"):
        ours.detect([colour, np.zeros((4, 40), np.uint8)])


def test_it_describes_itself_as_the_node_reads_a_detector(detector_pair):
    ours, theirs = detector_pair
    for name in ("backend", "engine", "precision", "architecture", "descriptor_size"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.device.type == "cpu" and str(ours.device) == str(theirs.device)


@pytest.fixture(scope="module")
def random_mit(network_cache):
    return OpenVinoDetector(weights="random", architecture=MIT, network_cache_dir=network_cache)


def test_the_mit_network_runs_torch_free_too(random_mit):
    ours = random_mit
    theirs = Detector(weights="random", architecture=MIT, device="cpu", backend="openvino")
    assert ours.architecture == MIT
    frames = [structured_image(96, 128, 5)]
    assert_same_detections(ours.detect(frames), theirs.detect(frames))


def test_its_process_never_imports_torch(sharp_hf_weights, network_cache, detector_pair):
    script = f"""
import sys
import numpy as np
from superpoint_ros.detector_choice import create_detector
detector = create_detector(weights={str(sharp_hf_weights)!r}, device="auto", network_cache_dir={str(network_cache)!r})
(result,) = detector.detect([np.full((64, 80, 3), 90, np.uint8)])
print(type(detector).__name__, "torch" in sys.modules, "openvino" in sys.modules)
"""
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert output.stdout.split() == ["OpenVinoDetector", "False", "True"]


def test_a_second_start_loads_the_cached_network_without_a_child(sharp_hf_weights, network_cache, detector_pair):
    first, _ = detector_pair
    # No interpreter to start a child with: only the cache can serve this one.
    second = OpenVinoDetector(weights=str(sharp_hf_weights), network_cache_dir=network_cache, python="/nonexistent")
    assert not second.prepared.prepared_now and second.prepared.graph_path == first.prepared.graph_path
    frames = [structured_image(64, 80, 1)]
    assert_same_detections(second.detect(frames), first.detect(frames))
    with pytest.raises(openvino_ir.PreparationError, match="cannot start /nonexistent"):
        OpenVinoDetector(weights="random", seed=7, network_cache_dir=network_cache, python="/nonexistent")


class Heard:
    """A logger that keeps what it hears."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, message: str) -> None:
        self.lines.append(("info", message))

    def warning(self, message: str) -> None:
        self.lines.append(("warning", message))

    def error(self, message: str) -> None:
        self.lines.append(("error", message))


def test_a_cache_that_cannot_be_written_falls_back_to_detector_with_a_warning(tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(openvino_ir.PreparationError, match="Not a directory"):
        OpenVinoDetector(weights="random", network_cache_dir=not_a_directory / "cache")
    heard = Heard()
    detector = detector_choice.create_detector(
        weights="random", device="cpu", network_cache_dir=not_a_directory / "cache", logger=heard
    )
    assert isinstance(detector, Detector) and detector.backend == "openvino"
    warnings = [message for level, message in heard.lines if level == "warning"]
    assert len(warnings) == 1 and "Not a directory" in warnings[0]
    assert "running the network with torch instead" in warnings[0]


def test_the_cache_follows_the_weights_files_content(sharp_hf_weights, network_cache, detector_pair, tmp_path):
    """A copy of the same file is the same network (no child); new values in it are a new one."""
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes((sharp_hf_weights / "model.safetensors").read_bytes())
    copy = OpenVinoDetector(weights=str(weights), network_cache_dir=network_cache, python="/nonexistent")
    assert copy.prepared.graph_path == detector_pair[0].prepared.graph_path
    make_hf_weights(weights, seed=99)  # same names and shapes, another random network's values
    changed = OpenVinoDetector(weights=str(weights), network_cache_dir=network_cache)
    assert changed.prepared.prepared_now and changed.prepared.graph_path != copy.prepared.graph_path


def test_one_cache_keeps_the_networks_of_each_architecture_apart(random_mit, network_cache):
    magicleap = OpenVinoDetector(weights="random", network_cache_dir=network_cache)
    assert (magicleap.architecture, random_mit.architecture) == ("magicleap", MIT)
    assert magicleap.prepared.graph_path != random_mit.prepared.graph_path


def test_missing_weights_fail_with_one_clear_sentence(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        OpenVinoDetector(weights=str(tmp_path / "absent.safetensors"), network_cache_dir=tmp_path)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError) as caught:
        OpenVinoDetector(weights=str(broken), network_cache_dir=tmp_path)
    assert str(broken) in str(caught.value) and "\n" not in str(caught.value)
    assert not list(tmp_path.glob("superpoint_network_*.json"))


def test_int8_is_quantised_by_the_child_and_then_loaded_from_the_cache(tmp_path):
    pytest.importorskip("nncf")
    arguments = dict(
        weights="random",
        precision="int8",
        calibration_count=2,
        calibration_shape=(64, 80),
        quantization_cache_dir=str(tmp_path / "int8"),
        network_cache_dir=tmp_path / "networks",
    )
    first = OpenVinoDetector(**arguments)
    assert first.prepared.prepared_now and first.prepared.graph_path.parent == tmp_path / "int8"
    theirs = Detector(
        weights="random", device="cpu", precision="int8", **{k: arguments[k] for k in list(arguments)[2:5]}
    )
    assert theirs.quantized_model_path == first.prepared.graph_path
    frames = [structured_image(64, 80, 2)]
    assert_same_detections(first.detect(frames), theirs.detect(frames))
    second = OpenVinoDetector(**arguments, python="/nonexistent/python")
    assert not second.prepared.prepared_now and second.precision == "int8"


def test_its_constants_are_the_ones_of_the_modules_it_avoids_importing():
    assert openvino_ir.CALIBRATION_COUNT == calibration.CALIBRATION_COUNT


def test_the_child_reports_an_architecture_mismatch_as_a_weights_error(hf_weights, tmp_path):
    with pytest.raises(WeightsError, match="architecture 'mit' was asked for"):
        OpenVinoDetector(weights=str(hf_weights), architecture=MIT, network_cache_dir=tmp_path)


def test_a_manifest_whose_files_are_gone_is_not_trusted(tmp_path):
    manifest = tmp_path / "superpoint_network_x.json"
    manifest.write_text(
        json.dumps({"graph_path": str(tmp_path / "gone.xml"), "architecture": MIT, "descriptor_size": 256})
    )
    assert openvino_ir.read_manifest(manifest) is None
    manifest.write_text("{not json")
    assert openvino_ir.read_manifest(manifest) is None


def test_cuda_is_ruled_out_by_a_cpu_build_of_torch_or_a_missing_driver(tmp_path):
    import torch

    driver = tmp_path / "version"
    if torch.version.cuda is None:
        assert not detector_choice.cuda_possible(driver)
        driver.write_text("NVRM version: 1")
        assert not detector_choice.cuda_possible(driver)  # the build decides
    else:
        assert not detector_choice.cuda_possible(driver)
        driver.write_text("NVRM version: 1")
        assert detector_choice.cuda_possible(driver)


@pytest.mark.parametrize(
    "arguments, torch_free",
    [
        (dict(device="cpu", backend="auto", precision="float32"), True),
        (dict(device="auto", backend="openvino", precision="bfloat16"), True),
        (dict(device="cpu", backend="auto", precision="int8", calibration="scenes"), True),
        (dict(device="cpu", backend="auto", precision="float32", calibration="frames"), False),
        (dict(device="cpu", backend="torch", precision="float32"), False),
        (dict(device="cpu", backend="onnxruntime", precision="float32"), False),
        (dict(device="cuda", backend="auto", precision="float32"), False),
        (dict(device="cpu", backend="auto", precision="float32", resize=(240, 320)), False),
    ],
)
def test_the_torch_free_detector_is_chosen_only_where_it_gives_detectors_results(arguments, torch_free):
    if arguments["device"] == "auto" and detector_choice.cuda_possible():
        pytest.skip("a CUDA GPU may be present: auto means Detector on it")
    assert detector_choice.runs_without_torch(**arguments) is torch_free


def test_the_node_process_loads_no_torch_on_the_cpu():
    """The node as users start it on a CPU machine (device auto), up to a processed frame; its
    network (random weights) was prepared in the user's cache before the tests (conftest)."""
    script = """
import sys
import numpy as np
import rclpy
from rclpy.parameter import Parameter
from superpoint_ros.ros.node import create
rclpy.init()
node = create(parameter_overrides=[Parameter("weights", value="random")])
(result,) = node.detector.detect([np.full((64, 80, 3), 90, np.uint8)], "bgr", node.settings)
print(type(node.detector).__name__, node.get_parameter("backend").value, "torch" in sys.modules)
node.destroy_node()
rclpy.shutdown()
"""
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert output.stdout.split()[-3:] == ["OpenVinoDetector", "openvino", "False"]


def test_settings_travel_with_each_call(detector_pair):
    ours, _ = detector_pair
    frame = [structured_image(96, 128, 9)]
    few = ours.detect(frame, settings=DetectionSettings(max_keypoints=5))[0]
    assert len(few.scores) == 5 and len(ours.detect(frame)[0].scores) > 5
