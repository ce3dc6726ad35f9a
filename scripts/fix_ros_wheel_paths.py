"""Point the ROS 2 wheels' exported CMake files at this venv's Python and numpy headers.

The Jazzy wheels on PyPI were built in a manylinux image, and their CMake config files name
that image's include directories. CMake refuses paths that do not exist, so message generation
fails until they are rewritten. Usage: python fix_ros_wheel_paths.py VENV_DIR
"""

import pathlib
import sys
import sysconfig

import numpy

BUILDER_PYTHON_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"
BUILDER_NUMPY_INCLUDE = "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"


def main() -> None:
    share = pathlib.Path(sys.argv[1]) / "share"
    replacements = {
        BUILDER_NUMPY_INCLUDE: numpy.get_include(),
        BUILDER_PYTHON_INCLUDE: sysconfig.get_paths()["include"],
    }
    changed = 0
    for path in share.rglob("*.cmake"):
        text = path.read_text(errors="surrogateescape")
        new = text
        for old, replacement in replacements.items():
            new = new.replace(old, replacement)
        if new != text:
            path.write_text(new, errors="surrogateescape")
            changed += 1
    print(f"fix_ros_wheel_paths: rewrote {changed} CMake files under {share}")


if __name__ == "__main__":
    main()
