"""What several test modules share beyond fixtures: the parity tolerances and settings grids, a
measure of how far a reduced-precision engine strays from float32, and a memo for the network
forward that the parity tests repeat with every setting.

Test modules import from here, never from each other, so that running one module never collects
or imports another, and no test leans on a benchmark's code for its yardstick.
"""

import functools
import importlib.util
import itertools
import shutil
from collections.abc import Callable

import numpy as np
import pytest
import torch

from superpoint_ros.detector import Detections, DetectionSettings, Detector

SCORE_TOLERANCE = 1e-5
DESCRIPTOR_TOLERANCE = 1e-4

CONFIGURATIONS = [
    DetectionSettings(threshold, radius, max_keypoints, border)
    for threshold, radius, max_keypoints, border in itertools.chain(
        itertools.product([0.0, 0.005], [0, 1, 4, 8], [-1], [4]),
        itertools.product([0.005], [4], [1, 100], [0, 8]),
    )
]

FULL_RESOLUTION_CONFIGURATIONS = [
    DetectionSettings(0.005, 4, -1, 4),
    DetectionSettings(0.0, 1, 100, 8),
    DetectionSettings(0.05, 8, -1, 0),
]


def agreement(candidate: list[Detections], baseline: list[Detections]) -> dict[str, float]:
    """How close `candidate` stays to `baseline`, image by image.

    `keypoint_overlap`: the share of `baseline` keypoints that `candidate` has at the same pixel
    (positions rounded); `cosine_min`: the smallest dot product of the two unit descriptors over
    those shared keypoints (1 when none are shared).
    """
    found, total, cosine_min = 0, 0, 1.0
    for ours, theirs in zip(candidate, baseline, strict=True):
        our_pixels = np.rint(ours.keypoints).astype(np.int64)
        their_pixels = np.rint(theirs.keypoints).astype(np.int64)
        # Pixels of one image are unique after NMS, so each baseline pixel matches at most one row.
        same = (their_pixels[:, None, :] == our_pixels[None, :, :]).all(axis=2)
        theirs_rows, ours_rows = np.nonzero(same)
        found += len(theirs_rows)
        total += len(their_pixels)
        if len(theirs_rows):
            cosines = np.einsum("nd,nd->n", ours.descriptors[ours_rows], theirs.descriptors[theirs_rows])
            cosine_min = min(cosine_min, float(cosines.min()))
    return {"keypoint_overlap": found / total if total else 1.0, "cosine_min": cosine_min}


class MemoisedForward:
    """A network forward that computes each distinct input once.

    The parity tests run one batch of images through many post-processing settings. The network
    before post-processing (our engine's forward, transformers' encoder) does not see the
    settings, and it is a pure function of its input, so its output for an input equal to an
    earlier one (`torch.equal`) is that earlier output: a copy, so that no caller sees another's
    tensors. Everything that depends on the settings still runs on every call.
    """

    def __init__(self, forward: Callable) -> None:
        self.forward = forward
        self.outputs: list[tuple[torch.Tensor, tuple, object]] = []
        self.computed = 0

    def __call__(self, pixels: torch.Tensor, *args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        for seen, seen_key, output in self.outputs:
            if seen_key == key and seen.shape == pixels.shape and torch.equal(seen, pixels):
                return _copied(output)
        output = self.forward(pixels, *args, **kwargs)
        self.computed += 1
        self.outputs.append((pixels.clone(), key, output))
        return _copied(output)


def memoised_detector(**arguments) -> Detector:
    """`Detector(**arguments)` whose network computes each distinct batch once (`MemoisedForward`):
    the parity tests run the same images under many settings, which the network does not see, and
    every setting still runs the whole post-processing."""
    detector = Detector(**arguments)
    detector.network = MemoisedForward(detector.network)
    return detector


@functools.cache
def cpu_engine(weights: str, backend: str) -> Detector:
    """One memoised CPU detector per weights and engine for the whole run of a worker (building
    ONNX Runtime's session takes a second); skips the test when the engine is not installed."""
    pytest.importorskip(backend)
    return memoised_detector(weights=weights, device="cpu", backend=backend)


def _copied(value):
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, tuple):
        return type(value)(_copied(item) for item in value)
    if isinstance(value, dict):  # transformers' ModelOutput
        return type(value)(**{name: _copied(item) for name, item in value.items()})
    return value


def needs(*modules: str) -> pytest.MarkDecorator:
    """A skip mark for a test module whose `modules` are not installed, found without importing
    them: every pytest-xdist worker collects every test module, and transformers, NNCF and ONNX
    each cost about half a second of CPU to import, whether or not the worker runs the module."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


def needs_ros2_launch() -> pytest.MarkDecorator:
    """A skip mark for a module that runs `ros2 launch`: the `ros2` command and its `launch` verb
    (the ros2launch package), found without starting the CLI at every worker's collection."""
    missing = shutil.which("ros2") is None or importlib.util.find_spec("ros2launch") is None
    reason = "`ros2 launch` is not installed (../shared/ros2cli/install.sh .venv installs it)"
    return pytest.mark.skipif(missing, reason=reason)
