"""The OpenVINO network for a set of weights as an IR file, made once by a child process and
cached, so that the process that runs it (`openvino_detector`) never imports torch.

torch is the largest part of the detector node's memory (about 250 MB of RSS, docs/memory.md),
and the OpenVINO engine does not need it once its graph exists. Building that graph does: the
weights are read, checked and (for `random`) initialised by the torch modules, and int8 is
quantised by NNCF, which imports torch too. So `prepare` runs those steps in a child Python
(`python -m superpoint_ros.openvino_ir`), which saves the IR and a small manifest (the IR's path,
the architecture, the descriptor size) and exits, taking torch's memory with it. A later start
with the same request finds the manifest and starts no child.

The manifest is named by a hash of everything the network depends on: the weights (the file's
bytes, or `random` and its seed), the architecture asked for, float or int8, and for int8 the
calibration (`scenes`, or a directory's file names, sizes and times), its count and shape; and
the openvino and nncf versions and `FORMAT`. Files are written under temporary names and
renamed, so two processes preparing the same network at once both end with a complete pair.
"""

import argparse
import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import pathlib
import subprocess
import sys
import tempfile

from superpoint_ros.feature_types import AUTO_ARCHITECTURE, RANDOM_WEIGHTS
from superpoint_ros.weights_files import WeightsError, resolve_weights_file

FORMAT = "superpoint-openvino-ir-v1"
"""Changes whenever the graph that `backends.openvino_graph` builds would; old manifests are then ignored."""
CALIBRATION_COUNT = 16
"""`calibration.CALIBRATION_COUNT`, which imports OpenCV's scene drawing; test_openvino_detector pins them equal."""
_ERROR_PREFIX = "openvino_ir error: "


class PreparationError(RuntimeError):
    """The network could not be prepared for a reason of this machine, not of the request: the
    cache directory is not writable, the interpreter cannot start, the child died. `Detector`
    (which builds its network in memory) can still run the same request."""


@dataclasses.dataclass(frozen=True)
class NetworkRequest:
    """What the network is made of; the fields mean what `Detector`'s arguments of the same names do."""

    weights: str
    weights_revision: str | None = None
    seed: int = 0
    architecture: str = AUTO_ARCHITECTURE
    int8: bool = False
    calibration: str = "scenes"
    calibration_count: int = CALIBRATION_COUNT
    calibration_shape: tuple[int, int] | None = None
    quantization_cache_dir: str | None = None


@dataclasses.dataclass(frozen=True)
class PreparedNetwork:
    """An IR file (`graph_path`, with its `.bin` beside it) and what the network is."""

    graph_path: pathlib.Path
    architecture: str
    descriptor_size: int
    prepared_now: bool
    """True when a child process made it in this call, False when it came from the cache."""


def default_cache_dir() -> pathlib.Path:
    """`$XDG_CACHE_HOME/superpoint_ros/openvino`, or `~/.cache/superpoint_ros/openvino`."""
    root = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(root) / "superpoint_ros" / "openvino"


def request_key(request: NetworkRequest) -> str:
    """Hex digest naming the network of `request` (see the module docstring). Reads the weights
    file (and, for a hub id, finds it in the hub's cache or downloads it); raises `WeightsError`
    when there is none."""
    import openvino

    digest = hashlib.sha256()
    parts = [FORMAT, openvino.__version__, request.architecture, "int8" if request.int8 else "float"]
    if request.weights == RANDOM_WEIGHTS:
        parts += [RANDOM_WEIGHTS, str(request.seed)]
    else:
        weights_file = resolve_weights_file(request.weights, request.weights_revision)
        parts.append(hashlib.sha256(weights_file.read_bytes()).hexdigest())
    if request.int8:
        parts += [_nncf_version(), request.calibration, str(request.calibration_count), str(request.calibration_shape)]
        if request.calibration != "scenes":
            parts += _directory_listing(pathlib.Path(request.calibration).expanduser())
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:32]


def prepare(
    request: NetworkRequest,
    cache_dir: str | pathlib.Path | None = None,
    python: str = sys.executable,
    logger: logging.Logger | None = None,
) -> PreparedNetwork:
    """The IR of `request`'s network: from the cache in `cache_dir` (default `default_cache_dir()`),
    else made by `python -m superpoint_ros.openvino_ir` and cached. The child's log lines (int8:
    how the quantised model was obtained) go to `logger`. Raises, with the child's one-line
    reason, `WeightsError` or `ValueError` for a request that cannot be met, and
    `PreparationError` when this machine stopped it (see there)."""
    directory = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    manifest = directory / f"superpoint_network_{request_key(request)}.json"
    cached = read_manifest(manifest)
    if cached is not None:
        return cached
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PreparationError(f"cannot create the network cache {directory}: {error.strerror or error}") from error
    command = [python, "-m", "superpoint_ros.openvino_ir", json.dumps(dataclasses.asdict(request)), str(manifest)]
    try:
        child = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        raise PreparationError(f"cannot start {python} to prepare the OpenVINO network: {error}") from error
    errors = {"WeightsError": WeightsError, "ValueError": ValueError}
    for line in child.stderr.splitlines():
        if line.startswith(_ERROR_PREFIX):
            kind, _, message = line.removeprefix(_ERROR_PREFIX).partition(": ")
            raise errors.get(kind, PreparationError)(message)
        if logger is not None and line.strip():
            logger.info(line)
    prepared = read_manifest(manifest)
    if child.returncode != 0 or prepared is None:
        last = child.stderr.strip().splitlines()[-1:] or ["no output"]
        raise PreparationError(f"preparing the OpenVINO network failed (exit status {child.returncode}): {last[0]}")
    return dataclasses.replace(prepared, prepared_now=True)


def read_manifest(manifest: pathlib.Path) -> PreparedNetwork | None:
    """The network a manifest names, or None when the manifest or its IR pair is missing or unreadable."""
    try:
        fields = json.loads(manifest.read_text())
        graph_path = pathlib.Path(fields["graph_path"])
        prepared = PreparedNetwork(graph_path, fields["architecture"], int(fields["descriptor_size"]), False)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (graph_path.is_file() and graph_path.with_suffix(".bin").is_file()):
        return None
    return prepared


def _nncf_version() -> str:
    try:
        return importlib.metadata.version("nncf")
    except importlib.metadata.PackageNotFoundError:
        raise ValueError("precision 'int8' needs the nncf package for quantisation: pip install nncf==3.4.0") from None


def _directory_listing(directory: pathlib.Path) -> list[str]:
    if not directory.is_dir():
        raise ValueError(f"int8 calibration directory {directory} does not exist")
    return [
        f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
        for path in sorted(directory.iterdir())
        if path.is_file()
    ]


def _write_atomically(path: pathlib.Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".partial_", delete=False) as partial:
        partial.write(text)
    os.replace(partial.name, path)


def _make(request: NetworkRequest, manifest: pathlib.Path) -> None:
    """The child's work: build the network with torch, save its IR, then the manifest."""
    import openvino

    from superpoint_ros.backends import openvino_graph
    from superpoint_ros.detector import Detector
    from superpoint_ros.weights import load_model

    manifest.parent.mkdir(parents=True, exist_ok=True)
    if request.int8:
        detector = Detector(
            weights=request.weights,
            weights_revision=request.weights_revision,
            seed=request.seed,
            architecture=request.architecture,
            device="cpu",
            backend="openvino",
            precision="int8",
            calibration=request.calibration,
            calibration_count=request.calibration_count,
            calibration_shape=request.calibration_shape,
            quantization_cache_dir=request.quantization_cache_dir,
        )
        model, graph_path = detector.model, detector.quantized_model_path
    else:
        model = load_model(request.weights, request.weights_revision, request.seed, request.architecture)
        graph_path = manifest.with_name(manifest.stem.replace("network", "float32") + ".xml")
        with tempfile.TemporaryDirectory(dir=manifest.parent, prefix=".partial_") as scratch:
            partial = pathlib.Path(scratch) / graph_path.name
            openvino.save_model(openvino_graph(model), partial, compress_to_fp16=False)
            os.replace(partial.with_suffix(".bin"), graph_path.with_suffix(".bin"))
            os.replace(partial, graph_path)
    fields = {
        "graph_path": str(graph_path),
        "architecture": model.architecture_name,
        "descriptor_size": model.descriptor_size,
    }
    _write_atomically(manifest, json.dumps(fields))


def main(argv: list[str] | None = None) -> int:
    """Child entry point: `python -m superpoint_ros.openvino_ir REQUEST_JSON MANIFEST_PATH`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("request", help="the NetworkRequest as JSON")
    parser.add_argument("manifest", type=pathlib.Path, help="where to write the manifest")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    fields = json.loads(arguments.request)
    if fields.get("calibration_shape") is not None:
        fields["calibration_shape"] = tuple(fields["calibration_shape"])
    try:
        _make(NetworkRequest(**fields), arguments.manifest)
    except (WeightsError, ValueError, OSError) as error:
        kind = type(error).__name__ if isinstance(error, (WeightsError, ValueError)) else "OSError"
        print(f"{_ERROR_PREFIX}{kind}: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
