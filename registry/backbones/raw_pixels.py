"""The raw-pixels baseline: deep features must beat it to matter.

Its resolution is capped at RAW_PIXELS_MAX (32 x 32): images at a larger ``--image-size`` are area-averaged
down to it (each output pixel the mean of the input pixels it covers), so the baseline is C x 32 x 32
(3,072-D for colour) at any image size. Torralba, Fergus & Freeman, "80 million tiny images" (TPAMI 2008)
found 32 x 32 colour images enough for people to recognise scenes and objects; at 64 px the full
resolution would be 12,288-D (100k photos: 4.9 GB of features and an O(N^2 D) silhouette) for no better
baseline (NMI and probe at both, 10,000 photos: docs/throughput.md#a-day-of-photos). The row's ``notes``
and ``feature_dim`` say so."""
from __future__ import annotations

import torch
import torch.nn as nn

from registry.backbones._base import BACKBONES, Backbone, WeightsRequest, describe
from registry.weights import IMAGENET_MEAN, IMAGENET_STD, NONE


class RawPixels(nn.Module):
    """Normalized (B,3,S,S) input back to pixels in [0, 1], keeping the data's channels (1 for gray)."""

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, channels: int, size: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.size = size  # area-averaged down to size x size when larger (None: kept as it comes)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x * self.std.to(x.dtype) + self.mean.to(x.dtype)).clamp_(0, 1)
        x = x[:, :1] if self.channels == 1 else x
        if self.size is not None and x.shape[-1] > self.size:
            x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="area")
        return x


RAW_PIXELS_MAX = 32  # the baseline's resolution cap (see the module text)


def raw_pixels_size(image_size: int) -> int:
    """The side of the baseline's pixels at ``image_size``: at most RAW_PIXELS_MAX."""
    return min(int(image_size), RAW_PIXELS_MAX)


def raw_pixels_note(image_size: int) -> str:
    """The row note of the rule, "" where it does not apply."""
    side = raw_pixels_size(image_size)
    return "" if side == image_size else (f"raw pixels area-averaged from {image_size} px to {side} px "
                                          f"(the baseline's cap, registry/backbones/raw_pixels.py)")


@BACKBONES.register("raw_pixels")
@describe(trainable=False, uses_weights=False, data_channels=True)
def raw_pixels(image_size: int, req: WeightsRequest, channels: int = 3) -> Backbone:
    """The baseline: the pixels in [0, 1] (C x S x S, C the data's channels: 784-D for 28 px grayscale),
    flattened; S is the image size up to 32, larger images area-averaged to 32 x 32. No parameters."""
    side = raw_pixels_size(image_size)
    return Backbone("raw_pixels", RawPixels(channels, side), channels * side * side, "none",
                    pool_fn=lambda x: x.flatten(1), trainable=False, init=NONE)
