"""RotNet (Gidaris et al. 2018): predict which of 0/90/180/270 degrees an image was rotated by."""
from __future__ import annotations

import torch
import torch.nn as nn

from registry.backbones import Backbone
from registry.pretexts import PRETEXTS, Pretext


@PRETEXTS.register("rotation")
class Rotation(Pretext):
    """Every image at 0/90/180/270 degrees in the same batch; a 4-way linear head on pooled features."""

    name = "rotation"
    reports_accuracy = True
    views = 4  # the four rotations of every image

    def build_head(self, backbone: Backbone, image_size: int) -> nn.Module:
        return nn.Linear(backbone.dim, 4)

    def make_batch(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        rots = [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]
        targets = torch.arange(4, device=x.device).repeat_interleave(x.shape[0])
        return self.normalize(torch.cat(rots)), targets
