#!/usr/bin/env bash
# The test suite: lint, then pytest against the colcon-installed package, in two passes. Extra
# arguments go to both passes.
#
# 1. Everything but the `timing` tests, under pytest-xdist in TEST_WORKERS processes (default 3),
#    one test module per worker at a time (`--dist loadfile`: a module's shared graph, node or
#    launch stays in one process), the longest modules first (test/conftest.py). Much of the
#    suite's wall time is waiting on child processes, DDS discovery and timeouts, so a third
#    worker on two cores still helps (2026-12-01: 2 workers 247 s, 3 workers 217 s, 4 workers no
#    faster than 3). Each worker has ROS domains of its own (test/domains.py).
#    OMP_NUM_THREADS=1 (unless set): three workers' torch thread pools on two cores spend CPU
#    waiting on each other (test_backends + test_parity alone: 57 s CPU with torch's default
#    threads, 49 s with one; test_backends under xdist: 46 s, 27 s). OpenVINO is not affected.
# 2. The `timing` tests (setup.cfg), one at a time with nothing else running: they pace another
#    process by this machine's load when they start, which other workers would change under them
#    (tried beside the workers, paced at a fifth of the node's capacity: in one full run of eight,
#    the node answered fewer than 95 % of the frames in time).
#    Exit status 5 (nothing selected, e.g. one module without such tests given) is no failure.
#    Unless test paths are given, it collects only TIMING_MODULES, the modules that hold `timing`
#    tests (test_suite.py checks the list): collecting every module would import all their
#    dependencies again for a handful of tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/run.sh ruff check .
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} ./scripts/run.sh pytest -n "${TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder -m "not timing" "$@"
TIMING_MODULES=(test/test_node_delivery.py test/test_node_processes.py)
paths=()
for argument in "$@"; do
  if [ -e "${argument%%::*}" ]; then paths+=("$argument"); fi
done
[ ${#paths[@]} -gt 0 ] || set -- "$@" "${TIMING_MODULES[@]}"
./scripts/run.sh pytest -n 0 -m timing "$@" || [ $? -eq 5 ]
