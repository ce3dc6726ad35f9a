"""The node's health as `diagnostic_msgs`, following `diagnostic_updater`'s conventions: one
`DiagnosticStatus` per camera, named `<node name>: <camera>`, with `hardware_id` the camera's
`frame_id`, published in a `DiagnosticArray` on `/diagnostics` once a second.

`diagnostic_updater` is not a dependency (it is not installable from PyPI, and the node needs
only its message layout): `FrameCounters` and `CameraHealth` keep the figures, `camera_status`
writes the status.
"""

import collections
import dataclasses

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
# Inference failing this many batches in a row is an error, not a glitch.
FAILURES_FOR_ERROR = 3
RECENT_SAMPLES = 100


@dataclasses.dataclass
class FrameCounters:
    """Counts since start. `dropped`: frames replaced by a newer one before inference;
    `rejected`: frames that could not be decoded (or are under 8 pixels on a side); `failed`:
    frames whose batch raised in inference;
    `batched_frames`: frames that shared a network run with frames of other cameras;
    `debug_images`: overlays drawn and published."""

    received: int = 0
    dropped: int = 0
    rejected: int = 0
    processed: int = 0
    failed: int = 0
    batched_frames: int = 0
    largest_batch: int = 0
    debug_images: int = 0


@dataclasses.dataclass
class CameraHealth:
    """What one camera's status is made of, updated by the node as frames come and go.

    Rates come from the difference of the counters between two reports. Times are seconds
    (`time.monotonic()`).
    """

    counters: FrameCounters = dataclasses.field(default_factory=FrameCounters)
    consecutive_failures: int = 0
    last_failure: str = ""
    last_frame_s: float | None = None
    frame_id: str = ""
    latencies_s: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=RECENT_SAMPLES))
    network_s: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=RECENT_SAMPLES))
    _last_report: tuple[float, int, int, int] | None = None

    def quiet_s(self, now_s: float, waiting_since_s: float) -> float:
        """Seconds without a frame at `now_s`: since the last frame, or since `waiting_since_s`
        (when the node began to expect frames: start, a new subscription, publishers appearing)
        if that is later."""
        if self.last_frame_s is None:
            return now_s - waiting_since_s
        return now_s - max(self.last_frame_s, waiting_since_s)

    def rates(self, now_s: float) -> tuple[float, float, float]:
        """Input rate and processed rate (Hz), and the share of received frames dropped, since the
        previous call (0 on the first)."""
        previous = self._last_report
        counters = self.counters
        self._last_report = (now_s, counters.received, counters.processed, counters.dropped)
        if previous is None or now_s <= previous[0]:
            return 0.0, 0.0, 0.0
        elapsed_s = now_s - previous[0]
        received, processed, dropped = (
            now - before for now, before in zip(self._last_report[1:], previous[1:], strict=True)
        )
        return received / elapsed_s, processed / elapsed_s, dropped / received if received else 0.0


def _milliseconds(samples: collections.deque, q: float) -> str:
    return f"{1000 * float(np.percentile(samples, q)):.1f}" if samples else "n/a"


def camera_status(
    name: str,
    health: CameraHealth,
    now_s: float,
    silence_s: float,
    waiting_since_s: float,
    static_values: dict[str, str],
) -> DiagnosticStatus:
    """The status of one camera at `now_s`.

    - ERROR: the last `FAILURES_FOR_ERROR` or more inference runs failed.
    - WARN: no frame for `silence_s` seconds (`CameraHealth.quiet_s`), or most frames since the
      previous report were dropped for newer ones.
    - OK otherwise.
    """
    input_hz, processed_hz, dropped_share = health.rates(now_s)
    quiet_s = health.quiet_s(now_s, waiting_since_s)
    if health.consecutive_failures >= FAILURES_FOR_ERROR:
        level, message = ERROR, f"inference failing ({health.consecutive_failures} in a row): {health.last_failure}"
    elif quiet_s >= silence_s:
        never = "no frame yet" if health.last_frame_s is None else "no frame"
        level, message = WARN, f"{never} for {quiet_s:.0f} s"
    elif dropped_share > 0.5:
        level, message = WARN, f"{100 * dropped_share:.0f}% of frames dropped for newer ones: inference is slower"
    else:
        level, message = OK, "ok"
    values = {
        "input rate (Hz)": f"{input_hz:.2f}",
        "processed rate (Hz)": f"{processed_hz:.2f}",
        "frames received": str(health.counters.received),
        "frames processed": str(health.counters.processed),
        "dropped for newer frames": str(health.counters.dropped),
        "rejected": str(health.counters.rejected),
        "inference failures": str(health.counters.failed),
        "latency p50 (ms)": _milliseconds(health.latencies_s, 50),
        "latency p95 (ms)": _milliseconds(health.latencies_s, 95),
        "network time per frame (ms)": _milliseconds(health.network_s, 50),
        "seconds since last frame": "never" if health.last_frame_s is None else f"{now_s - health.last_frame_s:.1f}",
        **static_values,
    }
    return DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=health.frame_id,
        values=[KeyValue(key=key, value=value) for key, value in values.items()],
    )


def statistics_line(name: str, topic: str, counters: FrameCounters, before: FrameCounters, period_s: float) -> str:
    """The periodic log line of camera `name`: what came since the counters were `before`, and
    the totals; when nothing came it names the `topic` listened to, so that a wrong remapping shows."""
    new = counters.received - before.received
    recent = f"{new} frames received" if new else f"nothing received on '{topic}'"
    return (
        f"{name}: {recent} in the last {period_s:g} s; since start {counters.received} frames received, "
        f"{counters.processed} processed, {counters.dropped} dropped for newer frames, "
        f"{counters.rejected} rejected as undecodable or too small, "
        f"{counters.failed} lost to inference errors; "
        f"{counters.batched_frames} ran batched with other cameras (largest batch {counters.largest_batch})"
    )
