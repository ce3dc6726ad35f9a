"""Network engines: choosing one, and each engine against transformers' SuperPoint.

The PyTorch engine is held to exact keypoint sets in test_parity.py. OpenVINO and ONNX Runtime
(CPU provider) round differently (raw scores within ~1e-7 of the reference's), so on the
scenes' flat regions, where
neighbouring pixels score exactly alike, NMS may keep the other one of two equal maxima. The
allowance here is only that: every keypoint present on one side only must lie within reach of a
near-tie in the reference's raw score map (`reference.unexplained_differences`). Scores and
descriptors of the common keypoints keep test_parity's tolerances.
"""

import dataclasses

import numpy as np
import pytest
import torch

from superpoint_ros.backends import BACKENDS, resolve_backend
from superpoint_ros.detector import DetectionSettings, Detector

from conftest import structured_image
from helpers import (
    CONFIGURATIONS,
    DESCRIPTOR_TOLERANCE,
    FULL_RESOLUTION_CONFIGURATIONS,
    SCORE_TOLERANCE,
    agreement,
    cpu_engine,
    needs,
)

pytestmark = needs("transformers")
pytest.importorskip("openvino")

from superpoint_ros.tools.reference import check_against_reference, unexplained_differences  # noqa: E402

CPU = torch.device("cpu")


def test_auto_picks_openvino_on_the_cpu_when_it_is_installed():
    assert resolve_backend("auto", CPU) == "openvino"
    assert Detector(weights="random", device="cpu").backend == "openvino"


def test_auto_picks_torch_on_a_gpu_and_openvino_is_refused_there():
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError, match="CPU only"):
        resolve_backend("openvino", torch.device("cuda"))


def test_unknown_backends_and_reduced_precision_without_an_engine_for_it_are_refused():
    with pytest.raises(ValueError, match="backend must be one of"):
        Detector(weights="random", device="cpu", backend="tensorrt")
    with pytest.raises(ValueError, match="not offered on the CPU"):
        Detector(weights="random", device="cpu", precision="float16")
    with pytest.raises(ValueError, match="not offered on the CPU"):
        Detector(weights="random", device="cpu", backend="torch", precision="bfloat16")


def assert_parity_up_to_near_ties(detector, model, images, settings, label):
    complete = dataclasses.replace(settings, max_keypoints=-1)
    report = check_against_reference(detector, model, images, complete)
    raw = "not needed" if report.raw_difference is None else f"{report.raw_difference:.1e}"
    print(
        f"{label} {settings}: {[c.count for c in report.comparisons]} keypoints, "
        f"{report.rounding_flips} flipped on near-ties (raw score difference {raw}), "
        f"max score diff {max(c.score_difference for c in report.comparisons):.1e}, "
        f"max descriptor diff {max(c.descriptor_difference for c in report.comparisons):.1e}"
    )
    assert report.failures(SCORE_TOLERANCE, DESCRIPTOR_TOLERANCE) == []
    # Top-k is engine-independent: it must keep the best k of the complete set.
    if settings.max_keypoints >= 0:
        detector.settings = complete
        everything = detector.detect(images)
        detector.settings = settings
        for best, full in zip(detector.detect(images), everything, strict=True):
            assert len(best.scores) == min(settings.max_keypoints, len(full.scores))
            np.testing.assert_array_equal(best.scores, full.scores[: len(best.scores)])


def engine_cases(configurations: list[DetectionSettings], onnxruntime_picks: list[int]) -> list:
    """Every configuration on OpenVINO; on ONNX Runtime, whose rounding differs from PyTorch's in
    the same way, the ones at `onnxruntime_picks`, to keep the suite fast."""
    return [pytest.param("openvino", settings, id=f"openvino-{settings}") for settings in configurations] + [
        pytest.param("onnxruntime", configurations[index], id=f"onnxruntime-{configurations[index]}")
        for index in onnxruntime_picks
    ]


@pytest.mark.parametrize("backend, settings", engine_cases(CONFIGURATIONS, list(range(len(CONFIGURATIONS)))))
def test_engine_matches_reference_on_small_batches(hf_weights, reference_model, settings, backend):
    detector = cpu_engine(str(hf_weights), backend)
    images = [structured_image(64, 80, seed) for seed in range(3)]
    assert_parity_up_to_near_ties(detector, reference_model, images, settings, f"{backend} 64x80 batch3")


# ONNX Runtime: NMS radius 1 without threshold, the default settings, and top-k with a wide border.
@pytest.mark.parametrize("backend, settings", engine_cases(CONFIGURATIONS, [1, 6, 11]))
def test_engine_matches_reference_where_thresholds_bite(sharp_hf_weights, sharp_reference_model, settings, backend):
    detector = cpu_engine(str(sharp_hf_weights), backend)
    images = [structured_image(240, 320, seed) for seed in range(3)]
    assert_parity_up_to_near_ties(detector, sharp_reference_model, images, settings, f"{backend} 240x320 batch3 sharp")


@pytest.mark.parametrize("backend, settings", engine_cases(FULL_RESOLUTION_CONFIGURATIONS, [0]))
def test_engine_matches_reference_on_a_full_resolution_frame(
    sharp_hf_weights, sharp_reference_model, settings, backend
):
    detector = cpu_engine(str(sharp_hf_weights), backend)
    images = [structured_image(480, 640, 7)]
    assert_parity_up_to_near_ties(detector, sharp_reference_model, images, settings, f"{backend} 480x640 batch1 sharp")


def test_onnxruntime_matches_reference_on_a_size_not_divisible_by_eight(sharp_hf_weights, sharp_reference_model):
    detector = cpu_engine(str(sharp_hf_weights), "onnxruntime")
    images = [structured_image(70, 93, seed) for seed in (11, 12)]
    settings = DetectionSettings(0.005, 2, -1, 3)
    assert_parity_up_to_near_ties(detector, sharp_reference_model, images, settings, "onnxruntime 70x93 batch2")


def test_onnxruntime_names_its_execution_provider_and_refuses_precisions_it_lacks(tmp_path):
    pytest.importorskip("onnxruntime")
    assert "onnxruntime" in BACKENDS and resolve_backend("auto", CPU) != "onnxruntime"
    detector = Detector(weights="random", device="cpu", backend="onnxruntime", tensorrt_cache_dir=str(tmp_path))
    assert detector.backend == "onnxruntime (CPUExecutionProvider)"
    for precision in ("float16", "bfloat16"):
        with pytest.raises(ValueError, match="float16 with the TensorRT provider"):
            Detector(weights="random", device="cpu", backend="onnxruntime", precision=precision)


def test_openvino_hands_over_its_descriptor_map_channels_last_with_the_modules_values():
    detector = Detector(weights="random", device="cpu", backend="openvino")
    grey = torch.rand(2, 1, 64, 80)
    scores, descriptor_map = detector.network(grey)
    with torch.no_grad():
        module_scores, module_map = detector.model(grey)
    assert descriptor_map.shape == module_map.shape == (2, 256, 8, 10)
    assert descriptor_map.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(descriptor_map, module_map, rtol=0, atol=1e-6)
    torch.testing.assert_close(scores, module_scores, rtol=0, atol=1e-6)


def test_a_difference_far_from_any_near_tie_is_not_explained():
    scores = torch.linspace(0.1, 0.9, 40 * 50, dtype=torch.float64).reshape(40, 50).float()
    scores[20, 10] = scores[20, 12] = 0.5  # an exact tie, two pixels apart
    settings = DetectionSettings(keypoint_threshold=0.005, nms_radius=2)
    # Reach of the tie: 4 · radius = 8 pixels.
    assert unexplained_differences([(12, 20), (18, 27), (21, 20), (40, 5)], scores, 1e-7, settings) == [
        (21, 20),
        (40, 5),
    ]


def test_a_score_at_the_threshold_is_explained():
    scores = torch.full((8, 8), 0.3)
    scores[4, 4] = 0.005 + 5e-8
    settings = DetectionSettings(keypoint_threshold=0.005, nms_radius=0)
    assert unexplained_differences([(4, 4), (1, 1)], scores, 1e-7, settings) == [(1, 1)]


def test_openvino_bfloat16_stays_close_to_float32(sharp_hf_weights):
    images = [structured_image(240, 320, seed) for seed in range(2)]
    float32 = Detector(weights=str(sharp_hf_weights), device="cpu", backend="openvino")
    bfloat16 = Detector(weights=str(sharp_hf_weights), device="cpu", backend="openvino", precision="bfloat16")
    close = agreement(bfloat16.detect(images), float32.detect(images))
    print(close)
    assert close["keypoint_overlap"] > 0.9
    assert close["cosine_min"] > 0.999
