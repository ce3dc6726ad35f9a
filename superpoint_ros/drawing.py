"""The debug overlay: keypoints drawn on the frame, coloured and sized by score."""

import cv2
import numpy as np

from superpoint_ros.detector import Detections


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
