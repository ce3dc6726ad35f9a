"""`superpoint-detect` on image files, and the pip packaging that provides the command.

The JSON run and one failure run as the command does, in a process of their own; the other
failures call the same `main` in this process, where a traceback would fail the test.
"""

import json
import subprocess
import sys
import zipfile

import cv2
import numpy as np

from superpoint_ros import cli
from superpoint_ros.detector_choice import create_detector

from conftest import structured_image


def run_cli(*arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "superpoint_ros.cli", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def main_in_process(capsys, *arguments: str) -> tuple[int, str]:
    """`superpoint-detect`'s `main` here: (exit status, what it wrote to stderr)."""
    returncode = cli.main(list(arguments))
    return returncode, capsys.readouterr().err


def test_json_and_overlays_hold_the_detectors_output(tmp_path, hf_weights, capsys):
    paths = []
    for index, (height, width) in enumerate([(64, 80), (48, 72)]):
        paths.append(tmp_path / f"frame{index}.png")
        cv2.imwrite(str(paths[-1]), structured_image(height, width, index))
    json_path, overlay = tmp_path / "out.json", tmp_path / "overlay.png"
    returncode, stderr = main_in_process(
        capsys, *map(str, paths), "--weights", str(hf_weights), "--device", "cpu", "--max-keypoints", "50"
    )
    assert returncode == 0, stderr
    result = run_cli(
        *map(str, paths),
        *("--weights", str(hf_weights), "--device", "cpu", "--max-keypoints", "50", "--nms-radius", "2"),
        *("--json", str(json_path), "--overlay", str(overlay)),
    )
    assert result.returncode == 0, result.stderr
    records = json.loads(json_path.read_text())
    detector = create_detector(weights=str(hf_weights), device="cpu", max_keypoints=50, nms_radius=2)
    for index, (path, record) in enumerate(zip(paths, records, strict=True)):
        image = cv2.imread(str(path))
        expected = detector.detect([image])[0]
        assert record["image"] == str(path)
        assert (record["height"], record["width"]) == image.shape[:2]
        assert np.array_equal(np.array(record["keypoints"], np.float32), expected.keypoints)
        assert np.array_equal(np.array(record["scores"], np.float32), expected.scores)
        assert np.array_equal(np.array(record["descriptors"], np.float32), expected.descriptors)
        drawn = cv2.imread(str(tmp_path / f"overlay_{index}.png"))
        assert drawn.shape == image.shape and not np.array_equal(drawn, image)


def test_unreadable_image_and_missing_weights_exit_with_one_line(tmp_path, capsys):
    returncode, stderr = main_in_process(capsys, str(tmp_path / "missing.png"), "--weights", "random")
    assert returncode == 2 and "cannot read image" in stderr
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), structured_image(32, 32, 0))
    result = run_cli(str(image), "--weights", str(tmp_path / "nope.safetensors"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_image_under_eight_pixels_a_side_exits_with_one_line_naming_it(tmp_path, capsys):
    good, thin = tmp_path / "good.png", tmp_path / "thin.png"
    cv2.imwrite(str(good), structured_image(32, 32, 0))
    cv2.imwrite(str(thin), structured_image(5, 40, 1))
    returncode, stderr = main_in_process(capsys, str(good), str(thin), "--weights", "random", "--device", "cpu")
    assert returncode == 2
    assert stderr.strip() == f"superpoint-detect: {thin}: image is 40x5 pixels; SuperPoint needs at least 8x8"


def test_int8_calibrated_on_a_directory_without_images_exits_with_one_line(tmp_path, capsys):
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), structured_image(32, 32, 0))
    empty = tmp_path / "calibration"
    empty.mkdir()
    arguments = (str(image), "--weights", "random", "--precision", "int8", "--calibration", str(empty))
    returncode, stderr = main_in_process(capsys, *arguments)
    assert returncode == 2
    assert stderr.strip().count("\n") == 0 and "holds no readable image" in stderr


def test_pip_wheel_declares_the_superpoint_detect_command(tmp_path):
    root = __import__("pathlib").Path(__file__).resolve().parent.parent
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("superpoint_ros-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        sources = {n: archive.read(n).decode() for n in names if n.endswith(".py")}
    # The core only: no module of the ROS layer or the tools, none that imports rclpy or transformers.
    assert not [n for n in sources if n.startswith(("superpoint_ros/ros/", "superpoint_ros/tools/"))]
    assert not [n for n, text in sources.items() if "import rclpy" in text or "from rclpy" in text]
    assert not [n for n, text in sources.items() if "import transformers" in text or "from transformers" in text]
    assert {"superpoint_ros/node.py", "superpoint_ros/tracker_node.py"}.isdisjoint(sources)
    assert "superpoint-detect = superpoint_ros.cli:main" in entry_points
    assert "superpoint-export = superpoint_ros.export:main" in entry_points
    assert "superpoint-bag = superpoint_ros.bags:main" in entry_points
    # No generated message module, but the .msg texts that superpoint-bag embeds in its bags.
    assert "superpoint_ros/detector.py" in names and not any(n.startswith("superpoint_ros/msg/") for n in names)
    assert {n.rsplit("/", 1)[1] for n in names if "/share/superpoint_ros/msg/" in n} == {
        "KeypointArray.msg",
        "FeatureTracks.msg",
    }
