"""`superpoint-detect`: run SuperPoint on image files, no ROS needed.

superpoint-detect a.png b.png --weights DIR_OR_FILE --json out.json --overlay out.png
"""

import argparse
import json
import pathlib
import sys

import cv2

from superpoint_ros.detector_choice import create_detector
from superpoint_ros.drawing import draw_detections, grey_or_colour_to_bgr8
from superpoint_ros.feature_types import BACKENDS, DEFAULT_WEIGHTS, PRECISIONS, RANDOM_WEIGHTS
from superpoint_ros.numpy_images import ImageError, check_image
from superpoint_ros.weights_files import WeightsError


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="superpoint-detect", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=pathlib.Path, help="image files (anything OpenCV reads)")
    parser.add_argument(
        "--weights",
        default=DEFAULT_WEIGHTS,
        help=f"hub repo id, local directory or file, or '{RANDOM_WEIGHTS}' (default: %(default)s)",
    )
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument(
        "--backend", default="auto", choices=BACKENDS, help="network engine; auto: OpenVINO on the CPU when installed"
    )
    parser.add_argument(
        "--precision",
        default="float32",
        choices=PRECISIONS,
        help="reduced precision is faster but drifts from the reference (see BENCHMARKS.md)",
    )
    parser.add_argument(
        "--calibration",
        default="scenes",
        help="int8: calibrate on generated scenes (default) or on the images of this directory",
    )
    parser.add_argument("--calibration-count", type=int, default=16, help="int8: calibration images")
    parser.add_argument("--quantization-cache-dir", default=None, help="int8: model cache (default ~/.cache/...)")
    parser.add_argument("--keypoint-threshold", type=float, default=0.005)
    parser.add_argument("--nms-radius", type=int, default=4)
    parser.add_argument("--max-keypoints", type=int, default=-1, help="-1 keeps all")
    parser.add_argument("--border-removal-distance", type=int, default=4)
    parser.add_argument("--json", type=pathlib.Path, help="write the detections here")
    parser.add_argument(
        "--overlay",
        type=pathlib.Path,
        help="write the drawn keypoints here; with several images, '_<index>' goes before the suffix",
    )
    arguments = parser.parse_args(argv)
    if arguments.calibration == "frames":
        parser.error("--calibration frames is for the node's live camera; give scenes or a directory")
    return arguments


def overlay_path(template: pathlib.Path, index: int, count: int) -> pathlib.Path:
    return template if count == 1 else template.with_name(f"{template.stem}_{index}{template.suffix}")


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    images = []
    for path in arguments.images:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            print(f"superpoint-detect: cannot read image {path}", file=sys.stderr)
            return 2
        try:
            check_image(image)
        except ImageError as error:
            print(f"superpoint-detect: {path}: {error}", file=sys.stderr)
            return 2
        images.append(image)
    try:
        detector = create_detector(
            weights=arguments.weights,
            weights_revision=arguments.revision,
            device=arguments.device,
            backend=arguments.backend,
            precision=arguments.precision,
            calibration=arguments.calibration,
            calibration_count=arguments.calibration_count,
            quantization_cache_dir=arguments.quantization_cache_dir,
            keypoint_threshold=arguments.keypoint_threshold,
            nms_radius=arguments.nms_radius,
            max_keypoints=arguments.max_keypoints,
            border_removal_distance=arguments.border_removal_distance,
        )
    except (WeightsError, ValueError) as error:
        print(f"superpoint-detect: {error}", file=sys.stderr)
        return 2
    results = detector.detect(images)
    records = []
    for index, (path, image, detections) in enumerate(zip(arguments.images, images, results, strict=True)):
        print(f"{path}: {len(detections.scores)} keypoints")
        records.append(
            {
                "image": str(path),
                "height": image.shape[0],
                "width": image.shape[1],
                "keypoints": detections.keypoints.tolist(),
                "scores": detections.scores.tolist(),
                "descriptors": detections.descriptors.tolist(),
            }
        )
        if arguments.overlay:
            drawn = draw_detections(grey_or_colour_to_bgr8(image), detections, f"{len(detections.scores)} keypoints")
            cv2.imwrite(str(overlay_path(arguments.overlay, index, len(images))), drawn)
    if arguments.json:
        arguments.json.write_text(json.dumps(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
