"""`OpenVinoDetector`: `Detector`'s pipeline with OpenVINO on the CPU, without importing torch.

The network is the IR that `openvino_ir.prepare` made of the weights (in a child process, once,
then from the cache); grey conversion and post-processing are the numpy twins of the torch code
(`numpy_images`, `numpy_keypoints`). Keypoints and scores equal those of a `Detector` with
`backend="openvino"` on the same weights; descriptors agree to float rounding
(test_openvino_detector.py). The process saves torch's ~250 MB of RSS (docs/memory.md).

It offers what the detector node uses of `Detector`: `detect`, `detect_batch`, `settings`,
`device`, `engine`, `backend`, `precision`, `architecture`, `descriptor_size` and `release`.
It runs float32, bfloat16, and int8 calibrated on scenes or a directory; `detector_choice`
picks it where it applies.
"""

import dataclasses
import logging
import pathlib
import sys
from collections.abc import Sequence

import numpy as np

from superpoint_ros.feature_types import AUTO_ARCHITECTURE, DEFAULT_WEIGHTS, Detections, DetectionSettings
from superpoint_ros.numpy_images import run_by_shape, to_grey_array
from superpoint_ros.numpy_keypoints import postprocess
from superpoint_ros.openvino_engine import OpenVinoEngine
from superpoint_ros.openvino_ir import CALIBRATION_COUNT, NetworkRequest, prepare

PRECISIONS = ("float32", "bfloat16", "int8")


@dataclasses.dataclass(frozen=True)
class HostDevice:
    """Where an `OpenVinoDetector` runs, read as a `torch.device("cpu")` is read (`type`, `str`)."""

    type: str = "cpu"

    def __str__(self) -> str:
        return self.type


class OpenVinoDetector:
    """SuperPoint from weights to per-image detections with OpenVINO on the CPU, torch-free.

    Arguments mean what `Detector`'s of the same names do. `precision` is one of `PRECISIONS`;
    int8 is calibrated on `"scenes"` or a directory (`calibration`). `network_cache_dir` is where
    prepared networks are kept (default `openvino_ir.default_cache_dir()`), `python` the
    interpreter that prepares one on a cache miss. `logger` hears how the network was obtained.
    """

    engine = "openvino"
    backend = "openvino"
    resize = None
    device = HostDevice()

    def __init__(
        self,
        weights: str = DEFAULT_WEIGHTS,
        keypoint_threshold: float = 0.005,
        nms_radius: int = 4,
        max_keypoints: int = -1,
        border_removal_distance: int = 4,
        weights_revision: str | None = None,
        seed: int = 0,
        precision: str = "float32",
        calibration: str = "scenes",
        calibration_count: int = CALIBRATION_COUNT,
        calibration_shape: tuple[int, int] | None = None,
        quantization_cache_dir: str | None = None,
        logger: logging.Logger | None = None,
        architecture: str = AUTO_ARCHITECTURE,
        network_cache_dir: str | pathlib.Path | None = None,
        python: str = sys.executable,
    ) -> None:
        import openvino

        self.settings = DetectionSettings(keypoint_threshold, nms_radius, max_keypoints, border_removal_distance)
        if precision not in PRECISIONS:
            raise ValueError(f"the torch-free OpenVINO detector runs {PRECISIONS}, not {precision!r}")
        if precision == "int8" and calibration == "frames":
            raise ValueError("calibration 'frames' is for a live camera: use Detector with FrameCalibration")
        if precision == "int8" and calibration_count < 1:
            raise ValueError(f"calibration_count must be >= 1, got {calibration_count}")
        logger = logger or logging.getLogger(__name__)
        request = NetworkRequest(
            weights,
            weights_revision,
            seed,
            architecture,
            precision == "int8",
            calibration,
            calibration_count,
            tuple(calibration_shape) if calibration_shape is not None else None,
            quantization_cache_dir,
        )
        self.prepared = prepare(request, network_cache_dir, python, logger)
        how = "prepared by a child process and saved as" if self.prepared.prepared_now else "loaded from"
        logger.info(f"OpenVINO network ({precision}) {how} {self.prepared.graph_path}")
        self.precision = precision
        self.architecture = self.prepared.architecture
        self.descriptor_size = self.prepared.descriptor_size
        self.network = OpenVinoEngine(openvino.Core().read_model(self.prepared.graph_path), precision)

    def release(self) -> None:
        """Free the engine; the detector is unusable after."""
        self.network = None

    def detect(
        self, images: Sequence[np.ndarray], channel_order: str = "bgr", settings: DetectionSettings | None = None
    ) -> list[Detections]:
        """`Detector.detect`: each image's detections, same-shape images as one batch; raises
        `images.ImageError` before any work if one image cannot be taken."""
        return run_by_shape(images, lambda batch: self.detect_batch(batch, channel_order, settings))

    def detect_batch(
        self, images: list[np.ndarray], channel_order: str = "bgr", settings: DetectionSettings | None = None
    ) -> list[Detections]:
        """`detect` for images already known to share shape and dtype (not checked here)."""
        grey = to_grey_array(images, channel_order, self.architecture)
        scores, descriptor_maps = self.network(grey)
        return [
            Detections(*arrays)
            for arrays in postprocess(scores, descriptor_maps, settings or self.settings, self.architecture)
        ]
