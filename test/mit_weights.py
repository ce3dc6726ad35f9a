"""Random weights of the MIT-licensed SuperPoint (rpautrat/SuperPoint) for the tests, and the
reference's arithmetic restated with stock PyTorch layers as their yardstick.

`reference_layout_network` is written from the published description of that model, not from
our `model_mit`: `nn.Sequential`s of VGG blocks (`conv` 3×3 or 1×1 with bias → ReLU or none →
`bn`, a `BatchNorm2d` with eps 1e-3), stages of two blocks with a 2×2 max-pool after all but the
last. Its `state_dict` names therefore arise from that structure (`backbone.0.0.conv.weight`,
`backbone.0.2` being the parameterless pool, `detector.1.bn.running_var`, ...), as in
`superpoint_v6_from_tf.pth`, rather than being typed by whoever wrote our loader.

`random_mit_state_dict` gives that network random weights and BatchNorm statistics that are
neither the identity nor the activations' own: measured on structured images, then moved by
random amounts, so that a BatchNorm left out, misplaced or given another eps changes the output.
"""

import pathlib
import re
from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from conftest import structured_image

BATCH_NORM_EPS = 1e-3
REFERENCE_LUMA_RGB = (0.299, 0.587, 0.114)


def _vgg_block(in_channels: int, out_channels: int, kernel_size: int, relu: bool = True) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            activation=nn.ReLU() if relu else nn.Identity(),
            bn=nn.BatchNorm2d(out_channels, eps=BATCH_NORM_EPS),
        )
    )


class ReferenceLayoutNetwork(nn.Module):
    """Backbone and heads of the MIT SuperPoint; `dense(images)` gives its logits `(B, 65, h, w)`
    and raw descriptors `(B, D, h, w)` before normalisation."""

    def __init__(self, backbone_sizes: tuple[int, ...], head_size: int, descriptor_dim: int) -> None:
        super().__init__()
        stages, in_size = [], 1
        for index, size in enumerate(backbone_sizes):
            layers = [_vgg_block(in_size, size, 3), _vgg_block(size, size, 3)]
            if index < len(backbone_sizes) - 1:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            stages.append(nn.Sequential(*layers))
            in_size = size
        self.backbone = nn.Sequential(*stages)
        self.detector = nn.Sequential(_vgg_block(in_size, head_size, 3), _vgg_block(head_size, 65, 1, relu=False))
        self.descriptor = nn.Sequential(
            _vgg_block(in_size, head_size, 3), _vgg_block(head_size, descriptor_dim, 1, relu=False)
        )

    def dense(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(images)
        return self.detector(features), self.descriptor(features)


def reference_layout_network(
    backbone_sizes: tuple[int, ...] = (64, 64, 128, 128), head_size: int = 256, descriptor_dim: int = 256
) -> ReferenceLayoutNetwork:
    return ReferenceLayoutNetwork(backbone_sizes, head_size, descriptor_dim)


def random_mit_state_dict(
    seed: int,
    backbone_sizes: tuple[int, ...] = (64, 64, 128, 128),
    head_size: int = 256,
    descriptor_dim: int = 256,
    score_head_scale: float = 1.0,
    batch_counter: bool = False,
) -> dict[str, torch.Tensor]:
    """A random MIT-layout `state_dict` (float32), without `num_batches_tracked` unless
    `batch_counter` (a module's own `state_dict` has it; the converted `.pth` does not).

    `score_head_scale` multiplies the last keypoint BatchNorm's weight and bias, sharpening the
    softmax so that scores spread out and thresholds select something.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    network = reference_layout_network(backbone_sizes, head_size, descriptor_dim)
    images = torch.stack(
        [torch.from_numpy(structured_image(64, 80, seed + index).mean(axis=2) / 255) for index in range(4)]
    )[:, None].float()
    with torch.no_grad():
        # Momentum 1: one pass in training form sets each running statistic to that batch's.
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 1.0
        network.train().dense(images)
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                channels = module.num_features

                def uniform(low: float, high: float, size: int = channels) -> torch.Tensor:
                    return low + (high - low) * torch.rand(size, generator=generator)

                spread = module.running_var.sqrt() + 1e-3
                module.running_mean += spread * torch.randn(channels, generator=generator) * 0.3
                # A channel the images never excite would get a variance near 0, and a gain that
                # turns rounding noise into differences no trained network shows.
                floor = 0.1 * module.running_var.median()
                module.running_var.clamp_(min=float(floor) + 1e-4).mul_(uniform(0.5, 2.0))
                sign = torch.where(torch.rand(channels, generator=generator) < 0.2, -1.0, 1.0)
                module.weight.copy_(sign * uniform(0.5, 1.5))
                module.bias.copy_(0.2 * torch.randn(channels, generator=generator))
        network.detector[1].bn.weight.mul_(score_head_scale)
        network.detector[1].bn.bias.mul_(score_head_scale)
    return {
        name: tensor.clone()
        for name, tensor in network.state_dict().items()
        if batch_counter or not name.endswith("num_batches_tracked")
    }


def write_mit_pth(path: pathlib.Path, seed: int, **options) -> pathlib.Path:
    """`random_mit_state_dict(seed, **options)` saved with `torch.save`, as the MIT `.pth` is."""
    torch.save(random_mit_state_dict(seed, **options), path)
    return path


def reference_pipeline(
    state_dict: dict[str, torch.Tensor],
    images_bgr: list[np.ndarray],
    nms_radius: int,
    keypoint_threshold: float,
    border: int,
    max_keypoints: int,
) -> list[dict[str, np.ndarray]]:
    """The MIT SuperPoint from BGR uint8 images to keypoints, as its published description reads:
    grey 0.299 R + 0.587 G + 0.114 B of RGB in [0, 1]; softmax over 65 channels, the last dropped;
    each cell's 64 channels laid out as 8 rows of 8; two-round NMS; scores within `border` of an
    edge set to −1; score > threshold; the best `max_keypoints` (−1: all); descriptors sampled
    at (x + 0.5) / (8·w) mapped to [−1, 1], bilinear, `align_corners=False`, L2-normalised after
    the dense map was. The images, all of one shape, run through the network as one batch (a
    convolution's rounding depends on the batch size), then one at a time; plain tensor operations.
    """
    backbone_sizes = tuple(
        tensor.shape[0] for name, tensor in state_dict.items() if re.fullmatch(r"backbone\.\d+\.1\.conv\.weight", name)
    )
    network = reference_layout_network(
        backbone_sizes, state_dict["detector.0.conv.weight"].shape[0], state_dict["descriptor.1.conv.weight"].shape[0]
    )
    network.load_state_dict(state_dict)
    network.eval()
    results = []
    with torch.no_grad():
        rgb = torch.stack([torch.from_numpy(np.ascontiguousarray(image[..., ::-1])) for image in images_bgr])
        rgb = rgb.permute(0, 3, 1, 2).float() / 255
        grey = (rgb * torch.tensor(REFERENCE_LUMA_RGB).view(1, 3, 1, 1)).sum(1, keepdim=True)
        logits, raw_descriptors = network.dense(grey)
        dense_batch = functional.normalize(raw_descriptors, p=2, dim=1)
        probabilities = functional.softmax(logits, 1)[:, :-1]
        batch, _, cells_high, cells_wide = probabilities.shape
        score_batch = probabilities.permute(0, 2, 3, 1).reshape(batch, cells_high, cells_wide, 8, 8)
        score_batch = score_batch.permute(0, 1, 3, 2, 4).reshape(batch, cells_high * 8, cells_wide * 8)
        score_batch = _two_round_nms(score_batch, nms_radius)
        for scores, dense in zip(score_batch, dense_batch[:, None], strict=True):
            if border:
                scores[:border] = -1
                scores[:, :border] = -1
                scores[-border:] = -1
                scores[:, -border:] = -1
            rows, columns = torch.where(scores > keypoint_threshold)
            keypoints = torch.stack((columns, rows), dim=-1).float()
            keypoint_scores = scores[rows, columns]
            if 0 <= max_keypoints < len(keypoints):
                keypoint_scores, best = torch.topk(keypoint_scores, max_keypoints)
                keypoints = keypoints[best]
            grid = (keypoints + 0.5) / torch.tensor([cells_wide * 8.0, cells_high * 8.0]) * 2 - 1
            sampled = functional.grid_sample(dense, grid.view(1, 1, -1, 2), mode="bilinear", align_corners=False)
            descriptors = functional.normalize(sampled.reshape(dense.shape[1], -1), p=2, dim=0).T
            results.append(
                {
                    "keypoints": keypoints.numpy().astype(int),
                    "scores": keypoint_scores.numpy(),
                    "descriptors": descriptors.numpy(),
                }
            )
    return results


def _two_round_nms(scores: torch.Tensor, radius: int) -> torch.Tensor:
    def window_max(values: torch.Tensor) -> torch.Tensor:
        return functional.max_pool2d(values, kernel_size=2 * radius + 1, stride=1, padding=radius)

    is_max = scores == window_max(scores)
    for _ in range(2):
        suppressed = window_max(is_max.float()) > 0
        remaining = torch.where(suppressed, torch.zeros_like(scores), scores)
        is_max = is_max | ((remaining == window_max(remaining)) & ~suppressed)
    return torch.where(is_max, scores, torch.zeros_like(scores))
