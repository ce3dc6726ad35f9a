"""int8 SuperPoint for OpenVINO on the CPU: NNCF post-training quantisation, cached on disk.

`quantized_graph` turns the float32 OpenVINO graph of a `SuperPoint` into one whose
convolutions all run in int8 (weights per output channel, activations per tensor, ranges from
the calibration images; see `superpoint_ros.calibration`). Softmax, depth-to-space and the
descriptor normalisation stay float32. Keeping the first convolution (1→64 channels, which sees
the raw pixels) in float32 too brought int8 only slightly closer to float32, for about 4 ms of
a 33 ms budget at 480×640, so it is quantised (`keep_first_convolution`; BENCHMARKS.md).

Quantising takes tens of seconds, so the result is saved as OpenVINO IR in `cache_dir`
(default `$XDG_CACHE_HOME/superpoint_ros`, else `~/.cache/superpoint_ros`), named by a hash of
everything it depends on: the weights, the calibration images and their shape, this recipe and
the openvino and nncf versions. A later start with the same inputs loads that file instead.
"""

import hashlib
import importlib.metadata
import importlib.util
import os
import pathlib
import tempfile

import numpy as np

from superpoint_ros.model_mit import SuperPointNetwork

NNCF_REQUIREMENT = "nncf==3.4.0"
# v2: the float graph gives its descriptors channels last; a v1 file would give them channels first.
_RECIPE = "nncf-ptq-performance-all-int8-v2"


def default_cache_dir() -> pathlib.Path:
    """`$XDG_CACHE_HOME/superpoint_ros`, or `~/.cache/superpoint_ros` when that is unset."""
    root = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(root) / "superpoint_ros"


def check_nncf() -> None:
    """Raise `ValueError` with the install command when NNCF is missing.

    Looked up, not imported: importing NNCF costs ~36 MB of RSS that a start whose int8 model is
    in the cache never needs.
    """
    if importlib.util.find_spec("nncf") is None:
        raise ValueError(f"precision 'int8' needs the nncf package for quantisation: pip install {NNCF_REQUIREMENT}")


def cache_key(model: SuperPointNetwork, calibration: list[np.ndarray] | str) -> str:
    """Hex digest naming the quantised model of `model` calibrated on `calibration`, for the
    installed openvino and nncf.

    `calibration` is the calibration images (grey float32 `(H, W)` in [0, 1]), or a description
    of a set not known in advance, such as the first frames of a camera.
    """
    import openvino

    digest = hashlib.sha256()
    # NNCF's version from its metadata (the same string as `nncf.__version__`), without importing it.
    for part in (_RECIPE, openvino.__version__, importlib.metadata.version("nncf")):
        digest.update(part.encode() + b"\0")
    for name, tensor in model.state_dict().items():
        digest.update(name.encode() + str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    if isinstance(calibration, str):
        digest.update(calibration.encode())
    else:
        for image in calibration:
            digest.update(str((image.shape, image.dtype.str)).encode())
            digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()[:32]


def cache_path(
    model: SuperPointNetwork,
    calibration: list[np.ndarray] | str,
    cache_dir: str | pathlib.Path | None = None,
) -> pathlib.Path:
    """Where the quantised model of `model` calibrated on `calibration` is kept (see `cache_key`)."""
    directory = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return directory / f"superpoint_int8_{cache_key(model, calibration)}.xml"


def load_cached(path: pathlib.Path):
    """The quantised model saved at `path`, or None when there is none."""
    import openvino

    if not (path.is_file() and path.with_suffix(".bin").is_file()):
        return None
    return openvino.Core().read_model(path)


def quantized_graph(float_graph, images: list[np.ndarray], path: pathlib.Path):
    """The int8 OpenVINO model of `float_graph` (a float32 graph from `backends.openvino_graph`,
    any input shape) calibrated on grey `images` (float32 `(H, W)` in [0, 1], all one shape):
    loaded from `path` (see `cache_path`) when there, else quantised and saved there.

    Returns `(graph, from_cache)`.
    """
    import openvino

    check_nncf()
    cached = load_cached(path)
    if cached is not None:
        return cached, True
    graph = quantize(float_graph, images)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written under temporary names and renamed, .bin first: a present .xml means a complete
        # pair, also when two processes quantise at once.
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".partial_") as scratch:
            partial = pathlib.Path(scratch) / path.name
            openvino.save_model(graph, partial, compress_to_fp16=False)
            os.replace(partial.with_suffix(".bin"), path.with_suffix(".bin"))
            os.replace(partial, path)
    except OSError as error:
        raise ValueError(
            f"cannot write the int8 model cache in {path.parent} ({error.strerror or error}); "
            "choose a writable directory (int8_cache_dir, quantization_cache_dir)"
        ) from error
    return graph, False


def quantize(float_graph, images: list[np.ndarray], keep_first_convolution: bool = False):
    """NNCF post-training quantisation of `float_graph` on grey float32 `images` `(H, W)` in [0, 1].

    `keep_first_convolution` leaves the first convolution in float32 (measured in BENCHMARKS.md).
    """
    import logging

    import nncf

    # NNCF reports progress bars and per-step INFO lines; a detector starting up should not.
    nncf.set_log_level(logging.ERROR)
    samples = [np.ascontiguousarray(image, dtype=np.float32)[None, None] for image in images]
    ignored = nncf.IgnoredScope(names=[first_convolution(float_graph)]) if keep_first_convolution else None
    return nncf.quantize(
        float_graph,
        nncf.Dataset(samples),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(samples),
        ignored_scope=ignored,
    )


def first_convolution(graph) -> str:
    """The name of `graph`'s first convolution (1→64 channels, on the raw pixels), whichever
    architecture built it."""
    return next(op.get_friendly_name() for op in graph.get_ordered_ops() if op.get_type_name() == "Convolution")
