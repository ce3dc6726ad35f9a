"""A reliable camera driver in another process, the way robots run one: default Fast DDS
settings, no profile file, the installed node with the shipped `config/detector.yaml`, 480×640
and 720×1280 frames paced below the node's capacity, 95 % of them answered.

Large frames between processes go over UDP loopback in fragments (the shared-memory segment is
512 KB), which a graph inside one process never exercises. In a module of their own so that
pytest-xdist runs them beside test_node_processes.py: each paces its frames by the node's
speed, which makes them the longest tests of the suite. Random weights (no hub here); delivery
does not depend on what the keypoints mean.
"""

import pytest

from superpoint_ros.msg import KeypointArray

from node_processes import RELIABLE, CameraProcess, NodeProcess, answers, rate_below_capacity, warm_up
from processes import new_namespace
from ros_graph import wait_until


@pytest.mark.parametrize(("height", "width", "frames"), [(480, 640, 12), (720, 1280, 6)])
def test_a_reliable_camera_in_another_process_is_answered_with_the_shipped_config(
    graph, processes, height, width, frames
):
    namespace = new_namespace()
    inbox = graph.subscribe(KeypointArray, f"{namespace}/keypoints", RELIABLE)
    node = NodeProcess(namespace)
    processes(node)
    warm_up(processes, inbox, f"{namespace}/image", height, width, reliability="reliable")
    frame_id = f"reliable_{height}"
    camera = CameraProcess(
        f"{namespace}/image", rate=rate_below_capacity(height, width), frames=frames, height=height, width=width,
        reliability="reliable", frame_id=frame_id,
    )  # fmt: skip
    processes(camera)
    published = camera.published()
    wait_until(lambda: answers(inbox, frame_id) >= 0.95 * published, 20.0, f"95% of {published} answers")
    assert "subscribing to" in node.line_with(f"'{namespace}/image' reliable, following its 1 publisher: 1 reliable")
    assert {message.height for message in inbox.messages} == {height}
    assert node.stop() == 0
