"""int8 on the CPU: calibration images, quantisation, its cache, and how close it stays to float32.

The weights are random (`bench_scenes.benchmark_weights`: keypoints that follow the image), so
the agreement floors below say that quantisation did not break the network, not how good int8
SuperPoint is with trained weights. Calibration and detection run at 120×160 (`resize`) to keep
these tests to seconds.
"""

import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from superpoint_ros.backends import check_precision
from superpoint_ros.calibration import calibration_scenes, read_calibration_images
from superpoint_ros.detector import Detector
from superpoint_ros.frame_calibration import FrameCalibration
from superpoint_ros.tools.bench_scenes import benchmark_scene, benchmark_weights

from helpers import agreement, needs

pytest.importorskip("openvino")
pytestmark = needs("nncf", "transformers")

SIZE = (120, 160)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    return str(benchmark_weights(tmp_path_factory.mktemp("benchmark_weights")))


def int8_detector(weights: str, cache_dir, **options) -> Detector:
    return Detector(
        weights=weights, device="cpu", precision="int8", resize=SIZE, quantization_cache_dir=str(cache_dir), **options
    )


def refuse_to_quantise(monkeypatch) -> None:
    def quantize(*args, **kwargs):
        raise AssertionError("nncf.quantize was called: the cache was not used")

    import nncf

    monkeypatch.setattr(nncf, "quantize", quantize)


def test_calibration_scenes_span_the_full_range_with_texture_at_every_scale():
    scenes = calibration_scenes(4, *SIZE)
    assert len(scenes) == 4 and all(scene.shape == SIZE and scene.dtype == np.uint8 for scene in scenes)
    for scene in scenes:
        assert scene.min() == 0 and scene.max() == 255
        assert len(np.unique(scene)) > 200
        # A photograph has detail at fine and coarse scales: the scene differs from its blurred
        # self both at 1 px and at 8 px.
        for sigma in (1, 8):
            assert np.abs(scene.astype(float) - cv2.GaussianBlur(scene, (0, 0), sigma)).mean() > 2
    assert not np.array_equal(scenes[0], scenes[1])
    np.testing.assert_array_equal(calibration_scenes(1, *SIZE)[0], scenes[0])


def test_calibration_images_are_read_in_name_order_as_grey_at_the_calibration_shape(tmp_path):
    for name, value, shape in (("b.png", 200, (30, 40, 3)), ("a.jpg", 50, (60, 80)), ("c.png", 99, (10, 10))):
        cv2.imwrite(str(tmp_path / name), np.full(shape, value, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    images = read_calibration_images(tmp_path, count=2, shape=SIZE)
    assert [image.shape for image in images] == [SIZE, SIZE]
    assert [int(image[0, 0]) for image in images] == [50, 200]


def test_a_calibration_directory_without_images_is_refused_with_its_name(tmp_path):
    with pytest.raises(ValueError, match="holds no readable image"):
        read_calibration_images(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        read_calibration_images(tmp_path / "missing")


def test_int8_is_refused_where_no_engine_runs_it():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    with pytest.raises(ValueError, match="openvino backend on the CPU only"):
        Detector(weights="random", device="cpu", backend="torch", precision="int8")
    with pytest.raises(ValueError, match="openvino backend on the CPU only"):
        check_precision("torch", cuda, "int8")
    check_precision("openvino", cpu, "int8")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            Detector(weights="random", device="cuda", precision="int8")


def test_int8_without_nncf_is_refused_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(ValueError, match="pip install nncf=="):
        Detector(weights="random", device="cpu", precision="int8")


def test_int8_finds_keypoints_with_finite_unit_descriptors_close_to_float32(weights, tmp_path):
    int8 = int8_detector(weights, tmp_path, calibration_count=4)
    float32 = Detector(weights=weights, device="cpu", resize=SIZE)
    assert int8.precision == "int8" and int8.quantized_model_path.parent == tmp_path
    images = [benchmark_scene(*SIZE, seed) for seed in range(2)]
    results = int8.detect(images)
    for result in results:
        assert len(result.keypoints) > 20
        assert np.isfinite(result.descriptors).all()
        np.testing.assert_allclose(np.linalg.norm(result.descriptors, axis=1), 1.0, atol=1e-5)
    close = agreement(results, float32.detect(images))
    print(close)
    # Measured: 0.96 of the keypoints, cosine ≥ 0.9994 (random weights; see the module docstring).
    assert close["keypoint_overlap"] > 0.85
    assert close["cosine_min"] > 0.98


def test_a_second_start_loads_the_cached_model_without_quantising(weights, tmp_path, monkeypatch):
    image = benchmark_scene(*SIZE, 5)
    first = int8_detector(weights, tmp_path, calibration_count=2)
    (expected,) = first.detect([image])
    path = first.quantized_model_path
    written = path.stat().st_mtime_ns
    refuse_to_quantise(monkeypatch)
    second = int8_detector(weights, tmp_path, calibration_count=2)
    assert second.quantized_model_path == path and path.stat().st_mtime_ns == written
    assert sorted(file.name for file in tmp_path.iterdir()) == [path.with_suffix(".bin").name, path.name]
    (found,) = second.detect([image])
    np.testing.assert_array_equal(found.keypoints, expected.keypoints)
    np.testing.assert_array_equal(found.descriptors, expected.descriptors)
    # Other calibration images are another model.
    with pytest.raises(AssertionError, match="cache was not used"):
        int8_detector(weights, tmp_path, calibration_count=3)


def test_a_start_from_the_cache_does_not_import_nncf(weights, tmp_path):
    # NNCF costs ~36 MB of RSS in the node; only quantising needs it. A fresh process, since
    # this one has imported it already.
    int8_detector(weights, tmp_path, calibration_count=2)
    start = (
        "import sys; from superpoint_ros.detector import Detector; "
        f"detector = Detector(weights={weights!r}, device='cpu', precision='int8', resize={SIZE}, "
        f"quantization_cache_dir={str(tmp_path)!r}, calibration_count=2); "
        "print(detector.precision, 'nncf' in sys.modules)"
    )
    completed = subprocess.run([sys.executable, "-c", start], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split()[-2:] == ["int8", "False"]


def test_frame_calibration_runs_float32_until_the_int8_network_takes_over(weights, tmp_path, monkeypatch):
    frames = [benchmark_scene(*SIZE, seed) for seed in range(3)]
    detector = Detector(weights=weights, device="cpu", resize=SIZE, quantization_cache_dir=str(tmp_path))
    calibration = FrameCalibration(detector, count=2)
    float32 = Detector(weights=weights, device="cpu", resize=SIZE)
    assert detector.precision == "float32" and calibration.wants_frames
    (before,) = detector.detect(frames[:1])
    np.testing.assert_array_equal(before.keypoints, float32.detect(frames[:1])[0].keypoints)
    for frame in frames[:2]:
        calibration.offer(frame)
    assert not calibration.wants_frames
    wait_for_int8(detector)
    assert detector.detect(frames[2:])[0].descriptors.shape[1] == 256
    # The next start with this camera shape loads that model on the first frame.
    refuse_to_quantise(monkeypatch)
    again = Detector(weights=weights, device="cpu", resize=SIZE, quantization_cache_dir=str(tmp_path))
    FrameCalibration(again, count=2).offer(frames[2])
    wait_for_int8(again)
    assert again.quantized_model_path == detector.quantized_model_path


def test_frame_calibration_is_no_detector_argument():
    with pytest.raises(ValueError, match="FrameCalibration"):
        Detector(weights="random", device="cpu", precision="int8", calibration="frames")


def wait_for_int8(detector: Detector, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while detector.precision != "int8":
        assert time.monotonic() < deadline, "the int8 network did not take over"
        time.sleep(0.05)


def test_an_unwritable_cache_directory_is_refused_with_a_clear_error(weights, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the cache directory should be")
    with pytest.raises(ValueError, match="cannot write the int8 model cache"):
        int8_detector(weights, blocker / "cache", calibration_count=1)
