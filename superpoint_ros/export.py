"""`superpoint-export`: the SuperPoint network as an ONNX file, for ONNX Runtime or TensorRT,
and its weights as a `.safetensors` file.

```
superpoint-export --onnx superpoint.onnx                                   # any batch, height, width
superpoint-export --onnx superpoint_480x640.onnx --height 480 --width 640 --batch 1
python -m superpoint_ros.export --onnx superpoint.onnx --weights path/to/model.safetensors
superpoint-export --weights superpoint_v6_from_tf.pth --safetensors superpoint_v6_from_tf.safetensors
```

`--safetensors` writes the weights the loader read, under the names it recognises (the
hub's for Magic Leap's, the reference's for the MIT network), with no pickle in the file.

The ONNX file holds the network's forward (`SuperPoint` of model.py, or `MitSuperPoint` of
model_mit.py for the MIT weights) and nothing after it, in ONNX opset 17:

- input `image`: float32 `(batch, 1, height, width)`, grey in [0, 1] (the `Detector`'s grey
  conversion of 8-bit values divided by 255: 0.2989 R + 0.5870 G + 0.1140 B for Magic Leap's
  network, 0.299 R + 0.587 G + 0.114 B for the MIT one);
- output `scores`: float32 `(batch, 8·⌊height/8⌋, 8·⌊width/8⌋)`, each pixel's keypoint
  probability before non-maximum suppression;
- output `descriptors`: float32 `(batch, 256, ⌊height/8⌋, ⌊width/8⌋)`, the coarse descriptor
  map, unit length along the 256 channels (the file leaves that 256 symbolic: the exporter
  cannot see through the normalisation's computed shape; every runtime infers it).

NMS, threshold, borders, top-k and descriptor sampling (which differs between the two networks)
are left to the caller (`superpoint_ros.keypoints`). Dimensions not fixed by `--batch`,
`--height` and `--width` are dynamic and named `batch`, `height` and `width`.
"""

import argparse
import io
import pathlib
import sys
import warnings

import torch

from superpoint_ros.model_mit import SuperPointNetwork
from superpoint_ros.weights import DEFAULT_WEIGHTS, RANDOM_WEIGHTS, WeightsError, load_model, write_safetensors

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("scores", "descriptors")
# Per tensor: (axis, its name when dynamic, the input dimension whose size it follows).
_AXES = {
    INPUT_NAME: ((0, "batch", "batch"), (2, "height", "height"), (3, "width", "width")),
    OUTPUT_NAMES[0]: ((0, "batch", "batch"), (1, "score_height", "height"), (2, "score_width", "width")),
    OUTPUT_NAMES[1]: ((0, "batch", "batch"), (2, "cells_high", "height"), (3, "cells_wide", "width")),
}


def export_onnx(
    model: SuperPointNetwork,
    destination: pathlib.Path | io.BytesIO,
    height: int | None = None,
    width: int | None = None,
    batch: int | None = None,
) -> None:
    """Write `model` as ONNX to `destination`; `None` leaves that input dimension dynamic."""
    for name, size in (("height", height), ("width", width)):
        if size is not None and size < 8:
            raise ValueError(f"{name} must be at least 8 pixels, got {size}")
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    example = torch.zeros(batch or 1, 1, height or 64, width or 80)
    fixed = {"batch": batch, "height": height, "width": width}
    dynamic_axes = {
        tensor: {axis: name for axis, name, follows in axes if fixed[follows] is None} for tensor, axes in _AXES.items()
    }
    cpu_model = model if next(model.parameters()).device.type == "cpu" else type(model)(model.architecture)
    if cpu_model is not model:
        cpu_model.load_state_dict(model.state_dict())
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of torch.export's, which needs
        # `onnxscript` besides; this one needs nothing beyond torch and covers every layer here.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            cpu_model.eval(),
            (example,),
            destination,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic_axes,
        )


def onnx_bytes(model: SuperPointNetwork) -> bytes:
    """`model` as a serialised ONNX model with every input dimension dynamic."""
    buffer = io.BytesIO()
    export_onnx(model, buffer)
    return buffer.getvalue()


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="superpoint-export", description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=pathlib.Path, default=None, help="the ONNX file to write")
    parser.add_argument(
        "--safetensors", type=pathlib.Path, default=None, help="write the weights to this .safetensors file"
    )
    parser.add_argument(
        "--weights",
        default=DEFAULT_WEIGHTS,
        help=f"hub repo id, local directory or file, or '{RANDOM_WEIGHTS}' (default: %(default)s)",
    )
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    parser.add_argument("--height", type=int, default=None, help="fix the input height (default: dynamic)")
    parser.add_argument("--width", type=int, default=None, help="fix the input width (default: dynamic)")
    parser.add_argument("--batch", type=int, default=None, help="fix the batch size (default: dynamic)")
    arguments = parser.parse_args(argv)
    if arguments.onnx is None and arguments.safetensors is None:
        parser.error("give --onnx, --safetensors or both")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        model = load_model(arguments.weights, arguments.revision)
        if arguments.safetensors is not None:
            write_safetensors(arguments.safetensors, model.state_dict())
            print(f"wrote {arguments.safetensors}: the {model.architecture_name} SuperPoint's weights")
        if arguments.onnx is not None:
            export_onnx(model, arguments.onnx, arguments.height, arguments.width, arguments.batch)
    except (WeightsError, ValueError, OSError) as error:
        print(f"superpoint-export: {error}", file=sys.stderr)
        return 2
    if arguments.onnx is None:
        return 0

    def side(size: int | None, name: str) -> str:
        return name if size is None else str(size)

    shape = "×".join(
        (side(arguments.batch, "batch"), "1", side(arguments.height, "height"), side(arguments.width, "width"))
    )
    print(
        f"wrote {arguments.onnx}: opset {OPSET}, input '{INPUT_NAME}' float32 {shape}, "
        f"outputs '{OUTPUT_NAMES[0]}' and '{OUTPUT_NAMES[1]}'"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
