"""The camera stand-in as a process of its own: what it publishes arrives in this process whole,
with its header, and as image_transport would have sent it. The oracle for the pixels is the
scene module's frame itself (and OpenCV's decoders), not the stand-in's own conversion."""

import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from superpoint_ros.ros.image_messages import decode_image_message
from superpoint_ros.tools.camera_sim import DISTINCT_FRAMES
from superpoint_ros.tools.scenes import camera_view, draw_scene

from domains import private_domain_id
from ros_graph import Graph, wait_until

HEIGHT, WIDTH, FRAMES = 96, 128, 5
CASES = {
    "raw_bgr8": ["--encoding", "bgr8"],
    "jpeg_bgr8": ["--transport", "compressed", "--compression", "jpeg"],
    "png_mono8": ["--transport", "compressed", "--compression", "png", "--encoding", "mono8"],
    "bare_jpeg": ["--transport", "compressed", "--format-string", "jpeg"],
}


def start(topic: str, arguments: list[str]) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "superpoint_ros.tools.camera_sim",
        "--topic",
        topic,
        "--frame-id",
        f"{topic}_optical",
    ]
    command += ["--height", str(HEIGHT), "--width", str(WIDTH), "--rate", "20", *arguments]
    environment = {**os.environ, "ROS_DOMAIN_ID": str(private_domain_id())}
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def expected_frame(index: int) -> np.ndarray:
    scene = draw_scene(2 * HEIGHT, 2 * WIDTH)
    return camera_view(scene, HEIGHT, WIDTH, (index % DISTINCT_FRAMES) / DISTINCT_FRAMES)


@pytest.fixture(scope="module")
def runs():
    """Each case published from its own process at once; the messages and outputs collected."""
    graph = Graph()
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    inboxes, processes = {}, {}
    started_s = time.time()
    try:
        for case, arguments in CASES.items():
            compressed = "compressed" in arguments
            topic = f"{case}/compressed" if compressed else case
            inboxes[case] = graph.subscribe(CompressedImage if compressed else Image, topic, qos)
            processes[case] = start(case, [*arguments, "--frames", str(FRAMES)])
        inboxes["until_stopped"] = graph.subscribe(Image, "until_stopped", qos)
        processes["until_stopped"] = start("until_stopped", ["--encoding", "rgb8"])
        wait_until(lambda: len(inboxes["until_stopped"]) >= 3, timeout_s=90, what="frames from the unbounded run")
        processes["until_stopped"].send_signal(signal.SIGINT)
        outputs = {case: (*process.communicate(timeout=60), process.returncode) for case, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    finished_s = time.time()
    yield inboxes, outputs, (started_s, finished_s)
    graph.close()


@pytest.mark.parametrize("case", CASES)
def test_every_frame_arrives_decodable_with_its_header_and_format(runs, case):
    inboxes, outputs, (started_s, finished_s) = runs
    stdout, stderr, returncode = outputs[case]
    assert returncode == 0, stderr
    assert stdout.splitlines() == ["camera_sim: matched subscriptions=1", f"camera_sim: published {FRAMES}"]
    messages = inboxes[case].messages
    assert len(messages) == FRAMES
    for index, message in enumerate(messages):
        assert message.header.frame_id == f"{case}_optical"
        assert started_s <= message.header.stamp.sec + message.header.stamp.nanosec * 1e-9 <= finished_s
        view = expected_frame(index)
        if case.startswith("raw"):
            assert message.encoding == case.removeprefix("raw_")
            np.testing.assert_array_equal(decode_image_message(message).bgr_view(), view)
            continue
        pixels = cv2.imdecode(np.frombuffer(message.data, np.uint8), cv2.IMREAD_UNCHANGED)
        if case == "png_mono8":
            assert message.format == "mono8; png compressed mono8"
            np.testing.assert_array_equal(pixels, cv2.cvtColor(view, cv2.COLOR_BGR2GRAY))
        else:
            assert message.format == ("jpeg" if case == "bare_jpeg" else "bgr8; jpeg compressed bgr8")
            # JPEG at quality 95 scores ~32 dB on this texture; the next frame of the sequence ~13 dB.
            assert cv2.PSNR(pixels, view) > 25


def test_sigint_stops_an_unbounded_rgb8_run_cleanly_and_reports_the_count(runs):
    inboxes, outputs, _ = runs
    stdout, stderr, returncode = outputs["until_stopped"]
    assert returncode == 0, stderr
    assert "Traceback" not in stderr
    published = int(stdout.splitlines()[-1].removeprefix("camera_sim: published "))
    messages = inboxes["until_stopped"].messages
    assert published >= len(messages) >= 3
    for index, message in enumerate(messages):
        assert message.encoding == "rgb8"
        np.testing.assert_array_equal(decode_image_message(message).bgr_view(), expected_frame(index))


def test_a_camera_process_imports_neither_torch_nor_the_detector():
    # A camera driver stand-in pays for rclpy and OpenCV only; the checks below run in a fresh
    # interpreter because this one has long imported torch.
    check = (
        "import sys, superpoint_ros.tools.camera_sim, superpoint_ros.image_codec, superpoint_ros.ros.image_messages; "
        "print(sorted(m for m in ('torch', 'openvino', 'transformers', 'superpoint_ros.detector') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_no_subscriber_in_time_is_exit_status_one():
    process = start("nobody_listens", ["--frames", "1", "--wait-for-subscriber", "0.5"])
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "camera_sim: no subscription matched /nobody_listens" in stdout
