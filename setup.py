"""pip install of the ROS-free core and the `superpoint-detect`, `superpoint-export` and
`superpoint-bag` commands: no messages, no nodes, no tools.

colcon builds this package with CMake (package.xml: ament_cmake); this file is for pip only.
`packages = superpoint_ros` (setup.cfg) already leaves out the `ros` and `tools` subpackages;
the two modules that only forward to the ROS layer's nodes are left out here.
"""

from setuptools import setup
from setuptools.command.build_py import build_py

ROS_FORWARDERS = {"node", "tracker_node"}


class CoreOnly(build_py):
    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [entry for entry in modules if not (package == "superpoint_ros" and entry[1] in ROS_FORWARDERS)]


setup(cmdclass={"build_py": CoreOnly})
