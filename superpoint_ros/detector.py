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

import dataclasses
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.nn import functional

from superpoint_ros.backends import build_network, engine_description, resolve_backend
from superpoint_ros.images import check_image, to_grey_batch
from superpoint_ros.keypoints import sample_descriptors, select_keypoints, simple_nms, to_original_pixels
from superpoint_ros.weights import DEFAULT_WEIGHTS, load_model


@dataclasses.dataclass(frozen=True)
class DetectionSettings:
    """The knobs that may change between two frames.

    - `keypoint_threshold`: keep pixels whose score is above this (0 keeps every NMS survivor).
    - `nms_radius`: pixels; a keypoint must be the maximum of its (2r+1)² window (0: no NMS).
    - `max_keypoints`: keep the best this many per image; −1 keeps all.
    - `border_removal_distance`: pixels; drop keypoints closer than this to the image edge.
    """

    keypoint_threshold: float = 0.005
    nms_radius: int = 4
    max_keypoints: int = -1
    border_removal_distance: int = 4

    def __post_init__(self) -> None:
        if not 0.0 <= self.keypoint_threshold < 1.0:
            raise ValueError(f"keypoint_threshold must be in [0, 1), got {self.keypoint_threshold}")
        if self.nms_radius < 0:
            raise ValueError(f"nms_radius must be >= 0, got {self.nms_radius}")
        if self.max_keypoints < -1:
            raise ValueError(f"max_keypoints must be -1 (all) or >= 0, got {self.max_keypoints}")
        if self.border_removal_distance < 0:
            raise ValueError(f"border_removal_distance must be >= 0, got {self.border_removal_distance}")


@dataclasses.dataclass(frozen=True)
class Detections:
    """One image's keypoints, sorted by score, descending.

    `keypoints` `(N, 2)` float32 pixels (x, y) in the input image's grid; `scores` `(N,)`
    float32; `descriptors` `(N, D)` float32, each row of unit length.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    descriptors: np.ndarray


def resolve_device(device: str | torch.device) -> torch.device:
    """`auto` is CUDA when available, else the CPU; an explicit CUDA device must exist."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from error
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for, but torch sees no CUDA GPU")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist: torch sees {torch.cuda.device_count()} GPU(s)")
    elif resolved.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return resolved


class Detector:
    """SuperPoint from weights to per-image detections.

    `weights` is a hub repo id, a local directory or file, or `"random"` (with `seed`); see
    `superpoint_ros.weights`. `resize` is an optional `(height, width)` every image is scaled to
    before the network; keypoints are still reported in the original image's pixels.
    `settings` can be replaced between calls (`detector.settings = DetectionSettings(...)`);
    each `detect` call reads it once.

    `backend` picks the engine that runs the network (`superpoint_ros.backends`): `"auto"` is
    OpenVINO on the CPU when installed, else PyTorch. `precision` `"float16"`/`"bfloat16"` (CUDA)
    or `"bfloat16"` (OpenVINO) is an opt-in speed mode whose keypoints and descriptors drift from
    float32's beyond the parity tolerances (see BENCHMARKS.md). `backend="onnxruntime"` runs the
    network in ONNX Runtime; `backend` then also names its execution provider, e.g.
    `"onnxruntime (CPUExecutionProvider)"`, and TensorRT keeps its engines in
    `tensorrt_cache_dir` (default `~/.cache/superpoint_ros/tensorrt`).

    On CUDA with the torch backend, `cuda_graphs` (default on) replays each input shape's pipeline
    as a CUDA graph (`superpoint_ros.cuda_graphs`), with the same results; should CUDA refuse the
    capture, a warning says so and the detector goes on without graphs.
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
    ) -> None:
        self.settings = DetectionSettings(keypoint_threshold, nms_radius, max_keypoints, border_removal_distance)
        if resize is not None and (len(resize) != 2 or min(resize) < 8):
            raise ValueError(f"resize must be (height, width) of at least 8 pixels each, got {resize}")
        self.resize = tuple(resize) if resize is not None else None
        self.device = resolve_device(device)
        backend = resolve_backend(backend, self.device)
        self.precision = precision
        self.model = load_model(weights, weights_revision, seed).to(self.device)
        self.network = build_network(self.model, backend, self.device, precision, tensorrt_cache_dir)
        self.backend = engine_description(backend, self.network)
        self.graphs = None
        if cuda_graphs and self.device.type == "cuda" and backend == "torch":
            from superpoint_ros.cuda_graphs import GraphedPipeline

            self.graphs = GraphedPipeline(self.network, self.device, self.descriptor_size)

    @property
    def descriptor_size(self) -> int:
        return self.model.architecture.descriptor_decoder_dim

    def detect(self, images: Sequence[np.ndarray], channel_order: str = "bgr") -> list[Detections]:
        """Detect in each image. Colour images are BGR unless `channel_order="rgb"`.

        Images of equal shape and dtype run through the network as one batch. Raises
        `images.ImageError` (a `ValueError` naming the problem, such as a side under 8 pixels)
        before any work if one image cannot be taken.
        """
        for image in images:
            check_image(image)
        groups: dict[tuple, list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault((image.shape, image.dtype), []).append(index)
        results: list[Detections | None] = [None] * len(images)
        settings = self.settings
        for indices in groups.values():
            batch = [images[i] for i in indices]
            for index, detections in zip(indices, self.detect_batch(batch, channel_order, settings), strict=True):
                results[index] = detections
        return results

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
        grey = to_grey_batch(images, self.device, channel_order)
        height, width = grey.shape[-2:]
        if self.resize is not None and self.resize != (height, width):
            grey = functional.interpolate(grey, size=self.resize, mode="bilinear", align_corners=False, antialias=True)
        mark("preprocess")
        if self.graphs is not None:
            graphed = self._detect_with_graphs(grey, settings, (height, width), mark)
            if graphed is not None:
                return graphed
        scores, descriptor_map = self.network(grey)
        mark("network")
        scores = simple_nms(scores, settings.nms_radius)
        keypoints, keypoint_scores, counts = select_keypoints(
            scores, settings.keypoint_threshold, settings.border_removal_distance, settings.max_keypoints
        )
        original_keypoints = to_original_pixels(keypoints, tuple(grey.shape[-2:]), (height, width))
        mark("postprocess")
        descriptors = sample_descriptors(descriptor_map, keypoints)
        mark("descriptors")
        keypoints, keypoint_scores, descriptors = _to_host(original_keypoints, keypoint_scores, descriptors)
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
        from superpoint_ros.cuda_graphs import GraphCaptureError

        try:
            results = self.graphs(grey, settings, original_size)
        except GraphCaptureError as error:
            warnings.warn(f"{error}; running without CUDA graphs from now on", RuntimeWarning, stacklevel=3)
            self.graphs = None
            return None
        for stage in ("network", "postprocess", "descriptors", "to_host"):
            mark(stage)
        return [Detections(*arrays) for arrays in results]


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
    host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
    host.copy_(packed, non_blocking=True)
    torch.cuda.current_stream(packed.device).synchronize()
    host = host.numpy()
    return host[..., :2], host[..., 2], host[..., 3:]
