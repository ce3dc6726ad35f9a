"""pip install of the ROS-free core and the `superpoint-detect` CLI (no messages, no node).

colcon builds this package with CMake (package.xml: ament_cmake); this file is for pip only.
"""

from setuptools import setup

setup()
