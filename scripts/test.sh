#!/usr/bin/env bash
# The test suite: lint, then pytest against the colcon-installed package. Extra arguments go to
# pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/run.sh ruff check .
./scripts/run.sh pytest "$@"
