"""What every benchmark shares: random weights whose keypoints follow the image, generated
scenes, the machine's description, the head of a record and percentiles. `bench` (the
pipeline) and `bench_node` (the node over DDS) both import from here, and from nowhere else in
the benchmark code; `soak`, `gpu_check` and the other benchmarks use it too."""

import datetime
import os
import pathlib
import platform
import shlex
import sys

import cv2
import numpy as np
import torch


def benchmark_weights(directory: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """Random SuperPoint weights in the hub layout whose keypoints follow the image content.

    Default-initialised random weights give every 8×8 cell the same winning pixel whatever the
    image, so a threshold keeps all cells or none. He-initialised convolutions (zero biases)
    keep the activations' spread through the encoder, and a large "no keypoint" bias makes the
    threshold bite: about a thousand keypoints in a 480×640 benchmark scene at the default
    settings, like trained weights on a natural image.
    """
    import transformers

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = transformers.SuperPointForKeypointDetection(transformers.SuperPointConfig())
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                    torch.nn.init.zeros_(module.bias)
            score_layer = model.keypoint_decoder.conv_score_b
            score_layer.weight.mul_(4.0)
            score_layer.bias[-1] = 9.5
    finally:
        torch.random.set_rng_state(generator_state)
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def benchmark_scene(height: int, width: int, seed: int) -> np.ndarray:
    """A BGR uint8 scene: shaded background, filled and outlined shapes, lines, sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    shading = 110 + 50 * np.sin(x / (width / 3) + seed) * np.cos(y / (height / 2))
    image = np.repeat(shading[..., None], 3, axis=2).astype(np.uint8)
    for _ in range(30 * height * width // (480 * 640) + 10):
        colour = tuple(int(value) for value in rng.integers(0, 256, 3))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        size = int(rng.integers(5, max(6, min(height, width) // 6)))
        thickness = -1 if rng.random() < 0.5 else 2
        shape = rng.integers(3)
        if shape == 0:
            cv2.circle(image, centre, size, colour, thickness)
        elif shape == 1:
            cv2.rectangle(image, centre, (centre[0] + size, centre[1] + size // 2), colour, thickness)
        else:
            cv2.line(image, centre, (int(rng.integers(0, width)), int(rng.integers(0, height))), colour, 2)
    noise = rng.normal(0.0, 2.0, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def machine_info() -> dict:
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    # The instruction sets that decide which convolution kernels run.
    isa = [name for name in ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if name in flags]
    info = {
        "cpu": cpu + (f" ({', '.join(isa)})" if isa else ""),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    for package in ("openvino", "transformers"):
        try:
            info[package] = __import__(package).__version__.split("-")[0]
        except ImportError:
            info[package] = None
    return info


def record_head(module: str, argv: list[str] | None, python: str = "python") -> dict:
    """The start of a benchmark's record: `date` (UTC, to the minute), `timestamp` (for file
    names), `command` (`python -m module` with `argv`, or this process's arguments when None)
    and `machine` (`machine_info`)."""
    now = datetime.datetime.now(datetime.UTC)
    return {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "timestamp": now.strftime("%Y%m%d-%H%M%S"),
        "command": shlex.join([python, "-m", module, *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine_info(),
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    """Median and 90th percentile, in milliseconds."""
    values = np.asarray(samples) * 1e3
    return {"p50": float(np.median(values)), "p90": float(np.percentile(values, 90))}


def homography_pairs(height: int, width: int, count: int = 4) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`(view_a, view_b, H)` triples: benchmark scenes and the same scene warped by a known
    homography `H` (3×3, view_a pixels → view_b pixels): turned 10°, scaled 0.9, tilted."""
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    angle = np.radians(10.0)
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * 0.9
    homography = np.eye(3)
    homography[:2, :2] = rotate
    homography[:2, 2] = centre - rotate @ centre
    homography[2, :2] = [2e-5 * 640 / width, -3e-5 * 480 / height]
    pairs = []
    for seed in range(count):
        view_a = benchmark_scene(height, width, 1000 + seed)
        view_b = cv2.warpPerspective(view_a, homography, (width, height), flags=cv2.INTER_LINEAR)
        pairs.append((view_a, view_b, homography))
    return pairs


def moving_sequence_pairs(height: int, width: int, frames: int = 20) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`(frame_k, frame_k+1, H)` for the demo's camera sequence (`scenes.camera_view` over a
    `2h × 2w` scene, `frames` frames): consecutive frames and the homography between them."""
    from superpoint_ros.tools.scenes import camera_homography, camera_view, draw_scene

    scene = draw_scene(2 * height, 2 * width)
    times = [index / frames for index in range(frames + 1)]
    views = [camera_view(scene, height, width, t) for t in times]
    to_view = [camera_homography(scene.shape, height, width, t) for t in times]
    return [(views[k], views[k + 1], to_view[k + 1] @ np.linalg.inv(to_view[k])) for k in range(frames)]
