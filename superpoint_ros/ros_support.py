"""Small pieces the tracker node builds on: parameter descriptors with ranges, and error logs
throttled per distinct text."""

import time

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


def describe(description: str, read_only: bool = False, **constraints) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, read_only=read_only, **constraints)


def integer_range(low: int, high: int) -> dict:
    return {"integer_range": [IntegerRange(from_value=low, to_value=high, step=1)]}


def float_range(low: float, high: float) -> dict:
    return {"floating_point_range": [FloatingPointRange(from_value=low, to_value=high, step=0.0)]}


class ErrorThrottle:
    """Says whether a text should be logged now: not if the same text was logged in the last
    `period_s` seconds."""

    def __init__(self, period_s: float = 5.0) -> None:
        self.period_s = period_s
        self._logged_at: dict[str, float] = {}

    def allows(self, text: str) -> bool:
        now_s = time.monotonic()
        if len(self._logged_at) > 1000:
            # Texts name sizes from the input, so a hostile publisher could make endless new ones.
            self._logged_at = {t: at_s for t, at_s in self._logged_at.items() if now_s - at_s < self.period_s}
        if now_s - self._logged_at.get(text, -self.period_s) < self.period_s:
            return False
        self._logged_at[text] = now_s
        return True
