"""`superpoint-export`: the ONNX file's interface, and its outputs in ONNX Runtime against
transformers' SuperPoint (an independent implementation) and our PyTorch network."""

import numpy as np
import pytest
import torch

from superpoint_ros import export
from superpoint_ros.images import to_grey_batch
from superpoint_ros.weights import load_model

from conftest import structured_image
from helpers import DESCRIPTOR_TOLERANCE, SCORE_TOLERANCE, needs

onnxruntime = pytest.importorskip("onnxruntime")
pytestmark = needs("onnx", "transformers")

from superpoint_ros.tools.reference import reference_raw_scores  # noqa: E402


@pytest.fixture(scope="module")
def dynamic_onnx(sharp_hf_weights, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "superpoint.onnx"
    assert export.main(["--onnx", str(path), "--weights", str(sharp_hf_weights)]) == 0
    return path


def dimensions(value_info) -> list:
    return [dim.dim_param or dim.dim_value for dim in value_info.type.tensor_type.shape.dim]


def test_the_file_has_the_documented_opset_names_and_dynamic_dimensions(dynamic_onnx):
    import onnx

    model = onnx.load(dynamic_onnx)
    onnx.checker.check_model(model, full_check=True)
    assert {(entry.domain, entry.version) for entry in model.opset_import} == {("", 17)}
    (image,) = model.graph.input
    scores, descriptors = model.graph.output
    assert (image.name, scores.name, descriptors.name) == ("image", "scores", "descriptors")
    assert dimensions(image) == ["batch", 1, "height", "width"]
    assert dimensions(scores) == ["batch", "score_height", "score_width"]
    # The exporter leaves the channel count symbolic (normalisation expands a computed shape).
    assert [dimensions(descriptors)[axis] for axis in (0, 2, 3)] == ["batch", "cells_high", "cells_wide"]
    assert image.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_fixed_height_and_width_are_written_into_the_file(hf_weights, tmp_path, capsys):
    path = tmp_path / "fixed.onnx"
    arguments = ["--onnx", str(path), "--weights", str(hf_weights), "--height", "120", "--width", "160", "--batch", "2"]
    assert export.main(arguments) == 0
    assert "input 'image' float32 2×1×120×160" in capsys.readouterr().out
    import onnx

    model = onnx.load(path)
    assert dimensions(model.graph.input[0]) == [2, 1, 120, 160]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores, descriptors = session.run(None, {"image": np.zeros((2, 1, 120, 160), np.float32)})
    assert scores.shape == (2, 120, 160) and descriptors.shape == (2, 256, 15, 20)


@pytest.mark.parametrize("height, width", [(64, 80), (70, 93), (240, 320), (123, 45)])
def test_onnx_runtime_gives_the_reference_scores_and_our_descriptors(
    dynamic_onnx, sharp_hf_weights, sharp_reference_model, height, width
):
    images = [structured_image(height, width, seed) for seed in (3, 4)]
    grey = to_grey_batch(images, torch.device("cpu"))
    session = onnxruntime.InferenceSession(str(dynamic_onnx), providers=["CPUExecutionProvider"])
    scores, descriptors = session.run(["scores", "descriptors"], {"image": grey.numpy()})
    assert scores.shape == (2, 8 * (height // 8), 8 * (width // 8))
    reference = reference_raw_scores(sharp_reference_model, images).numpy()
    assert np.abs(scores - reference).max() <= SCORE_TOLERANCE
    with torch.inference_mode():
        our_scores, our_descriptors = load_model(str(sharp_hf_weights))(grey)
    assert np.abs(scores - our_scores.numpy()).max() <= SCORE_TOLERANCE
    assert np.abs(descriptors - our_descriptors.numpy()).max() <= DESCRIPTOR_TOLERANCE
    print(f"{height}x{width}: max |score - reference| {np.abs(scores - reference).max():.1e}")


def test_unusable_weights_and_sizes_end_with_one_line_and_status_2(tmp_path, capsys):
    assert export.main(["--onnx", str(tmp_path / "a.onnx"), "--weights", str(tmp_path / "missing.safetensors")]) == 2
    assert "superpoint-export: Weights file" in capsys.readouterr().err
    assert export.main(["--onnx", str(tmp_path / "b.onnx"), "--weights", "random", "--height", "4"]) == 2
    assert "height must be at least 8" in capsys.readouterr().err
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "b.onnx").exists()
