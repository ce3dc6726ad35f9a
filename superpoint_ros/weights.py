"""Where SuperPoint's parameters come from: the Hugging Face hub, a local file, or random.

Accepted `weights` values:
- a hub repo id such as `magic-leap-community/superpoint` (plus an optional revision), fetched
  through `huggingface_hub` and its cache; `HF_HUB_OFFLINE=1` is honoured;
- a directory holding `model.safetensors` (the hub layout), or a `.safetensors` file;
- MagicLeap's original `superpoint_v1.pth` (keys `conv1a.weight` … `convDb.bias`);
- `random`, for tests and demos: seeded random initialisation, never chosen implicitly.

Every failure is a `WeightsError` whose message is one sentence naming the source and the fault.
"""

import json
import pathlib
import re
import struct

import numpy as np
import torch

from superpoint_ros.feature_types import DEFAULT_WEIGHTS, RANDOM_WEIGHTS  # noqa: F401 (re-exported)
from superpoint_ros.model import SuperPoint, SuperPointArchitecture

HUB_FILENAME = "model.safetensors"

_MAGICLEAP_NAMES = {
    **{f"conv{block + 1}{half}": f"encoder.conv_blocks.{block}.conv_{half}" for block in range(4) for half in "ab"},
    "convPa": "keypoint_decoder.conv_score_a",
    "convPb": "keypoint_decoder.conv_score_b",
    "convDa": "descriptor_decoder.conv_descriptor_a",
    "convDb": "descriptor_decoder.conv_descriptor_b",
}
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class WeightsError(RuntimeError):
    """The weights could not be found, read, or do not fit SuperPoint."""


def load_model(weights: str = DEFAULT_WEIGHTS, revision: str | None = None, seed: int = 0) -> SuperPoint:
    """Build a `SuperPoint` in eval mode from `weights` (see the module docstring)."""
    if weights == RANDOM_WEIGHTS:
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            model = SuperPoint()
        finally:
            torch.random.set_rng_state(generator_state)
        return model.eval()
    path = resolve_weights_file(weights, revision)
    state_dict = read_state_dict(path)
    model = SuperPoint(architecture_of(state_dict, path))
    check_state_dict(model, state_dict, path)
    model.load_state_dict(state_dict)
    return model.eval()


def resolve_weights_file(weights: str, revision: str | None = None) -> pathlib.Path:
    """The local file that `weights` names, downloading (or taking from the cache) a hub repo."""
    path = pathlib.Path(weights).expanduser()
    if path.is_dir():
        candidate = path / HUB_FILENAME
        if not candidate.is_file():
            raise WeightsError(f"Weights directory {path} has no {HUB_FILENAME}.")
        return candidate
    if path.is_file():
        return path
    if not _REPO_ID.match(weights) or weights.endswith((".safetensors", ".pth", ".pt")):
        raise WeightsError(f"Weights file {path} does not exist.")
    return _download_from_hub(weights, revision)


def _download_from_hub(repo_id: str, revision: str | None) -> pathlib.Path:
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return pathlib.Path(huggingface_hub.hf_hub_download(repo_id, HUB_FILENAME, revision=revision))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        raise WeightsError(
            f"Could not get {HUB_FILENAME} of '{repo_id}'"
            f"{f' at revision {revision}' if revision else ''} from the Hugging Face hub and no "
            f"cached copy exists ({type(error).__name__}); download it elsewhere and point "
            "`weights` at the local model.safetensors file or the directory holding it."
        ) from error


def read_state_dict(path: pathlib.Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file or a MagicLeap `.pth`, under the hub's parameter names."""
    if path.suffix == ".safetensors":
        try:
            return read_safetensors(path)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise WeightsError(f"{path} is not a readable safetensors file: {error}.") from error
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(
            f"{path} is neither a safetensors file nor a PyTorch checkpoint of plain tensors: {error}."
        ) from error
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise WeightsError(f"{path} does not hold a dictionary of tensors.")
    return {_hub_name(name): tensor for name, tensor in loaded.items()}


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
}


def read_safetensors(path: pathlib.Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, read with the standard library and numpy.

    The format is an 8-byte little-endian header length, a JSON header giving each tensor's
    dtype, shape and byte range, then the bytes. Reading it here spares the node a dependency
    that rosdep has no key for.
    """
    data = path.read_bytes()
    if len(data) < 8:
        raise ValueError("file is shorter than the 8-byte header length")
    (header_length,) = struct.unpack("<Q", data[:8])
    if header_length > len(data) - 8:
        raise ValueError(f"header length {header_length} exceeds the file size")
    header = json.loads(data[8 : 8 + header_length])
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    body = memoryview(data)[8 + header_length :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ValueError(f"tensor '{name}' has unsupported dtype {entry['dtype']}")
        start, end = entry["data_offsets"]
        shape = [int(size) for size in entry["shape"]]
        expected = int(np.prod(shape)) * torch.empty(0, dtype=dtype).element_size()
        if not 0 <= start <= end <= len(body) or end - start != expected:
            raise ValueError(f"tensor '{name}' has a byte range that does not fit its shape or the file")
        if expected == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
            continue
        raw = torch.frombuffer(bytearray(body[start:end]), dtype=torch.uint8)
        tensors[name] = raw.view(dtype).reshape(shape)
    return tensors


def _hub_name(magicleap_name: str) -> str:
    layer, _, kind = magicleap_name.rpartition(".")
    return f"{_MAGICLEAP_NAMES[layer]}.{kind}" if layer in _MAGICLEAP_NAMES else magicleap_name


def architecture_of(state_dict: dict[str, torch.Tensor], path: pathlib.Path) -> SuperPointArchitecture:
    """Layer widths read off the tensors themselves, so no config file is needed."""

    def out_channels(name: str) -> int:
        tensor = state_dict.get(f"{name}.weight")
        if tensor is None or tensor.ndim != 4:
            raise WeightsError(f"{path} has no 4-d tensor '{name}.weight'; it is not a SuperPoint checkpoint.")
        return tensor.shape[0]

    blocks = sum(1 for name in state_dict if re.fullmatch(r"encoder\.conv_blocks\.\d+\.conv_b\.weight", name))
    if blocks == 0:
        raise WeightsError(f"{path} has no 'encoder.conv_blocks.*' tensors; it is not a SuperPoint checkpoint.")
    return SuperPointArchitecture(
        encoder_hidden_sizes=tuple(out_channels(f"encoder.conv_blocks.{i}.conv_b") for i in range(blocks)),
        decoder_hidden_size=out_channels("keypoint_decoder.conv_score_a"),
        keypoint_decoder_dim=out_channels("keypoint_decoder.conv_score_b"),
        descriptor_decoder_dim=out_channels("descriptor_decoder.conv_descriptor_b"),
    )


def check_state_dict(model: SuperPoint, state_dict: dict[str, torch.Tensor], path: pathlib.Path) -> None:
    """Raise a `WeightsError` naming missing, unexpected or mis-shaped tensors."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected)}")
        raise WeightsError(f"{path} does not fit SuperPoint: {'; '.join(parts)}.")
    for name, tensor in expected.items():
        if state_dict[name].shape != tensor.shape:
            raise WeightsError(
                f"{path} does not fit SuperPoint: '{name}' has shape {tuple(state_dict[name].shape)}, "
                f"expected {tuple(tensor.shape)}."
            )
