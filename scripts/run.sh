#!/usr/bin/env bash
# Runs a command in the project environment: the venv, the ROS prefixes and the built overlay.
# PYTHONSAFEPATH keeps the source checkout off sys.path, so `superpoint_ros` is the installed
# package, which also holds the generated `superpoint_ros.msg`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export PYTHONSAFEPATH=1
exec "$@"
