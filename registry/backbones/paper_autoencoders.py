"""The clustering papers' autoencoders on 1 x 28 x 28 input: DEC's dense autoencoder and the founding case's
convolutional one. Each brings its own decoder (the autoencoder pretext uses it)."""
from __future__ import annotations

import torch
import torch.nn as nn

from registry.backbones._base import BACKBONES, Backbone, WeightsRequest, describe, no_imagenet, with_checkpoint
from registry.backbones.raw_pixels import RawPixels


class _GrayUnit(nn.Module):
    """Normalized (B,3,S,S) input back to one channel of pixels in [0, 1] (the mean of RGB: the gray value
    of grayscale data), as the clustering papers feed their autoencoders (pixels / 255)."""

    def __init__(self) -> None:
        super().__init__()
        self.unit = RawPixels(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unit(x).mean(dim=1, keepdim=True)


@BACKBONES.register("dec_ae")
@describe(input_size=28, spatial=False, own_decoder=True)
def dec_ae(image_size: int, req: WeightsRequest) -> Backbone:
    """The dense autoencoder of DEC (Xie et al. 2016) as in XifengGuo/DEC-keras: encoder 784-500-500-2000-10
    (ReLU, linear 10-D code), decoder 10-2000-500-500-784 (ReLU, linear output); 1 x 28 x 28 input in
    [0, 1]. Features: the 10-D code."""
    dims = [784, 500, 500, 2000, 10]

    def mlp(sizes: list[int]) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU(inplace=True))
        return layers

    body = nn.Sequential(_GrayUnit(), nn.Flatten(), *mlp(dims))

    def decoder() -> nn.Module:
        return nn.Sequential(*mlp(dims[::-1]), nn.Unflatten(1, (1, 28, 28)))

    bb = Backbone("dec_ae", body, 10, "random", pool_fn=lambda z: z, make_decoder=decoder)
    no_imagenet(bb.name, req)
    return with_checkpoint(bb, req)


@BACKBONES.register("seed_conv_ae")
@describe(input_size=28, own_decoder=True)
def seed_conv_ae(image_size: int, req: WeightsRequest) -> Backbone:
    """The founding case's convolutional autoencoder: encoder Conv(1,32,3,s2,p1)-SiLU-Conv(32,128,3,s2,p1)-SiLU-
    Conv(128,512,7) (a 512-D code), decoder ConvT(512,128,7)-SiLU-ConvT(128,32,3,s2,p1,op1)-SiLU-
    ConvT(32,1,3,s2,p1,op1)-Sigmoid; 1 x 28 x 28 input in [0, 1]."""
    body = nn.Sequential(_GrayUnit(), nn.Conv2d(1, 32, 3, 2, 1), nn.SiLU(), nn.Conv2d(32, 128, 3, 2, 1), nn.SiLU(),
                         nn.Conv2d(128, 512, 7))

    def decoder() -> nn.Module:
        return nn.Sequential(
            nn.ConvTranspose2d(512, 128, 7), nn.SiLU(), nn.ConvTranspose2d(128, 32, 3, 2, 1, output_padding=1),
            nn.SiLU(), nn.ConvTranspose2d(32, 1, 3, 2, 1, output_padding=1), nn.Sigmoid())

    bb = Backbone("seed_conv_ae", body, 512, "random", make_decoder=decoder)
    no_imagenet(bb.name, req)
    return with_checkpoint(bb, req)
