"""The node and a camera driver as separate processes, the way robots run them: default Fast DDS
settings, no profile file, the installed node with the shipped `config/detector.yaml`.

The camera is `superpoint_ros.tools.camera_sim`, the node `python -m superpoint_ros.ros.node`, each in a
child process; this process only counts the `KeypointArray`s and `/diagnostics` that come back
and reads the node's log. Large frames between processes go over UDP loopback in fragments (the
shared-memory segment is 512 KB), which a graph inside one process never exercises.

A reliable camera answered at 480×640 and 720×1280 is in test_node_delivery.py. Random weights
(no hub here); delivery and QoS do not depend on what the keypoints mean.
"""

import os

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

from superpoint_ros.msg import KeypointArray

from node_processes import RELIABLE, CameraProcess, NodeProcess, ObservedNode, answers
from processes import START_S, new_namespace
from ros_graph import wait_until


def test_a_best_effort_camera_whose_large_frames_are_lost_gets_a_warning_naming_the_fixes(graph, processes):
    namespace = new_namespace()
    node = NodeProcess(namespace, silence_warning_period=2.0)
    processes(node)
    camera = CameraProcess(f"{namespace}/image", rate=2, frames=0, height=720, width=1280, reliability="best_effort")
    processes(camera)
    node.line_with("best effort, following its 1 publisher: 1 best effort")
    warning = node.line_with("no frame on", timeout_s=30.0)
    for text in ("[WARN]", "best effort", "UDP fragments", "input_qos", "fastdds_large_images.xml"):
        assert text in warning, text


def test_a_driver_restart_with_other_qos_size_and_encoding_is_followed_without_restarting_the_node(graph, processes):
    namespace = new_namespace()
    inbox = graph.subscribe(KeypointArray, f"{namespace}/keypoints", RELIABLE)
    node = NodeProcess(namespace)
    processes(node)
    first = CameraProcess(f"{namespace}/image", rate=2, frames=0, height=480, width=640, encoding="bgr8",
                          reliability="reliable", frame_id="first")  # fmt: skip
    processes(first)
    wait_until(lambda: answers(inbox, "first") >= 2, START_S, "answers to the first driver")
    first.process.kill()  # a crash, not a clean exit
    second = CameraProcess(f"{namespace}/image", rate=2, frames=0, height=240, width=320, encoding="mono8",
                           reliability="best_effort", frame_id="second")  # fmt: skip
    processes(second)
    wait_until(lambda: answers(inbox, "second") >= 2, START_S, "answers to the restarted driver")
    assert {(m.height, m.width) for m in inbox.messages if m.header.frame_id == "second"} == {(240, 320)}
    node.line_with(f"'{namespace}/image' best effort, following")
    assert node.process.poll() is None, "the node kept running"


def test_diagnostics_follow_a_camera_in_another_process_and_warn_when_it_stops(graph, processes):
    namespace = new_namespace()
    camera_name = f"cam_{os.getpid()}"
    diagnostics = graph.subscribe(DiagnosticArray, "/diagnostics", RELIABLE)
    node = NodeProcess(namespace, silence_warning_period=2.0, image_topics="[image]", camera_names=f"[{camera_name}]")
    processes(node)
    name = f"superpoint_detector: {camera_name}"

    def statuses(level, since=0):
        return [
            status
            for array in list(diagnostics.messages)[since:]
            for status in array.status
            if status.name == name and status.level == level and status.hardware_id == "diag_cam"
        ]

    camera = CameraProcess(f"{namespace}/image", rate=2, frames=0, height=240, width=320, reliability="reliable",
                           frame_id="diag_cam")  # fmt: skip
    processes(camera)

    def rate(status) -> float:
        return float(next(value.value for value in status.values if value.key == "input rate (Hz)"))

    # The first OK status may come before the first frame is counted (rate 0): wait for one after it.
    (ok, *_) = wait_until(
        lambda: [s for s in statuses(DiagnosticStatus.OK) if rate(s) > 0], START_S, "an OK status with frames"
    )
    values = {value.key: value.value for value in ok.values}
    assert values["input QoS"] == "reliable (input_qos: auto)"
    assert values["backend"] == "openvino" and values["weights"] == "random"
    camera.stop()
    seen = len(diagnostics.messages)
    (warn, *_) = wait_until(lambda: statuses(DiagnosticStatus.WARN, seen), 20.0, "a WARN status")
    assert "no frame for" in warn.message


def test_compressed_frames_from_another_process_are_answered(graph, processes):
    node = ObservedNode(graph, image_transport="compressed")
    processes(node.process)
    before = node.ready()
    options = {"transport": "compressed", "compression": "jpeg", "reliability": "reliable"}
    camera = CameraProcess(node.topic, rate=4, frames=8, height=480, width=640, frame_id="compressed", **options)
    processes(camera)
    node.assert_delivered(before, "compressed", camera.published())
    node.process.line_with(f"subscribing to '{node.topic}/compressed' reliable")
    assert {(m.height, m.width) for m in node.inbox.messages} == {(480, 640)}
