"""The raw-pixels baseline: deep features must beat it to matter."""
from __future__ import annotations

import torch
import torch.nn as nn

from registry.backbones._base import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, Backbone, WeightsRequest, describe


class RawPixels(nn.Module):
    """Normalized (B,3,S,S) input back to pixels in [0, 1], keeping the data's channels (1 for gray)."""

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x * self.std.to(x.dtype) + self.mean.to(x.dtype)).clamp_(0, 1)
        return x[:, :1] if self.channels == 1 else x


@BACKBONES.register("raw_pixels")
@describe(trainable=False, uses_weights=False, data_channels=True)
def raw_pixels(image_size: int, req: WeightsRequest, channels: int = 3) -> Backbone:
    """The baseline: the pixels in [0, 1] (C x S x S, C the data's channels: 784-D for 28 px grayscale),
    flattened. No parameters, nothing to train."""
    return Backbone("raw_pixels", RawPixels(channels), channels * image_size * image_size, "none",
                    pool_fn=lambda x: x.flatten(1), trainable=False)
