"""Where SuperPoint's parameters come from: the Hugging Face hub, a local file, or random.

Accepted `weights` values:
- a hub repo id such as `magic-leap-community/superpoint` (plus an optional revision), fetched
  through `huggingface_hub` and its cache; `HF_HUB_OFFLINE=1` is honoured;
- a directory holding `model.safetensors` (the hub layout), or a `.safetensors` file;
- MagicLeap's original `superpoint_v1.pth` (keys `conv1a.weight` … `convDb.bias`);
- the MIT-licensed `superpoint_v6_from_tf.pth` of rpautrat/SuperPoint (keys
  `backbone.0.0.conv.weight`, `backbone.0.0.bn.running_mean`, … `descriptor.1.bn.bias`), or the
  same tensors in a `.safetensors` file (`superpoint-export --safetensors` converts);
- `random`, for tests and demos: seeded random initialisation, never chosen implicitly.

Which network the file holds (its `architecture`: `magicleap` or `mit`) is read off its tensor
names; `architecture` may also be asked for, and a file of the other layout is then refused.
Every failure is a `WeightsError` whose message is one sentence naming the source and the fault.
"""

import json
import pathlib
import re
import struct

import numpy as np
import torch

from superpoint_ros.feature_types import (  # noqa: F401 (re-exported)
    AUTO_ARCHITECTURE,
    DEFAULT_WEIGHTS,
    LICENCES,
    RANDOM_WEIGHTS,
)
from superpoint_ros.model import ARCHITECTURES, MAGICLEAP, MIT, SuperPoint, SuperPointArchitecture
from superpoint_ros.model_mit import MitArchitecture, MitSuperPoint, SuperPointNetwork
from superpoint_ros.weights_files import HUB_FILENAME, WeightsError, resolve_weights_file  # noqa: F401 (re-exported)

_LAYOUTS = (
    "Magic Leap's ('encoder.conv_blocks.0.conv_a.weight' ... as on the Hugging Face hub, or "
    "'conv1a.weight' ... as in superpoint_v1.pth) nor the MIT one of rpautrat/SuperPoint "
    "('backbone.0.0.conv.weight', 'backbone.0.0.bn.running_mean' ... as in superpoint_v6_from_tf.pth)"
)
_MIT_STAGE = re.compile(r"backbone\.(\d+)\.1\.conv\.weight")

_MAGICLEAP_NAMES = {
    **{f"conv{block + 1}{half}": f"encoder.conv_blocks.{block}.conv_{half}" for block in range(4) for half in "ab"},
    "convPa": "keypoint_decoder.conv_score_a",
    "convPb": "keypoint_decoder.conv_score_b",
    "convDa": "descriptor_decoder.conv_descriptor_a",
    "convDb": "descriptor_decoder.conv_descriptor_b",
}


def load_model(
    weights: str = DEFAULT_WEIGHTS, revision: str | None = None, seed: int = 0, architecture: str = AUTO_ARCHITECTURE
) -> SuperPointNetwork:
    """Build the network `weights` holds, in eval mode (see the module docstring).

    `architecture` `auto` takes the file's; `magicleap` or `mit` refuses a file of the other
    layout, and picks the network that `random` weights initialise.
    """
    if architecture not in (AUTO_ARCHITECTURE, *ARCHITECTURES):
        raise WeightsError(f"architecture must be one of {(AUTO_ARCHITECTURE, *ARCHITECTURES)}, got {architecture!r}.")
    if weights == RANDOM_WEIGHTS:
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            model = MitSuperPoint() if architecture == MIT else SuperPoint()
        finally:
            torch.random.set_rng_state(generator_state)
        return model.eval()
    path = resolve_weights_file(weights, revision)
    state_dict = read_state_dict(path)
    found = layout_of(state_dict, path)
    if architecture not in (AUTO_ARCHITECTURE, found):
        raise WeightsError(
            f"{path} holds the {found} SuperPoint, but architecture '{architecture}' was asked for; "
            f"set architecture to '{found}' or '{AUTO_ARCHITECTURE}'."
        )
    if found == MIT:
        # Only training reads BatchNorm's batch counter; the converted .pth does not hold it.
        state_dict = {name: tensor for name, tensor in state_dict.items() if not name.endswith(".num_batches_tracked")}
        model = MitSuperPoint(mit_architecture_of(state_dict, path))
    else:
        model = SuperPoint(architecture_of(state_dict, path))
    check_state_dict(model, state_dict, path)
    model.load_state_dict(state_dict)
    return model.eval()


def layout_of(state_dict: dict[str, torch.Tensor], path: pathlib.Path) -> str:
    """`magicleap` or `mit`, from the tensor names (after `read_state_dict`'s renaming)."""
    if any(name.startswith("encoder.conv_blocks.") for name in state_dict):
        return MAGICLEAP
    if any(_MIT_STAGE.fullmatch(name) for name in state_dict):
        return MIT
    first = ", ".join(f"'{name}'" for name in list(state_dict)[:3]) or "no tensors"
    raise WeightsError(f"{path} is not a SuperPoint checkpoint: its tensors ({first} ...) follow neither {_LAYOUTS}.")


def read_state_dict(path: pathlib.Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` or `.pth` file; a MagicLeap `.pth`'s under the hub's names."""
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
    # BatchNorm's batch counter, in a state_dict saved from a PyTorch module in training form.
    "I64": torch.int64,
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


def write_safetensors(path: pathlib.Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write `tensors` (dtypes that `read_safetensors` reads) as a safetensors file, its header
    padded with spaces to a multiple of 8 bytes as the format's own writer does."""
    names = {dtype: name for name, dtype in _SAFETENSORS_DTYPES.items()}
    header, blobs, offset = {}, [], 0
    for name, tensor in tensors.items():
        if tensor.dtype not in names:
            raise ValueError(f"tensor '{name}' has dtype {tensor.dtype}, which safetensors here does not take")
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {
            "dtype": names[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def _hub_name(magicleap_name: str) -> str:
    layer, _, kind = magicleap_name.rpartition(".")
    return f"{_MAGICLEAP_NAMES[layer]}.{kind}" if layer in _MAGICLEAP_NAMES else magicleap_name


def _out_channels(state_dict: dict[str, torch.Tensor], path: pathlib.Path, name: str, network: str) -> int:
    """Output channels of the convolution weight `name`; `WeightsError` saying the file is not
    `network` when there is no such 4-d tensor."""
    tensor = state_dict.get(name)
    if tensor is None or tensor.ndim != 4:
        raise WeightsError(f"{path} has no 4-d tensor '{name}'; it is not {network}.")
    return tensor.shape[0]


def architecture_of(state_dict: dict[str, torch.Tensor], path: pathlib.Path) -> SuperPointArchitecture:
    """Layer widths read off the tensors themselves, so no config file is needed."""

    def out_channels(name: str) -> int:
        return _out_channels(state_dict, path, f"{name}.weight", "a SuperPoint checkpoint")

    blocks = sum(1 for name in state_dict if re.fullmatch(r"encoder\.conv_blocks\.\d+\.conv_b\.weight", name))
    if blocks == 0:
        raise WeightsError(f"{path} has no 'encoder.conv_blocks.*.conv_b' tensors; it is not a whole SuperPoint.")
    return SuperPointArchitecture(
        encoder_hidden_sizes=tuple(out_channels(f"encoder.conv_blocks.{i}.conv_b") for i in range(blocks)),
        decoder_hidden_size=out_channels("keypoint_decoder.conv_score_a"),
        keypoint_decoder_dim=out_channels("keypoint_decoder.conv_score_b"),
        descriptor_decoder_dim=out_channels("descriptor_decoder.conv_descriptor_b"),
    )


def mit_architecture_of(state_dict: dict[str, torch.Tensor], path: pathlib.Path) -> MitArchitecture:
    """The MIT network's widths, read off the tensors; its cells must be 8×8 (three poolings)."""

    def out_channels(name: str) -> int:
        return _out_channels(state_dict, path, f"{name}.conv.weight", "a whole MIT SuperPoint")

    stages = sum(1 for name in state_dict if _MIT_STAGE.fullmatch(name))
    architecture = MitArchitecture(
        backbone_sizes=tuple(out_channels(f"backbone.{stage}.1") for stage in range(stages)),
        head_size=out_channels("detector.0"),
        keypoint_dim=out_channels("detector.1"),
        descriptor_dim=out_channels("descriptor.1"),
    )
    expected = MitArchitecture()
    if stages != len(expected.backbone_sizes) or architecture.keypoint_dim != expected.keypoint_dim:
        raise WeightsError(
            f"{path} has {stages} backbone stages and {architecture.keypoint_dim} keypoint channels; "
            f"SuperPoint's 8x8 cells need {len(expected.backbone_sizes)} and {expected.keypoint_dim}."
        )
    return architecture


def check_state_dict(model: SuperPointNetwork, state_dict: dict[str, torch.Tensor], path: pathlib.Path) -> None:
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
