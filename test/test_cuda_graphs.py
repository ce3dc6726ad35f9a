"""The CUDA-graph pipeline's device-agnostic parts, run on the CPU: the captured function with
its fixed keypoint capacity and packed results, and the capacity growth when a batch finds more
keypoints than fit. The capture and replay themselves need a GPU (`superpoint_ros.gpu_check`)."""

import numpy as np
import pytest
import torch

from superpoint_ros.cuda_graphs import GraphedPipeline, run_pipeline, unpack
from superpoint_ros.detector import DetectionSettings, Detector
from superpoint_ros.images import to_grey_batch

from conftest import structured_image

CPU = torch.device("cpu")


class EagerReplays(GraphedPipeline):
    """The pipeline's bookkeeping with each 'replay' run eagerly on the CPU, recording capacities."""

    initial_capacity = 16

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.capacities: list[int] = []

    def _replay(self, key, grey, settings, original_size, capacity) -> np.ndarray:
        self.capacities.append(capacity)
        return run_pipeline(self._network, grey, settings, original_size, capacity).numpy()


def assert_same_detections(ours: list[tuple[np.ndarray, ...]], expected) -> None:
    """Equal scores in equal order, and each pixel with the same score and descriptor: exactly
    equal scores may come in either order, as topk leaves that open."""
    for (keypoints, scores, descriptors), detections in zip(ours, expected, strict=True):
        np.testing.assert_array_equal(scores, detections.scores)
        rows = {tuple(point): row for row, point in enumerate(detections.keypoints.tolist())}
        assert len(rows) == len(keypoints)
        for row, point in enumerate(keypoints.tolist()):
            np.testing.assert_array_equal(descriptors[row], detections.descriptors[rows[tuple(point)]])
            assert scores[row] == detections.scores[rows[tuple(point)]]


@pytest.fixture(scope="module")
def detector(sharp_hf_weights):
    return Detector(weights=str(sharp_hf_weights), device="cpu", backend="torch")


@pytest.mark.parametrize(
    "settings", [DetectionSettings(), DetectionSettings(0.0, 1, -1, 0), DetectionSettings(0.005, 4, 7, 8)], ids=str
)
def test_the_captured_function_packs_what_the_eager_pipeline_returns(detector, settings):
    images = [structured_image(70, 93, seed) for seed in (1, 2)]
    expected = detector.detect_batch(images, settings=settings)
    grey = to_grey_batch(images, CPU)
    with torch.inference_mode():
        packed = run_pipeline(detector.network, grey, settings, (70, 93), capacity=5000)
    keypoints, scores, descriptors, counts = unpack(packed.numpy(), detector.descriptor_size)
    assert counts.tolist() == [len(result.scores) for result in expected]
    assert_same_detections(
        [(keypoints[b, :n], scores[b, :n], descriptors[b, :n]) for b, n in enumerate(counts)], expected
    )


def test_a_resized_batch_comes_back_in_original_pixels(sharp_hf_weights):
    resized = Detector(weights=str(sharp_hf_weights), device="cpu", backend="torch", resize=(64, 80))
    images = [structured_image(100, 130, 5)]
    expected = resized.detect_batch(images)
    grey = torch.nn.functional.interpolate(
        to_grey_batch(images, CPU), size=(64, 80), mode="bilinear", align_corners=False, antialias=True
    )
    with torch.inference_mode():
        packed = run_pipeline(resized.network, grey, resized.settings, (100, 130), capacity=1000)
    keypoints, scores, descriptors, counts = unpack(packed.numpy(), resized.descriptor_size)
    assert_same_detections([(keypoints[0, : counts[0]], scores[0, : counts[0]], descriptors[0, : counts[0]])], expected)


def test_a_batch_with_more_keypoints_than_room_runs_again_with_the_next_power_of_two(detector):
    images = [structured_image(64, 80, seed) for seed in (3, 4)]
    settings = DetectionSettings(0.0, 1, -1, 4)
    expected = detector.detect_batch(images, settings=settings)
    most = max(len(result.scores) for result in expected)
    assert most > 16
    pipeline = EagerReplays(detector.network, CPU, detector.descriptor_size)
    with torch.inference_mode():
        assert_same_detections(pipeline(to_grey_batch(images, CPU), settings, (64, 80)), expected)
        again = pipeline(to_grey_batch(images, CPU), settings, (64, 80))
    grown = 1 << (most - 1).bit_length()
    assert pipeline.capacities == [16, grown, grown]  # the grown capacity is kept for the next batch
    assert_same_detections(again, expected)


def test_max_keypoints_is_the_capacity_and_zero_keypoints_unpack_to_empty_arrays(detector):
    images = [structured_image(64, 80, 6)]
    pipeline = EagerReplays(detector.network, CPU, detector.descriptor_size)
    with torch.inference_mode():
        best = pipeline(to_grey_batch(images, CPU), DetectionSettings(0.0, 1, 9, 4), (64, 80))
        (none,) = pipeline(to_grey_batch(images, CPU), DetectionSettings(0.0, 1, 0, 4), (64, 80))
    assert pipeline.capacities == [9, 0]
    assert_same_detections(best, detector.detect_batch(images, settings=DetectionSettings(0.0, 1, 9, 4)))
    assert [array.shape for array in none] == [(0, 2), (0,), (0, detector.descriptor_size)]
