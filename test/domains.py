"""The ROS domain ids of this test run. No heavy imports: conftest sets `ROS_DOMAIN_ID` from here
before anything initialises rclpy.

Every pytest-xdist worker has domains of its own, so a worker never discovers another worker's
nodes (a stray match would slow discovery and could answer a probe, a `ros2 param dump` or a
`ros2 lifecycle` meant for this worker's node). Within one run the ids are distinct by
construction; another run on the same machine (another checkout's suite) picks its block from a
key of its own (the pid, or the id xdist gives the whole run), so two runs rarely share one.

Fast DDS takes domain ids 0-232 (its ports are computed from the id); 0, the default, is left to
whatever else runs here. Each worker has one private domain in 1-100 (its graph and the child
processes it starts) and `SPARE_DOMAINS` in 101-232 for tests that need graphs of their own: the
launch recipes take the first ones (one each), the `ros2 lifecycle` CLI test the last.
"""

import os

SPARE_DOMAINS = 7
_PRIVATE_FIRST, _PRIVATE_COUNT = 1, 100
_SPARE_FIRST, _SPARE_COUNT = 101, 132


def _worker() -> tuple[int, int, int]:
    """(this worker's index, the number of workers, a key shared by the workers of this run)."""
    name = os.environ.get("PYTEST_XDIST_WORKER")
    if name is None:
        return 0, 1, os.getpid()
    count = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    # A worker that replaces a crashed one gets a new name (gw<count> and up), and the dead one's domains.
    return int(name.removeprefix("gw")) % count, count, int(os.environ["PYTEST_XDIST_TESTRUNUID"], 16)


def _block(first: int, available: int, size: int) -> int:
    """The first id of this worker's block of `size` ids among `available` ids from `first`."""
    index, count, key = _worker()
    slots = available // (size * count)
    assert slots >= 1, f"{count} workers need {size * count} domain ids; there are {available}"
    return first + ((key % slots) * count + index) * size


def private_domain_id() -> int:
    """This worker's domain: its graph and the child processes it starts."""
    return _block(_PRIVATE_FIRST, _PRIVATE_COUNT, 1)


def spare_domain_ids() -> range:
    """`SPARE_DOMAINS` more domains of this worker's own."""
    first = _block(_SPARE_FIRST, _SPARE_COUNT, SPARE_DOMAINS)
    return range(first, first + SPARE_DOMAINS)
