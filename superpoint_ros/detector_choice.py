"""`create_detector`: the detector for a configuration, the torch-free `OpenVinoDetector` where it
gives `Detector`'s results, else `Detector` itself.

The torch-free detector saves the ~250 MB of RSS that importing torch costs (docs/memory.md). It
runs when the network would run in OpenVINO on the CPU anyway:
- the device is `cpu`, or `auto` on a machine where torch could not see a GPU: its build has no
  CUDA, or no NVIDIA driver is loaded (`cuda_possible`, which reads files and imports nothing);
- the backend is `openvino`, or `auto` with OpenVINO installed;
- the precision is float32, bfloat16, or int8 calibrated on scenes or a directory (`calibration`
  `frames`, int8 taking over from float32 on a camera's first frames, is `Detector`'s);
- no `resize` is asked for: its antialiased resize is torch's.
Anything else (CUDA, the torch or onnxruntime engines, int8 on a camera's frames, a resize)
gets `Detector`, as before; so does a machine where the network cannot be prepared and cached.
"""

import importlib.util
import logging
import pathlib
import re

from superpoint_ros.openvino_engine import openvino_available

NVIDIA_DRIVER = pathlib.Path("/proc/driver/nvidia/version")


def cuda_possible(driver: pathlib.Path = NVIDIA_DRIVER) -> bool:
    """False when torch certainly sees no CUDA GPU: its build has none (`torch/version.py` says
    `cuda = None`) or no NVIDIA driver is loaded (`driver` is absent). Imports nothing."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    version_file = pathlib.Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        source = version_file.read_text()
    except OSError:
        return True  # cannot tell: let torch decide
    if re.search(r"^cuda\b[^=\n]*=\s*None\s*$", source, re.MULTILINE):
        return False
    return driver.exists()


def runs_without_torch(
    device: str, backend: str, precision: str, calibration: str = "scenes", resize: tuple[int, int] | None = None
) -> bool:
    """Whether `create_detector` gives the torch-free `OpenVinoDetector` for these arguments."""
    on_cpu = device == "cpu" or (device == "auto" and not cuda_possible())
    return (
        on_cpu
        and backend in ("auto", "openvino")
        and openvino_available()
        and precision in ("float32", "bfloat16", "int8")
        and calibration != "frames"
        and resize is None
    )


def create_detector(
    device: str = "auto",
    backend: str = "auto",
    precision: str = "float32",
    calibration: str = "scenes",
    resize: tuple[int, int] | None = None,
    **arguments,
):
    """`OpenVinoDetector(...)` where `runs_without_torch`, else `Detector(...)`, with `arguments`
    passed on (their names are `Detector`'s; `tensorrt_cache_dir` is `Detector`'s only,
    `network_cache_dir` and `python` `OpenVinoDetector`'s only). Should this machine stop the
    torch-free network from being prepared (`openvino_ir.PreparationError`: a cache directory
    that cannot be written, say), a warning says so and `Detector` runs instead."""
    if runs_without_torch(device, backend, precision, calibration, resize):
        from superpoint_ros.openvino_detector import OpenVinoDetector
        from superpoint_ros.openvino_ir import PreparationError

        torch_free = {name: value for name, value in arguments.items() if name != "tensorrt_cache_dir"}
        try:
            return OpenVinoDetector(precision=precision, calibration=calibration, **torch_free)
        except PreparationError as error:
            logger = arguments.get("logger") or logging.getLogger(__name__)
            logger.warning(f"{error}; running the network with torch instead (about 250 MB more memory)")
        arguments.pop("network_cache_dir", None)
        arguments.pop("python", None)
    from superpoint_ros.detector import Detector

    return Detector(
        device=device, backend=backend, precision=precision, calibration=calibration, resize=resize, **arguments
    )
