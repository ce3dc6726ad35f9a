"""`superpoint-bag`: real rosbag2 bags (MCAP and sqlite3, written by `rosbags`) in, a bag of
keypoints out, compared with `Detector`, with the detector node and with the tracker node on a
real rclpy graph, and read back with `rosbags` knowing only what the bag embeds."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from ament_index_python.packages import get_package_share_directory
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader, Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, Image, PointCloud

from superpoint_ros import bag_messages, bags
from superpoint_ros.detector import Detector
from superpoint_ros.detector_choice import create_detector
from superpoint_ros.msg import FeatureTracks, KeypointArray
from superpoint_ros.ros.ros_messages import image_message
from superpoint_ros.ros.tracker_node import TrackerNode

from conftest import structured_image
from ros_graph import wait_until

ROOT = pathlib.Path(__file__).resolve().parent.parent
STORE = get_typestore(Stores.ROS2_JAZZY)
TYPES = STORE.types
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
HEIGHT, WIDTH = 96, 128
# A pinhole camera with some distortion, as its CameraInfo fields.
CAMERA = {
    "distortion_model": "plumb_bob",
    "k": [150.0, 0.0, 63.5, 0.0, 150.0, 47.5, 0.0, 0.0, 1.0],
    "d": [-0.1, 0.01, 0.0, 0.0, 0.0],
    "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
    "p": [150.0, 0.0, 63.5, 0.0, 0.0, 150.0, 47.5, 0.0, 0.0, 0.0, 1.0, 0.0],
}


def header(index: int, frame_id: str = "cam0"):
    stamp = TYPES["builtin_interfaces/msg/Time"](sec=1_700_000_000 + index, nanosec=250_000_000)
    return TYPES["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def image(pixels: np.ndarray, index: int, encoding: str = "bgr8", frame_id: str = "cam0"):
    return bag_messages.image(pixels, encoding, header(index, frame_id))


def compressed(pixels: np.ndarray, index: int, codec: str = "png", frame_id: str = "cam1"):
    ok, data = cv2.imencode(f".{codec}", pixels)
    assert ok
    return TYPES["sensor_msgs/msg/CompressedImage"](
        header=header(index, frame_id), format=f"bgr8; {codec} compressed bgr8", data=data.reshape(-1)
    )


def camera_info(index: int = 0):
    return TYPES["sensor_msgs/msg/CameraInfo"](
        header=header(index),
        height=HEIGHT,
        width=WIDTH,
        distortion_model=CAMERA["distortion_model"],
        d=np.array(CAMERA["d"]),
        k=np.array(CAMERA["k"]),
        r=np.array(CAMERA["r"]),
        p=np.array(CAMERA["p"]),
        binning_x=0,
        binning_y=0,
        roi=TYPES["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def write_bag(path: pathlib.Path, messages: list[tuple[str, object]], storage: str = "mcap") -> pathlib.Path:
    """A rosbag2 bag of `(topic, message)`, one message per second of receive time."""
    plugin = bags.STORAGES[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connections = {}
        for index, (topic, message) in enumerate(messages):
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, message.__msgtype__, typestore=STORE)
            writer.write(connections[topic], (index + 1) * 10**9, STORE.serialize_cdr(message, message.__msgtype__))
    return path


def shifted_frames(count: int, seed: int = 0) -> list[np.ndarray]:
    """One scene moving right a pixel per frame, so that tracks continue."""
    scene = structured_image(HEIGHT, WIDTH + count, seed)
    return [np.ascontiguousarray(scene[:, count - i : count - i + WIDTH]) for i in range(count)]


def read_bag(path: pathlib.Path) -> dict[str, list[tuple[int, bytes, object]]]:
    """Topic → `(receive time, raw bytes, message)` in bag order, the messages decoded with
    only the definitions the bag embeds (a typestore that knows no superpoint_ros type)."""
    store = get_typestore(Stores.ROS2_JAZZY)
    assert "superpoint_ros/msg/KeypointArray" not in store.types
    topics: dict[str, list] = {}
    with AnyReader([path], default_typestore=store) as reader:
        for connection, timestamp, raw in reader.messages():
            topics.setdefault(connection.topic, []).append(
                (timestamp, bytes(raw), reader.deserialize(raw, connection.msgtype))
            )
    return topics


def run(input_path, output, *options: str) -> int:
    """`bags.main` in this process, quiet, with random weights on the CPU; its exit code."""
    return bags.main([str(input_path), str(output), "--weights", "random", "--device", "cpu", "--quiet", *options])


def fields(header) -> tuple[int, int, str]:
    """A header's stamp and frame_id, comparable across typestores."""
    return header.stamp.sec, header.stamp.nanosec, header.frame_id


def keypoints_of(message) -> np.ndarray:
    return np.asarray(message.keypoints, np.float32).reshape(-1, 2)


# ---------------------------------------------------------------- naming and parameters


def test_the_camera_namespace_drops_the_image_topic_and_a_compressed_suffix():
    assert bags.camera_namespace("/cam0/image_raw") == "/cam0"
    assert bags.camera_namespace("/cam0/image_raw/compressed") == "/cam0"
    assert bags.camera_namespace("/robot/left/image_rect") == "/robot/left"
    assert bags.camera_namespace("image") == ""


def test_topics_listed_in_image_topics_take_the_camera_names_as_the_node_does():
    parameters = {"image_topics": ["left/image_raw", "/right/image_raw"], "camera_names": ["l", "r"]}
    namespaces = bags.output_namespaces(["/left/image_raw", "/right/image_raw/compressed", "/cam9/image"], parameters)
    assert namespaces == {"/left/image_raw": "/l", "/right/image_raw/compressed": "/r", "/cam9/image": "/cam9"}
    unnamed = bags.output_namespaces(["/a/image", "/b/image"], {"image_topics": ["/a/image", "/b/image"]})
    assert unnamed == {"/a/image": "/camera0", "/b/image": "/camera1"}


def test_the_parameters_file_gives_each_node_its_sections(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    device: cpu\n"
        "/**/superpoint_detector:\n  ros__parameters:\n    nms_radius: 2\n    device: cuda\n"
        "/cam/superpoint_tracker:\n  ros__parameters:\n    min_track_length: 3\n"
    )
    detector, tracker = bags.read_parameters(path)
    assert detector == {"device": "cuda", "nms_radius": 2}
    assert tracker == {"device": "cpu", "min_track_length": 3}
    assert bags.detector_arguments({"int8_calibration": "frames", "backend": "onnxruntime (CPUExecutionProvider)"}) == {
        "calibration": "frames",
        "backend": "onnxruntime",
    }


# ---------------------------------------------------------------- outputs equal Detector's and the nodes'


def test_keypoints_equal_the_detectors_bit_for_bit_at_the_same_batch_and_rosbags_reads_them_unaided(tmp_path):
    frames = [structured_image(HEIGHT, WIDTH, seed) for seed in range(7)]
    grey = cv2.cvtColor(frames[3], cv2.COLOR_BGR2GRAY)
    messages = [("/cam0/image_raw", image(f, i)) for i, f in enumerate(frames[:3])]
    messages.append(("/cam0/image_raw", image(grey, 3, "mono8")))
    messages += [("/cam1/image_raw/compressed", compressed(f, i)) for i, f in enumerate(frames[4:], start=4)]
    source = write_bag(tmp_path / "in", messages)
    output = tmp_path / "out"
    summary = bags.process(source, output, weights="random", device="cpu", batch=3, log=lambda text: None)
    assert (summary.frames_read, summary.processed, sum(summary.skipped.values())) == (7, 7, 0)

    written = read_bag(output)
    assert set(written) == {"/cam0/keypoints", "/cam1/keypoints"}
    # The same batches: the bag's order cut in threes, each run grouped by shape as `detect` does,
    # by the detector the node and the bag tool build for these arguments (torch-free on the CPU).
    detector = create_detector(weights="random", device="cpu")
    decoded = [
        frames[0],
        frames[1],
        frames[2],
        grey,
        *(cv2.imdecode(cv2.imencode(".png", f)[1], -1) for f in frames[4:]),
    ]
    expected = [d for start in range(0, 7, 3) for d in detector.detect(decoded[start : start + 3])]
    found = [m for _, _, m in written["/cam0/keypoints"]] + [m for _, _, m in written["/cam1/keypoints"]]
    for (_, source_message), message, detections in zip(messages, found, expected, strict=True):
        assert fields(message.header) == fields(source_message.header)
        assert (message.height, message.width, message.descriptor_size) == (HEIGHT, WIDTH, 256)
        assert len(detections.scores) > 0
        np.testing.assert_array_equal(keypoints_of(message), detections.keypoints)
        np.testing.assert_array_equal(message.scores, detections.scores)
        np.testing.assert_array_equal(np.reshape(message.descriptors, (-1, 256)), detections.descriptors)
    # Each output sits at its image's receive time.
    assert [t for t, _, _ in written["/cam0/keypoints"]] == [10**9 * (i + 1) for i in range(4)]


def test_the_embedded_definitions_hash_as_rosidl_hashes_our_messages():
    """The RIHS01 type hashes in the output bag are those rosidl generated for the package, so
    `ros2 bag` and Foxglove take the types as ours."""
    store = bags.bag_messages.typestore()
    for name in ("KeypointArray", "FeatureTracks"):
        assert store.hash_rihs01(f"superpoint_ros/msg/{name}") == json_hash(name)


def json_hash(name: str) -> str:
    """The type hash rosidl wrote into the installed `<name>.json` type description."""
    share = pathlib.Path(get_package_share_directory("superpoint_ros"))
    hashes = json.loads((share / "msg" / f"{name}.json").read_text())["type_hashes"]
    return next(h["hash_string"] for h in hashes if h["type_name"] == f"superpoint_ros/msg/{name}")


def test_keypoints_equal_the_detector_nodes_field_for_field(graph, start_node, tmp_path):
    frames = shifted_frames(4)
    node, namespace = start_node()
    inbox = graph.subscribe(KeypointArray, f"{namespace}/keypoints", RELIABLE)
    publisher = graph.publisher(Image, f"{namespace}/image", RELIABLE)
    wait_until(lambda: node.cameras[0].subscription is not None, what="the node to subscribe (input_qos auto)")
    wait_until(lambda: publisher.get_subscription_count() > 0, what="the node's subscription")
    published = []
    for index, pixels in enumerate(frames):
        message = image_message(pixels, "bgr8")
        message.header.stamp.sec, message.header.stamp.nanosec = 1_700_000_000 + index, 250_000_000
        message.header.frame_id = "cam0"
        publisher.publish(message)
        published.append(message)
        wait_until(lambda n=index + 1: len(inbox) >= n, what=f"keypoints of frame {index}")

    source = write_bag(tmp_path / "in", [("/cam0/image_raw", image(f, i)) for i, f in enumerate(frames)])
    bags.process(source, tmp_path / "out", weights="random", device="cpu", batch=1, log=lambda text: None)
    written = read_bag(tmp_path / "out")["/cam0/keypoints"]
    assert node.detector.backend == Detector(weights="random", device="cpu").backend
    for sent, received, (_, raw, _) in zip(published, inbox.messages, written, strict=True):
        assert received.header == sent.header
        assert len(received.scores) > 0
        assert deserialize_message(raw, KeypointArray) == received


def test_tracks_and_vins_points_equal_the_tracker_nodes_fed_the_same_keypoints(graph, tmp_path):
    frames = shifted_frames(6, seed=4)
    messages = [("/cam0/camera_info", camera_info())]
    messages += [("/cam0/image_raw", image(f, i)) for i, f in enumerate(frames)]
    source = write_bag(tmp_path / "in", messages, storage="sqlite3")
    params = tmp_path / "params.yaml"
    params.write_text("/**/superpoint_tracker:\n  ros__parameters:\n    min_track_length: 2\n    verification: none\n")
    summary = bags.process(
        source, tmp_path / "out", weights="random", device="cpu", vins=True, params_file=params, log=lambda t: None
    )
    assert summary.processed == len(frames)
    written = read_bag(tmp_path / "out")
    assert len(written["/cam0/tracks"]) == len(frames) and len(written["/cam0/feature"]) == len(frames)

    namespace = f"/test_bags_tracker_{os.getpid()}"
    tracker = TrackerNode(
        namespace=namespace,
        parameter_overrides=[
            Parameter(name, value=value)
            for name, value in {
                "vins_output": True,
                "debug_image": False,
                "min_track_length": 2,
                "verification": "none",
            }.items()
        ],
        context=graph.context,
    )
    graph.add(tracker)
    try:
        tracks = graph.subscribe(FeatureTracks, f"{namespace}/tracks", RELIABLE)
        points = graph.subscribe(PointCloud, f"{namespace}/feature", RELIABLE)
        info_publisher = graph.publisher(CameraInfo, f"{namespace}/camera_info", RELIABLE)
        info = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model=CAMERA["distortion_model"])
        info.k, info.d, info.r, info.p = CAMERA["k"], CAMERA["d"], CAMERA["r"], CAMERA["p"]
        wait_until(lambda: info_publisher.get_subscription_count() > 0, what="the tracker's camera_info subscription")
        wait_until(lambda: info_publisher.publish(info) or tracker.cameras[0].model is not None, what="CameraInfo")
        keypoints_publisher = graph.publisher(KeypointArray, f"{namespace}/keypoints", RELIABLE)
        wait_until(lambda: keypoints_publisher.get_subscription_count() > 0, what="the tracker's subscription")
        for index, (_, raw, _) in enumerate(written["/cam0/keypoints"]):
            keypoints_publisher.publish(deserialize_message(raw, KeypointArray))
            wait_until(lambda n=index + 1: len(tracks) >= n and len(points) >= n, what=f"tracks of frame {index}")
    finally:
        graph.remove(tracker)
    for node_tracks, (_, raw, _) in zip(tracks.messages, written["/cam0/tracks"], strict=True):
        assert deserialize_message(raw, FeatureTracks) == node_tracks
    for node_points, (_, raw, _) in zip(points.messages, written["/cam0/feature"], strict=True):
        assert deserialize_message(raw, PointCloud) == node_points
    # Tracks continued (the scene moves a pixel a frame), so the comparison covered matching.
    last = written["/cam0/tracks"][-1][2]
    assert len(last.ids) > 0 and max(last.lengths) == len(frames)


def test_stereo_tracks_and_vins_points_equal_the_stereo_tracker_nodes(graph, tmp_path):
    count, disparity = 5, 6
    scene = structured_image(HEIGHT, WIDTH + count + disparity, 9)
    messages = [("/stereo/left/camera_info", camera_info()), ("/stereo/right/camera_info", camera_info())]
    for i in range(count):
        left = np.ascontiguousarray(scene[:, count - i : count - i + WIDTH])
        right = np.ascontiguousarray(scene[:, count - i + disparity : count - i + disparity + WIDTH])
        # The right camera's frame first in the bag now and then: pairing goes by stamp.
        pair = [("/stereo/left/image_raw", image(left, i, frame_id="left"))]
        pair.insert(i % 2, ("/stereo/right/image_raw", image(right, i, frame_id="right")))
        messages += pair
    source = write_bag(tmp_path / "in", messages)
    params = tmp_path / "params.yaml"
    params.write_text("/**/superpoint_tracker:\n  ros__parameters:\n    stereo: true\n    verification: none\n")
    bags.process(
        source, tmp_path / "out", weights="random", device="cpu", vins=True, params_file=params, list_topics=False
    )
    written = read_bag(tmp_path / "out")
    assert sorted(written) == [
        "/stereo/feature",
        "/stereo/left/keypoints",
        "/stereo/left/tracks",
        "/stereo/right/keypoints",
        "/stereo/right/tracks",
    ]

    namespace = f"/test_bags_stereo_{os.getpid()}"
    overrides = {"stereo": True, "vins_output": True, "debug_image": False, "verification": "none"}
    tracker = TrackerNode(
        namespace=namespace,
        parameter_overrides=[Parameter(name, value=value) for name, value in overrides.items()],
        context=graph.context,
    )
    graph.add(tracker)
    try:
        inboxes = {
            topic: graph.subscribe(kind, f"{namespace}/{topic}", RELIABLE)
            for topic, kind in (
                ("left/tracks", FeatureTracks),
                ("right/tracks", FeatureTracks),
                ("feature", PointCloud),
            )
        }
        info = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model=CAMERA["distortion_model"])
        info.k, info.d, info.r, info.p = CAMERA["k"], CAMERA["d"], CAMERA["r"], CAMERA["p"]
        for index, side in enumerate(("left", "right")):
            publisher = graph.publisher(CameraInfo, f"{namespace}/{side}/camera_info", RELIABLE)
            wait_until(lambda p=publisher: p.get_subscription_count() > 0, what=f"the {side} camera_info subscription")
            wait_until(lambda p=publisher, i=index: p.publish(info) or tracker.cameras[i].model is not None)
        publishers = {
            side: graph.publisher(KeypointArray, f"{namespace}/{side}/keypoints", RELIABLE)
            for side in ("left", "right")
        }
        for side, publisher in publishers.items():
            wait_until(lambda p=publisher: p.get_subscription_count() > 0, what=f"the {side} keypoints subscription")
        # The tracker hears the KeypointArrays in the order the bag holds their images.
        in_bag_order = sorted(
            (timestamp, side, raw)
            for side in ("left", "right")
            for timestamp, raw, _ in written[f"/stereo/{side}/keypoints"]
        )
        for number, (_, side, raw) in enumerate(in_bag_order, start=1):
            publishers[side].publish(deserialize_message(raw, KeypointArray))
            pairs = number // 2
            wait_until(lambda n=pairs: all(len(inbox) >= n for inbox in inboxes.values()), what=f"pair {pairs}")
    finally:
        graph.remove(tracker)
    for topic, kind in (("left/tracks", FeatureTracks), ("right/tracks", FeatureTracks), ("feature", PointCloud)):
        ours = written[f"/stereo/{topic}"]
        assert len(ours) == count
        for node_message, (_, raw, _) in zip(inboxes[topic].messages, ours, strict=True):
            assert deserialize_message(raw, kind) == node_message
    # The right camera matched left keypoints, so stereo matching was compared too.
    assert all(len(m.ids) > 0 for _, _, m in written["/stereo/right/tracks"])


def test_an_invalid_camera_info_is_ignored_as_the_node_ignores_it_and_the_last_valid_one_stays_in_use(tmp_path):
    frames = shifted_frames(3, seed=2)
    broken = camera_info(1)
    broken.k = np.array([float("nan")] * 9)
    messages = [("/cam0/camera_info", camera_info()), ("/cam0/image_raw", image(frames[0], 0))]
    messages.append(("/cam0/camera_info", broken))
    messages += [("/cam0/image_raw", image(f, i)) for i, f in enumerate(frames[1:], 1)]
    source = write_bag(tmp_path / "in", messages)
    lines = []
    bags.process(source, tmp_path / "out", weights="random", device="cpu", vins=True, log=lines.append)
    written = read_bag(tmp_path / "out")
    assert [len(m.normalized) for _, _, m in written["/cam0/tracks"]] == [
        2 * len(m.ids) for _, _, m in written["/cam0/tracks"]
    ]
    assert len(written["/cam0/feature"]) == len(frames)
    ignored = [line for line in lines if "Ignored CameraInfo on '/cam0/camera_info'" in line]
    assert ignored == [
        f"superpoint-bag: {source}: Ignored CameraInfo on '/cam0/camera_info' (the last valid one stays in use): "
        "K has non-finite values: [nan, nan, nan, nan, nan, nan, nan, nan, nan]"
    ]


# ---------------------------------------------------------------- inputs, outputs and options


def test_a_single_mcap_file_in_and_a_sqlite3_bag_out_with_the_input_copied_and_topics_picked(tmp_path, capsys):
    frames = [structured_image(HEIGHT, WIDTH, seed) for seed in range(3)]
    messages = [("/cam0/image_raw", image(frames[0], 0)), ("/cam0/camera_info", camera_info(0))]
    messages += [("/cam1/image_raw", image(frames[1], 1)), ("/cam0/image_raw", image(frames[2], 2))]
    directory = write_bag(tmp_path / "in", messages)
    (single,) = directory.glob("*.mcap")
    code = run(single, tmp_path / "out", "--storage", "sqlite3", "--copy-input", "--topics", "/cam0/image_raw,")
    assert code == 0
    assert (tmp_path / "out" / "out.db3").is_file()
    written = read_bag(tmp_path / "out")
    assert sorted(written) == ["/cam0/camera_info", "/cam0/image_raw", "/cam0/keypoints"]
    originals = [STORE.serialize_cdr(m, m.__msgtype__).tobytes() for t, m in messages if t.startswith("/cam0")]
    copied = [raw for topic in ("/cam0/image_raw", "/cam0/camera_info") for _, raw, _ in written[topic]]
    assert sorted(copied) == sorted(originals)
    stderr = capsys.readouterr().err.splitlines()
    assert stderr[-1].startswith(f"superpoint-bag: {single}: 2 frames read, 2 processed, 0 skipped;")
    assert f"wrote {tmp_path / 'out'} (" in stderr[-1]


def test_by_default_every_image_topic_is_listed_and_a_compressed_twin_of_a_raw_topic_is_left_out(tmp_path, capsys):
    frame = structured_image(HEIGHT, WIDTH, 0)
    messages = [
        ("/cam0/image_raw", image(frame, 0)),
        ("/cam0/image_raw/compressed", compressed(frame, 0, "jpg")),
        ("/cam1/image_raw/compressed", compressed(frame, 0, "jpg")),
    ]
    source = write_bag(tmp_path / "in", messages)
    code = bags.main([str(source), str(tmp_path / "out"), "--weights", "random", "--device", "cpu"])
    assert code == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == [
        "superpoint-bag: /cam0/image_raw (sensor_msgs/msg/Image, 1 frames) -> /cam0/keypoints",
        "superpoint-bag: /cam1/image_raw/compressed (sensor_msgs/msg/CompressedImage, 1 frames) -> /cam1/keypoints",
    ]
    assert sorted(read_bag(tmp_path / "out")) == ["/cam0/keypoints", "/cam1/keypoints"]


def test_several_bags_run_in_worker_processes_with_one_output_each(tmp_path):
    inputs = tmp_path / "recordings"
    inputs.mkdir()
    for name, count in (("a", 2), ("b", 3)):
        write_bag(
            inputs / name, [("/cam0/image_raw", image(structured_image(HEIGHT, WIDTH, i), i)) for i in range(count)]
        )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "superpoint_ros.bags",
            str(inputs),
            str(tmp_path / "out"),
            "--jobs",
            "2",
            "--weights",
            "random",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b"]
    assert len(read_bag(tmp_path / "out" / "a")["/cam0/keypoints"]) == 2
    assert len(read_bag(tmp_path / "out" / "b")["/cam0/keypoints"]) == 3
    summaries = sorted(line for line in result.stderr.splitlines() if " frames read, " in line)
    assert [s.split(": ")[1] for s in summaries] == [str(inputs / "a"), str(inputs / "b")]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_current_batch_and_leaves_a_valid_closed_bag(tmp_path, signum):
    # Enough frames that the run is still going when the signal comes: 400 of these took under
    # 3 s on an idle 2-core machine.
    count = 3000
    source = write_bag(
        tmp_path / "in", [("/cam0/image_raw", image(structured_image(64, 64, i % 7), i)) for i in range(count)]
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "superpoint_ros.bags",
            str(source),
            str(tmp_path / "out"),
            "--weights",
            "random",
            "--device",
            "cpu",
            "--batch",
            "2",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    first = process.stderr.readline()
    assert "-> /cam0/keypoints" in first
    time.sleep(1.5)
    process.send_signal(signum)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, rest
    (summary,) = [line for line in rest.splitlines() if " frames read, " in line]
    assert summary.endswith("interrupted, the output holds the frames processed so far")
    assert "frame/s" not in rest  # no progress bar off a terminal
    processed = int(summary.split(" processed")[0].rsplit(" ", 1)[1])
    assert 0 < processed < count
    with Reader(tmp_path / "out") as reader:
        assert reader.message_count == processed
    assert len(read_bag(tmp_path / "out").get("/cam0/keypoints", [])) == processed


# ---------------------------------------------------------------- bad input (issue 16, section 3)


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


def test_a_missing_path_gives_one_line_and_exit_code_2(tmp_path, capsys):
    assert run(tmp_path / "nothing", tmp_path / "out") == 2
    assert one_line(capsys) == f"superpoint-bag: {tmp_path / 'nothing'}: no such file or directory"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, content", [("notes.mcap", b"not an mcap file"), ("notes.txt", b"hello")])
def test_a_file_that_is_not_a_bag_gives_one_line_and_exit_code_2(tmp_path, capsys, name, content):
    (tmp_path / name).write_bytes(content)
    assert run(tmp_path / name, tmp_path / "out") == 2
    assert "not a readable rosbag2 bag" in one_line(capsys)
    assert not (tmp_path / "out").exists()


def test_an_unknown_storage_gives_one_line_and_exit_code_2(tmp_path, capsys):
    source = write_bag(tmp_path / "in", [("/cam0/image_raw", image(structured_image(HEIGHT, WIDTH, 0), 0))])
    metadata = source / "metadata.yaml"
    metadata.write_text(metadata.read_text().replace("storage_identifier: mcap", "storage_identifier: cassette"))
    assert run(source, tmp_path / "out") == 2
    assert "cassette" in one_line(capsys)
    assert run(source, tmp_path / "out2", "--storage", "cassette") == 2
    assert "--storage" in one_line(capsys)


def test_an_absent_topic_gives_one_line_naming_the_bags_image_topics(tmp_path, capsys):
    frame = structured_image(HEIGHT, WIDTH, 0)
    source = write_bag(tmp_path / "in", [("/a/image", image(frame, 0)), ("/b/image/compressed", compressed(frame, 0))])
    assert run(source, tmp_path / "out", "--topics", "/c/image") == 2
    assert one_line(capsys) == (
        "superpoint-bag: topic(s) /c/image not among the bag's image topics: /a/image, /b/image/compressed"
    )


def test_a_bag_without_image_topics_gives_one_line_and_exit_code_2(tmp_path, capsys):
    source = write_bag(tmp_path / "in", [("/cam0/camera_info", camera_info())])
    assert run(source, tmp_path / "out") == 2
    assert "no sensor_msgs/Image or sensor_msgs/CompressedImage topic" in one_line(capsys)


def test_an_existing_output_is_refused_unless_overwrite_and_the_input_is_never_written(tmp_path, capsys):
    source = write_bag(tmp_path / "in", [("/cam0/image_raw", image(structured_image(HEIGHT, WIDTH, 0), 0))])
    before = {p: p.read_bytes() for p in source.iterdir()}
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("mine")
    assert run(source, tmp_path / "out") == 2
    assert "exists; give --overwrite" in one_line(capsys)
    assert (tmp_path / "out" / "keep").read_text() == "mine"
    for target in (source, source / "inner"):
        assert run(source, target, "--overwrite") == 2
        assert "would write into the input" in one_line(capsys)
    assert run(source, tmp_path / "out", "--overwrite") == 0
    assert len(read_bag(tmp_path / "out")["/cam0/keypoints"]) == 1
    assert {p: p.read_bytes() for p in source.iterdir()} == before


def test_bad_frames_are_counted_and_skipped_with_a_throttled_line_and_the_rest_is_processed(tmp_path, capsys):
    good = structured_image(HEIGHT, WIDTH, 0)
    odd = image(good, 1)
    odd.encoding = "yuv422_yuy2"
    truncated = compressed(good, 3, "jpg")
    truncated.data = truncated.data[: len(truncated.data) // 2]
    messages = [
        ("/cam0/image_raw", image(good, 0)),
        ("/cam0/image_raw", odd),
        ("/cam0/image_raw", image(good[:6, :6], 2)),
        ("/cam0/image_raw", image(good[:7], 4)),
        ("/cam0/image_raw", image(good, 5)),
        ("/cam1/compressed", truncated),
        ("/cam1/compressed", compressed(good[:5, :5], 6)),
    ]
    source = write_bag(tmp_path / "in", messages)
    assert run(source, tmp_path / "out") == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith(
        f"superpoint-bag: {source}: 7 frames read, 2 processed, 5 skipped "
        "(3 too small, 1 undecodable, 1 unsupported encoding);"
    )
    skips = [line for line in lines if "skipped a frame" in line]
    # Throttled per topic and reason: the second small frame on /cam0/image_raw is not logged.
    assert len(skips) == 4
    assert any("unsupported encoding 'yuv422_yuy2'" in line for line in skips)
    written = read_bag(tmp_path / "out")["/cam0/keypoints"]
    assert [fields(m.header) for _, _, m in written] == [fields(messages[i][1].header) for i in (0, 4)]


def test_a_truncated_bag_is_processed_up_to_the_cut_and_the_error_gives_a_nonzero_exit(tmp_path, capsys):
    count = 60
    frames = [structured_image(HEIGHT, WIDTH, i % 5) for i in range(count)]
    source = write_bag(tmp_path / "in", [("/cam0/image_raw", image(f, i)) for i, f in enumerate(frames)])
    (file,) = source.glob("*.mcap")
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * 0.7)])
    assert run(source, tmp_path / "out") == 1
    summary = capsys.readouterr().err.splitlines()[-1]
    assert "read error: the MCAP file is cut short (no footer)" in summary
    written = read_bag(tmp_path / "out")["/cam0/keypoints"]
    # Whole chunks (about 1 MB, 17 frames here) before the cut are read; the one it splits is not.
    assert 17 <= len(written) < count
    assert f" {len(written)} processed" in summary
    assert [fields(m.header) for _, _, m in written] == [fields(header(i)) for i in range(len(written))]
    # A recorder killed before writing metadata.yaml leaves the MCAP file alone in the directory.
    (source / "metadata.yaml").unlink()
    assert run(source, tmp_path / "out", "--overwrite") == 1
    assert f" {len(written)} processed" in capsys.readouterr().err.splitlines()[-1]


def test_a_batch_the_network_fails_on_is_counted_and_the_run_goes_on(tmp_path, capsys):
    class FailsOnItsSecondBatch(Detector):
        calls = 0

        def detect(self, images, channel_order="bgr"):
            FailsOnItsSecondBatch.calls += 1
            if FailsOnItsSecondBatch.calls == 2:
                raise RuntimeError("out of memory")
            return super().detect(images, channel_order)

    frames = [structured_image(HEIGHT, WIDTH, seed) for seed in range(5)]
    source = write_bag(tmp_path / "in", [("/cam0/image_raw", image(f, i)) for i, f in enumerate(frames)])
    detector = FailsOnItsSecondBatch(weights="random", device="cpu")
    summary = bags.process(source, tmp_path / "out", detector=detector, batch=2)
    assert (summary.frames_read, summary.processed, dict(summary.skipped)) == (5, 3, {"inference failed": 2})
    assert "skipped a frame on /cam0/image_raw: RuntimeError('out of memory')" in capsys.readouterr().err
    written = read_bag(tmp_path / "out")["/cam0/keypoints"]
    assert [m.header.stamp.sec for _, _, m in written] == [header(i).stamp.sec for i in (0, 1, 4)]


def test_a_batch_below_one_gives_one_line_and_exit_code_2(tmp_path, capsys):
    source = write_bag(tmp_path / "in", [("/cam0/image_raw", image(structured_image(HEIGHT, WIDTH, 0), 0))])
    assert run(source, tmp_path / "out", "--batch", "0") == 2
    assert one_line(capsys) == "superpoint-bag: --batch must be at least 1, got 0"


def test_it_runs_without_ros_no_rclpy_imported_and_no_workspace_sourced(tmp_path):
    """And, without tracking on a machine with no CUDA GPU, without torch: the network runs from
    its prepared OpenVINO files (`detector_choice`), as in the node."""
    source = write_bag(tmp_path / "in", [("/cam0/image_raw", image(structured_image(HEIGHT, WIDTH, 0), 0))])
    script = (
        "import sys\n"
        "from superpoint_ros import bags\n"
        f"summary = bags.process({str(source)!r}, {str(tmp_path / 'out')!r}, weights='random', device='cpu')\n"
        "ros = {'rclpy', 'sensor_msgs', 'std_msgs', 'torch'} & {m.split('.')[0] for m in sys.modules}\n"
        "print(summary.processed, sorted(ros))\n"
    )
    # The source tree alone: no workspace install, no AMENT_PREFIX_PATH.
    environment = {k: v for k, v in os.environ.items() if k != "AMENT_PREFIX_PATH"} | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "1 []"
    assert read_bag(tmp_path / "out")["/cam0/keypoints"][0][2].descriptor_size == 256


def test_batch_sizes_agree_within_the_parity_tolerances_with_settings_from_the_params_file(tmp_path):
    frames = [structured_image(HEIGHT, WIDTH, seed) for seed in range(5)]
    source = write_bag(tmp_path / "in", [("/cam0/image_raw", image(f, i)) for i, f in enumerate(frames)])
    params = tmp_path / "params.yaml"
    params.write_text(
        "/**/superpoint_detector:\n  ros__parameters:\n"
        "    weights: random\n    device: cpu\n    nms_radius: 2\n    border_removal_distance: 6\n"
    )
    outputs = []
    for batch in (1, 3):
        bags.process(source, tmp_path / f"out{batch}", params_file=params, batch=batch, list_topics=False)
        outputs.append([m for _, _, m in read_bag(tmp_path / f"out{batch}")["/cam0/keypoints"]])
    alone = Detector(weights="random", device="cpu", nms_radius=2, border_removal_distance=6)
    for one, three, pixels in zip(*outputs, frames, strict=True):
        expected = alone.detect([pixels])[0]
        np.testing.assert_array_equal(keypoints_of(one), expected.keypoints)
        # As test_detector's batch test: the same keypoints, scores and descriptors within float noise.
        order_one = np.lexsort((keypoints_of(one)[:, 1], keypoints_of(one)[:, 0], -np.asarray(one.scores)))
        order_three = np.lexsort((keypoints_of(three)[:, 1], keypoints_of(three)[:, 0], -np.asarray(three.scores)))
        np.testing.assert_array_equal(keypoints_of(one)[order_one], keypoints_of(three)[order_three])
        np.testing.assert_allclose(np.asarray(one.scores)[order_one], np.asarray(three.scores)[order_three], atol=1e-6)
        descriptors_one = np.reshape(one.descriptors, (-1, 256))[order_one]
        np.testing.assert_allclose(descriptors_one, np.reshape(three.descriptors, (-1, 256))[order_three], atol=1e-5)


def terminal_output(command: list[str]) -> str:
    """What `command` writes to stderr when stderr is a terminal (a pseudo-terminal here)."""
    import pty
    import termios

    controller, terminal = pty.openpty()
    termios.tcsetwinsize(terminal, (24, 120))  # a new pseudo-terminal is 0 columns wide: no room for a bar
    process = subprocess.Popen(command, stderr=terminal, stdout=subprocess.DEVNULL)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert process.wait(timeout=300) == 0
    return b"".join(chunks).decode(errors="replace")


def test_the_progress_bar_shows_on_a_terminal_only_and_not_with_quiet(tmp_path):
    source = write_bag(
        tmp_path / "in", [("/cam0/image_raw", image(structured_image(HEIGHT, WIDTH, i), i)) for i in range(3)]
    )
    command = [sys.executable, "-m", "superpoint_ros.bags", str(source)]
    options = ["--weights", "random", "--device", "cpu"]
    shown = terminal_output([*command, str(tmp_path / "shown"), *options])
    quiet = terminal_output([*command, str(tmp_path / "quiet"), *options, "--quiet"])
    assert "frame/s" in shown and "/3 [" in shown
    assert "frame/s" not in quiet and "-> /cam0/keypoints" not in quiet
    for output in (shown, quiet):
        assert " 3 frames read, 3 processed, 0 skipped" in output.splitlines()[-1]


def test_stereo_tracking_without_a_left_and_right_camera_gives_one_line_and_exit_code_2(tmp_path, capsys):
    frame = structured_image(HEIGHT, WIDTH, 0)
    source = write_bag(tmp_path / "in", [("/cam0/image_raw", image(frame, 0)), ("/cam1/image_raw", image(frame, 0))])
    params = tmp_path / "params.yaml"
    params.write_text("/**/superpoint_tracker:\n  ros__parameters:\n    stereo: true\n")
    assert run(source, tmp_path / "out", "--tracking", "--params-file", str(params)) == 2
    assert one_line(capsys) == (
        "superpoint-bag: stereo tracking needs exactly two image topics whose cameras are <namespace>/left and "
        "<namespace>/right (pick them with --topics); cameras found: /cam0, /cam1"
    )
    assert not (tmp_path / "out").exists()


def test_an_unreadable_parameters_file_gives_one_line_and_exit_code_2(tmp_path, capsys):
    source = write_bag(tmp_path / "in", [("/cam0/image_raw", image(structured_image(HEIGHT, WIDTH, 0), 0))])
    assert run(source, tmp_path / "out", "--params-file", str(tmp_path / "absent.yaml")) == 2
    assert one_line(capsys).startswith(f"superpoint-bag: cannot read parameters file {tmp_path / 'absent.yaml'}:")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    assert run(source, tmp_path / "out", "--params-file", str(tmp_path / "list.yaml")) == 2
    assert "is not a mapping of node names to ros__parameters" in one_line(capsys)


def test_the_throughput_benchmark_prints_a_section_with_both_rates_per_round(capsys):
    from superpoint_ros.tools import bench_bags

    options = ["--frames", "2", "--size", "32x48", "--batch", "2", "--rounds", "2", "--weights", "random"]
    assert bench_bags.main([*options, "--input", "jpeg"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("## ") and "superpoint-bag throughput vs Detector batch throughput" in lines[0]
    assert "- Input: 2 frames 32×48 (jpeg), batch 2; weights random" in lines
    rows = [line.split(" | ") for line in lines if line.startswith(("| 1 |", "| 2 |", "| median |"))]
    assert len(rows) == 3 and all(len(row) == 5 and float(row[1]) > 0 and float(row[2]) > 0 for row in rows)
