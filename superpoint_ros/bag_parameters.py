"""What `superpoint-bag` takes from the nodes' world: the namespace each camera's detector node
would run in, and the detector's and tracker's parameters from a node parameters file. Every
bad input, output or option of the command is a `BagError`."""

import os
import pathlib
from collections.abc import Sequence

import yaml


class BagError(Exception):
    """A bad input, output or option: reported as one line with exit code 2."""


def camera_namespace(image_topic: str) -> str:
    """The namespace a detector node runs in for this camera, whose `image` is remapped to
    `image_topic`: `/cam0/image_raw` and `/cam0/image_raw/compressed` give `/cam0`, `/image`
    gives `` (the root)."""
    topic = "/" + image_topic.strip("/")
    topic = topic.removesuffix("/compressed")
    return topic.rsplit("/", 1)[0]


def _absolute(topic: str) -> str:
    return "/" + topic.strip("/")


def output_namespaces(image_topics: Sequence[str], detector_parameters: dict) -> dict[str, str]:
    """Each input image topic's output namespace. With the node's `image_topics` parameter set
    (several cameras in one node, at the root namespace, so relative names resolve against
    `/`), a topic listed there (or its
    `/compressed`) maps to `/<camera name>`, by `camera_names` or `camera0`, `camera1`, ...;
    any other topic maps to `camera_namespace(topic)`."""
    configured = [_absolute(t) for t in detector_parameters.get("image_topics") or []]
    names = detector_parameters.get("camera_names") or [f"camera{i}" for i in range(len(configured))]
    if len(names) != len(configured):
        raise BagError(f"camera_names has {len(names)} entries but image_topics has {len(configured)}")
    by_topic = dict(zip(configured, names, strict=True))
    namespaces = {}
    for topic in image_topics:
        base = _absolute(topic).removesuffix("/compressed")
        namespaces[topic] = f"/{by_topic[base]}" if base in by_topic else camera_namespace(topic)
    return namespaces


def read_parameters(params_file: str | os.PathLike | None) -> tuple[dict, dict]:
    """The `superpoint_detector` and `superpoint_tracker` parameters of a node parameters
    file (keys `superpoint_detector`, `/**/superpoint_detector`, `/ns/superpoint_detector`
    or `/**`, as `--params-file` applies them); raises `BagError`."""
    if params_file is None:
        return {}, {}
    path = pathlib.Path(params_file)
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise BagError(f"cannot read parameters file {path}: {' '.join(str(error).split())}") from None
    if not isinstance(content, dict):
        raise BagError(f"parameters file {path} is not a mapping of node names to ros__parameters")
    sections: dict[str, dict] = {"superpoint_detector": {}, "superpoint_tracker": {}}
    for key in sorted(content, key=lambda k: k != "/**"):
        node = str(key).rstrip("/").rsplit("/", 1)[-1]
        values = (content[key] or {}).get("ros__parameters", {}) if isinstance(content[key], dict) else {}
        for name, section in sections.items():
            if key == "/**" or node == name:
                section.update(values)
    return sections["superpoint_detector"], sections["superpoint_tracker"]


def detector_arguments(parameters: dict) -> dict:
    """`Detector` keyword arguments from the detector node's parameters (those it lacks keep
    `Detector`'s defaults), as the node passes them; raises `BagError` for an uneven resize."""
    arguments = {}
    names = {
        "weights": "weights",
        "weights_revision": "weights_revision",
        "architecture": "architecture",
        "device": "device",
        "precision": "precision",
        "tensorrt_cache_dir": "tensorrt_cache_dir",
        "int8_calibration": "calibration",
        "int8_calibration_count": "calibration_count",
        "int8_cache_dir": "quantization_cache_dir",
        "keypoint_threshold": "keypoint_threshold",
        "nms_radius": "nms_radius",
        "max_keypoints": "max_keypoints",
        "border_removal_distance": "border_removal_distance",
    }
    for parameter, argument in names.items():
        if parameter in parameters:
            # An empty string stands for "unset" in the node's string parameters.
            arguments[argument] = parameters[parameter] if parameters[parameter] != "" else None
    if "backend" in parameters:
        # Also as the node's parameter reads back: `onnxruntime (CPUExecutionProvider)`.
        arguments["backend"] = str(parameters["backend"]).split(" (", 1)[0]
    resize = (parameters.get("resize_height", 0), parameters.get("resize_width", 0))
    if (resize[0] == 0) != (resize[1] == 0):
        raise BagError(f"resize_height and resize_width must both be 0 or both be set, got {resize}")
    if resize[0]:
        arguments["resize"] = resize
    return arguments
