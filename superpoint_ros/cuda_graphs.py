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

Each pipeline captures and replays on a stream of its own, in `thread_local` capture mode, and
one capture runs at a time in the process (`_CAPTURE_LOCK`): a capture on torch's shared side
stream in `global` mode would fail, and leave that stream unusable, whenever another detector
or thread touched CUDA meanwhile. Graphs are kept per input shape (batch included), settings and
capacity, the last `kept_graphs` used; when a capacity grows, the graph for the smaller one is
dropped. A node whose batch alternates between 1 and 2 frames (two cameras) thus replays two
graphs and captures no more.

Not yet run on a GPU (none was at hand when this was written): `python -m
superpoint_ros.tools.gpu_check` compares it with the eager pipeline and times both.
"""

import contextlib
import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

from superpoint_ros.backends import Network
from superpoint_ros.feature_types import DetectionSettings
from superpoint_ros.keypoints import postprocess
from superpoint_ros.model import MAGICLEAP

INITIAL_CAPACITY = 2048
WARMUP_RUNS = 3
_CAPTURE_LOCK = threading.Lock()


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
    architecture: str = MAGICLEAP,
) -> torch.Tensor:
    """Network to packed results `(B, 1 + K·(3 + D))` float32, without a host sync; descriptors
    sampled as `architecture`'s reference does.

    Per image: the keypoint count (as int32 bits, so it stays exact), then K rows of
    x, y (original pixels), score, descriptor. K = min(`capacity`, pixels of the score map).
    """
    keypoints, keypoint_scores, descriptors, counts = postprocess(
        *network(grey), settings, tuple(grey.shape[-2:]), original_size, capacity, architecture=architecture
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
    a graph's input and output buffers are shared by its replays. `captures` counts the graphs
    captured so far."""

    kept_graphs = 4
    initial_capacity = INITIAL_CAPACITY

    def __init__(
        self, network: Network, device: torch.device, descriptor_size: int, architecture: str = MAGICLEAP
    ) -> None:
        self._network = network
        self._architecture = architecture
        self._device = device
        self._descriptor_size = descriptor_size
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._capacities: dict[tuple, int] = {}
        self._lock = threading.Lock()
        self._stream: torch.cuda.Stream | None = None  # this pipeline's own, made at the first capture
        self.captures = 0

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
                entry = self._graph_for((*case, capacity), grey, settings, original_size, capacity)
                host = self._replay(entry, grey)
                keypoints, scores, descriptors, counts = unpack(host, self._descriptor_size)
                largest = int(counts.max(initial=0))
                if largest <= keypoints.shape[1]:
                    # The host buffer is the graph's: the next replay overwrites it.
                    return [
                        (keypoints[b, :count].copy(), scores[b, :count].copy(), descriptors[b, :count].copy())
                        for b, count in enumerate(counts.tolist())
                    ]
                self._capacities[case] = 1 << (largest - 1).bit_length()
                # This case never asks for the smaller capacity again: free its graph's memory.
                self._graphs.pop((*case, capacity), None)

    def _graph_for(
        self, key: tuple, grey: torch.Tensor, settings: DetectionSettings, original_size, capacity: int
    ) -> _Graph:
        """`key`'s graph, captured now if it is not kept; the least recently used one goes."""
        entry = self._graphs.get(key)
        if entry is not None:
            self._graphs.move_to_end(key)
            return entry
        try:
            entry = self._capture(grey, settings, original_size, capacity)
        except RuntimeError as error:
            raise GraphCaptureError(f"CUDA graph capture failed: {error}") from error
        self.captures += 1
        self._graphs[key] = entry
        if len(self._graphs) > self.kept_graphs:
            self._graphs.popitem(last=False)
        return entry

    def _replay(self, entry: _Graph, grey: torch.Tensor) -> np.ndarray:
        """Run `entry`'s graph on `grey`; its packed host block, `run_pipeline`'s layout."""
        with torch.cuda.device(self._device):
            # `grey` was made on the caller's stream; the replay runs on ours.
            self._stream.wait_stream(torch.cuda.current_stream(self._device))
            with torch.cuda.stream(self._stream):
                entry.grey.copy_(grey)
                entry.graph.replay()
                entry.host.copy_(entry.packed, non_blocking=True)
            self._stream.synchronize()
        return entry.host.numpy()

    def _capture(self, grey: torch.Tensor, settings: DetectionSettings, original_size, capacity: int) -> _Graph:
        with torch.cuda.device(self._device), _CAPTURE_LOCK:
            if self._stream is None:
                self._stream = torch.cuda.Stream(self._device)
            static_grey = grey.clone()

            def run() -> torch.Tensor:
                return run_pipeline(self._network, static_grey, settings, original_size, capacity, self._architecture)

            # cuDNN's autotuning and lazy initialisation synchronise, which a capture forbids: they
            # happen in these runs, on the capture stream.
            self._stream.wait_stream(torch.cuda.current_stream(self._device))
            with torch.cuda.stream(self._stream):
                for _ in range(WARMUP_RUNS):
                    run()
            torch.cuda.synchronize(self._device)
            graph = torch.cuda.CUDAGraph()
            packed = capture(graph, torch.cuda.stream(self._stream), run)
            host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
        return _Graph(graph, static_grey, packed, host)


def capture(graph: torch.cuda.CUDAGraph, stream_scope: contextlib.AbstractContextManager, run: Callable):
    """`run()` captured into `graph` inside `stream_scope` (the capture stream made current), in
    `thread_local` mode: other threads' CUDA calls meanwhile do not invalidate it.

    Unlike `torch.cuda.graph`, whose exit skips restoring the stream when ending the capture
    raises, the caller's stream is current again however the capture ends; and a capture that
    `run` broke is ended before its error goes on. Returns what `run` returned.
    """
    with stream_scope:
        graph.capture_begin(capture_error_mode="thread_local")
        try:
            output = run()
        except BaseException:
            with contextlib.suppress(RuntimeError):
                graph.capture_end()
            raise
        graph.capture_end()
    return output
