"""`python -m superpoint_ros.node`, kept for scripts that start the node this way; the node lives in
`superpoint_ros.ros.node`."""

from superpoint_ros.ros.node import DetectorNode, main

__all__ = ["DetectorNode", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
