"""Where a weights file is: a local path (a file, or a directory in the hub layout) or a Hugging
Face hub repo, fetched through `huggingface_hub` and its cache. No torch: the OpenVINO detector
(`openvino_detector`) finds and fingerprints the file without loading it.
"""

import pathlib
import re

HUB_FILENAME = "model.safetensors"
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class WeightsError(RuntimeError):
    """The weights could not be found, read, or do not fit SuperPoint."""


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
