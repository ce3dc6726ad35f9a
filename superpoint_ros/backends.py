"""Engines that run the `SuperPoint` network: PyTorch itself, or OpenVINO on the CPU.

Every engine is a callable `network(grey) -> (scores, descriptor_map)` with the shapes and
meaning of `SuperPoint.forward`, taking and returning torch tensors on the detector's device.
The post-processing after it is the same torch code whichever engine ran.
Each runs either network: Magic Leap's (`model.SuperPoint`) or the MIT one
(`model_mit.MitSuperPoint`, whose BatchNorms OpenVINO gets as BatchNorm operations).

- `torch`: the module as it is. On CUDA it runs in `channels_last` with cuDNN's autotuner and
  without TF32, both set only around its own calls (`cuda_settings`), and optionally in half
  precision (not measured yet: no GPU was at hand). On the CPU it keeps
  PyTorch's default layout, whose scores are bit-identical to the reference implementation's.
- `openvino`: the same layers rebuilt as an OpenVINO graph from the module's parameters, compiled
  once per image size. About three times as fast as PyTorch on a 2-core AVX-512 CPU, in
  float32. Its descriptor map comes out channels-last (a permuted view, same shape), which
  halves the time of descriptor sampling (`keypoints.sample_descriptors`). Its scores differ
  from PyTorch's by float rounding (up to ~1e-7), which can only matter where pixels of a
  non-maximum-suppression window score (nearly) alike; see `reference.unexplained_differences`
  and test_backends.py.
- `onnxruntime`: the network exported to ONNX (export.py, in memory at start), run by ONNX
  Runtime on the first available of its TensorRT, CUDA and CPU execution providers. Input and
  outputs are bound where the tensors live (IO binding) when the provider can read them there,
  so on CUDA nothing travels through the host. On the CPU provider its scores
  differ from PyTorch's by rounding, as OpenVINO's do. Never picked by `auto`.
- `auto`: OpenVINO on the CPU when it is installed, else `torch`.

`precision` other than float32 is an opt-in speed mode, off by default because its keypoints and
descriptors drift from the reference's beyond the parity tolerances: float16 or bfloat16 on CUDA,
bfloat16 with OpenVINO on a CPU that has bf16 instructions (about 2× faster here), int8 with
OpenVINO on the CPU (the graph quantised by `superpoint_ros.quantization`, about 4× faster on a
CPU with VNNI). BENCHMARKS.md lists their keypoint overlap and descriptor cosine against float32.

Why one module over 400 lines: the four engines (PyTorch on CPU and CUDA, OpenVINO, ONNX
Runtime) answer one contract and share its checks (`check_precision`, `resolve_backend`); a
reader compares them side by side here.
"""

import contextlib
import logging
import pathlib
import threading
from collections.abc import Callable, Iterator

import numpy as np
import torch

from superpoint_ros.feature_types import BACKENDS, PRECISIONS  # noqa: F401 (re-exported)
from superpoint_ros.model import CELL_SIZE
from superpoint_ros.model_mit import MitSuperPoint, SuperPointNetwork, VggBlock
from superpoint_ros.openvino_engine import OpenVinoEngine, openvino_available

Network = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

ONNXRUNTIME_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
"""The ONNX Runtime execution providers the `onnxruntime` backend tries, best first."""
DEFAULT_TENSORRT_CACHE = pathlib.Path("~/.cache/superpoint_ros/tensorrt")
_TENSORRT = "TensorrtExecutionProvider"
_GPU_PROVIDERS = (_TENSORRT, "CUDAExecutionProvider")
# torch keeps cuDNN's and TF32's switches process-wide; one scope at a time changes them.
_CUDA_SETTINGS_LOCK = threading.RLock()

_log = logging.getLogger(__name__)


@contextlib.contextmanager
def cuda_settings(autotune: bool, tf32: bool) -> Iterator[None]:
    """cuDNN's autotuner (`cudnn.benchmark`) and TF32 convolutions and matmuls as given inside
    the scope, and as they were after it, whatever the scope raised.

    torch holds these switches per process, so a setting left behind by one network would change
    another's numerics (transformers' reference in a parity check, say). Scopes of different
    threads take turns; a scope nested in the same thread is fine.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    with _CUDA_SETTINGS_LOCK:
        saved = (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = autotune, tf32, tf32
        try:
            yield
        finally:
            cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved


def resolve_backend(backend: str, device: torch.device) -> str:
    """The engine `backend` means on `device`; an explicit choice that cannot run raises."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "openvino" if device.type == "cpu" and openvino_available() else "torch"
    if backend == "openvino":
        if device.type != "cpu":
            raise ValueError(f"the openvino backend runs on the CPU only, not on {device}")
        if not openvino_available():
            raise ValueError("backend 'openvino' was asked for, but the openvino package is not installed")
    if backend == "onnxruntime" and not onnxruntime_available():
        raise ValueError(
            "backend 'onnxruntime' was asked for, but the onnxruntime package is not installed "
            "(pip install onnxruntime, or onnxruntime-gpu for the CUDA and TensorRT providers)"
        )
    return backend


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def check_precision(backend: str, device: torch.device, precision: str) -> None:
    """Raise `ValueError` unless `backend` (resolved) on `device` offers `precision`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and backend != "openvino":
        raise ValueError(
            f"precision 'int8' runs with the openvino backend on the CPU only, not with {backend} on {device}"
        )
    if backend == "onnxruntime":
        return  # what it offers depends on its execution provider: `OnnxRuntimeNetwork` checks
    if (
        device.type == "cpu"
        and precision in ("float16", "bfloat16")
        and (backend, precision) != ("openvino", "bfloat16")
    ):
        raise ValueError(
            f"precision {precision!r} is not offered on the CPU with the {backend} backend: "
            "the CPU runs float32, or bfloat16 or int8 with openvino"
        )


def build_network(
    model: SuperPointNetwork,
    backend: str,
    device: torch.device,
    precision: str = "float32",
    tensorrt_cache_dir: str | pathlib.Path | None = None,
    graph=None,
) -> Network:
    """An engine for `model` (already on `device`); `backend` as resolved by `resolve_backend`.

    `tensorrt_cache_dir` is where ONNX Runtime's TensorRT provider keeps the engines it builds
    (default `DEFAULT_TENSORRT_CACHE`); only the `onnxruntime` backend reads it. `graph`: for
    `precision="int8"`, the quantised OpenVINO model (`superpoint_ros.quantization`).
    """
    check_precision(backend, device, precision)
    if backend == "onnxruntime":
        return OnnxRuntimeNetwork(model, device, precision, tensorrt_cache_dir)
    if backend == "openvino":
        return OpenVinoNetwork(model, precision, graph)
    if device.type == "cuda":
        return CudaTorchNetwork(model, precision)
    return model


def engine_description(backend: str, network: Network) -> str:
    """`backend`, naming the execution provider for onnxruntime: `onnxruntime (CPUExecutionProvider)`."""
    if isinstance(network, OnnxRuntimeNetwork):
        return f"{backend} ({network.provider})"
    return backend


class CudaTorchNetwork:
    """The module on a GPU: NHWC convolutions autotuned by cuDNN per input shape (`autotune`),
    optionally under autocast to float16/bfloat16 (softmax and normalisation then still run in
    float32).

    float32 means float32: TF32 convolutions, PyTorch's default on Ampere and later, would move
    scores by ~1e-3 relative, so they are off. Both switches are set around each call only
    (`cuda_settings`), never left behind for other code of the process. `autotune = False`
    keeps cuDNN's heuristic choice of algorithms (the GPU check's parity step does that).
    """

    def __init__(self, model: SuperPointNetwork, precision: str) -> None:
        self.autotune = True
        self.autocast_dtype = None if precision == "float32" else getattr(torch, precision)
        self.model = model.to(memory_format=torch.channels_last)

    def __call__(self, grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grey = grey.contiguous(memory_format=torch.channels_last)
        reduced = self.autocast_dtype is not None
        # No autocast cache: cast weights cached across calls would outlive a CUDA graph's capture.
        with (
            cuda_settings(autotune=self.autotune, tf32=False),
            torch.autocast("cuda", dtype=self.autocast_dtype or torch.float16, enabled=reduced, cache_enabled=False),
        ):
            scores, descriptor_map = self.model(grey)
        return scores.float(), descriptor_map.float().contiguous()


class OpenVinoNetwork:
    """SuperPoint as an OpenVINO graph (`openvino_engine.OpenVinoEngine`), taking and returning
    torch tensors: float32 throughout unless `precision="bfloat16"`, or the int8 `graph` that
    `superpoint_ros.quantization` made of it for `precision="int8"`.

    The float graph is built from the module's parameters (no tracing, so building takes
    milliseconds). The engine compiles it once per image size at batch 1 and runs a batch image
    by image (see `OpenVinoEngine` for why).
    """

    def __init__(self, model: SuperPointNetwork, precision: str = "float32", graph=None) -> None:
        if (precision == "int8") != (graph is not None):
            raise ValueError("an int8 OpenVinoNetwork takes its quantised graph, and only int8 takes one")
        self.engine = OpenVinoEngine(graph if graph is not None else openvino_graph(model), precision)

    def __call__(self, grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores, descriptors = self.engine(grey.numpy(force=True))
        # `(B, h, w, D)` seen as `(B, D, h, w)`: the module's shape with channels-last strides.
        return torch.from_numpy(scores), torch.from_numpy(descriptors).permute(0, 3, 1, 2)


class OnnxRuntimeNetwork:
    """SuperPoint exported to ONNX (`superpoint_ros.export`, every dimension dynamic) in an ONNX
    Runtime session on the first available of `ONNXRUNTIME_PROVIDERS`; `provider` names the one
    that loaded, which decides the precisions offered and is logged.

    The export runs in memory at start (about half a second). The provider is chosen by what the
    installed onnxruntime offers, not by the detector's device: with onnxruntime-gpu on a Jetson
    whose torch is a CPU build, TensorRT runs the network and the CPU the post-processing.
    float32 runs as exported, with the CUDA provider's TF32 switched off (`use_tf32`; TensorRT may
    still pick TF32 kernels on GPUs that have them); `precision="float16"` needs the TensorRT
    provider and builds fp16 engines. TensorRT builds an engine for each new range of input
    shapes, which can take minutes on a Jetson, so engines are kept in `tensorrt_cache_dir`.

    A GPU provider that fails to load (an onnxruntime-gpu built for another CUDA major version
    than the one installed) makes ONNX Runtime fall back with only a warning of its own; the
    fallback is logged here with `onnxruntime_cuda_mismatch`'s diagnosis.
    """

    def __init__(
        self,
        model: SuperPointNetwork,
        device: torch.device,
        precision: str = "float32",
        tensorrt_cache_dir: str | pathlib.Path | None = None,
    ) -> None:
        import onnxruntime

        from superpoint_ros.export import INPUT_NAME, OUTPUT_NAMES, onnx_bytes

        available = onnxruntime.get_available_providers()
        providers = [provider for provider in ONNXRUNTIME_PROVIDERS if provider in available]
        if not providers:
            raise ValueError(f"onnxruntime offers none of {ONNXRUNTIME_PROVIDERS}, only {available}")
        if precision not in ("float32", "float16") or (precision == "float16" and providers[0] != _TENSORRT):
            raise ValueError(_precision_refusal(precision, providers[0]))
        self._device_id = device.index or 0
        gpu = {"device_id": self._device_id}
        options = {
            "CUDAExecutionProvider": {**gpu, "use_tf32": int(precision != "float32")},
            "CPUExecutionProvider": {},
        }
        if providers[0] == "TensorrtExecutionProvider":
            options[providers[0]] = {
                **gpu,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(_cache_directory(tensorrt_cache_dir)),
                "trt_fp16_enable": precision == "float16",
            }
        session_options = onnxruntime.SessionOptions()
        # Idle CPU threads of ONNX Runtime otherwise spin for a while after each run, taking the
        # cores from our post-processing that follows (on 2 cores: +80% post-processing time).
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            onnx_bytes(model), session_options, providers=[(name, options[name]) for name in providers]
        )
        self.provider = self._session.get_providers()[0]
        if self.provider != providers[0]:
            fallback = f"onnxruntime could not load {providers[0]} and runs on {self.provider}"
            mismatch = onnxruntime_cuda_mismatch(onnxruntime_cuda_version(), torch.version.cuda)
            _log.warning(f"{fallback}: {mismatch}" if mismatch else fallback)
        if precision == "float16" and self.provider != _TENSORRT:
            raise ValueError(_precision_refusal(precision, self.provider))
        _log.info(f"onnxruntime runs {precision} on {self.provider}")
        self._input_name, self._output_names = INPUT_NAME, list(OUTPUT_NAMES)

    def __call__(self, grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        on_gpu = grey.device.type == "cuda" and self.provider in _GPU_PROVIDERS
        # What the provider cannot read in place goes through the host; a CUDA tensor the CUDA or
        # TensorRT provider reads where it is, and its results stay on the GPU.
        pixels = grey.float().contiguous() if on_gpu else grey.float().cpu().contiguous()
        binding = self._session.io_binding()
        where = ("cuda", self._device_id) if on_gpu else ("cpu", 0)
        binding.bind_input(self._input_name, *where, np.float32, list(pixels.shape), pixels.data_ptr())
        for name in self._output_names:
            binding.bind_output(name, *where)
        if on_gpu:
            # ONNX Runtime works on a stream of its own: torch's work on the input must be done.
            torch.cuda.current_stream(grey.device).synchronize()
        self._session.run_with_iobinding(binding)
        scores, descriptor_map = (_to_torch(value).to(grey.device) for value in binding.get_outputs())
        return scores, descriptor_map


def _to_torch(value) -> torch.Tensor:
    """An ONNX Runtime `OrtValue` as a tensor on its device, without a copy where DLPack allows;
    through numpy (a host copy) with an onnxruntime whose `OrtValue` lacks DLPack."""
    if hasattr(value, "__dlpack__"):
        return torch.from_dlpack(value)
    return torch.from_numpy(value.numpy())


def _precision_refusal(precision: str, provider: str) -> str:
    return (
        f"precision {precision!r} is not offered with the onnxruntime backend on {provider}: "
        "it runs float32, or float16 with the TensorRT provider"
    )


def onnxruntime_cuda_version() -> str | None:
    """The CUDA version onnxruntime-gpu was built for; None for a CPU-only onnxruntime."""
    try:
        from onnxruntime.capi import build_and_package_info
    except ImportError:
        return None
    return getattr(build_and_package_info, "cuda_version", None)


def onnxruntime_cuda_mismatch(onnxruntime_cuda: str | None, torch_cuda: str | None) -> str | None:
    """One line when onnxruntime-gpu and torch were built for different CUDA major versions (its
    CUDA provider then fails to find its libraries and falls back to the CPU), else None.

    Both arguments are version strings such as `"12.2"` (`build_and_package_info.cuda_version`,
    `torch.version.cuda`), None for a build without CUDA.
    """
    if not onnxruntime_cuda or not torch_cuda:
        return None
    ours, theirs = onnxruntime_cuda.split(".")[0], torch_cuda.split(".")[0]
    if ours == theirs:
        return None
    return (
        f"onnxruntime-gpu is built for CUDA {onnxruntime_cuda} but torch for CUDA {torch_cuda}: install the "
        f"onnxruntime-gpu build for CUDA {theirs}, or its CUDA provider cannot load"
    )


def _cache_directory(directory: str | pathlib.Path | None) -> pathlib.Path:
    path = pathlib.Path(directory or DEFAULT_TENSORRT_CACHE).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"tensorrt_cache_dir {path} cannot be created: {error}") from error
    return path


def openvino_graph(model: SuperPointNetwork):
    """`model`'s forward pass as an OpenVINO model with input `(B, 1, H, W)` of any size and
    outputs scores `(B, H', W')` and descriptors `(B, h, w, D)`: channels last, unlike the module.

    Each convolution is named after its module (`encoder.conv_blocks.0.conv_a`,
    `backbone.0.0.conv`, ...), so that quantisation can leave chosen layers in float32. The MIT
    network's BatchNorms stay BatchNorm operations (after a ReLU they cannot be folded into the
    convolution before them); OpenVINO's compiler fuses them as it sees fit.
    """
    import openvino
    import openvino.opset13 as ops

    def numpy(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().cpu().float().numpy()

    names = {module: name for name, module in model.named_modules()}

    def conv(x, layer: torch.nn.Conv2d, relu: bool):
        pad = layer.padding[0]
        convolution = ops.convolution(
            x, ops.constant(numpy(layer.weight)), [1, 1], [pad, pad], [pad, pad], [1, 1], name=names[layer]
        )
        y = ops.add(convolution, ops.constant(numpy(layer.bias).reshape(1, -1, 1, 1)))
        return ops.relu(y) if relu else y

    def vgg_block(x, block: VggBlock):
        norm = block.bn
        return ops.batch_norm_inference(
            conv(x, block.conv, block.relu),
            *(ops.constant(numpy(tensor)) for tensor in (norm.weight, norm.bias, norm.running_mean, norm.running_var)),
            norm.eps,
        )

    def pool(x):
        return ops.max_pool(x, [2, 2], [1, 1], [0, 0], [0, 0], [2, 2]).output(0)

    images = ops.parameter(openvino.PartialShape([-1, 1, -1, -1]), openvino.Type.f32, name="images")
    x = images
    if isinstance(model, MitSuperPoint):
        for index, stage in enumerate(model.backbone):
            x = pool(x) if index > 0 else x
            for block in stage:
                x = vgg_block(x, block)
        logits = vgg_block(vgg_block(x, model.detector[0]), model.detector[1])
        descriptors = vgg_block(vgg_block(x, model.descriptor[0]), model.descriptor[1])
    else:
        for block in model.encoder.conv_blocks:
            x = conv(conv(x, block.conv_a, relu=True), block.conv_b, relu=True)
            x = pool(x) if block.pool else x
        keypoint_head, descriptor_head = model.keypoint_decoder, model.descriptor_decoder
        logits = conv(conv(x, keypoint_head.conv_score_a, relu=True), keypoint_head.conv_score_b, relu=False)
        descriptors = conv(
            conv(x, descriptor_head.conv_descriptor_a, relu=True), descriptor_head.conv_descriptor_b, relu=False
        )
    probabilities = ops.softmax(logits, 1)
    cell_positions = CELL_SIZE * CELL_SIZE
    probabilities = ops.slice(probabilities, np.array([0]), np.array([cell_positions]), np.array([1]), np.array([1]))
    # depth_first DepthToSpace orders channels as pixel_shuffle does.
    scores = ops.squeeze(ops.depth_to_space(probabilities, "depth_first", CELL_SIZE), np.array([1]))
    # max(sum of squares, 1e-24) under the root = max(norm, 1e-12), torch's `normalize` default.
    descriptors = ops.normalize_l2(descriptors, np.array([1]), 1e-24, "max")
    # Channels last costs the network nothing (its output is reordered from a blocked layout either
    # way) and lets descriptor sampling read each keypoint's neighbours as contiguous runs.
    descriptors = ops.transpose(descriptors, np.array([0, 2, 3, 1]))
    return openvino.Model([scores, descriptors], [images], "superpoint")
