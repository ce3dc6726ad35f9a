"""The tracker node's parameters (`PARAMETERS`, one row each), checked by `TrackerConfig` before
the tracker is built."""

import dataclasses

from superpoint_ros.feature_types import MATCHINGS, VERIFICATIONS, TrackingSettings
from superpoint_ros.ros.parameters import Spec, check_choices

_settings = TrackingSettings()
MATCHING_PARAMETERS = (
    "nn_threshold",
    "ratio_threshold",
    "max_track_gap",
    "verification",
    "ransac_threshold",
    "matching",
)
RUNTIME_PARAMETERS = (*MATCHING_PARAMETERS, "stereo_row_tolerance", "min_track_length", "vins_max_rate")

PARAMETERS = (
    Spec("device", "cpu", "Where descriptors are matched: cpu, cuda, cuda:N or auto."),
    Spec(
        "threads",
        1,
        "CPU threads for matching (torch), set for the tracker executable's process. 1 keeps it from competing "
        "with the detector's inference threads.",
        1,
        256,
    ),
    Spec("stereo", False, "Two cameras: left/ and right/ keypoints, paired by stamp (see the README)."),
    Spec(
        "images_rectified",
        False,
        "The keypoints come from rectified images: CameraInfo's P is the camera matrix, with no distortion, and "
        "stereo rows are compared as they are.",
    ),
    Spec(
        "nn_threshold",
        _settings.nn_threshold,
        "Largest L2 distance between unit descriptors of a match.",
        0.0,
        2.0,
        read_only=False,
    ),
    Spec(
        "ratio_threshold",
        _settings.ratio_threshold,
        "A track's best match must be at most this fraction of the distance to its second best (1: no ratio "
        "test); must be above 0.",
        0.0,
        1.0,
        read_only=False,
    ),
    Spec(
        "max_track_gap",
        _settings.max_track_gap,
        "Frames a track may go unseen and still keep its id.",
        0,
        1000,
        read_only=False,
    ),
    Spec(
        "verification",
        _settings.verification,
        "Geometric verification by RANSAC: auto (homography for planar or distant scenes, else fundamental "
        "matrix), fundamental, homography or none.",
        choices=VERIFICATIONS,
        read_only=False,
    ),
    Spec(
        "matching",
        _settings.matching,
        "guided: each track is compared only with the keypoints near its predicted position (its own "
        "velocity, or the last frame's median motion), with dense matching as the fallback when that "
        "fails; dense: every track against every keypoint.",
        choices=MATCHINGS,
        read_only=False,
    ),
    Spec(
        "ransac_threshold",
        _settings.ransac_threshold,
        "Pixels; inlier distance of the geometric verification.",
        0.1,
        100.0,
        read_only=False,
    ),
    Spec(
        "max_input_keypoints",
        # tracker_inputs.DEFAULT_MAX_INPUT_KEYPOINTS, written out: tracker_inputs loads OpenCV
        # (through camera_model), and this table stays light.
        8192,
        "Keypoints tracked per frame at most: a KeypointArray with more keeps its highest-scoring ones "
        "(with a throttled warning). Bounds the time and memory of one update.",
        1,
        1 << 20,
    ),
    Spec(
        "stereo_row_tolerance",
        2.0,
        "Pixels; a stereo pair's rectified rows may differ by this much.",
        0.0,
        100.0,
        read_only=False,
    ),
    Spec(
        "min_track_length",
        1,
        "Publish only tracks seen in at least this many frames (1: every keypoint).",
        1,
        1000,
        read_only=False,
    ),
    Spec("vins_output", False, "Publish `feature` (sensor_msgs/PointCloud) in VINS-Fusion's layout; needs CameraInfo."),
    Spec(
        "vins_max_rate",
        0.0,
        "Hz; publish `feature` at most this often, by image stamps (0: every frame).",
        0.0,
        1000.0,
        read_only=False,
    ),
    Spec("debug_image", True, "Publish debug_image (drawn only while subscribed)."),
    Spec(
        "debug_image_topic",
        "image",
        "Camera image the debug trails are drawn on; subscribed only while debug_image is.",
    ),
    Spec(
        "statistics_period",
        5.0,
        "Seconds between log lines with frame and track counts (0: never).",
        0.0,
        3600.0,
    ),
)


@dataclasses.dataclass(frozen=True)
class TrackerConfig:
    """The node's parameters, checked together: `from_values` raises `ValueError` naming the problem."""

    values: dict
    settings: TrackingSettings

    @classmethod
    def from_values(cls, values: dict) -> "TrackerConfig":
        check_choices(PARAMETERS, values)
        settings = TrackingSettings(**{name: values[name] for name in MATCHING_PARAMETERS})
        return cls(dict(values), settings)

    def __getitem__(self, name: str):
        return self.values[name]
