"""The pipeline after preprocessing as CUDA graphs: one launch per batch on a GPU.

A graph holds the network, NMS, keypoint selection, descriptor sampling, the mapping back through
a resize and the packing of the results into one block, captured once per input shape and
settings. A replay and the copy of that block into pinned host memory then cost two launches
and one synchronisation instead of some hundred kernel launches from Python, which dominate at
small sizes on a fast GPU.

A graph needs static shapes, so the keypoint count K cannot follow the data as in
`keypoints.select_keypoints`. It is fixed instead (`select_keypoints_static`): `max_keypoints`
when that is set, else a capacity that starts at `INITIAL_CAPACITY` and, when a batch finds more
keypoints, grows to the next power of two, and that batch is run again with a graph captured
for it. The counts travel in the same packed block as the results, so a batch needs one
device-to-host copy. The results equal the eager pipeline's: the same functions run, only
the padding after each image's keypoints differs.

Not yet run on a GPU (none was at hand when this was written): `python -m
superpoint_ros.gpu_check` compares it with the eager pipeline and times both.
"""

import dataclasses
import threading
from collections import OrderedDict

import numpy as np
import torch

from superpoint_ros.backends import Network
from superpoint_ros.feature_types import DetectionSettings
from superpoint_ros.keypoints import postprocess

INITIAL_CAPACITY = 2048
WARMUP_RUNS = 3


class GraphCaptureError(RuntimeError):
    """CUDA refused to capture the pipeline; the caller may run it without a graph."""


@dataclasses.dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    grey: torch.Tensor  # the static input the graph reads, (B, 1, H, W) on the GPU
    packed: torch.Tensor  # the static output it writes, (B, 1 + K·(3 + D)) on the GPU
    host: torch.Tensor  # where each replay's output is copied, pinned host memory


def run_pipeline(
    network: Network,
    grey: torch.Tensor,
    settings: DetectionSettings,
    original_size: tuple[int, int],
    capacity: int,
) -> torch.Tensor:
    """Network to packed results `(B, 1 + K·(3 + D))` float32, without a host sync.

    Per image: the keypoint count (as int32 bits, so it stays exact), then K rows of
    x, y (original pixels), score, descriptor. K = min(`capacity`, pixels of the score map).
    """
    keypoints, keypoint_scores, descriptors, counts = postprocess(
        *network(grey), settings, tuple(grey.shape[-2:]), original_size, capacity
    )
    rows = torch.cat((keypoints, keypoint_scores[..., None], descriptors), dim=-1).flatten(1)
    return torch.cat((counts.to(torch.int32).view(torch.float32)[:, None], rows), dim=1)


def unpack(host: np.ndarray, descriptor_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`run_pipeline`'s packed block → keypoints `(B, K, 2)`, scores `(B, K)`, descriptors
    `(B, K, D)` (views into `host`) and counts `(B,)`."""
    counts = np.ascontiguousarray(host[:, 0]).view(np.int32)
    width = 3 + descriptor_size
    rows = host[:, 1:].reshape(host.shape[0], (host.shape[1] - 1) // width, width)
    return rows[..., :2], rows[..., 2], rows[..., 3:], counts


class GraphedPipeline:
    """`run_pipeline` as CUDA graphs, the last `kept_graphs` of them kept. Calls are serialised:
    a graph's input and output buffers are shared by its replays."""

    kept_graphs = 4
    initial_capacity = INITIAL_CAPACITY

    def __init__(self, network: Network, device: torch.device, descriptor_size: int) -> None:
        self._network = network
        self._device = device
        self._descriptor_size = descriptor_size
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._capacities: dict[tuple, int] = {}
        self._lock = threading.Lock()

    def __call__(
        self, grey: torch.Tensor, settings: DetectionSettings, original_size: tuple[int, int]
    ) -> list[tuple[np.ndarray, ...]]:
        """Per image `(keypoints (N, 2), scores (N,), descriptors (N, D))`, copies that the caller owns."""
        case = (tuple(grey.shape), settings, original_size)
        with self._lock:
            while True:
                capacity = settings.max_keypoints
                if capacity < 0:
                    capacity = self._capacities.setdefault(case, self.initial_capacity)
                host = self._replay((*case, capacity), grey, settings, original_size, capacity)
                keypoints, scores, descriptors, counts = unpack(host, self._descriptor_size)
                largest = int(counts.max(initial=0))
                if largest <= keypoints.shape[1]:
                    # The host buffer is the graph's: the next replay overwrites it.
                    return [
                        (keypoints[b, :count].copy(), scores[b, :count].copy(), descriptors[b, :count].copy())
                        for b, count in enumerate(counts.tolist())
                    ]
                self._capacities[case] = 1 << (largest - 1).bit_length()

    def _replay(
        self, key: tuple, grey: torch.Tensor, settings: DetectionSettings, original_size, capacity: int
    ) -> np.ndarray:
        """Run `key`'s graph (captured first if new) on `grey`; its packed host block, `run_pipeline`'s layout."""
        # Capture and replay use the current device's streams: make that ours (cuda:N).
        with torch.cuda.device(self._device):
            entry = self._graph_for(key, grey, settings, original_size, capacity)
            entry.grey.copy_(grey)
            entry.graph.replay()
            entry.host.copy_(entry.packed, non_blocking=True)
            torch.cuda.current_stream(self._device).synchronize()
        return entry.host.numpy()

    def _graph_for(
        self, key: tuple, grey: torch.Tensor, settings: DetectionSettings, original_size, capacity: int
    ) -> _Graph:
        entry = self._graphs.get(key)
        if entry is not None:
            self._graphs.move_to_end(key)
            return entry
        try:
            entry = self._capture(grey, settings, original_size, capacity)
        except RuntimeError as error:
            raise GraphCaptureError(f"CUDA graph capture failed: {error}") from error
        self._graphs[key] = entry
        if len(self._graphs) > self.kept_graphs:
            self._graphs.popitem(last=False)
        return entry

    def _capture(self, grey: torch.Tensor, settings: DetectionSettings, original_size, capacity: int) -> _Graph:
        static_grey = grey.clone()

        def run() -> torch.Tensor:
            return run_pipeline(self._network, static_grey, settings, original_size, capacity)

        # cuDNN's autotuning and lazy initialisation synchronise, which a capture forbids: they
        # happen in these runs, on a side stream as torch.cuda.graph requires.
        side = torch.cuda.Stream(self._device)
        side.wait_stream(torch.cuda.current_stream(self._device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                packed = run()
        torch.cuda.current_stream(self._device).wait_stream(side)
        del packed
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            packed = run()
        host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
        return _Graph(graph, static_grey, packed, host)
