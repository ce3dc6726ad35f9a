"""Images to calibrate int8 quantisation with: our own photograph-like scenes, or the user's.

Post-training quantisation fixes each activation's int8 range from the values a few images
produce, so those images must look like what the camera will see. Crude synthetic shapes on a
flat background leave most of the input range and most spatial frequencies unvisited. The
scenes here follow the statistics of photographs instead (the "dead leaves" model: occluding
objects of power-law sizes, each with its own shading and texture, over 1/f noise), under
uneven lighting and a little defocus, stretched so that every scene spans the full [0, 1]
range with a few clipped shadows and highlights. They are drawn in code, so no image file
with an unclear licence is involved. Needs numpy and OpenCV only.
"""

import pathlib

import cv2
import numpy as np

CALIBRATION_SHAPE = (480, 640)
"""(height, width) the built-in scenes are drawn at, and user images are resized to."""
CALIBRATION_COUNT = 16
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")
_CLIPPED_SHARE = 0.005  # of pixels at each end of the range, as in a normally exposed photograph


def calibration_scenes(
    count: int = CALIBRATION_COUNT, height: int = CALIBRATION_SHAPE[0], width: int = CALIBRATION_SHAPE[1], seed: int = 0
) -> list[np.ndarray]:
    """`count` grey uint8 `height × width` scenes; each spans 0 to 255."""
    rng = np.random.default_rng(seed)
    return [_photograph_like_scene(height, width, rng) for _ in range(count)]


def _photograph_like_scene(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) / max(height, width)
    labels = _dead_leaves(height, width, rng)
    leaves = labels.max() + 1
    # Each leaf: a base brightness, a linear shading across it and its own texture strength.
    base = rng.uniform(0.0, 1.0, leaves).astype(np.float32)
    slope_x, slope_y = rng.normal(0.0, 0.6, (2, leaves)).astype(np.float32)
    texture_strength = rng.choice([0.0, 0.05, 0.15, 0.3], leaves).astype(np.float32)
    image = base[labels] + slope_x[labels] * (x - x.mean()) + slope_y[labels] * (y - y.mean())
    image += texture_strength[labels] * _pink_noise(height, width, rng)
    # Light falling off across the frame, and a vignette.
    lighting = 1.0 + rng.uniform(-0.4, 0.4) * (x - 0.5) + rng.uniform(-0.4, 0.4) * (y - 0.3)
    lighting -= 0.3 * ((x - x.mean()) ** 2 + (y - y.mean()) ** 2)
    image *= lighting
    sigma = rng.uniform(0.3, 1.5)
    image = cv2.GaussianBlur(image, (0, 0), sigma)
    image += rng.normal(0.0, rng.uniform(0.003, 0.015), image.shape).astype(np.float32)
    low, high = np.quantile(image, [_CLIPPED_SHARE, 1 - _CLIPPED_SHARE])
    stretched = (image - low) / max(high - low, 1e-6)
    return np.clip(np.rint(255 * stretched), 0, 255).astype(np.uint8)


def _dead_leaves(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """`(H, W)` int32 labels of occluding shapes, later ones on top; radii follow the 1/r³
    density of natural scenes, from 2 px to half the frame."""
    labels = np.zeros((height, width), np.int32)
    smallest, largest = 2.0, max(height, width) / 2
    count = int(0.004 * height * width) + 50
    # Inverse-CDF sampling of p(r) ∝ r⁻³ on [smallest, largest].
    uniform = rng.uniform(0.0, 1.0, count)
    radii = 1 / np.sqrt(uniform / largest**2 + (1 - uniform) / smallest**2)
    for label, radius in enumerate(radii, start=1):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        kind = rng.integers(3)
        if kind == 0:
            cv2.circle(labels, centre, int(radius), label, -1)
        elif kind == 1:
            size = (float(2 * radius), float(2 * radius * rng.uniform(0.2, 1.0)))
            corners = cv2.boxPoints((centre, size, float(rng.uniform(0, 180))))
            cv2.fillPoly(labels, [np.rint(corners).astype(np.int32)], label)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
            points = np.array(centre) + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
            cv2.fillPoly(labels, [np.rint(points).astype(np.int32)], label)
    return labels


def _pink_noise(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean noise of unit standard deviation whose amplitude spectrum falls as 1/f, like
    photographs'."""
    frequency_y = np.fft.fftfreq(height)[:, None]
    frequency_x = np.fft.rfftfreq(width)[None, :]
    frequency = np.hypot(frequency_y, frequency_x)
    frequency[0, 0] = 1.0
    spectrum = np.fft.rfft2(rng.normal(size=(height, width))) / frequency
    spectrum[0, 0] = 0.0
    noise = np.fft.irfft2(spectrum, s=(height, width))
    return (noise / noise.std()).astype(np.float32)


def read_calibration_images(
    directory: str | pathlib.Path, count: int = CALIBRATION_COUNT, shape: tuple[int, int] = CALIBRATION_SHAPE
) -> list[np.ndarray]:
    """The first `count` images of `directory` (by name), as grey uint8 resized to `shape`.

    Raises `ValueError` when the directory does not exist or holds no readable image.
    """
    folder = pathlib.Path(directory).expanduser()
    if not folder.is_dir():
        raise ValueError(
            f"int8 calibration must be 'scenes', 'frames' (node) or a directory of images: {folder} does not exist"
        )
    paths = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    images = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            continue
        if image.shape != shape:
            image = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
        images.append(image)
        if len(images) == count:
            break
    if not images:
        raise ValueError(f"calibration directory {folder} holds no readable image ({', '.join(IMAGE_SUFFIXES)})")
    return images
