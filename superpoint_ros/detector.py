"""`Detector`: images in, keypoints, scores and descriptors out. The node, the CLI and the
benchmark all run this one pipeline.

```python
from superpoint_ros.detector import Detector
detector = Detector(weights="magic-leap-community/superpoint", device="auto")
result, = detector.detect([cv2.imread("frame.png")])
result.keypoints    # (N, 2) float32 pixels (x right, y down, (0, 0) = centre of top-left pixel)
result.scores       # (N,) float32, descending
result.descriptors  # (N, 256) float32, unit rows
```

Edges: the network pools by 2 three times and floors, so for a size not divisible by 8 the
last `H % 8` rows and `W % 8` columns get no keypoints, and `border_removal_distance` counts
from the edges of that `8*(H//8) × 8*(W//8)` region, exactly as in the reference. An image
under 8 pixels on a side is refused (`images.ImageError`, a `ValueError`).

Float images are intensities in [0, 1]: NaN becomes 0 and values are clipped to [0, 1] before
the network (see `superpoint_ros.images`), so descriptors stay finite and of unit length.
"""

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch
from torch.nn import functional

from superpoint_ros.backends import (
    build_network,
    check_precision,
    engine_description,
    openvino_graph,
    resolve_backend,
)
from superpoint_ros.calibration import CALIBRATION_COUNT, CALIBRATION_SHAPE, calibration_scenes, read_calibration_images
from superpoint_ros.cuda_graphs import GraphCaptureError, GraphedPipeline
from superpoint_ros.devices import resolve_device
from superpoint_ros.feature_types import Detections, DetectionSettings  # noqa: F401 (lived here before)
from superpoint_ros.images import device_guard, to_grey_batch
from superpoint_ros.keypoints import postprocess
from superpoint_ros.numpy_images import run_by_shape
from superpoint_ros.weights import AUTO_ARCHITECTURE, DEFAULT_WEIGHTS, load_model


class Logger(Protocol):
    """Where the detector reports on int8 quantisation: a `logging.Logger`, or a ROS node's."""

    def info(self, message: str) -> None: ...

    def error(self, message: str) -> None: ...


class Detector:
    """SuperPoint from weights to per-image detections.

    `weights` is a hub repo id, a local directory or file, or `"random"` (with `seed`); see
    `superpoint_ros.weights`. `architecture` `"auto"` runs the network the weights hold, Magic
    Leap's or the MIT one; `"magicleap"` or `"mit"` refuses weights of the other (and picks the
    network `"random"` initialises). The attribute `architecture` names the one that runs; its
    grey conversion, network and descriptor sampling are its reference's. `resize` is an
    optional `(height, width)` every image is scaled to before the network; keypoints are still
    reported in the original image's pixels. `settings` is what `detect` uses when not given
    settings of its own (the nodes pass theirs with each call, so that one detector could serve
    several).

    `backend` picks the engine that runs the network (`superpoint_ros.backends`): `"auto"` is
    OpenVINO on the CPU when installed, else PyTorch. `precision` `"float16"`/`"bfloat16"` (CUDA)
    or `"bfloat16"`/`"int8"` (OpenVINO) is an opt-in speed mode whose keypoints and descriptors
    drift from float32's beyond the parity tolerances (see BENCHMARKS.md). `backend="onnxruntime"`
    runs the network in ONNX Runtime; `backend` then also names its execution provider, e.g.
    `"onnxruntime (CPUExecutionProvider)"`, and TensorRT keeps its engines in
    `tensorrt_cache_dir` (default `~/.cache/superpoint_ros/tensorrt`).

    On CUDA with the torch backend, `cuda_graphs` (default on) replays each input shape's pipeline
    as a CUDA graph (`superpoint_ros.cuda_graphs`), with the same results; should CUDA refuse the
    capture, a warning says so and the detector goes on without graphs.

    int8 (`superpoint_ros.quantization`) is calibrated on `calibration_count` images from
    `calibration`: `"scenes"`, our generated photograph-like scenes (the default), or a directory
    of the user's images. Scenes are drawn, and the user's images resized, to
    `calibration_shape` `(height, width)`, by default `resize` or 480×640. (Calibration on a
    live camera's first frames is `superpoint_ros.frame_calibration.FrameCalibration`, around a
    float32 detector.) Quantised models are cached in `quantization_cache_dir` (default
    `quantization.default_cache_dir()`). `logger` hears how the int8 network was obtained.
    """

    def __init__(
        self,
        weights: str = DEFAULT_WEIGHTS,
        device: str | torch.device = "auto",
        keypoint_threshold: float = 0.005,
        nms_radius: int = 4,
        max_keypoints: int = -1,
        border_removal_distance: int = 4,
        resize: tuple[int, int] | None = None,
        weights_revision: str | None = None,
        seed: int = 0,
        backend: str = "auto",
        precision: str = "float32",
        tensorrt_cache_dir: str | None = None,
        cuda_graphs: bool = True,
        calibration: str = "scenes",
        calibration_count: int = CALIBRATION_COUNT,
        calibration_shape: tuple[int, int] | None = None,
        quantization_cache_dir: str | None = None,
        logger: Logger | None = None,
        architecture: str = AUTO_ARCHITECTURE,
    ) -> None:
        self.settings = DetectionSettings(keypoint_threshold, nms_radius, max_keypoints, border_removal_distance)
        if resize is not None and (len(resize) != 2 or min(resize) < 8):
            raise ValueError(f"resize must be (height, width) of at least 8 pixels each, got {resize}")
        self.resize = tuple(resize) if resize is not None else None
        self.device = resolve_device(device)
        backend = resolve_backend(backend, self.device)
        check_precision(backend, self.device, precision)
        self._engine = backend
        self._logger = logger or logging.getLogger(__name__)
        self._quantization_cache_dir = quantization_cache_dir
        self.quantized_model_path = None
        """The int8 model's file in the cache, once there is one."""
        if precision == "int8":
            from superpoint_ros.quantization import check_nncf

            if calibration == "frames":
                raise ValueError(
                    "calibration 'frames' is for a live camera: build a float32 detector and give it to "
                    "superpoint_ros.frame_calibration.FrameCalibration"
                )
            check_nncf()
            if calibration_count < 1:
                raise ValueError(f"calibration_count must be >= 1, got {calibration_count}")
        self.model = load_model(weights, weights_revision, seed, architecture).to(self.device)
        self.architecture = self.model.architecture_name
        if precision == "int8":
            shape = calibration_shape or self.resize or CALIBRATION_SHAPE
            if calibration == "scenes":
                images = calibration_scenes(calibration_count, *shape)
            else:
                images = read_calibration_images(calibration, calibration_count, shape)
            self.precision = "int8"
            self.network = self.int8_network([image.astype(np.float32) / 255 for image in images])
        else:
            self.precision = precision
            self.network = build_network(self.model, backend, self.device, precision, tensorrt_cache_dir)
        self.backend = engine_description(backend, self.network)
        self.graphs = None
        if cuda_graphs and self.device.type == "cuda" and backend == "torch":
            self.graphs = GraphedPipeline(self.network, self.device, self.descriptor_size, self.architecture)

    def release(self) -> None:
        """Free the engine and the weights (and their CUDA memory); the detector is unusable after."""
        device = self.device
        self.network = self.model = self.graphs = None
        if device.type == "cuda":
            torch.cuda.empty_cache()

    @property
    def descriptor_size(self) -> int:
        return self.model.descriptor_size

    @property
    def engine(self) -> str:
        """The engine's name as `backends` knows it: torch, openvino or onnxruntime."""
        return self._engine

    def int8_network(self, calibration: list[np.ndarray] | str, images: list[np.ndarray] | None = None):
        """The int8 engine calibrated on `calibration` (grey float32 images, or the description
        of a set named in the cache, whose `images` are quantised on a cache miss)."""
        from superpoint_ros.quantization import cache_path, quantized_graph

        path = cache_path(self.model, calibration, self._quantization_cache_dir)
        start_s = time.monotonic()
        graph, from_cache = quantized_graph(openvino_graph(self.model), images or calibration, path)
        how = "loaded from" if from_cache else f"quantised in {time.monotonic() - start_s:.1f} s and saved to"
        self._logger.info(f"int8 network {how} {path}")
        self.quantized_model_path = path
        return build_network(self.model, self._engine, self.device, "int8", graph=graph)

    def int8_cache_path(self, description: str):
        """Where the int8 model calibrated on the set `description` is cached."""
        from superpoint_ros.quantization import cache_path

        return cache_path(self.model, description, self._quantization_cache_dir)

    def use_network(self, network, precision: str) -> None:
        """Run `network` (of `precision`) from the next `detect` call on."""
        self.network = network
        self.precision = precision

    def detect(
        self, images: Sequence[np.ndarray], channel_order: str = "bgr", settings: DetectionSettings | None = None
    ) -> list[Detections]:
        """Detect in each image with `settings` (default: `self.settings`). Colour images are BGR
        unless `channel_order="rgb"`.

        Images of equal shape and dtype run through the network as one batch. Raises
        `images.ImageError` (a `ValueError` naming the problem, such as a side under 8 pixels)
        before any work if one image cannot be taken.
        """
        return run_by_shape(images, lambda batch: self.detect_batch(batch, channel_order, settings))

    @torch.inference_mode()
    def detect_batch(
        self,
        images: list[np.ndarray],
        channel_order: str = "bgr",
        settings: DetectionSettings | None = None,
        mark: Callable[[str], None] | None = None,
    ) -> list[Detections]:
        """`detect` for images already known to share shape and dtype (not checked here).

        `mark(stage)` is called after each stage (`preprocess`, `network`, `postprocess`,
        `descriptors`, `to_host`), for the benchmark to time them.
        """
        settings = settings or self.settings
        mark = mark or _no_mark
        height, width = images[0].shape[:2]
        grey = self.network_input(images, channel_order)
        mark("preprocess")
        if self.graphs is not None:
            graphed = self._detect_with_graphs(grey, settings, (height, width), mark)
            if graphed is not None:
                return graphed
        scores, descriptor_map = self.network(grey)
        mark("network")
        keypoints, keypoint_scores, descriptors, counts = postprocess(
            scores, descriptor_map, settings, tuple(grey.shape[-2:]), (height, width),
            mark=mark, architecture=self.architecture,
        )
        keypoints, keypoint_scores, descriptors = _to_host(keypoints, keypoint_scores, descriptors)
        mark("to_host")
        return [
            Detections(keypoints[b, :count], keypoint_scores[b, :count], descriptors[b, :count])
            for b, count in enumerate(counts.tolist())
        ]

    def _detect_with_graphs(
        self, grey: torch.Tensor, settings: DetectionSettings, original_size: tuple[int, int], mark
    ) -> list[Detections] | None:
        """The pipeline after preprocessing as a CUDA graph replay; None if CUDA refused the capture.

        One replay does every stage, so the benchmark sees it all as `network`."""
        try:
            results = self.graphs(grey, settings, original_size)
        except GraphCaptureError as error:
            warnings.warn(f"{error}; running without CUDA graphs from now on", RuntimeWarning, stacklevel=3)
            self.graphs = None
            return None
        for stage in ("network", "postprocess", "descriptors", "to_host"):
            mark(stage)
        return [Detections(*arrays) for arrays in results]

    def network_input(self, images: list[np.ndarray], channel_order: str) -> torch.Tensor:
        """`(B, 1, h, w)` grey float32 in [0, 1] on the device, resized when `resize` is set."""
        grey = to_grey_batch(images, self.device, channel_order, self.architecture)
        if self.resize is not None and self.resize != tuple(grey.shape[-2:]):
            grey = functional.interpolate(grey, size=self.resize, mode="bilinear", align_corners=False, antialias=True)
        return grey


def _no_mark(stage: str) -> None:
    pass


def _to_host(keypoints: torch.Tensor, scores: torch.Tensor, descriptors: torch.Tensor) -> tuple[np.ndarray, ...]:
    """Numpy arrays of `(B, K, 2)`, `(B, K)` and `(B, K, D)` tensors.

    On CPU these are views. From a GPU the three travel as one packed block into pinned memory,
    so that there is one copy and one synchronisation.
    """
    if keypoints.device.type == "cpu":
        return keypoints.numpy(), scores.numpy(), descriptors.numpy()
    packed = torch.cat((keypoints, scores[..., None], descriptors), dim=-1)
    with device_guard(packed.device):
        host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
        host.copy_(packed, non_blocking=True)
        torch.cuda.current_stream(packed.device).synchronize()
    host = host.numpy()
    return host[..., :2], host[..., 2], host[..., 3:]
