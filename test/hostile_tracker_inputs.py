"""A hostile publisher for `test_tracker_hostile.py`, run as its own process:

    python test/hostile_tracker_inputs.py mono|stereo NAMESPACE

It publishes, into the tracker's namespace, good frames with hostile messages between them, as
the cases in `MONO_CASES` and `STEREO_CASES` list. Each good frame has its own stamp and the
frame_id of its case; the child waits for its tracks (so a busy tracker never has frames
waiting in its queue) before it goes on, and gives up on one after `ANSWER_S` seconds. It prints
`hostile: done` at the end. What the tracker made of it all is for the test to check.
"""

import array
import sys
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from superpoint_ros.feature_types import Detections
from superpoint_ros.msg import FeatureTracks, KeypointArray
from superpoint_ros.ros.ros_messages import keypoint_array_message

WIDTH, HEIGHT = 320, 240
POINTS = 200
# Above the tracker's default max_input_keypoints (8192), sent twice, so that the second is
# matched against the first's tracks.
MANY_KEYPOINTS = 10_000
ANSWER_S = 60.0
FOCAL = 300.0
BASELINE_M = 0.1
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# The good frames (answers expected) of each group, in the order sent.
MONO_CASES = (
    "good_first",
    "good_second",
    "hostile_descriptor_128",
    "good_after_descriptor_128",
    "good_continued_after_descriptor_128",
    "good_after_nan_camera_info",
    "hostile_nan_descriptor_value",
    "hostile_bad_rows",
    "good_after_size_20000",
    "good_after_width_0",
    "hostile_many_keypoints_1",
    "hostile_many_keypoints_2",
    "good_last",
    "good_16384_square",
)
STEREO_CASES = ("stereo_first", "stereo_after_bad_right_camera_info")


def header(sequence: int, frame_id: str) -> Header:
    return Header(stamp=Time(sec=1_700_000_000 + sequence), frame_id=frame_id)


def camera_info(baseline_m: float = 0.0) -> CameraInfo:
    info = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model="plumb_bob")
    cx, cy = (WIDTH - 1) / 2, (HEIGHT - 1) / 2
    info.k = [FOCAL, 0.0, cx, 0.0, FOCAL, cy, 0.0, 0.0, 1.0]
    info.d = [0.0] * 5
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [FOCAL, 0.0, cx, -FOCAL * baseline_m, 0.0, FOCAL, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def scene(count: int = POINTS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` points well inside the image, with unit descriptors of 256 dimensions."""
    rng = np.random.default_rng(seed)
    points = rng.uniform([40, 20], [WIDTH - 20, HEIGHT - 20], (count, 2)).astype(np.float32)
    descriptors = rng.normal(size=(count, 256)).astype(np.float32)
    return points, descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True)


def keypoint_array(
    sequence: int, frame_id: str, points: np.ndarray, descriptors: np.ndarray, width=WIDTH, height=HEIGHT
) -> KeypointArray:
    """A frame of `points` moved 1 px right per sequence number (a camera pan)."""
    moved = points + np.float32([sequence, 0.0])
    scores = np.linspace(1.0, 0.1, len(points)).astype(np.float32)
    detections = Detections(moved, scores, descriptors)
    return keypoint_array_message(detections, header(sequence, frame_id), height, width, descriptors.shape[1])


class Hostile:
    def __init__(self, namespace: str, prefixes: list[str]) -> None:
        rclpy.init()
        self.node = rclpy.create_node("hostile_publisher", namespace=namespace)
        self.keypoints = {p: self.node.create_publisher(KeypointArray, f"{p}keypoints", RELIABLE) for p in prefixes}
        self.infos = {p: self.node.create_publisher(CameraInfo, f"{p}camera_info", RELIABLE) for p in prefixes}
        self.answered: set[tuple[int, int]] = set()
        self.node.create_subscription(FeatureTracks, f"{prefixes[0]}tracks", self._on_tracks, RELIABLE)
        publishers = [*self.keypoints.values(), *self.infos.values()]
        deadline = time.monotonic() + ANSWER_S
        while time.monotonic() < deadline and not all(p.get_subscription_count() for p in publishers):
            rclpy.spin_once(self.node, timeout_sec=0.05)
        self.spin(1.0)

    def _on_tracks(self, message: FeatureTracks) -> None:
        self.answered.add((message.header.stamp.sec, message.header.stamp.nanosec))

    def spin(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.01)

    def info(self, info: CameraInfo, prefix: str = "") -> None:
        """CameraInfo goes best effort to the tracker: a few copies, so that one arrives."""
        for _ in range(3):
            self.infos[prefix].publish(info)
            self.spin(0.05)

    def frame(self, messages: dict[str, KeypointArray], answered: bool = True) -> None:
        """Publish one frame (one message per camera) and wait for its tracks if `answered`."""
        for prefix, message in messages.items():
            self.keypoints[prefix].publish(message)
        stamp = next(iter(messages.values())).header.stamp
        deadline = time.monotonic() + (ANSWER_S if answered else 0.5)
        while time.monotonic() < deadline and (stamp.sec, stamp.nanosec) not in self.answered:
            rclpy.spin_once(self.node, timeout_sec=0.01)


def mono(hostile: Hostile) -> None:
    points, descriptors = scene()
    frame = hostile.frame
    hostile.info(camera_info())
    frame({"": keypoint_array(1, "good_first", points, descriptors)})
    frame({"": keypoint_array(2, "good_second", points, descriptors)})
    # Why 1: another descriptor size (a detector restarted with another model), and back.
    narrow = descriptors[:, :128] / np.linalg.norm(descriptors[:, :128], axis=1, keepdims=True)
    frame({"": keypoint_array(3, "hostile_descriptor_128", points, narrow)})
    frame({"": keypoint_array(4, "good_after_descriptor_128", points, descriptors)})
    frame({"": keypoint_array(5, "good_continued_after_descriptor_128", points, descriptors)})
    # Why 2: NaN in K, NaN in D, fx = +inf; the valid CameraInfo sent above must stay in use.
    for field, index, value in (("k", 0, float("nan")), ("d", 1, float("nan")), ("k", 0, float("inf"))):
        info = camera_info()
        values = list(getattr(info, field))
        values[index] = value
        setattr(info, field, values)
        hostile.info(info)
    hostile.spin(0.3)
    frame({"": keypoint_array(6, "good_after_nan_camera_info", points, descriptors)})
    # Why 3: one NaN value in one descriptor row (row 7).
    spoiled = descriptors.copy()
    spoiled[7, 100] = np.nan
    frame({"": keypoint_array(7, "hostile_nan_descriptor_value", points, spoiled)})
    # Why 6: a NaN score (row 10), an infinite keypoint (row 11), a zero descriptor (row 12), a
    # descriptor of length 2 (row 13, renormalised), a keypoint outside the image (row 14).
    message = keypoint_array(8, "hostile_bad_rows", points, descriptors)
    scores = np.array(message.scores, np.float32)
    scores[10] = np.nan
    keypoints = np.array(message.keypoints, np.float32)
    keypoints[2 * 11] = np.inf
    keypoints[2 * 14 + 1] = HEIGHT + 50.0
    values = np.array(message.descriptors, np.float32).reshape(POINTS, 256)
    values[12] = 0.0
    values[13] *= 2.0
    # array.array: the generated setters would copy (and check) the values one by one.
    message.scores = array.array("f", scores.tobytes())
    message.keypoints = array.array("f", keypoints.tobytes())
    message.descriptors = array.array("f", values.tobytes())
    frame({"": message})
    # Why 4: a small message declaring a 20000×20000 image, while debug_image is watched.
    frame({"": keypoint_array(9, "hostile_size_20000", points[:5], descriptors[:5], 20000, 20000)}, answered=False)
    frame({"": keypoint_array(10, "good_after_size_20000", points, descriptors)})
    # Why 6: width 0.
    frame({"": keypoint_array(11, "hostile_width_0", points, descriptors, width=0)}, answered=False)
    frame({"": keypoint_array(12, "good_after_width_0", points, descriptors)})
    # Why 4: two frames of more keypoints than max_input_keypoints.
    many_points, many_descriptors = scene(MANY_KEYPOINTS, seed=1)
    many_points[:, 0] = np.linspace(0, WIDTH - 30, MANY_KEYPOINTS)
    frame({"": keypoint_array(13, "hostile_many_keypoints_1", many_points, many_descriptors)})
    frame({"": keypoint_array(14, "hostile_many_keypoints_2", many_points, many_descriptors)})
    frame({"": keypoint_array(15, "good_last", points, descriptors)})
    # A valid header at the size bound, without its camera image: tracked, but no blank canvas
    # of 16384 × 16384 (768 MB) for the debug image; the 320×240 CameraInfo does not fit it.
    frame({"": keypoint_array(16, "good_16384_square", points, descriptors, 16384, 16384)})


def stereo(hostile: Hostile) -> None:
    points, descriptors = scene()
    hostile.info(camera_info(), "left/")
    hostile.info(camera_info(BASELINE_M), "right/")
    hostile.spin(0.3)

    def stereo_frame(sequence: int, frame_id: str) -> None:
        # The right camera sees every point 12 px to the left (a 0.1 m baseline at 2.5 m).
        right = keypoint_array(sequence, frame_id, points - np.float32([12.0, 0.0]), descriptors)
        hostile.frame({"left/": keypoint_array(sequence, frame_id, points, descriptors), "right/": right})

    stereo_frame(1, "stereo_first")
    # Why 5: a size other than the keypoints', zero focal length in the right P, NaN in P, NaN
    # in R (the last one sent: accepted, it alone would leave no right match).
    other_size = camera_info(BASELINE_M)
    other_size.width, other_size.height = 640, 480
    hostile.info(other_size, "right/")
    for field, index, value in (("p", 0, 0.0), ("p", 5, float("nan")), ("r", 4, float("nan"))):
        info = camera_info(BASELINE_M)
        values = list(getattr(info, field))
        values[index] = value
        setattr(info, field, values)
        hostile.info(info, "right/")
    hostile.spin(0.3)
    stereo_frame(2, "stereo_after_bad_right_camera_info")


def main(group: str, namespace: str) -> int:
    hostile = Hostile(namespace, ["left/", "right/"] if group == "stereo" else [""])
    (stereo if group == "stereo" else mono)(hostile)
    hostile.spin(0.5)
    print("hostile: done", flush=True)
    hostile.node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
