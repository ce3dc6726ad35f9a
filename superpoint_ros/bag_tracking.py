"""`superpoint-bag --tracking`: the tracker node's work (`frame_tracking.FrameTracking`, the
same code the node runs) on the keypoints written to the bag, its outputs as the `rosbags`
messages the node would publish."""

import dataclasses

from superpoint_ros import bag_messages
from superpoint_ros.bag_parameters import BagError
from superpoint_ros.feature_types import TrackingSettings
from superpoint_ros.frame_tracking import FrameTracking, Problem, TrackerCounters
from superpoint_ros.tracker_inputs import DEFAULT_MAX_INPUT_KEYPOINTS
from superpoint_ros.tracking import Tracker

# An output message: (topic, type name, rosbags message, receive time in ns).
Output = tuple[str, str, object, int]


class BagTracking:
    """What one tracker node would hear: one camera, or (`stereo`) a left and a right camera
    whose frames pair by identical stamps. Its outputs are the node's: FeatureTracks per camera,
    and (`vins`) the VINS-Fusion PointCloud."""

    def __init__(self, parameters: dict, namespaces: list[str], tracks_namespace: str, vins: bool) -> None:
        """`parameters`: the tracker node's; `namespaces`: each camera's (left first);
        `tracks_namespace`: where `feature` goes. Raises `BagError` for a bad parameter."""
        matching = {f.name for f in dataclasses.fields(TrackingSettings)}
        try:
            tracker = Tracker(
                device=parameters.get("device", "cpu"),
                **{name: value for name, value in parameters.items() if name in matching},
            )
            self.frames = FrameTracking(
                tracker,
                TrackerCounters(),
                stereo=len(namespaces) == 2,
                rectified_input=bool(parameters.get("images_rectified", False)),
                row_tolerance=float(parameters.get("stereo_row_tolerance", 2.0)),
                min_track_length=int(parameters.get("min_track_length", 1)),
                vins_output=vins,
                vins_max_rate=float(parameters.get("vins_max_rate", 0.0)),
                max_input_keypoints=int(parameters.get("max_input_keypoints", DEFAULT_MAX_INPUT_KEYPOINTS)),
            )
        except (ValueError, TypeError) as error:
            raise BagError(f"superpoint_tracker parameters: {' '.join(str(error).split())}") from None
        for camera, namespace in zip(self.frames.cameras, namespaces, strict=True):
            camera.keypoints_topic, camera.camera_info_topic = f"{namespace}/keypoints", f"{namespace}/camera_info"
        self.namespaces = namespaces
        self.feature_topic = f"{tracks_namespace}/feature"

    def offer_keypoints(self, camera_id: int, message: object, received_ns: int) -> tuple[list[Output], list[Problem]]:
        """Track `message` (the KeypointArray written for camera `camera_id`, received at
        `received_ns`; in stereo, once its other half came): the messages to write, and the
        problems to report."""
        outcome = self.frames.offer_keypoints(camera_id, message, received_ns)
        frame = outcome.frame
        if frame is None:
            return [], outcome.problems
        outputs = []
        for namespace, camera in zip(self.namespaces, frame.cameras, strict=True):
            keypoints = camera.received.message
            tracks = bag_messages.feature_tracks(
                keypoints.header, keypoints.height, keypoints.width, camera.tracks, camera.normalized
            )
            outputs.append((f"{namespace}/tracks", bag_messages.FEATURE_TRACKS, tracks, camera.received.received_ns))
        if frame.vins is not None:
            cloud = bag_messages.point_cloud(frame.cameras[0].received.message.header, *frame.vins)
            outputs.append(
                (self.feature_topic, bag_messages.POINT_CLOUD, cloud, frame.cameras[-1].received.received_ns)
            )
        return outputs, outcome.problems


def trackings(namespaces: list[str], parameters: dict, vins: bool) -> dict[str, tuple[BagTracking, int]]:
    """Each camera namespace's `BagTracking` and camera id in it: one per camera, or with the
    tracker's `stereo: true` one for the pair whose namespaces are `<ns>/left` and `<ns>/right`
    (as the stereo tracker node in `<ns>` hears them), whose `feature` goes to `<ns>/feature`.
    Raises `BagError`."""
    if not parameters.get("stereo"):
        return {namespace: (BagTracking(parameters, [namespace], namespace, vins), 0) for namespace in namespaces}
    pairs = [
        (namespace, namespace.removesuffix("/left") + "/right")
        for namespace in namespaces
        if namespace.endswith("/left") and namespace.removesuffix("/left") + "/right" in namespaces
    ]
    if len(pairs) != 1 or len(namespaces) != 2:
        found = ", ".join(sorted(namespaces)) or "none"
        raise BagError(
            "stereo tracking needs exactly two image topics whose cameras are <namespace>/left and "
            f"<namespace>/right (pick them with --topics); cameras found: {found}"
        )
    left, right = pairs[0]
    tracking = BagTracking(parameters, [left, right], left.removesuffix("/left"), vins)
    return {left: (tracking, 0), right: (tracking, 1)}
