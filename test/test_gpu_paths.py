"""The CUDA paths' device-agnostic parts, run on the CPU: cuDNN and TF32 switches set in a scope
and restored, ONNX Runtime's IO binding (the code that keeps results on a GPU, here on the CPU
provider) against a plain session, the CUDA version mismatch line, and the device guard. What
needs a GPU is checked by `superpoint_ros.tools.gpu_check`."""

import threading

import numpy as np
import pytest
import torch

from superpoint_ros.backends import CudaTorchNetwork, cuda_settings, onnxruntime_cuda_mismatch
from superpoint_ros.images import device_guard
from superpoint_ros.weights import load_model

CPU = torch.device("cpu")


def switches() -> tuple[bool, bool, bool]:
    return (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
    )


@pytest.fixture
def process_switches():
    """The process's switches set to a known state for the test, and put back after it."""
    saved = switches()
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = False, True
    torch.backends.cuda.matmul.allow_tf32 = True
    yield (False, True, True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_cuda_settings_hold_inside_the_scope_and_are_restored_after_an_error(process_switches):
    with pytest.raises(RuntimeError, match="inside"), cuda_settings(autotune=True, tf32=False):
        assert switches() == (True, False, False)
        with cuda_settings(autotune=False, tf32=False):
            assert switches() == (False, False, False)
        assert switches() == (True, False, False)
        raise RuntimeError("inside")
    assert switches() == process_switches


def test_a_scope_of_another_thread_waits_for_this_one(process_switches):
    seen_by_the_other_thread = []
    started = threading.Event()

    def other() -> None:
        started.set()
        with cuda_settings(autotune=False, tf32=True):
            seen_by_the_other_thread.append(switches())

    with cuda_settings(autotune=True, tf32=False):
        thread = threading.Thread(target=other)
        thread.start()
        assert started.wait(timeout=10)
        thread.join(timeout=0.5)
        assert not seen_by_the_other_thread  # blocked until this scope ends
        assert switches() == (True, False, False)
    thread.join(timeout=10)
    assert seen_by_the_other_thread == [(False, True, True)]
    assert switches() == process_switches


class SwitchSpy(torch.nn.Module):
    """A module that records the switches in force while it runs."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seen: list[tuple[bool, bool, bool]] = []

    def forward(self, grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append(switches())
        return self.model(grey)


def test_the_cuda_network_sets_autotuning_and_tf32_only_around_its_own_calls(process_switches):
    spy = SwitchSpy(load_model("random", None, 0))
    network = CudaTorchNetwork(spy, "float32")
    assert switches() == process_switches  # building it changes nothing process-wide
    with torch.inference_mode():
        network(torch.rand(1, 1, 32, 40))
        network.autotune = False
        network(torch.rand(1, 1, 32, 40))
    assert spy.seen == [(True, False, False), (False, False, False)]
    assert switches() == process_switches


def test_onnxruntime_through_io_binding_gives_what_a_plain_session_gives():
    onnxruntime = pytest.importorskip("onnxruntime")
    from superpoint_ros.backends import OnnxRuntimeNetwork
    from superpoint_ros.export import onnx_bytes

    model = load_model("random", None, 3)
    network = OnnxRuntimeNetwork(model, CPU)
    # A non-contiguous view: the binding must hand ONNX Runtime a dense copy, not the view's buffer.
    grey = torch.rand(2, 1, 93, 70).transpose(2, 3)
    with torch.inference_mode():
        scores, descriptor_map = network(grey)
    session = onnxruntime.InferenceSession(onnx_bytes(model), providers=["CPUExecutionProvider"])
    expected_scores, expected_descriptors = session.run(None, {"image": grey.contiguous().numpy()})
    assert scores.device == CPU and descriptor_map.device == CPU
    np.testing.assert_array_equal(scores.numpy(), expected_scores)
    np.testing.assert_array_equal(descriptor_map.numpy(), expected_descriptors)


def test_onnxruntime_decides_precision_by_the_provider_that_loaded_not_the_one_asked_for(monkeypatch, tmp_path, caplog):
    onnxruntime = pytest.importorskip("onnxruntime")
    from superpoint_ros.backends import OnnxRuntimeNetwork

    # TensorRT claimed but absent: ONNX Runtime falls back to the CPU with only a warning, as it
    # does where TensorRT's libraries are missing.
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    )
    model = load_model("random", None, 0)
    ignored_by_onnxruntime = pytest.warns(UserWarning, match="TensorrtExecutionProvider")
    with caplog.at_level("INFO", logger="superpoint_ros.backends"), ignored_by_onnxruntime:
        network = OnnxRuntimeNetwork(model, CPU, "float32", tmp_path)
    assert network.provider == "CPUExecutionProvider"
    assert "could not load TensorrtExecutionProvider and runs on CPUExecutionProvider" in caplog.text
    assert "runs float32 on CPUExecutionProvider" in caplog.text
    refused = pytest.raises(ValueError, match="'float16' is not offered .* on CPUExecutionProvider")
    with refused, pytest.warns(UserWarning, match="TensorrtExecutionProvider"):
        OnnxRuntimeNetwork(model, CPU, "float16", tmp_path)


def test_onnxruntime_built_for_another_cuda_major_than_torch_is_named_in_one_line():
    line = onnxruntime_cuda_mismatch("12.2", "13.0")
    assert line is not None and "\n" not in line
    assert "CUDA 12.2" in line and "CUDA 13.0" in line and "CUDA 13" in line
    assert onnxruntime_cuda_mismatch("13.0", "13.0") is None
    assert onnxruntime_cuda_mismatch("12.8", "12.4") is None  # minor versions are compatible
    assert onnxruntime_cuda_mismatch(None, "13.0") is None  # a CPU-only onnxruntime
    assert onnxruntime_cuda_mismatch("12.2", None) is None  # a CPU build of torch


def test_the_device_guard_makes_cuda_n_current_and_does_nothing_for_the_cpu():
    guard = device_guard(torch.device("cuda:1"))
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    with device_guard(CPU):
        pass
