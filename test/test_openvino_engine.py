"""The OpenVINO engine's CPU threads: OpenVINO's own choice, or `OMP_NUM_THREADS` when set, read
back from the model OpenVINO compiled."""

import numpy as np
import pytest

openvino = pytest.importorskip("openvino")
from openvino import opset13  # noqa: E402

from superpoint_ros.openvino_engine import OpenVinoEngine, omp_threads  # noqa: E402


def compiled_threads(monkeypatch, value: str | None) -> int:
    """INFERENCE_NUM_THREADS of the model an engine compiles for its first frame."""
    if value is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
    pixels = opset13.parameter([1, 1, -1, -1], np.float32)
    engine = OpenVinoEngine(openvino.Model([opset13.relu(pixels), opset13.relu(pixels)], [pixels]))
    scores, _ = engine(np.ones((1, 1, 16, 24), np.float32))
    assert scores.shape == (1, 1, 16, 24)
    (request,) = engine._requests.values()
    return int(request.get_compiled_model().get_property("INFERENCE_NUM_THREADS"))


def test_omp_num_threads_caps_the_engine_as_it_caps_torch(monkeypatch):
    # (OpenVINO takes at most the machine's cores, whatever it is asked for.)
    assert compiled_threads(monkeypatch, "1") == 1


@pytest.mark.parametrize("value", [None, "", "0", "-2", "two", "1.5"])
def test_without_a_positive_omp_num_threads_openvino_chooses(monkeypatch, value):
    chosen = compiled_threads(monkeypatch, None)
    assert chosen >= 1
    assert compiled_threads(monkeypatch, value) == chosen
    monkeypatch.setenv("OMP_NUM_THREADS", value or "")
    assert omp_threads() is None
