#!/usr/bin/env bash
# The test suite: lint, then pytest against the colcon-installed package. Extra arguments go to
# pytest (`-n 0` runs it in one process).
#
# pytest-xdist runs it in TEST_WORKERS processes (default 3), one test module per worker at a
# time (`--dist loadfile`: a module's shared graph, node or launch stays in one process). Most
# of the suite's wall time is waiting on child processes, DDS discovery and timeouts, so a third
# worker on two cores still helps. Each worker has ROS domains of its own (test/domains.py).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/run.sh ruff check .
./scripts/run.sh pytest -n "${TEST_WORKERS:-3}" --dist loadfile "$@"
