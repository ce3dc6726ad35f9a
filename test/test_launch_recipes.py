"""The camera recipes of docs/cameras.md, each run as written through the real `ros2 launch`.

Every recipe gets its own ROS domain, its stand-in cameras (child processes publishing on the
driver's topic names) and its own `ros2 launch`; all recipes start side by side, so the module
costs about one node start-up, not six. Each test then checks, from a probe node in that domain,
that the documented outputs arrive, and that `ros2 param dump` of each node equals
config/detector.yaml updated by the recipe's params file and by what its launch arguments
imply (written out here by hand). Skipped where `ros2 launch` is not installed (a user's ROS
install has it; here `../shared/ros2cli/install.sh .venv` adds it).
"""

import dataclasses
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest
import rclpy
import torch
import yaml
from ament_index_python.packages import get_package_share_directory
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud

from superpoint_ros.backends import resolve_backend
from superpoint_ros.msg import FeatureTracks, KeypointArray

from domains import SPARE_DOMAINS, spare_domain_ids
from helpers import needs_ros2_launch

ROOT = pathlib.Path(__file__).resolve().parent.parent
CAMERAS_DOC = ROOT / "docs" / "cameras.md"
CONFIG = pathlib.Path(get_package_share_directory("superpoint_ros")) / "config"
CAMERA_INFO_SIM = str(ROOT / "test" / "camera_info_sim.py")
CAMERA_SIM = [sys.executable, "-m", "superpoint_ros.tools.camera_sim", "--height", "120", "--width", "160"]
# 1 Hz: the six recipes run side by side while each is checked in turn, and each frame costs
# every node downstream (alone, 2026-12-02: 49.0 s of CPU at 2 Hz, 42.5 s at 1 Hz; 4 s longer).
CAMERA_SIM += ["--rate", "1", "--wait-for-subscriber", "0"]
# Declared by rclpy in every node; not ours to document.
RCLPY_PARAMETERS = {"use_sim_time", "start_type_description_service"}
RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
WAIT_S = 120.0
INFRA1, INFRA2 = "/camera/camera/infra1/image_rect_raw", "/camera/camera/infra2/image_rect_raw"

pytestmark = needs_ros2_launch()


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What one recipe needs and promises: its stand-in cameras (argv each), the outputs that
    must arrive (topic: type), the params file it names, and the parameters its launch arguments
    set on each node beyond that file (None: the node is not started)."""

    cameras: list[list[str]]
    outputs: dict[str, type]
    detector: dict
    tracker: dict | None = None
    params_file: str = "detector.yaml"


def info_sim(encoding: str, *pairs: tuple[str, str]) -> list[str]:
    argv = [sys.executable, CAMERA_INFO_SIM, "--encoding", encoding, "--rate", "1"]
    for image, info in pairs:
        argv += ["--image", image, "--info", info]
    return argv


RECIPES = {
    "realsense_color": Recipe(
        cameras=[info_sim("rgb8", ("/camera/camera/color/image_raw", "/camera/camera/color/camera_info"))],
        outputs={"/keypoints": KeypointArray, "/tracks": FeatureTracks},
        detector={},
        tracker={},
    ),
    "realsense_infra_vins": Recipe(
        cameras=[
            info_sim(
                "mono8",
                (INFRA1, "/camera/camera/infra1/camera_info"),
                (INFRA2, "/camera/camera/infra2/camera_info"),
            )
        ],
        outputs={
            "/left/keypoints": KeypointArray,
            "/right/keypoints": KeypointArray,
            "/left/tracks": FeatureTracks,
            "/right/tracks": FeatureTracks,
            "/feature_tracker/feature": PointCloud,
        },
        detector={"image_topics": [INFRA1, INFRA2], "camera_names": ["left", "right"]},
        tracker={"stereo": True, "vins_output": True, "debug_image_topic": INFRA1},
        params_file="vins_fusion_stereo.yaml",
    ),
    "zed": Recipe(
        cameras=[[*CAMERA_SIM, "--topic", "/zed/zed_node/rgb/color/rect/image", "--encoding", "bgra8"]],
        outputs={"/keypoints": KeypointArray},
        detector={},
    ),
    "oak": Recipe(
        cameras=[[*CAMERA_SIM, "--topic", "/oak/rgb/image_raw", "--encoding", "bgr8"]],
        outputs={"/keypoints": KeypointArray},
        detector={},
    ),
    "usb_cam": Recipe(
        cameras=[info_sim("rgb8", ("/image_raw", "/camera_info"))],
        outputs={"/keypoints": KeypointArray, "/tracks": FeatureTracks},
        detector={},
        tracker={},
    ),
    "bag_compressed": Recipe(
        cameras=[[*CAMERA_SIM, "--topic", "/camera/image_raw", "--transport", "compressed"]],
        outputs={"/keypoints": KeypointArray},
        detector={"image_transport": "compressed"},
    ),
}


def documented_command(recipe: str) -> str:
    """The command line under `<!-- recipe: NAME -->` in docs/cameras.md."""
    text = CAMERAS_DOC.read_text()
    match = re.search(rf"<!-- recipe: {recipe} -->\n```bash\n(.*?)\n```", text, re.DOTALL)
    assert match, f"docs/cameras.md has no recipe {recipe}"
    return match.group(1).replace("\\\n", " ")


def test_every_recipe_in_the_docs_is_tested():
    documented = set(re.findall(r"<!-- recipe: (\w+) -->", CAMERAS_DOC.read_text()))
    assert documented == set(RECIPES)


@dataclasses.dataclass
class Running:
    domain_id: int
    launch: subprocess.Popen
    cameras: list[subprocess.Popen]


def _stop_all(processes: list[subprocess.Popen], timeout_s: float = 20.0) -> None:
    """SIGINT to each process group, as Ctrl-C sends it (`ros2 launch` ignores a SIGINT to
    itself alone when in the background), all at once; then SIGKILL what is left."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def running(sharp_hf_weights, tmp_path_factory):
    """Every recipe started side by side, each in a domain of its own."""
    logs = tmp_path_factory.mktemp("launch_logs")
    domain_ids = spare_domain_ids()[: len(RECIPES)]
    # The last spare domain is the lifecycle CLI test's.
    assert len(domain_ids) == len(RECIPES) < SPARE_DOMAINS, "domains.SPARE_DOMAINS: too few for the recipes"
    started = {}
    try:
        for domain_id, (name, recipe) in zip(domain_ids, RECIPES.items(), strict=True):
            environment = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_LOG_DIR": str(logs)}
            command = f"exec {documented_command(name)} weights:={sharp_hf_weights}"
            launch = subprocess.Popen(
                ["bash", "-c", command],
                env=environment,
                stdout=open(logs / f"{name}.log", "w"),  # noqa: SIM115 (closed with the process)
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            cameras = [
                subprocess.Popen(argv, env=environment, stdout=subprocess.DEVNULL, start_new_session=True)
                for argv in recipe.cameras
            ]
            started[name] = Running(domain_id, launch, cameras)
        yield started, logs
    finally:
        _stop_all([camera for run in started.values() for camera in run.cameras])
        _stop_all([run.launch for run in started.values()])


def _receive(domain_id: int, outputs: dict[str, type], count: int) -> dict[str, list]:
    """At least `count` messages on each topic of `outputs`, from a probe node in the domain."""
    context = Context()
    rclpy.init(args=[], context=context, domain_id=domain_id)
    node = rclpy.create_node("recipe_probe", context=context)
    received = {topic: [] for topic in outputs}
    try:
        for topic, message_type in outputs.items():
            node.create_subscription(message_type, topic, received[topic].append, RELIABLE)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + WAIT_S
        while any(len(messages) < count for messages in received.values()) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        executor.shutdown()
    finally:
        node.destroy_node()
        context.try_shutdown()
    return received


def _start_dump(domain_id: int, node: str) -> subprocess.Popen:
    """`ros2 param dump` of `node`, started now so that it runs beside the other checks."""
    return subprocess.Popen(
        ["ros2", "param", "dump", "--no-daemon", "--timeout", "60", f"/{node}"],
        env={**os.environ, "ROS_DOMAIN_ID": str(domain_id)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _dumped(dump: subprocess.Popen) -> dict:
    """The dump's parameters, as the YAML document it printed, less rclpy's own parameters."""
    stdout, stderr = dump.communicate(timeout=120)
    assert dump.returncode == 0, stderr
    (section,) = yaml.safe_load(stdout).values()
    return {k: v for k, v in section["ros__parameters"].items() if k not in RCLPY_PARAMETERS}


def _file_section(name: str, node: str) -> dict:
    document = yaml.safe_load((CONFIG / name).read_text())
    return dict((document.get(f"/**/{node}") or {}).get("ros__parameters", {}))


def expected_parameters(recipe: Recipe, node: str, weights: pathlib.Path) -> dict:
    """config/detector.yaml's section, then the params file's, then the launch arguments'."""
    expected = _file_section("detector.yaml", node)
    expected.update(_file_section(recipe.params_file, node))
    expected.update(recipe.detector if node == "superpoint_detector" else recipe.tracker)
    if node == "superpoint_detector":
        expected["weights"] = str(weights)
        # `backend` reads back as the engine it picked (docs/parameters.md).
        expected["backend"] = resolve_backend(expected["backend"], torch.device("cpu"))
        # So does `architecture`, as the network the weights hold (docs/weights.md): these are Magic Leap's layout.
        if expected["architecture"] == "auto":
            expected["architecture"] = "magicleap"
    return expected


def _log_tail(logs: pathlib.Path, name: str) -> str:
    return "\n".join((logs / f"{name}.log").read_text().splitlines()[-30:])


@pytest.mark.parametrize("name", RECIPES)
def test_a_recipe_delivers_its_documented_outputs_with_the_parameters_it_names(running, name, sharp_hf_weights):
    started, logs = running
    recipe, run = RECIPES[name], started[name]
    nodes = ["superpoint_detector"] + (["superpoint_tracker"] if recipe.tracker is not None else [])
    dumps = {node: _start_dump(run.domain_id, node) for node in nodes}
    received = _receive(run.domain_id, recipe.outputs, count=3)
    missing = [topic for topic, messages in received.items() if len(messages) < 3]
    assert not missing, f"{name}: nothing (or under 3 messages) on {missing}\n{_log_tail(logs, name)}"
    for topic, messages in received.items():
        if recipe.outputs[topic] is KeypointArray:
            assert any(len(message.scores) > 0 for message in messages), f"{topic}: no keypoints at all"
    for cloud in received.get("/feature_tracker/feature", []):
        assert len(cloud.channels) == 9 and all(len(c.values) == len(cloud.points) for c in cloud.channels)
    clouds = received.get("/feature_tracker/feature")
    if clouds:
        # A physical point keeps its id from one cloud to the next: tracks continue.
        ids = [{int(value) for value in cloud.channels[0].values} for cloud in clouds]
        assert any(earlier & later for earlier, later in zip(ids, ids[1:], strict=False)), ids
    for node, dump in dumps.items():
        assert _dumped(dump) == expected_parameters(recipe, node, sharp_hf_weights), f"{name}: {node}"
    # Checked: the CPU goes to the recipes still running (the fixture stops whatever is left).
    _stop_all(run.cameras)
    _stop_all([run.launch])
