"""The ROS 2 layer: the detector and tracker nodes and what they share (parameter tables, camera
input, frame batcher, debug output, messages, diagnostics, start-up and lifecycle). It imports the
core (`superpoint_ros.*`); the core never imports it."""
