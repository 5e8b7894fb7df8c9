"""Convolutional autoencoder pretext: the backbone is the encoder, a ConvTranspose2d decoder rebuilds the
input at full size; MSE loss. Option ``noise > 0`` selects the denoising variant."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.interfaces import Constraint, Options, check_settings, setting
from registry.backbones import Backbone
from registry.decoders import Decoder, feature_map_shape
from registry.pretexts import PRETEXTS, Pretext


@dataclass(frozen=True)
class AutoencoderOptions(Options):
    flag_prefix = "ae"
    noise: float = setting(0.0, Constraint("real", 0.0, cap=10.0), label="autoencoder noise",
                           help="input noise std (> 0: denoising variant)")

    def __post_init__(self) -> None:
        check_settings(self)


@PRETEXTS.register("autoencoder")
class Autoencoder(Pretext):
    """Reconstruct the (clean) image from the backbone's feature map; MSE on [0,1] pixels."""

    name = "autoencoder"
    needs_feature_map = True  # unless the backbone brings its own decoder
    uses_backbone_decoder = True
    Options = AutoencoderOptions
    opts: AutoencoderOptions

    def build_head(self, backbone: Backbone, image_size: int) -> nn.Module:
        if backbone.make_decoder is not None:  # a paper autoencoder brings its own decoder
            return backbone.make_decoder()
        c, h, _w = feature_map_shape(backbone, image_size)
        return nn.Sequential(Decoder(c, h, 3, image_size), nn.Sigmoid())

    def make_batch(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = x
        if self.opts.noise > 0:
            noise = torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
            inputs = (x + self.opts.noise * noise).clamp(0, 1)
        return self.normalize(inputs), x

    def predict(self, backbone: Backbone, head: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return head(backbone(inputs))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if outputs.shape[1] == 1 and targets.shape[1] == 3:  # a one-channel decoder: the gray image
            targets = targets.mean(dim=1, keepdim=True)
        return F.mse_loss(outputs.float(), targets.float())
