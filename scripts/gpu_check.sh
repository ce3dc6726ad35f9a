#!/usr/bin/env bash
# The one-shot GPU check (superpoint_ros/tools/gpu_check.py) from a plain copy of the repository, with
# the machine's own python3: no venv, no colcon build, no ROS. Arguments go to the module, e.g.
# `scripts/gpu_check.sh --devices cpu --sizes 64x80 --batches 1,2` (the full check, rehearsed on the
# CPU) or `scripts/gpu_check.sh --budget 300`. Writes $OUT/gpu_check.json when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# No network there: transformers must not spend the device's minutes trying to reach the hub.
export HF_HUB_OFFLINE=1
exec "${PYTHON:-python3}" -m superpoint_ros.tools.gpu_check "$@"
