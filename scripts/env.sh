# Sourced by the build and test scripts: the venv plus the ROS prefixes the wheels expect.
# After a build, also sources the install overlay so `superpoint_ros.msg` is importable.
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VIRTUAL_ENV="$_root/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
if [ -f "$_root/.ws/install/setup.bash" ]; then
  # shellcheck disable=SC1091
  set +u; source "$_root/.ws/install/setup.bash"; set -u
fi
