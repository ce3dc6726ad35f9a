"""SuperPoint keypoints and descriptors, with a ROS 2 node around a ROS-free core.

Kept free of imports and side effects: after a colcon build this directory is shared with the
generated `superpoint_ros.msg` package.
"""
