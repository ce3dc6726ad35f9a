"""Shared fixtures: weights written in the Hugging Face layout, and images with structure.

No hub is reachable here, so every test makes its own weights. They come from transformers'
own `SuperPointForKeypointDetection` (re-initialised with PyTorch's default layer init, which
keeps activations lively) and are written with `save_pretrained`, so the file layout is the
hub's and not something our loader's author chose.

torch is imported where it is used: pytest-xdist's controller loads this file before it starts
the workers, and importing torch there (about 2 s of CPU) would only delay them.
"""

import fcntl
import itertools
import os
import pathlib
import shutil

import cv2
import numpy as np
import pytest

from domains import private_domain_id

# Before anything initialises rclpy: this process, every node and CLI it starts, and launch_testing's
# child processes join this worker's domain (see domains.py), never the default one.
os.environ["ROS_DOMAIN_ID"] = str(private_domain_id())


def make_hf_weights(directory: pathlib.Path, seed: int, score_head_scale: float = 1.0) -> pathlib.Path:
    """Write `config.json` + `model.safetensors` of a random SuperPoint into `directory`.

    `score_head_scale` multiplies the last keypoint-head layer, sharpening the softmax so that
    scores spread out and thresholds select something.
    """
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(seed)
    model = transformers.SuperPointForKeypointDetection(transformers.SuperPointConfig())
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.reset_parameters()
    with torch.no_grad():
        model.keypoint_decoder.conv_score_b.weight.mul_(score_head_scale)
        model.keypoint_decoder.conv_score_b.bias.mul_(score_head_scale)
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def run_directory(tmp_path_factory) -> pathlib.Path:
    """The directory that every pytest-xdist worker of this run shares: the one above the
    workers' own temporary directories (the run's own one without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared_hf_weights(tmp_path_factory, name: str, **options) -> pathlib.Path:
    """`make_hf_weights(..., **options)` written once per run into `name` under `run_directory`.
    The workers take turns (a lock beside it); the first writes it, the others read it. Only a
    worker that builds transformers' model pays for importing it (about 4 s of CPU). Tests copy
    these files, never write into the directory."""
    directory = run_directory(tmp_path_factory) / name
    with open(directory.with_name(f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not directory.exists():
            partial = directory.with_name(f"{name}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            make_hf_weights(partial, **options)
            partial.rename(directory)
    return directory


@pytest.fixture(scope="session")
def hf_weights(tmp_path_factory) -> pathlib.Path:
    return shared_hf_weights(tmp_path_factory, "hf_weights", seed=1)


@pytest.fixture(scope="session")
def sharp_hf_weights(tmp_path_factory) -> pathlib.Path:
    return shared_hf_weights(tmp_path_factory, "sharp_hf_weights", seed=2, score_head_scale=25.0)


def memoised_reference_model(weights: pathlib.Path):
    """transformers' SuperPoint with `weights`, its encoder computing each distinct input once
    (`helpers.MemoisedForward`): the parity tests feed it the same images under many settings."""
    pytest.importorskip("transformers")
    from superpoint_ros.tools.reference import load_reference_model

    from helpers import MemoisedForward

    model = load_reference_model(weights)
    model.encoder.forward = MemoisedForward(model.encoder.forward)
    return model


@pytest.fixture(scope="session")
def reference_model(hf_weights):
    """transformers' SuperPoint with `hf_weights`: the yardstick of the parity tests."""
    return memoised_reference_model(hf_weights)


@pytest.fixture(scope="session")
def sharp_reference_model(sharp_hf_weights):
    return memoised_reference_model(sharp_hf_weights)


def structured_image(height: int, width: int, seed: int) -> np.ndarray:
    """A BGR uint8 scene: gradient background, checkerboard patch, filled and outlined shapes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0] = (255 * x / max(width - 1, 1)).astype(np.uint8)
    image[..., 1] = (255 * y / max(height - 1, 1)).astype(np.uint8)
    image[..., 2] = 128
    square = max(4, min(height, width) // 10)
    top, left = rng.integers(0, max(1, height // 2)), rng.integers(0, max(1, width // 2))
    checker = ((y // square + x // square) % 2 == 0) & (y >= top) & (y < top + 4 * square)
    checker &= (x >= left) & (x < left + 4 * square)
    image[checker] = (20, 20, 20)
    for _ in range(6):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        size = int(rng.integers(3, max(4, min(height, width) // 4)))
        if rng.random() < 0.5:
            cv2.circle(image, center, size, colour, thickness=int(rng.choice([-1, 2])))
        else:
            corner = (center[0] + size, center[1] + size // 2)
            cv2.rectangle(image, center, corner, colour, thickness=int(rng.choice([-1, 1])))
    cv2.line(image, (0, height - 1), (width - 1, 0), (255, 255, 255), 1)
    return image


def resized_grey(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The float32 grey `size` (height, width) image a detector with `resize=size` feeds its
    network: grey conversion, then the antialiased bilinear resize."""
    import torch
    from torch.nn import functional

    from superpoint_ros.images import to_grey_batch

    grey = to_grey_batch([image], torch.device("cpu"))
    return functional.interpolate(grey, size=size, mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()


def through_resize(keypoints: np.ndarray, network_size: tuple[int, int], image_size: tuple[int, int]) -> np.ndarray:
    """Pixel centres `(N, 2)` (x, y) of a `network_size` (h, w) image mapped into an `image_size`
    (H, W) one, each axis by its own ratio: `(x + 0.5) · W/w − 0.5`, `(y + 0.5) · H/h − 0.5`."""
    ratios = np.array([image_size[1] / network_size[1], image_size[0] / network_size[0]], np.float32)
    return (keypoints + np.float32(0.5)) * ratios - np.float32(0.5)


@pytest.fixture(scope="module")
def graph():
    """A real rclpy graph (`ros_graph.Graph`) for one test module."""
    from ros_graph import Graph

    graph = Graph()
    yield graph
    graph.close()


_node_namespaces = itertools.count()


@pytest.fixture
def start_node(graph, request):
    """Start detector nodes (random weights, CPU) on `graph`, each in a fresh namespace:
    `start_node(cli_args=None, **parameters) -> (node, namespace)`. They are removed after the test."""
    from rclpy.parameter import Parameter

    from superpoint_ros.ros.node import DetectorNode

    started = []

    def start(cli_args=None, **parameters):
        module = request.module.__name__.rpartition(".")[2]
        namespace = f"/{module}_{os.getpid()}_{next(_node_namespaces)}"
        overrides = [Parameter("weights", value="random"), Parameter("device", value="cpu")]
        overrides += [Parameter(name, value=value) for name, value in parameters.items()]
        node = DetectorNode(
            namespace=namespace, parameter_overrides=overrides, context=graph.context, cli_args=cli_args
        )
        started.append(graph.add(node))
        return node, namespace

    yield start
    for node in started:
        graph.remove(node)


@pytest.fixture
def processes():
    """`processes(child)` registers a child process (`processes.ChildProcess`), stopped
    (SIGINT) at the end of the test."""
    started = []
    yield started.append
    for child in reversed(started):
        child.stop()


@pytest.fixture(scope="session", autouse=True)
def prepared_random_network(tmp_path_factory):
    """The torch-free network for `weights: random`, which most node processes of the tests load,
    prepared in the user's cache before they start (a no-op once it is there). Otherwise the
    first node processes, often started together, would each prepare it in a child of their own.
    The pytest-xdist workers take turns (a lock in the directory above their temporary
    directories), so one of them prepares it and the others find it in the cache."""
    from superpoint_ros.openvino_engine import openvino_available

    if openvino_available():
        from superpoint_ros import openvino_ir

        with open(run_directory(tmp_path_factory) / "prepared_random_network.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            openvino_ir.prepare(openvino_ir.NetworkRequest("random"))


# The modules that take longest, longest first (`--durations`; most of it is waiting on child
# processes, discovery and timeouts). They are collected first, so that under pytest-xdist they
# start first and the run does not end with one worker still busy on one of them. The first four
# go to the four workers, one each; after that, a worker gets the next module as soon as it has
# two tests or fewer left (xdist's loadfile scheduling), so a module of one or two tests brings the
# one after it to the same worker.
LONGEST_MODULES = (
    "test_launch_recipes",
    "test_openvino_detector",
    "test_lifecycle",
    "test_weights",
    "test_node_processes",
    "test_node_delivery",
    "test_tracker_hostile",
    "test_build",
    "test_gpu_check",
    "test_bags",
    "test_backends",
    "test_mit_engines",
    "test_node_inputs",
    "test_node",
    "test_int8",
    "test_parity",
    "test_camera_input",
    "test_bench",
    "test_cli",
    "test_imports",
    "test_node_startup",
)


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))
