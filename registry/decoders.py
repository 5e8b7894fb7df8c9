"""Spatial decoders shared by the dense pretext tasks (autoencoder, colorization)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from registry.backbones import Backbone


def to_spatial(fmap: torch.Tensor) -> torch.Tensor:
    """(B,C,h,w) unchanged; transformer tokens (B,L,C) -> (B,C,g,g) from the last g*g (patch) tokens."""
    if fmap.dim() == 4:
        return fmap
    b, n, c = fmap.shape
    g = int(math.isqrt(n))
    return fmap[:, n - g * g:].transpose(1, 2).reshape(b, c, g, g)


@torch.no_grad()
def feature_map_shape(backbone: Backbone, image_size: int) -> tuple[int, int, int]:
    """(C, h, w) of the backbone's spatial feature map for an S x S input (a dry run in eval mode)."""
    was_training = backbone.training
    backbone.eval()
    p = next(backbone.parameters(), None)
    x = torch.zeros(1, 3, image_size, image_size, device=p.device if p is not None else "cpu")
    fmap = to_spatial(backbone(x))
    backbone.train(was_training)
    return int(fmap.shape[1]), int(fmap.shape[2]), int(fmap.shape[3])


class Decoder(nn.Module):
    """Feature map (B,C,h,w) -> (B,out_ch,size,size): 1x1 projection, then ConvTranspose2d(k4,s2)+BN+ReLU
    stages doubling the resolution, channels halving (>= 16), a 3x3 output conv, exact resize at the end."""

    def __init__(self, in_ch: int, in_hw: int, out_ch: int, size: int, width: int = 256) -> None:
        super().__init__()
        self.size = size
        stages = max(0, math.ceil(math.log2(max(size / max(in_hw, 1), 1))))
        layers: list[nn.Module] = [nn.Conv2d(in_ch, width, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        ch = width
        for _ in range(stages):
            nxt = max(16, ch // 2)
            layers += [nn.ConvTranspose2d(ch, nxt, 4, stride=2, padding=1), nn.BatchNorm2d(nxt), nn.ReLU(inplace=True)]
            ch = nxt
        layers.append(nn.Conv2d(ch, out_ch, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        out = self.net(to_spatial(fmap))
        if out.shape[-1] != self.size or out.shape[-2] != self.size:
            out = F.interpolate(out, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return out
