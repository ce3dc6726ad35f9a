#!/usr/bin/env bash
# The test suite: lint, then pytest against the colcon-installed package under pytest-xdist in
# TEST_WORKERS processes (default 3), one test module per worker at a time (`--dist loadfile`: a
# module's shared graph, node or launch stays in one process), the longest modules first
# (test/conftest.py). Extra arguments go to pytest.
#
# Much of the suite's wall time is waiting on child processes, DDS discovery and timeouts, so a
# third worker on two cores still helps (2026-12-01: 2 workers 247 s, 3 workers 217 s, 4 workers
# no faster than 3). Each worker has ROS domains of its own (test/domains.py).
# OMP_NUM_THREADS=1 (unless set): three workers' torch thread pools on two cores spend CPU
# waiting on each other (test_backends + test_parity alone: 57 s CPU with torch's default
# threads, 49 s with one; test_backends under xdist: 46 s, 27 s). OpenVINO is not affected.
#
# No test depends on how loaded the machine is: the cross-process delivery tests count the
# frames that reached the node (its /diagnostics), not how many it managed to answer in time, so
# they run beside the others (until 2026-12-02 they ran afterwards, alone, paced by the load).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/run.sh ruff check .
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} ./scripts/run.sh pytest -n "${TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder "$@"
