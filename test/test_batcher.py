"""The frame batcher on its own, without DDS: the newest frame per camera wins, replaced frames are
counted, several cameras are batched within `batch_timeout`, and a failing batch does not end the
worker. Arrival times are given explicitly, so no test depends on how fast this machine is."""

import queue
import threading
import time

import pytest

from superpoint_ros.ros.batcher import FrameBatcher

WAIT_S = 20.0


class Recorder:
    """A `process` that records each batch as `[(camera, message), ...]` and can be held."""

    def __init__(self) -> None:
        self.batches: queue.Queue = queue.Queue()
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()

    def __call__(self, frames) -> None:
        self.started.set()
        self.release.wait(WAIT_S)
        self.batches.put(sorted((frame.camera, frame.message) for frame in frames))

    def next(self):
        return self.batches.get(timeout=WAIT_S)


@pytest.fixture
def batchers():
    made = []

    def make(cameras, batch_timeout_s, process, on_error=None):
        batcher = FrameBatcher(cameras, batch_timeout_s, process, on_error or (lambda frames, error: None))
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.stop()


def test_a_frame_replaced_before_the_worker_took_it_is_dropped_and_counted(batchers):
    recorder = Recorder()
    batcher = batchers(["a"], 0.0, recorder)
    recorder.release.clear()
    batcher.offer("a", 1)
    assert recorder.started.wait(WAIT_S)  # the worker holds frame 1
    batcher.offer("a", 2)
    batcher.offer("a", 3)
    recorder.release.set()
    assert recorder.next() == [("a", 1)]
    assert recorder.next() == [("a", 3)], "only the newest pending frame runs"
    assert batcher.counters["a"].dropped == 1


def test_a_camera_waits_up_to_batch_timeout_for_the_others_and_runs_with_them(batchers):
    recorder = Recorder()
    batcher = batchers(["a", "b"], 10.0, recorder)
    batcher.offer("a", 1)
    time.sleep(0.2)  # long beside a thread switch, short beside the 10 s timeout
    assert recorder.batches.empty(), "a ran before b came or its timeout passed"
    batcher.offer("b", 1)
    assert recorder.next() == [("a", 1), ("b", 1)]


def test_a_frame_whose_batch_timeout_has_passed_runs_without_the_other_cameras(batchers):
    recorder = Recorder()
    batcher = batchers(["a", "b"], 0.05, recorder)
    batcher.offer("a", 1, received_s=time.monotonic() - 1.0)
    assert recorder.next() == [("a", 1)]
    assert batcher.counters["b"].dropped == 0


def test_an_exception_in_a_batch_goes_to_on_error_and_the_next_batch_runs(batchers):
    errors = []
    done = queue.Queue()

    def process(frames):
        if frames[0].message == "bad":
            raise RuntimeError("injected")
        done.put(frames[0].message)

    batcher = batchers(["a"], 0.0, process, lambda frames, error: errors.append((len(frames), repr(error))))
    batcher.offer("a", "bad")
    deadline_s = time.monotonic() + WAIT_S
    while not errors and time.monotonic() < deadline_s:
        time.sleep(0.01)
    batcher.offer("a", "good")
    assert done.get(timeout=WAIT_S) == "good"
    assert errors == [(1, "RuntimeError('injected')")]


def test_stop_ends_the_worker_and_discards_what_is_pending(batchers):
    recorder = Recorder()
    batcher = batchers(["a", "b"], 10.0, recorder)
    batcher.offer("a", 1)
    batcher.stop(timeout_s=WAIT_S)
    assert recorder.batches.empty()
    assert not batcher.running
