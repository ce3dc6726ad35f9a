"""The SuperPoint network, with parameter names equal to the Hugging Face checkpoint's.

`magic-leap-community/superpoint`'s `model.safetensors` loads into `SuperPoint` as it is.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from superpoint_ros.feature_types import ARCHITECTURES, CELL_SIZE, MAGICLEAP, MIT  # noqa: F401 (re-exported)


def cell_probabilities_to_scores(logits: torch.Tensor) -> torch.Tensor:
    """Keypoint logits `(B, 65, h, w)` → per-pixel scores `(B, 8h, 8w)`.

    64 cell positions plus one "no keypoint" channel, which is dropped after the softmax; channel
    8·i + j is the cell's pixel at row i, column j.
    """
    probabilities = functional.softmax(logits, dim=1)[:, :-1]
    return functional.pixel_shuffle(probabilities, CELL_SIZE)[:, 0]


@dataclass(frozen=True)
class SuperPointArchitecture:
    """Layer widths; the defaults are those of the published SuperPoint."""

    encoder_hidden_sizes: tuple[int, ...] = (64, 64, 128, 128)
    decoder_hidden_size: int = 256
    keypoint_decoder_dim: int = 65
    descriptor_decoder_dim: int = 256


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, pool: bool) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.conv_b = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = functional.relu(self.conv_b(functional.relu(self.conv_a(x))))
        return functional.max_pool2d(x, kernel_size=2, stride=2) if self.pool else x


class Encoder(nn.Module):
    def __init__(self, hidden_sizes: tuple[int, ...]) -> None:
        super().__init__()
        in_sizes = (1, *hidden_sizes[:-1])
        last = len(hidden_sizes) - 1
        self.conv_blocks = nn.ModuleList(
            ConvBlock(in_size, out_size, pool=index < last)
            for index, (in_size, out_size) in enumerate(zip(in_sizes, hidden_sizes, strict=True))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.conv_blocks:
            x = block(x)
        return x


class KeypointHead(nn.Module):
    def __init__(self, in_channels: int, hidden_size: int, out_channels: int) -> None:
        super().__init__()
        self.conv_score_a = nn.Conv2d(in_channels, hidden_size, kernel_size=3, padding=1)
        self.conv_score_b = nn.Conv2d(hidden_size, out_channels, kernel_size=1)

    def forward(self, encoded: torch.Tensor) -> torch.Tensor:
        return cell_probabilities_to_scores(self.conv_score_b(functional.relu(self.conv_score_a(encoded))))


class DescriptorHead(nn.Module):
    def __init__(self, in_channels: int, hidden_size: int, out_channels: int) -> None:
        super().__init__()
        self.conv_descriptor_a = nn.Conv2d(in_channels, hidden_size, kernel_size=3, padding=1)
        self.conv_descriptor_b = nn.Conv2d(hidden_size, out_channels, kernel_size=1)

    def forward(self, encoded: torch.Tensor) -> torch.Tensor:
        descriptors = self.conv_descriptor_b(functional.relu(self.conv_descriptor_a(encoded)))
        return functional.normalize(descriptors, p=2, dim=1)


class SuperPoint(nn.Module):
    """SuperPoint's shared encoder with its keypoint and descriptor heads.

    `forward(images)` takes grey images `(B, 1, H, W)` scaled to [0, 1] and returns
    - `scores` `(B, 8*(H//8), 8*(W//8))`: per-pixel keypoint probability before NMS. The pooling
      floors, so the last `H % 8` rows and `W % 8` columns of the input get no score.
    - `descriptors` `(B, D, H//8, W//8)`: dense descriptors, L2-normalised along D.
    """

    architecture_name = MAGICLEAP

    def __init__(self, architecture: SuperPointArchitecture = SuperPointArchitecture()) -> None:
        super().__init__()
        self.architecture = architecture
        encoded_size = architecture.encoder_hidden_sizes[-1]
        self.encoder = Encoder(architecture.encoder_hidden_sizes)
        self.keypoint_decoder = KeypointHead(
            encoded_size, architecture.decoder_hidden_size, architecture.keypoint_decoder_dim
        )
        self.descriptor_decoder = DescriptorHead(
            encoded_size, architecture.decoder_hidden_size, architecture.descriptor_decoder_dim
        )

    @property
    def descriptor_size(self) -> int:
        return self.architecture.descriptor_decoder_dim

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.encoder(images)
        return self.keypoint_decoder(encoded), self.descriptor_decoder(encoded)
