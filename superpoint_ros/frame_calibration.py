"""int8 calibrated on a live camera's first frames, while a float32 detector answers meanwhile.

```python
detector = Detector(weights=..., precision="float32", quantization_cache_dir=...)
calibration = FrameCalibration(detector, count=16)
for frame in camera:
    if calibration.wants_frames:
        calibration.offer(frame)
    detector.detect([frame])      # float32, then int8 once it took over
```

The first frame fixes the calibration shape; frames of another shape are passed over. When a
model calibrated on this camera's frames of that shape is in the detector's cache, it is
loaded; otherwise, once `count` frames are in, quantisation starts. Either runs in a background
thread, after which the int8 network replaces the float32 one between two `detect` calls and
`detector.precision` becomes `"int8"`.
"""

import logging
import threading

import numpy as np
import torch

from superpoint_ros.backends import check_precision
from superpoint_ros.detector import Detector, Logger
from superpoint_ros.images import check_image


class FrameCalibration:
    """Collects `count` frames for `detector`'s int8 network; see the module docstring. Raises
    `ValueError` when the detector's engine and device cannot run int8, or nncf is missing."""

    def __init__(self, detector: Detector, count: int, logger: Logger | None = None) -> None:
        from superpoint_ros.quantization import check_nncf

        if count < 1:
            raise ValueError(f"the calibration frame count must be >= 1, got {count}")
        check_precision(detector.engine, detector.device, "int8")
        check_nncf()
        self._detector = detector
        self._count = count
        self._logger = logger or logging.getLogger(__name__)
        self._frames: list[np.ndarray] | None = []

    @property
    def wants_frames(self) -> bool:
        """Whether `offer` still collects frames."""
        return self._frames is not None

    def offer(self, image: np.ndarray, channel_order: str = "bgr") -> None:
        """Collect `image` (as `Detector.detect` takes it); does nothing once enough were taken."""
        if self._frames is None:
            return
        check_image(image)
        with torch.inference_mode():
            frame = self._detector.network_input([image], channel_order)[0, 0].numpy(force=True)
        first = not self._frames
        if not first and frame.shape != self._frames[0].shape:
            return
        height, width = frame.shape
        description = f"the first {self._count} frames of a camera, {height}x{width}"
        self._frames.append(frame)
        cached = first and self._detector.int8_cache_path(description).is_file()
        if cached or len(self._frames) == self._count:
            frames, self._frames = self._frames, None
            threading.Thread(
                target=self._switch_to_int8, args=(description, frames), name="superpoint_int8", daemon=True
            ).start()

    def _switch_to_int8(self, description: str, frames: list[np.ndarray]) -> None:
        try:
            network = self._detector.int8_network(description, frames)
            # Compile for the camera's shape before taking over, so that no frame waits for it.
            network(torch.zeros((1, 1, *frames[0].shape)))
        except Exception as error:  # the float32 network keeps running
            self._logger.error(f"int8 quantisation failed, staying in float32: {error!r}")
            return
        self._detector.use_network(network, "int8")
        self._logger.info(f"Switched to the int8 network, calibrated on {description}")
