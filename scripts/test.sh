#!/usr/bin/env bash
# The test suite: lint, then pytest against the colcon-installed package under pytest-xdist in
# TEST_WORKERS processes (default 4), one test module per worker at a time (`--dist loadfile`: a
# module's shared graph, node or launch stays in one process), the longest modules first
# (test/conftest.py). Extra arguments go to pytest.
#
# Much of the suite's wall time is waiting on child processes, DDS discovery and timeouts, so
# more workers than cores help: on two cores, 2026-12-02, 3 workers 180 s and 4 workers 164 s
# (one run each, one after the other). 2026-12-01, when the delivery tests still depended on
# the load, 4 were no faster than 3. Each worker has ROS domains of its own (test/domains.py).
#
# Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set (this machine sets it): about
# 190 Python processes start during a run, each importing this package, and each worker
# rewrites the test modules' asserts; without the cache each compiles them again (2026-12-02,
# 4 workers: 299 s of CPU, 164 s wall without the cache; 277 s, 151 s with it). The caches are
# the ignored __pycache__ directories.
#
# OMP_NUM_THREADS=1 (unless set): the workers' torch thread pools on two cores spend CPU
# waiting on each other (test_backends + test_parity alone: 57 s CPU with torch's default
# threads, 49 s with one; test_backends under xdist: 46 s, 27 s). OpenVINO is not affected.
#
# No test depends on how loaded the machine is: the cross-process delivery tests count the
# frames that reached the node (its /diagnostics), not how many it managed to answer in time, so
# they run beside the others (until 2026-12-02 they ran afterwards, alone, paced by the load).
set -euo pipefail
cd "$(dirname "$0")/.."
unset PYTHONDONTWRITEBYTECODE
./scripts/run.sh ruff check .
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} ./scripts/run.sh pytest -n "${TEST_WORKERS:-4}" --dist loadfile --no-loadscope-reorder "$@"
