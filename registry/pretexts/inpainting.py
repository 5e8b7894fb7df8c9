"""Context encoders (Pathak et al. 2016, "Context Encoders: Feature Learning by Inpainting"): a region of the
image is filled with the mean pixel, the backbone encodes the masked image, a decoder from its feature map
(``registry.decoders.Decoder``, as the autoencoder's) rebuilds the image, and the loss is L2 on the region.

Geometry and weights as in the official ``train.lua`` (pathak22/context-encoder, read for this module):
``overlapL2Weight = 10`` is hard-coded there, and the README's training command sets ``overlapPred=4`` (px at
``fineSize`` 128) and ``wtl2=0.999``; the hole is the centre ``fineSize/2`` square less ``overlapPred`` on each
side. Option ``region``:

- ``center`` (default, the paper's): the predicted region is the centre square of ``area`` of the image (0.25:
  half the side, the paper's 64 x 64 at 128 px); the filled hole is that square less a border of ``overlap``
  of the side (4/128, at least 1 px), which stays visible and is predicted too, its squared error weighted
  ``border_weight`` (10) times the hole's.
- ``random`` (the paper's random-block variant): blocks of a quarter of the side at random places (drawn from
  the training generator), added per image until their union covers ``area`` of it; each block's border is
  kept and weighted as above.

The fill is the training images' per-channel mean (``prepare``; the ImageNet mean until then): train.lua
fills with a fixed mean pixel, (117, 104, 123) / 255, its ImageNet data's; here each data set's own. Pixels
and the reconstruction (a sigmoid) are in [0,1]; the L2 term is the weighted squared error summed and divided
by the region's pixels x channels (train.lua's ``mean`` over the predicted patch, weights in the gradient).

Option ``adversarial`` adds the paper's joint loss: a small DCGAN-style discriminator in the head judges the
predicted region (``center``: the centre square; ``random``: the whole image with the region pasted in) against
the real one; the generator's loss is (1 - ``adv_weight``) L2 + ``adv_weight`` BCE(D(fake), real), 0.999 and
0.001 by default (the paper's lambda). The discriminator's loss BCE(D(real), real) + BCE(D(fake), fake) is
added to the same scalar: its fake is detached (no gradient reaches the encoder or decoder) and the
generator's term sees D's parameters detached (none reaches D), so each part gets only its own gradient.
Simplification: one optimizer (the loop's) updates both in the same step, where the paper alternates two Adam
optimizers."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from benchmark.interfaces import Constraint, Options, check_settings, setting
from registry.backbones import IMAGENET_MEAN, Backbone
from registry.decoders import Decoder, feature_map_shape
from registry.pretexts import PRETEXTS, Pretext

PREP_MAX = 4096  # images the fill's mean is computed from (evenly spaced over the training set)
# (reconstruction, D(fake) for the generator, D(fake detached), D(real)); the D terms None without adversarial
Outputs = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]


@dataclass(frozen=True)
class InpaintingOptions(Options):
    flag_prefix = "inpaint"
    region: str = setting("center", Constraint("choice", choices=("center", "random")), label="inpainting region",
                          help="center (the centre square, default) or random (random blocks)")
    area: float = setting(0.25, Constraint("real", 0.0, 0.75, lo_open=True), label="inpainting area",
                          help="fraction of the image predicted (default 0.25: the centre half-side square)")
    overlap: float = setting(4 / 128, Constraint("real", 0.0, 0.25), label="inpainting overlap",
                             help="visible border predicted with the hole, as a fraction of the side (4/128)")
    border_weight: float = setting(10.0, Constraint("real", 0.0, cap=1000.0), label="inpainting border weight",
                                   help="weight of the border's squared error relative to the hole's (10)")
    adversarial: bool = setting(False, Constraint("bool"), label="inpainting adversarial",
                                help="add the paper's adversarial loss (a discriminator in the head)")
    adv_weight: float = setting(0.001, Constraint("real", 0.0, 1.0, lo_open=True, hi_open=True),
                                label="inpainting adversarial weight",
                                help="weight of the adversarial term; L2 gets 1 minus it (0.001)")

    def __post_init__(self) -> None:
        check_settings(self)


def border_px(size: int, overlap: float) -> int:
    """The border in pixels: ``overlap`` of the side, at least 1 px (0 only when ``overlap`` is 0)."""
    return 0 if overlap == 0 else max(1, round(overlap * size))


def center_box(size: int, area: float) -> tuple[int, int]:
    """(offset, side) of the centre square covering ``area`` of an S x S image (0.25: half the side)."""
    side = max(1, min(size, round(size * math.sqrt(area))))
    return (size - side) // 2, side


def _box_masks(size: int, tops: torch.Tensor, lefts: torch.Tensor, side: int, inset: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(region, hole) masks (B,S,S) of one square per image at (tops, lefts) (B,): the square, and the square
    less its ``inset`` border (never empty: the inset is capped)."""
    r = torch.arange(size, device=tops.device)
    inset = min(inset, (side - 1) // 2)

    def square(y: torch.Tensor, x: torch.Tensor, n: int) -> torch.Tensor:
        rows = (r >= y[:, None]) & (r < y[:, None] + n)
        cols = (r >= x[:, None]) & (r < x[:, None] + n)
        return rows[:, :, None] & cols[:, None, :]

    return square(tops, lefts, side), square(tops + inset, lefts + inset, side - 2 * inset)


def region_masks(batch: int, size: int, opts: InpaintingOptions, gen: torch.Generator | None,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(region, hole) bool masks (B,1,S,S): the predicted region and the filled hole inside it."""
    inset = border_px(size, opts.overlap)
    if opts.region == "center":
        off, side = center_box(size, opts.area)
        at = torch.full((batch,), off, device=device)
        region, hole = _box_masks(size, at, at, side, inset)
        return region[:, None], hole[:, None]
    side = max(2, size // 4)
    most = 4 * math.ceil(opts.area * size * size / side ** 2)  # enough blocks that every image reaches the area
    spots = torch.randint(0, size - side + 1, (most, 2, batch), generator=gen).to(device)
    region = torch.zeros(batch, size, size, dtype=torch.bool, device=device)
    hole = torch.zeros_like(region)
    for k in range(most):
        more = (region.float().mean(dim=(1, 2)) < opts.area)[:, None, None]  # images still short of the area
        r, h = _box_masks(size, spots[k, 0], spots[k, 1], side, inset)
        region |= r & more
        hole |= h & more
    return region[:, None], hole[:, None]


def _discriminator(size: int, width: int = 64) -> nn.Module:
    """DCGAN-style: Conv(k4,s2)+LeakyReLU(0.2) stages (BatchNorm after the first) halving the input down to
    at most 4 px, channels doubling (<= 512), then a convolution over what is left to one logit (B,1)."""
    layers: list[nn.Module] = []
    ch, s = 3, size
    while s > 4:
        nxt = width if ch == 3 else min(512, ch * 2)
        layers += [nn.Conv2d(ch, nxt, 4, stride=2, padding=1)]
        layers += [nn.LeakyReLU(0.2, inplace=True)] if ch == 3 else [nn.BatchNorm2d(nxt), nn.LeakyReLU(0.2, True)]
        ch, s = nxt, s // 2
    layers += [nn.Conv2d(ch, 1, s), nn.Flatten()]
    return nn.Sequential(*layers)


class InpaintingHead(nn.Module):
    """The decoder (feature map -> (B,3,S,S) in [0,1]) and, with ``adversarial``, the discriminator."""

    def __init__(self, decoder: nn.Module, disc: nn.Module | None) -> None:
        super().__init__()
        self.decoder = decoder
        self.disc = disc


@PRETEXTS.register("inpainting")
class Inpainting(Pretext):
    """Rebuild a mean-filled region from its context; L2 with a 10x border (and optionally adversarial)."""

    name = "inpainting"
    needs_feature_map = True
    Options = InpaintingOptions
    opts: InpaintingOptions

    def __init__(self, opts: InpaintingOptions | None = None) -> None:
        super().__init__(opts)
        self.fill = torch.tensor(IMAGENET_MEAN)  # (3,) in [0,1]; the training images' mean after ``prepare``

    def prepare(self, images: np.ndarray) -> None:
        """The per-channel mean of (up to PREP_MAX evenly spaced) uint8 training images (N,3,S,S)."""
        n = len(images)
        if n == 0:
            return
        idx = np.unique(np.linspace(0, n - 1, min(n, PREP_MAX)).round().astype(np.int64))
        total = np.zeros(images.shape[1], dtype=np.float64)
        for i in range(0, len(idx), 256):
            total += np.asarray(images[idx[i:i + 256]]).sum(axis=(0, 2, 3), dtype=np.float64)
        self.fill = torch.tensor(total / (len(idx) * images.shape[2] * images.shape[3] * 255.0), dtype=torch.float32)

    def _region_size(self, image_size: int) -> int:
        return center_box(image_size, self.opts.area)[1] if self.opts.region == "center" else image_size

    def build_head(self, backbone: Backbone, image_size: int) -> nn.Module:
        c, h, _w = feature_map_shape(backbone, image_size)
        decoder = nn.Sequential(Decoder(c, h, 3, image_size), nn.Sigmoid())
        disc = _discriminator(self._region_size(image_size)) if self.opts.adversarial else None
        return InpaintingHead(decoder, disc)

    def make_batch(self, x: torch.Tensor, gen: torch.Generator
                   ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """x (B,3,S,S) in [0,1] -> inputs (normalized masked images, x, weights (B,1,S,S)), targets (x, weights).
        Weights: 1 on the hole, ``border_weight`` on the visible border, 0 elsewhere."""
        region, hole = region_masks(x.shape[0], x.shape[-1], self.opts, gen, x.device)
        fill = self.fill.to(x.device, x.dtype).view(1, -1, 1, 1)
        masked = torch.where(hole, fill, x)
        w = torch.where(hole, 1.0, torch.where(region, self.opts.border_weight, 0.0)).to(torch.float32)
        return (self.normalize(masked), x, w), (x, w)

    def _crop(self, img: torch.Tensor) -> torch.Tensor:
        """What the discriminator judges: the centre square (``center``) or the whole image (``random``)."""
        if self.opts.region != "center":
            return img
        off, side = center_box(img.shape[-1], self.opts.area)
        return img[..., off:off + side, off:off + side]

    def predict(self, backbone: Backbone, head: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Outputs:
        """(reconstruction (B,3,S,S), D(fake) for the generator, D(fake detached), D(real)); the D terms are
        None without ``adversarial``."""
        if not isinstance(head, InpaintingHead):
            raise TypeError(f"inpainting predicts with the head its build_head returns, not {type(head).__name__}")
        net_in, real, w = inputs
        recon = head.decoder(backbone(net_in))
        disc = head.disc
        if disc is None:
            return recon, None, None, None
        fake = self._crop(torch.where(w > 0, recon.to(real.dtype), real))
        frozen = {k: v.detach() for k, v in disc.named_parameters()}
        d_gen = functional_call(disc, frozen, (fake,))  # gradient to the generator only
        return recon, d_gen, disc(fake.detach()), disc(self._crop(real))

    def loss_terms(self, outputs: Outputs, targets: tuple[torch.Tensor, torch.Tensor]
                   ) -> dict[str, torch.Tensor]:
        """{"l2": weighted L2 over the region, and with ``adversarial`` "adv": the generator's BCE, "disc":
        the discriminator's BCE (real + fake)}."""
        recon, d_gen, d_fake, d_real = outputs
        x, w = targets
        err = (recon.float() - x.float()) ** 2
        terms = {"l2": (w * err).sum() / (w > 0).sum().clamp_min(1) / x.shape[1]}
        if d_gen is not None and d_fake is not None and d_real is not None:
            bce = F.binary_cross_entropy_with_logits
            terms["adv"] = bce(d_gen.float(), torch.ones_like(d_gen, dtype=torch.float32))
            terms["disc"] = (bce(d_real.float(), torch.ones_like(d_real, dtype=torch.float32))
                             + bce(d_fake.float(), torch.zeros_like(d_fake, dtype=torch.float32)))
        return terms

    def loss(self, outputs: Outputs, targets: tuple[torch.Tensor, torch.Tensor]
             ) -> torch.Tensor:
        t = self.loss_terms(outputs, targets)
        if "adv" not in t:
            return t["l2"]
        a = self.opts.adv_weight
        return (1 - a) * t["l2"] + a * t["adv"] + t["disc"]
