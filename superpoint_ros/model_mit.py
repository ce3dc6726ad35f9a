"""The MIT-licensed SuperPoint of rpautrat/SuperPoint, with parameter names equal to its
`weights/superpoint_v6_from_tf.pth`, so that file (a plain `state_dict`) loads as it is.

It differs from Magic Leap's network (`model.py`) in its layers only: every convolution is
followed by a BatchNorm with eps 1e-3, placed after the ReLU, and the two heads' last layers
have a BatchNorm and no ReLU. Its inputs and outputs mean the same, so every engine and the
post-processing take either network. Its descriptors are sampled at other positions
(`keypoints.sample_descriptors`) and its grey conversion weighs the channels 0.299/0.587/0.114
(`images.to_grey_batch`).
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from superpoint_ros.model import CELL_SIZE, MIT, SuperPoint, cell_probabilities_to_scores

BATCH_NORM_EPS = 1e-3
"""TensorFlow's BatchNorm default, kept by the PyTorch conversion of the weights."""


@dataclass(frozen=True)
class MitArchitecture:
    """Layer widths; the defaults are those of `superpoint_v6_from_tf.pth`."""

    backbone_sizes: tuple[int, ...] = (64, 64, 128, 128)
    head_size: int = 256
    keypoint_dim: int = CELL_SIZE * CELL_SIZE + 1
    descriptor_dim: int = 256


class FrozenBatchNorm(nn.Module):
    """BatchNorm at inference, per channel: (x − running_mean) / √(running_var + eps) · weight + bias.

    `nn.BatchNorm2d`'s parameters and statistics under its names, without `num_batches_tracked`,
    which only training reads (the converted `.pth` does not hold it). It runs the same kernel as
    `nn.BatchNorm2d` in eval mode.
    """

    def __init__(self, channels: int, eps: float = BATCH_NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps
        )


class VggBlock(nn.Module):
    """k×k convolution with bias and "same" padding → ReLU (unless `relu=False`) → BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2)
        self.bn = FrozenBatchNorm(out_channels)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.bn(functional.relu(x) if self.relu else x)


def _head(in_channels: int, hidden_size: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(VggBlock(in_channels, hidden_size, 3), VggBlock(hidden_size, out_channels, 1, relu=False))


class MitSuperPoint(nn.Module):
    """The MIT SuperPoint: a VGG backbone of stages of two 3×3 blocks, 2×2 max-pooled between
    stages, and a keypoint and a descriptor head of a 3×3 and a 1×1 block each.

    `forward(images)` has `model.SuperPoint.forward`'s contract: grey images `(B, 1, H, W)` in
    [0, 1] → `scores` `(B, 8*(H//8), 8*(W//8))` before NMS and `descriptors` `(B, D, H//8, W//8)`,
    L2-normalised along D.
    """

    architecture_name = MIT

    def __init__(self, architecture: MitArchitecture = MitArchitecture()) -> None:
        super().__init__()
        self.architecture = architecture
        in_sizes = (1, *architecture.backbone_sizes[:-1])
        self.backbone = nn.ModuleList(
            nn.Sequential(VggBlock(in_size, size, 3), VggBlock(size, size, 3))
            for in_size, size in zip(in_sizes, architecture.backbone_sizes, strict=True)
        )
        encoded_size = architecture.backbone_sizes[-1]
        self.detector = _head(encoded_size, architecture.head_size, architecture.keypoint_dim)
        self.descriptor = _head(encoded_size, architecture.head_size, architecture.descriptor_dim)

    @property
    def descriptor_size(self) -> int:
        return self.architecture.descriptor_dim

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images
        last = len(self.backbone) - 1
        for index, stage in enumerate(self.backbone):
            x = stage(x)
            if index < last:
                x = functional.max_pool2d(x, kernel_size=2, stride=2)
        scores = cell_probabilities_to_scores(self.detector(x))
        return scores, functional.normalize(self.descriptor(x), p=2, dim=1)


SuperPointNetwork = SuperPoint | MitSuperPoint
"""Either network: Magic Leap's or the MIT one; both have `architecture_name`, `descriptor_size`
and the same `forward` contract."""
