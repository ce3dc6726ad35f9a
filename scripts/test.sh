#!/usr/bin/env bash
# The test suite: lint, then pytest against the colcon-installed package under pytest-xdist in
# TEST_WORKERS processes (default 3), one test module per worker at a time (`--dist loadfile`: a
# module's shared graph, node or launch stays in one process), the longest modules first
# (test/conftest.py). Much of the suite's wall time is waiting on child processes, DDS discovery
# and timeouts, so a third worker on two cores still helps (2 workers: 247 s, 3: 217 s on
# 2026-12-01). Each worker has ROS domains of its own (test/domains.py). Extra arguments go to
# pytest.
#
# OMP_NUM_THREADS=1 (unless set): three workers' torch thread pools on two cores spend CPU
# waiting on each other (test_backends + test_parity alone: 57 s CPU with torch's default
# threads, 49 s with one; test_backends under xdist: 46 s, 27 s). OpenVINO is not affected.
#
# The cross-process delivery tests (test_node_delivery.py, test_node_processes.py) run beside
# the others: they pace their cameras so that the node is at most 20 % busy at the load measured
# when they start (test/node_processes.py).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/run.sh ruff check .
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} ./scripts/run.sh pytest -n "${TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder "$@"
