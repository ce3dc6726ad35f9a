"""`OpenVinoEngine`: an OpenVINO graph of SuperPoint (`backends.openvino_graph`, or its int8
version from `quantization`, or either read from an IR file) run on the CPU, numpy in and numpy
out. No torch: the torch `Detector`'s `backends.OpenVinoNetwork` and the torch-free
`openvino_detector.OpenVinoDetector` both run their network through it.
"""

import os
import threading
from collections import OrderedDict

import numpy as np


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def omp_threads() -> int | None:
    """`OMP_NUM_THREADS` when it is a positive integer, else None. PyTorch takes its CPU threads
    from it and OpenVINO (TBB) does not, so the engine passes it on as INFERENCE_NUM_THREADS: one
    setting caps both. Unset, OpenVINO uses every core. On 2 busy cores, OpenVINO's two threads
    took 20 % more CPU than one for the same frames (2026-12-02, 240×320, one busy loop beside)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


class OpenVinoEngine:
    """`graph` (input `(B, 1, H, W)` of any size; outputs scores `(B, H, W)` and descriptors
    `(B, H/8, W/8, D)`, channels last) compiled for the CPU: float32 throughout unless
    `precision="bfloat16"`; an int8 graph's float parts stay float32.

    The graph is compiled for each new image size at batch 1, and the last `kept_shapes` sizes
    are kept. A batch runs image by image through that one compiled model: a model compiled for
    batch B holds B images' intermediate activations (about 165 MB per 480×640 image), and one
    for each batch size would add up (two cameras: batch 1 and 2, +356 MB of RSS), while a batch
    of 2 takes as long as two batches of 1 on the CPU (BENCHMARKS.md, "Detector node memory").
    Calls are serialised: an OpenVINO infer request is not re-entrant.
    """

    kept_shapes = 4

    def __init__(self, graph, precision: str = "float32") -> None:
        import openvino

        self._openvino = openvino
        self.config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bfloat16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        threads = omp_threads()
        if threads is not None:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self._core = openvino.Core()
        self._graph = graph
        self._requests: OrderedDict[tuple[int, ...], object] = OrderedDict()
        self._lock = threading.Lock()

    def _request_for(self, size: tuple[int, int]):
        request = self._requests.get(size)
        if request is None:
            graph = self._graph.clone()
            graph.reshape({0: self._openvino.PartialShape([1, 1, *size])})
            compiled = self._core.compile_model(graph, "CPU", self.config)
            request = compiled.create_infer_request()
            self._requests[size] = request
            if len(self._requests) > self.kept_shapes:
                self._requests.popitem(last=False)
        else:
            self._requests.move_to_end(size)
        return request

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores `(B, H, W)` and descriptors `(B, H/8, W/8, D)` of grey float32 `(B, 1, H, W)`."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        scores = descriptors = None
        with self._lock:
            request = self._request_for(pixels.shape[-2:])
            for index in range(len(pixels)):
                # share_outputs: views of the request's buffers, copied out before the next image.
                outputs = request.infer({0: pixels[index : index + 1]}, share_inputs=True, share_outputs=True)
                if scores is None:
                    scores = np.empty((len(pixels), *outputs[0].shape[1:]), outputs[0].dtype)
                    descriptors = np.empty((len(pixels), *outputs[1].shape[1:]), outputs[1].dtype)
                scores[index], descriptors[index] = outputs[0][0], outputs[1][0]
        return scores, descriptors
