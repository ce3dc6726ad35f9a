"""The debug overlays: keypoints drawn on the frame, coloured and sized by score; feature
tracks as trails coloured by their length."""

import cv2
import numpy as np

from superpoint_ros.feature_types import Detections


def grey_or_colour_to_bgr8(image: np.ndarray) -> np.ndarray:
    """A displayable `H×W×3` uint8 BGR copy of any image `Detector.detect` accepts (BGR order)."""
    if image.dtype == np.uint8:
        scaled = image
    elif image.dtype == np.uint16:
        scaled = (image >> 8).astype(np.uint8)
    else:
        scaled = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    if scaled.ndim == 2 or scaled.shape[2] == 1:
        return cv2.cvtColor(np.ascontiguousarray(scaled.reshape(scaled.shape[:2])), cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(scaled[..., :3])


def draw_detections(image_bgr8: np.ndarray, detections: Detections, caption: str | None = None) -> np.ndarray:
    """Draw on `image_bgr8` (in place, also returned): one circle per keypoint, red for the best
    score and blue for the weakest, larger for stronger; `caption` in the top-left corner."""
    if len(detections.scores):
        low, high = float(detections.scores.min()), float(detections.scores.max())
        strength = (detections.scores - low) / (high - low) if high > low else np.ones_like(detections.scores)
        colours = cv2.applyColorMap((strength * 255).astype(np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0]
        radii = 1 + np.round(3 * strength).astype(int)
        # Keypoints are at pixel centres; cv2 takes integer centres, with shift=2 for quarter pixels.
        centres = np.round(detections.keypoints * 4).astype(int)
        for (x, y), radius, colour in zip(centres, radii, colours, strict=True):
            cv2.circle(image_bgr8, (int(x), int(y)), int(radius) * 4, tuple(int(c) for c in colour), 1, cv2.LINE_AA, 2)
    if caption:
        cv2.putText(image_bgr8, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image_bgr8, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return image_bgr8


class TrackTrails:
    """The last `length` pixel positions of each track in the newest frame, for drawing."""

    def __init__(self, length: int = 10) -> None:
        self.length = length
        self._trails: dict[int, list[tuple[float, float]]] = {}

    def update(self, ids: np.ndarray, keypoints: np.ndarray) -> list[np.ndarray]:
        """Add one frame's `(N,)` ids at `(N, 2)` pixels; returns each one's trail, `(L, 2)`
        oldest first. Tracks absent from this frame are forgotten."""
        trails = {}
        for track_id, point in zip(ids.tolist(), keypoints.tolist(), strict=True):
            trail = self._trails.get(track_id, [])[-(self.length - 1) :] if self.length > 1 else []
            trails[track_id] = [*trail, tuple(point)]
        self._trails = trails
        return [np.array(trails[track_id]) for track_id in ids.tolist()]


def draw_tracks(image_bgr8: np.ndarray, trails: list[np.ndarray], lengths: np.ndarray, caption: str) -> np.ndarray:
    """Draw on `image_bgr8` (in place, also returned): each track's trail and a dot at its
    newest point, blue for new tracks through red for tracks seen in 20 frames or more;
    `caption` in the top-left corner."""
    if len(trails):
        strength = (np.minimum(lengths, 20) - 1) / 19
        colours = cv2.applyColorMap((strength * 255).astype(np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0]
        for trail, colour in zip(trails, colours, strict=True):
            colour = tuple(int(c) for c in colour)
            # Quarter-pixel fixed point (shift=2), as in draw_detections.
            points = np.round(trail * 4).astype(np.int32)
            if len(points) > 1:
                cv2.polylines(image_bgr8, [points], False, colour, 1, cv2.LINE_AA, 2)
            cv2.circle(image_bgr8, (int(points[-1, 0]), int(points[-1, 1])), 8, colour, -1, cv2.LINE_AA, 2)
    cv2.putText(image_bgr8, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image_bgr8, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return image_bgr8
