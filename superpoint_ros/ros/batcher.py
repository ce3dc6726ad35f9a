"""`FrameBatcher`: the newest frame of each camera, handed to a worker thread in batches. No rclpy:
the node feeds it from its subscription callbacks, and tests drive it directly.

Latency stays bounded: `offer` only keeps the newest frame of each camera (a frame replaced
before the worker took it is counted as dropped); the worker runs `process` on whatever is
pending, and with several cameras first waits up to `batch_timeout_s` (from the oldest pending
frame) for the other cameras, so that all run as one batch.
"""

import dataclasses
import threading
import time
from collections.abc import Callable, Hashable

from superpoint_ros.ros.diagnostics import FrameCounters


@dataclasses.dataclass
class PendingFrame:
    """A frame waiting for the worker: its camera's key, the message, and when it arrived
    (`time.monotonic()` seconds)."""

    camera: Hashable
    message: object
    received_s: float


class FrameBatcher:
    """Holds the newest frame per camera and runs `process(frames)` on a worker thread.

    `counters[camera]` counts what `offer` saw (`dropped`); `process` counts the rest. Use
    `lock` for anything `process` shares with other threads. An exception in `process` is given
    to `on_error(frames, error)` and the worker goes on.
    """

    def __init__(
        self,
        cameras: list[Hashable],
        batch_timeout_s: float,
        process: Callable[[list[PendingFrame]], None],
        on_error: Callable[[list[PendingFrame], Exception], None],
        counters: dict[Hashable, FrameCounters] | None = None,
    ) -> None:
        self.lock = threading.Condition()
        self.counters = counters if counters is not None else {camera: FrameCounters() for camera in cameras}
        self._cameras = list(cameras)
        self._batch_timeout_s = batch_timeout_s
        self._process = process
        self._on_error = on_error
        self._pending: dict[Hashable, PendingFrame] = {}
        self._stopping = False
        self._worker = threading.Thread(target=self._work, name="superpoint_inference", daemon=True)
        self._worker.start()

    def offer(self, camera: Hashable, message: object, received_s: float | None = None) -> None:
        """Keep `message` as `camera`'s pending frame, replacing (and counting as dropped) an older one."""
        received_s = time.monotonic() if received_s is None else received_s
        with self.lock:
            if camera in self._pending:
                self.counters[camera].dropped += 1
            self._pending[camera] = PendingFrame(camera, message, received_s)
            self.lock.notify()

    def discard_pending(self) -> None:
        """Forget frames not yet taken (the node deactivates)."""
        with self.lock:
            self._pending.clear()

    def _take(self) -> list[PendingFrame] | None:
        """Block until a frame is pending; with several cameras, wait up to `batch_timeout_s`
        for the others too. None once stopping."""
        with self.lock:
            self.lock.wait_for(lambda: self._pending or self._stopping)
            if len(self._cameras) > 1 and not self._stopping:
                deadline_s = min(frame.received_s for frame in self._pending.values()) + self._batch_timeout_s
                while len(self._pending) < len(self._cameras) and not self._stopping:
                    remaining_s = deadline_s - time.monotonic()
                    if remaining_s <= 0:
                        break
                    self.lock.wait(remaining_s)
            if self._stopping:
                return None
            frames = list(self._pending.values())
            self._pending.clear()
            return frames

    def _work(self) -> None:
        while (frames := self._take()) is not None:
            try:
                self._process(frames)
            except Exception as error:  # whatever goes wrong must not end inference for good
                self._on_error(frames, error)

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive."""
        return self._worker.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the worker after the batch it runs; pending frames are dropped."""
        with self.lock:
            self._stopping = True
            self.lock.notify_all()
        self._worker.join(timeout=timeout_s)
