"""`superpoint-bag`: a rosbag2 bag of camera images in, a bag of SuperPoint keypoints out.

    superpoint-bag recording/ features/ --weights DIR --batch 8 --tracking
    ros2 run superpoint_ros bag recording/ features/
    superpoint_ros.bags.process("recording", "features", weights="DIR")

No ROS install is needed: `rosbags` reads the input (a rosbag2 directory or a single `.mcap`
or `.db3` file, MCAP or sqlite3) and writes the output, with the message definitions embedded.
Each `sensor_msgs/Image` or `sensor_msgs/CompressedImage` (JPEG, PNG) frame becomes one
`superpoint_ros/msg/KeypointArray` with the image's header, on the topic the live detector node
publishes for that camera (`camera_namespace`); `--tracking` adds the tracker node's
`FeatureTracks` (`<camera namespace>/tracks`) and `--vins` its VINS-Fusion `PointCloud`
(`<camera namespace>/feature`), with calibration from `<camera namespace>/camera_info`; with
the tracker's `stereo: true`, cameras `<ns>/left` and `<ns>/right` are tracked as a pair, as
the stereo tracker node in `<ns>` does (`<ns>/feature`). Each output message is stamped in the
bag with its image's receive time.

A thread reads and decodes frames while the network runs on the previous batch. Ctrl-C or
SIGTERM stops after the current batch and closes the output bag, which then holds everything
done so far. See docs/bags.md.

This module is the command line (and `--jobs` worker processes); `process` lives in
`bag_processing`, the bag input in `bag_reading`, the nodes' names and parameters in
`bag_parameters`, and `--tracking`/`--vins` in `bag_tracking` (the tracker node's own code,
`frame_tracking`).
"""

import argparse
import collections
import concurrent.futures
import multiprocessing
import os
import pathlib
import signal
import sys
import threading
from collections.abc import Sequence

from superpoint_ros import bag_messages
from superpoint_ros.bag_parameters import (
    BagError,
    camera_namespace,
    detector_arguments,
    output_namespaces,
    read_parameters,
)
from superpoint_ros.bag_processing import (
    EXIT_OK,
    EXIT_USAGE,
    PROGRAM,
    STORAGES,
    Summary,
    check_output,
    process,
)
from superpoint_ros.bag_reading import is_bag
from superpoint_ros.feature_types import BACKENDS, DEFAULT_WEIGHTS, PRECISIONS

# The names `superpoint_ros.bags` has always offered, whichever module now holds them.
__all__ = [
    "BagError",
    "STORAGES",
    "Summary",
    "bag_messages",
    "camera_namespace",
    "detector_arguments",
    "main",
    "output_namespaces",
    "process",
    "read_parameters",
]


def expand_inputs(inputs: Sequence[pathlib.Path]) -> tuple[list[pathlib.Path], bool]:
    """The bags named by `inputs` (a directory that is not a bag stands for the bags in it),
    and whether OUTPUT is then a directory of outputs. Raises `BagError`."""
    bags = []
    for path in inputs:
        if not path.exists():
            raise BagError(f"{path}: no such file or directory")
        if path.is_dir() and not is_bag(path):
            inside = sorted(p for p in path.iterdir() if is_bag(p))
            if not inside:
                raise BagError(f"{path}: not a rosbag2 bag, and no bag in it")
            bags.extend(inside)
        else:
            bags.append(path)
    return bags, len(bags) > 1 or len(inputs) > 1 or bags[0] not in inputs


def output_for(bag: pathlib.Path, directory: pathlib.Path) -> pathlib.Path:
    """`directory/<bag name>`, without the `.mcap` or `.db3` suffix of a single file."""
    return directory / (bag.stem if bag.is_file() else bag.name)


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        """One line and exit code 2, instead of the usage block."""
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    parser.add_argument(
        "paths",
        nargs="+",
        type=pathlib.Path,
        metavar="INPUT ... OUTPUT",
        help="bags (rosbag2 directories, .mcap or .db3 files, or a directory of bags), then OUTPUT",
    )
    parser.add_argument(
        "--topics",
        action="extend",
        type=lambda text: [topic for topic in text.split(",") if topic],
        help="image topics to process, comma-separated or repeated (default: every image topic)",
    )
    parser.add_argument("--storage", default="mcap", choices=STORAGES, help="output storage (default: %(default)s)")
    parser.add_argument("--tracking", action="store_true", help="also write FeatureTracks (<camera>/tracks)")
    parser.add_argument("--vins", action="store_true", help="also write VINS-Fusion PointClouds (<camera>/feature)")
    parser.add_argument("--copy-input", action="store_true", help="also copy the image and camera_info topics")
    parser.add_argument("--params-file", type=pathlib.Path, help="the nodes' YAML parameters file")
    parser.add_argument(
        "--weights", help=f"hub repo id, local directory or file, or 'random' (default: {DEFAULT_WEIGHTS})"
    )
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--backend", choices=BACKENDS, help="network engine (default: auto)")
    parser.add_argument("--precision", choices=PRECISIONS, help="default float32")
    parser.add_argument("--batch", type=int, help="frames per network run (default: 4 on the CPU, 16 on CUDA)")
    parser.add_argument("--jobs", type=int, default=1, help="bags processed at once, in worker processes")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or topic list")
    arguments = parser.parse_args(argv)
    if len(arguments.paths) < 2:
        parser.error("give INPUT and OUTPUT")
    if arguments.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {arguments.jobs}")
    return arguments


def _options(arguments: argparse.Namespace) -> dict:
    return {
        "topics": arguments.topics,
        "params_file": arguments.params_file,
        "weights": arguments.weights,
        "device": arguments.device,
        "backend": arguments.backend,
        "precision": arguments.precision,
        "batch": arguments.batch,
        "storage": arguments.storage,
        "tracking": arguments.tracking,
        "vins": arguments.vins,
        "copy_input": arguments.copy_input,
        "overwrite": arguments.overwrite,
    }


_worker_stop = None


def _start_worker(stop, threads: int) -> None:
    """In each `--jobs` worker: the parent's stop event, and a share of the CPU threads."""
    global _worker_stop
    import torch

    _worker_stop = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent sets `stop`
    torch.set_num_threads(threads)


def _process_in_worker(input_path: pathlib.Path, output: pathlib.Path, options: dict) -> Summary | str:
    try:
        return process(input_path, output, stop=_worker_stop, list_topics=False, **options)
    except BagError as error:
        return f"{PROGRAM}: {input_path}: {error}"


def main(argv: Sequence[str] | None = None) -> int:
    """The command; returns the exit code (see docs/bags.md)."""
    try:
        arguments = parse_arguments(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed in one line
        return exit_.code
    *inputs, output = arguments.paths
    stop = threading.Event()
    signals: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        signals.append(signum)
        stop.set()

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        bags, many = expand_inputs(inputs)
        if many:
            return _main_many(bags, output, arguments, stop, signals)
        summary = process(
            bags[0],
            output,
            progress=not arguments.quiet and sys.stderr.isatty(),
            stop=stop,
            list_topics=not arguments.quiet,
            **_options(arguments),
        )
    except BagError as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(summary.line(), file=sys.stderr)
    return 128 + signals[0] if summary.interrupted and signals else summary.exit_code


def _main_many(
    bags: list[pathlib.Path], output: pathlib.Path, arguments: argparse.Namespace, stop, signals: list[int]
) -> int:
    """One output per bag in the directory `output`, `--jobs` worker processes."""
    if output.exists() and not output.is_dir():
        raise BagError(f"output {output} must be a directory when there are several bags")
    outputs = [output_for(bag, output) for bag in bags]
    duplicates = [str(o) for o, n in collections.Counter(outputs).items() if n > 1]
    if duplicates:
        raise BagError(f"several bags would write {', '.join(duplicates)}")
    for bag, target in zip(bags, outputs, strict=True):
        check_output(bag, target, arguments.overwrite)
    output.mkdir(parents=True, exist_ok=True)
    options = _options(arguments)
    context = multiprocessing.get_context("spawn")
    worker_stop = context.Event()
    threads = max(1, (os.cpu_count() or 1) // arguments.jobs)
    codes = []
    with concurrent.futures.ProcessPoolExecutor(
        arguments.jobs, mp_context=context, initializer=_start_worker, initargs=(worker_stop, threads)
    ) as pool:
        futures = [
            pool.submit(_process_in_worker, bag, target, options) for bag, target in zip(bags, outputs, strict=True)
        ]
        pending = set(futures)
        while pending:
            done, pending = concurrent.futures.wait(pending, timeout=0.2)
            if stop.is_set() and not worker_stop.is_set():
                worker_stop.set()
                for future in pending:
                    future.cancel()
            for future in done:
                if future.cancelled():
                    continue
                result = future.result()
                if isinstance(result, str):
                    print(result, file=sys.stderr)
                    codes.append(EXIT_USAGE)
                else:
                    print(result.line(), file=sys.stderr)
                    codes.append(result.exit_code)
    if signals:
        return 128 + signals[0]
    return max(codes, default=EXIT_OK)


if __name__ == "__main__":
    sys.exit(main())
