"""Where weights come from: hub layout, single files, MagicLeap's .pth, the hub cache, and the
clear errors for everything else."""

import os
import pathlib
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from superpoint_ros.detector import Detector
from superpoint_ros.weights import WeightsError, load_model, read_safetensors

MAGICLEAP_LAYERS = {
    "encoder.conv_blocks.0.conv_a": "conv1a",
    "encoder.conv_blocks.0.conv_b": "conv1b",
    "encoder.conv_blocks.1.conv_a": "conv2a",
    "encoder.conv_blocks.1.conv_b": "conv2b",
    "encoder.conv_blocks.2.conv_a": "conv3a",
    "encoder.conv_blocks.2.conv_b": "conv3b",
    "encoder.conv_blocks.3.conv_a": "conv4a",
    "encoder.conv_blocks.3.conv_b": "conv4b",
    "keypoint_decoder.conv_score_a": "convPa",
    "keypoint_decoder.conv_score_b": "convPb",
    "descriptor_decoder.conv_descriptor_a": "convDa",
    "descriptor_decoder.conv_descriptor_b": "convDb",
}


def assert_model_holds(model, tensors: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert state.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert torch.equal(state[name], tensor), name


def test_hub_layout_directory_loads_every_tensor_unchanged(hf_weights):
    assert_model_holds(load_model(str(hf_weights)), load_file(hf_weights / "model.safetensors"))


def test_a_safetensors_file_loads_without_its_config(hf_weights, tmp_path):
    lone = tmp_path / "superpoint.safetensors"
    lone.write_bytes((hf_weights / "model.safetensors").read_bytes())
    assert_model_holds(load_model(str(lone)), load_file(lone))


def test_magicleap_pth_loads_under_the_hub_names(hf_weights, tmp_path):
    tensors = load_file(hf_weights / "model.safetensors")
    original = {}
    for name, tensor in tensors.items():
        layer, kind = name.rsplit(".", 1)
        original[f"{MAGICLEAP_LAYERS[layer]}.{kind}"] = tensor.clone()
    path = tmp_path / "superpoint_v1.pth"
    torch.save(original, path)
    assert_model_holds(load_model(str(path)), tensors)


def test_pth_with_pickled_code_is_refused_by_weights_only_loading(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv1a.weight": torch.zeros(1), "payload": pathlib.Path("/")}, path)
    with pytest.raises(WeightsError, match=r"evil\.pth"):
        load_model(str(path))


def test_missing_tensor_is_named_with_the_file(hf_weights, tmp_path):
    tensors = load_file(hf_weights / "model.safetensors")
    del tensors["descriptor_decoder.conv_descriptor_b.bias"]
    path = tmp_path / "partial.safetensors"
    save_file(tensors, path)
    with pytest.raises(
        WeightsError, match=r"partial\.safetensors.*missing descriptor_decoder\.conv_descriptor_b\.bias"
    ):
        load_model(str(path))


def test_wrong_shape_is_named_with_expected_and_actual(hf_weights, tmp_path):
    tensors = load_file(hf_weights / "model.safetensors")
    tensors["encoder.conv_blocks.1.conv_a.weight"] = torch.zeros(64, 32, 3, 3)
    path = tmp_path / "misshapen.safetensors"
    save_file(tensors, path)
    with pytest.raises(WeightsError, match=r"conv_blocks\.1\.conv_a\.weight' has shape \(64, 32, 3, 3\), expected"):
        load_model(str(path))


def test_unrelated_checkpoint_is_not_mistaken_for_superpoint(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"layer.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(WeightsError, match="not a SuperPoint checkpoint"):
        load_model(str(path))


@pytest.mark.parametrize("name", ["model.safetensors", "superpoint_v1.pth"])
def test_corrupt_file_gets_a_clear_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(WeightsError, match=str(path).replace(".", r"\.")):
        load_model(str(path))


def test_missing_path_and_incomplete_directory_are_reported(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_model(str(tmp_path / "nowhere.safetensors"))
    with pytest.raises(WeightsError, match="has no model.safetensors"):
        load_model(str(tmp_path))


def test_a_bad_path_never_falls_back_to_random_weights(tmp_path):
    with pytest.raises(WeightsError):
        Detector(weights=str(tmp_path / "missing.pth"), device="cpu")


def test_random_weights_are_seeded_and_leave_the_global_generator_alone():
    state = torch.random.get_rng_state()
    first, again, other = (load_model("random", seed=s).state_dict() for s in (3, 3, 4))
    assert torch.equal(torch.random.get_rng_state(), state)
    name = "encoder.conv_blocks.0.conv_a.weight"
    assert torch.equal(first[name], again[name])
    assert not torch.equal(first[name], other[name])


def test_local_path_makes_no_network_call(hf_weights, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access while loading a local path")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    load_model(str(hf_weights))
    load_model(str(hf_weights / "model.safetensors"))


def run_loader(weights: str, environment: dict[str, str]) -> subprocess.CompletedProcess:
    """Load in a fresh interpreter: huggingface_hub reads its settings at import."""
    code = (
        "import sys\n"
        "from superpoint_ros.weights import WeightsError, load_model, read_safetensors\n"
        "try:\n"
        f"    load_model({weights!r})\n"
        "except WeightsError as error:\n"
        "    print(error); sys.exit(3)\n"
        "print('loaded')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **environment}, capture_output=True, text=True, timeout=120
    )


def test_offline_hub_without_cache_fails_with_one_sentence_on_how_to_use_a_local_copy(tmp_path):
    result = run_loader("magic-leap-community/superpoint", {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)})
    assert result.returncode == 3, result.stderr
    message = result.stdout.strip()
    assert message.count("\n") == 0 and "magic-leap-community/superpoint" in message
    assert "point `weights` at the local model.safetensors" in message


def test_unreachable_hub_fails_with_the_same_clear_error(tmp_path):
    environment = {"HF_HOME": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "2"}
    result = run_loader("magic-leap-community/superpoint", environment)
    assert result.returncode == 3, result.stderr
    assert "no cached copy exists" in result.stdout


def test_offline_hub_uses_the_cache(hf_weights, tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repository = tmp_path / "hub" / "models--magic-leap-community--superpoint"
    snapshot = repository / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes((hf_weights / "model.safetensors").read_bytes())
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text(commit)
    result = run_loader("magic-leap-community/superpoint", {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)})
    assert result.returncode == 0 and result.stdout.strip() == "loaded", result.stdout + result.stderr


def test_our_safetensors_reader_agrees_with_the_safetensors_library(tmp_path):
    tensors = {
        "f32": torch.randn(3, 4),
        "f16": torch.randn(5).half(),
        "bf16": torch.randn(2, 2).bfloat16(),
        "f64": torch.randn(1, 2, 3).double(),
        "empty": torch.zeros(0, 7),
    }
    path = tmp_path / "dtypes.safetensors"
    save_file(tensors, path, metadata={"format": "pt"})
    ours, theirs = read_safetensors(path), load_file(path)
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert ours[name].dtype == theirs[name].dtype and torch.equal(ours[name], theirs[name]), name


def test_truncated_safetensors_file_is_reported(hf_weights, tmp_path):
    path = tmp_path / "truncated.safetensors"
    path.write_bytes((hf_weights / "model.safetensors").read_bytes()[:5000])
    with pytest.raises(WeightsError, match=r"truncated\.safetensors is not a readable safetensors file"):
        load_model(str(path))
