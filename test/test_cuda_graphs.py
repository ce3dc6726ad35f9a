"""The CUDA-graph pipeline's device-agnostic parts, run on the CPU: the captured function with
its fixed keypoint capacity and packed results, the capacity growth when a batch finds more
keypoints than fit, the graph cache (eviction, batches alternating 1 and 2), the capture's
error handling and the detector's fallback. The capture and replay themselves need a GPU
(`superpoint_ros.tools.gpu_check`)."""

import contextlib
import dataclasses

import numpy as np
import pytest
import torch

from superpoint_ros.cuda_graphs import GraphCaptureError, GraphedPipeline, capture, run_pipeline, unpack
from superpoint_ros.detector import DetectionSettings, Detector
from superpoint_ros.images import to_grey_batch

from conftest import structured_image

CPU = torch.device("cpu")


@dataclasses.dataclass
class EagerGraph:
    """What a capture fixes: the settings, the original size and the keypoint capacity."""

    settings: DetectionSettings
    original_size: tuple[int, int]
    capacity: int


class EagerReplays(GraphedPipeline):
    """The pipeline's bookkeeping with each 'capture' recording what it fixed and each 'replay'
    running it eagerly on the CPU, recording capacities."""

    initial_capacity = 16

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.capacities: list[int] = []

    def _capture(self, grey, settings, original_size, capacity) -> EagerGraph:
        return EagerGraph(settings, original_size, capacity)

    def _replay(self, entry: EagerGraph, grey) -> np.ndarray:
        self.capacities.append(entry.capacity)
        return run_pipeline(self._network, grey, entry.settings, entry.original_size, entry.capacity).numpy()


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
    # The graph for 16 keypoints is gone, not kept beside the grown one.
    assert pipeline.captures == 2 and [key[-1] for key in pipeline._graphs] == [grown]


def test_max_keypoints_is_the_capacity_and_zero_keypoints_unpack_to_empty_arrays(detector):
    images = [structured_image(64, 80, 6)]
    pipeline = EagerReplays(detector.network, CPU, detector.descriptor_size)
    with torch.inference_mode():
        best = pipeline(to_grey_batch(images, CPU), DetectionSettings(0.0, 1, 9, 4), (64, 80))
        (none,) = pipeline(to_grey_batch(images, CPU), DetectionSettings(0.0, 1, 0, 4), (64, 80))
    assert pipeline.capacities == [9, 0]
    assert_same_detections(best, detector.detect_batch(images, settings=DetectionSettings(0.0, 1, 9, 4)))
    assert [array.shape for array in none] == [(0, 2), (0,), (0, detector.descriptor_size)]


def test_a_batch_alternating_between_one_and_two_frames_captures_two_graphs_and_no_more(detector):
    frames = [structured_image(64, 80, seed) for seed in (7, 8)]
    pipeline = EagerReplays(detector.network, CPU, detector.descriptor_size)
    pipeline.initial_capacity = 4096  # room for every keypoint: no growth here
    settings = DetectionSettings()
    with torch.inference_mode():
        for _ in range(3):
            one = pipeline(to_grey_batch(frames[:1], CPU), settings, (64, 80))
            two = pipeline(to_grey_batch(frames, CPU), settings, (64, 80))
    assert pipeline.captures == 2
    assert_same_detections(one, detector.detect_batch(frames[:1], settings=settings))
    assert_same_detections(two, detector.detect_batch(frames, settings=settings))


def test_the_least_recently_used_graph_goes_when_more_than_kept_graphs_are_needed(detector):
    pipeline = EagerReplays(detector.network, CPU, detector.descriptor_size)
    pipeline.initial_capacity = 4096
    sizes = [(64, 80), (72, 80), (64, 88), (72, 88), (80, 80)]
    assert len(sizes) == pipeline.kept_graphs + 1
    with torch.inference_mode():
        for height, width in sizes:
            pipeline(to_grey_batch([structured_image(height, width, 1)], CPU), DetectionSettings(), (height, width))
        kept = [key[0][-2:] for key in pipeline._graphs]
        # The first size was evicted by the fifth; asking for it again captures it again.
        pipeline(to_grey_batch([structured_image(64, 80, 1)], CPU), DetectionSettings(), (64, 80))
    assert kept == sizes[1:]
    assert pipeline.captures == len(sizes) + 1


def test_a_refused_capture_is_a_graph_capture_error_and_the_detector_goes_on_without_graphs(sharp_hf_weights):
    class RefusingPipeline(EagerReplays):
        def _capture(self, grey, settings, original_size, capacity):
            raise RuntimeError("operation not permitted when stream is capturing")

    detector = Detector(weights=str(sharp_hf_weights), device="cpu", backend="torch")
    images = [structured_image(64, 80, 2)]
    expected = detector.detect_batch(images)
    pipeline = RefusingPipeline(detector.network, CPU, detector.descriptor_size)
    with pytest.raises(GraphCaptureError, match="not permitted"), torch.inference_mode():
        pipeline(to_grey_batch(images, CPU), DetectionSettings(), (64, 80))
    assert pipeline.captures == 0 and not pipeline._graphs
    detector.graphs = pipeline
    with pytest.warns(RuntimeWarning, match="running without CUDA graphs from now on"):
        (result,) = detector.detect_batch(images)
    assert detector.graphs is None
    np.testing.assert_array_equal(result.keypoints, expected[0].keypoints)
    np.testing.assert_array_equal(result.descriptors, expected[0].descriptors)


class RecordingGraph:
    """A stand-in `CUDAGraph` that records the calls `capture` makes and can fail at its end."""

    def __init__(self, end_fails: bool = False) -> None:
        self.calls: list[str] = []
        self.end_fails = end_fails

    def capture_begin(self, capture_error_mode: str) -> None:
        self.calls.append(f"begin {capture_error_mode}")

    def capture_end(self) -> None:
        self.calls.append("end")
        if self.end_fails:
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture")


@contextlib.contextmanager
def recording_stream(calls: list[str]):
    calls.append("capture stream current")
    try:
        yield
    finally:
        calls.append("caller's stream current")


def test_a_capture_runs_in_thread_local_mode_on_the_stream_it_is_given():
    graph = RecordingGraph()
    assert capture(graph, recording_stream(graph.calls), lambda: "packed") == "packed"
    assert graph.calls == ["capture stream current", "begin thread_local", "end", "caller's stream current"]


def test_a_capture_whose_end_fails_still_gives_the_caller_its_stream_back():
    graph = RecordingGraph(end_fails=True)
    with pytest.raises(RuntimeError, match="during capture"):
        capture(graph, recording_stream(graph.calls), lambda: "packed")
    assert graph.calls[-1] == "caller's stream current"


def test_a_capture_that_the_pipeline_broke_is_ended_and_the_pipeline_error_goes_on():
    graph = RecordingGraph(end_fails=True)

    def broken() -> None:
        raise RuntimeError("operation not permitted when stream is capturing")

    with pytest.raises(RuntimeError, match="not permitted"):
        capture(graph, recording_stream(graph.calls), broken)
    assert graph.calls == ["capture stream current", "begin thread_local", "end", "caller's stream current"]
