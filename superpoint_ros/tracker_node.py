"""`python -m superpoint_ros.tracker_node`, kept for scripts that start the node this way; the node lives in
`superpoint_ros.ros.tracker_node`."""

from superpoint_ros.ros.tracker_node import TrackerNode, main

__all__ = ["TrackerNode", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
