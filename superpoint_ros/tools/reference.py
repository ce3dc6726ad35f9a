"""transformers' SuperPoint as the yardstick: run it, compare our detections with its, and tell
rounding-level disagreements from real ones. Used by the benchmark and the backend tests;
needs `transformers` (a test and benchmark dependency only).

Two facts shape the comparison:

- transformers removes the border only at the top and left (its `_extract_keypoints` multiplies
  the full-resolution size by 8 once more), while we remove all four borders as the original
  SuperPoint does. `reference_detections` therefore runs it without top-k and applies the
  bottom/right border and the top-k to its output.
- An engine that rounds differently from PyTorch (OpenVINO) gives raw scores a few 1e-7 away
  from the reference's. That can only change an NMS or threshold decision where scores are
  that close to each other or to the threshold; `unexplained_differences` checks that every
  disagreeing keypoint is within reach of such a near-tie in the reference's raw score map.
"""

import dataclasses
import functools
import pathlib

import numpy as np
import torch

from superpoint_ros.detector import Detections, DetectionSettings


def load_reference_model(weights_directory: pathlib.Path | str, device: torch.device | str = "cpu"):
    import transformers

    model = transformers.SuperPointForKeypointDetection.from_pretrained(weights_directory)
    return model.eval().to(device)


@functools.cache
def reference_processor():
    from transformers.models.superpoint.image_processing_pil_superpoint import SuperPointImageProcessorPil

    return SuperPointImageProcessorPil(do_resize=False, do_grayscale=True)


def reference_processor_available() -> bool:
    """Whether transformers' SuperPoint image processor imports: it needs Pillow, which the GPU
    machine lacks (see `superpoint_ros.tools.gpu_check`)."""
    try:
        reference_processor()
    except ImportError:
        return False
    return True


def reference_pixel_values(images_bgr: list[np.ndarray]) -> torch.Tensor:
    """The reference image processor's output for BGR images: true grey in 3 equal channels,
    [0, 1], no resize. Without the processor, the same tensor from our conversion, which
    test_images.py holds bit-identical to the processor's."""
    if reference_processor_available():
        return reference_processor()([image[..., ::-1] for image in images_bgr], return_tensors="pt")["pixel_values"]
    from superpoint_ros.images import to_grey_batch

    return to_grey_batch(images_bgr, torch.device("cpu")).expand(-1, 3, -1, -1).contiguous()


def configure_reference(model, settings: DetectionSettings) -> None:
    """Set the reference's post-processing knobs; top-k stays off (see the module docstring)."""
    decoder = model.keypoint_decoder
    decoder.keypoint_threshold = settings.keypoint_threshold
    decoder.nms_radius = settings.nms_radius
    decoder.max_keypoints = -1
    decoder.border_removal_distance = settings.border_removal_distance


def run_reference(model, pixel_values: torch.Tensor, sizes: list[tuple[int, int]]):
    """transformers' forward + `post_process_keypoint_detection`: exactly what the benchmark times."""
    with torch.inference_mode():
        outputs = model(pixel_values=pixel_values)
        return outputs, reference_processor().post_process_keypoint_detection(outputs, sizes)


def reference_detections(
    model, images_bgr: list[np.ndarray], settings: DetectionSettings
) -> list[dict[str, np.ndarray]]:
    """Per image: integer pixel `keypoints` (x, y), `scores`, `descriptors`, with four borders."""
    configure_reference(model, settings)
    device = next(model.parameters()).device
    sizes = [image.shape[:2] for image in images_bgr]
    with torch.inference_mode():
        # transformers' own post-processing only rescales the keypoints, which is done here.
        outputs = model(pixel_values=reference_pixel_values(images_bgr).to(device))
    results = []
    for index, (height, width) in enumerate(sizes):
        valid = outputs.mask[index].bool()
        pixels = (outputs.keypoints[index][valid] * torch.tensor([width, height], device=device)).round()
        cells_high, cells_wide = height // 8, width // 8
        border = settings.border_removal_distance
        x, y = pixels.T
        keep = torch.nonzero((x < 8 * cells_wide - border) & (y < 8 * cells_high - border))[:, 0]
        scores = outputs.scores[index][valid][keep]
        if settings.max_keypoints >= 0:
            keep = keep[torch.argsort(-scores, stable=True)[: settings.max_keypoints]]
        results.append(
            {
                "keypoints": pixels[keep].cpu().numpy().astype(np.int64),
                "scores": outputs.scores[index][valid][keep].cpu().numpy(),
                "descriptors": outputs.descriptors[index][valid][keep].cpu().numpy(),
            }
        )
    return results


def reference_raw_scores(model, images_bgr: list[np.ndarray]) -> torch.Tensor:
    """The reference's per-pixel scores `(B, H', W')` before NMS, threshold and borders."""
    device = next(model.parameters()).device
    decoder = model.keypoint_decoder
    nms_radius = decoder.nms_radius
    with torch.inference_mode():
        pixel_values = model.extract_one_channel_pixel_values(reference_pixel_values(images_bgr).to(device))
        encoded = model.encoder(pixel_values, return_dict=False)[0]
        decoder.nms_radius = 0  # a 1×1 max-pool: the scores pass unchanged
        try:
            return decoder._get_pixel_scores(encoded)
        finally:
            decoder.nms_radius = nms_radius


@dataclasses.dataclass
class Comparison:
    """Ours against the reference for one image, keypoints matched by integer pixel."""

    count: int
    reference_count: int
    only_ours: list[tuple[int, int]]
    only_reference: list[tuple[int, int]]
    score_difference: float
    descriptor_difference: float

    @property
    def same_keypoints(self) -> bool:
        return not self.only_ours and not self.only_reference


def compare(ours: Detections, reference: dict[str, np.ndarray]) -> Comparison:
    """Keypoints matched by pixel (ours rounded; each image's keypoints are distinct pixels);
    the score and descriptor differences over the pixels both have."""
    ours_keys = _pixel_keys(np.rint(ours.keypoints))
    reference_keys = _pixel_keys(reference["keypoints"])
    _, ours_rows, reference_rows = np.intersect1d(ours_keys, reference_keys, assume_unique=True, return_indices=True)
    return Comparison(
        count=len(ours.keypoints),
        reference_count=len(reference["keypoints"]),
        only_ours=_pixels(np.setdiff1d(ours_keys, reference_keys, assume_unique=True)),
        only_reference=_pixels(np.setdiff1d(reference_keys, ours_keys, assume_unique=True)),
        score_difference=float(np.abs(ours.scores[ours_rows] - reference["scores"][reference_rows]).max(initial=0)),
        descriptor_difference=float(
            np.abs(ours.descriptors[ours_rows] - reference["descriptors"][reference_rows]).max(initial=0)
        ),
    )


# (x, y) pixels as one int64 each, ordered as the tuples are: x first, then y.
_KEY_BASE = 1 << 31


def _pixel_keys(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points).reshape(-1, 2).astype(np.int64)
    return points[:, 0] * _KEY_BASE + points[:, 1]


def _pixels(keys: np.ndarray) -> list[tuple[int, int]]:
    """`keys` as `(x, y)` tuples, sorted."""
    keys = np.sort(keys)
    return list(zip((keys // _KEY_BASE).tolist(), (keys % _KEY_BASE).tolist(), strict=True))


def unexplained_differences(
    points: list[tuple[int, int]],
    raw_scores: torch.Tensor,
    raw_difference: float,
    settings: DetectionSettings,
) -> list[tuple[int, int]]:
    """The keypoints among `points` (x, y) that no rounding of size `raw_difference` can explain.

    `raw_scores` `(H', W')` is the reference's pre-NMS map and `raw_difference` the largest
    |ours − reference| over it. Where no two scores in a pixel's NMS window are within
    2·`raw_difference` of each other, both maps order that window alike, so the pixel's
    first-round "is the window maximum" decision is the same in both. Call a pixel with such a
    near-equal neighbour a near-tie. The reference's two extra suppression rounds each look one
    radius further for suppressors and one more for maxima, so a flipped first-round decision
    can change keypoints up to 4·`nms_radius` pixels (Chebyshev) away, and nowhere else. A
    keypoint may also cross the threshold if its score is within `raw_difference` of it.
    """
    radius = settings.nms_radius
    height, width = raw_scores.shape
    scores = raw_scores.double()
    # -inf padding: windows never count pixels outside the map.
    padded = torch.nn.functional.pad(scores, (radius,) * 4, value=-torch.inf)
    near_tie = torch.zeros_like(scores, dtype=torch.bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            if (dy, dx) != (radius, radius):
                neighbour = padded[dy : dy + height, dx : dx + width]
                near_tie |= (neighbour - scores).abs() <= 2 * raw_difference
    reach = 4 * radius
    near_tie_within_reach = (
        torch.nn.functional.max_pool2d(near_tie[None, None].float(), 2 * reach + 1, stride=1, padding=reach)[0, 0] > 0
    )
    at_threshold = (raw_scores - settings.keypoint_threshold).abs() <= raw_difference
    explained = near_tie_within_reach | at_threshold
    return [(x, y) for x, y in points if not bool(explained[y, x])]


@dataclasses.dataclass
class ParityReport:
    """A detector against the reference on one batch, image by image."""

    comparisons: list[Comparison]
    raw_difference: float | None  # largest |ours − reference| raw score; only computed on a mismatch
    unexplained: list[list[tuple[int, int]]]

    @property
    def rounding_flips(self) -> int:
        """Keypoints on only one side, every one of them next to a near-tie (see above)."""
        return sum(len(c.only_ours) + len(c.only_reference) for c in self.comparisons)

    def failures(self, score_tolerance: float, descriptor_tolerance: float) -> list[str]:
        """What exceeds the tolerances. The near-tie allowance only holds while the raw score
        maps agree within `score_tolerance`: a larger difference would make anything a tie."""
        problems = []
        if self.raw_difference is not None and self.raw_difference > score_tolerance:
            problems.append(f"raw score maps differ by {self.raw_difference:.2e}")
        for index, (comparison, unexplained) in enumerate(zip(self.comparisons, self.unexplained, strict=True)):
            if unexplained:
                problems.append(f"image {index}: keypoints {unexplained[:5]} differ with no near-tie within reach")
            if comparison.score_difference > score_tolerance:
                problems.append(f"image {index}: scores differ by {comparison.score_difference:.2e}")
            if comparison.descriptor_difference > descriptor_tolerance:
                problems.append(f"image {index}: descriptors differ by {comparison.descriptor_difference:.2e}")
        return problems


def check_against_reference(detector, model, images_bgr: list[np.ndarray], settings: DetectionSettings) -> ParityReport:
    """Run `detector` and the reference `model` on the same BGR images and compare them.

    Top-k is left out of the keypoint-set check (`max_keypoints` must be −1): a flipped
    near-tie anywhere shifts which keypoint is k-th, which says nothing about the engine.
    """
    if settings.max_keypoints != -1:
        raise ValueError("check_against_reference compares complete keypoint sets; use max_keypoints=-1")
    ours = detector.detect_batch(images_bgr, settings=settings)
    theirs = reference_detections(model, images_bgr, settings)
    comparisons = [compare(mine, reference) for mine, reference in zip(ours, theirs, strict=True)]
    raw_difference = None
    unexplained = [[] for _ in images_bgr]
    if any(not comparison.same_keypoints for comparison in comparisons):
        from superpoint_ros.images import to_grey_batch

        with torch.inference_mode():
            our_raw = detector.network(to_grey_batch(images_bgr, detector.device))[0].float().cpu()
        reference_raw = reference_raw_scores(model, images_bgr).cpu()
        raw_difference = float((our_raw - reference_raw).abs().max())
        unexplained = [
            unexplained_differences(c.only_ours + c.only_reference, reference_raw[index], raw_difference, settings)
            for index, c in enumerate(comparisons)
        ]
    return ParityReport(comparisons, raw_difference, unexplained)
