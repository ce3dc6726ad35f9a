#!/usr/bin/env bash
# Builds the package with colcon into .ws/ (build, install, log). Extra arguments go to
# `colcon build` (e.g. --symlink-install, which links the Python sources instead of copying them).
# Builds of one checkout take turns (flock), so parallel runs cannot corrupt .ws/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source "$root/scripts/env.sh"
# CMake refuses exported include paths (the venv's numpy headers) inside the source directory,
# and .venv lives in the package root; a link outside the tree gives CMake another source path.
mkdir -p "$root/.ws/src"
exec 9>"$root/.ws/build.lock"
flock 9
ln -sfn ../.. "$root/.ws/src/superpoint_ros"
colcon --log-base "$root/.ws/log" build --paths "$root/.ws/src/superpoint_ros" \
  --build-base "$root/.ws/build" --install-base "$root/.ws/install" \
  --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$root/.venv/bin/python" \
  --event-handlers console_direct- "$@"
