"""Colorization pretext (Zhang, Isola & Efros 2016): images to CIE Lab; the backbone sees L (replicated to
3 channels); a head predicts ab at a coarse resolution (S/4). Default loss: classification over quantized
in-gamut ab bins (grid 10) with soft-encoded targets (5 nearest bins, sigma 5) and class rebalancing
(lambda = option ``rebalance``); option ``loss = l1 | l2`` selects the regression variant."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.interfaces import Constraint, Options, check_settings, setting
from registry.backbones import Backbone
from registry.decoders import Decoder, feature_map_shape
from registry.pretexts import PRETEXTS, Pretext

_M = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                   [0.2126729, 0.7151522, 0.0721750],
                   [0.0193339, 0.1191920, 0.9503041]])
_WHITE = torch.tensor([0.95047, 1.0, 1.08883])
_EPS = (6 / 29) ** 3
AB_GRID = 10.0
AB_RANGE = 110.0


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (B,3,H,W) in [0,1] -> Lab (B,3,H,W): L in [0,100], a/b roughly in [-110,110] (D65)."""
    rgb = rgb.float().clamp(0, 1)
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = torch.einsum("ij,bjhw->bihw", _M.to(rgb.device), lin) / _WHITE.to(rgb.device).view(1, 3, 1, 1)
    f = torch.where(xyz > _EPS, xyz.clamp_min(1e-12) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    L = 116 * f[:, 1] - 16
    a = 500 * (f[:, 0] - f[:, 1])
    b = 200 * (f[:, 1] - f[:, 2])
    return torch.stack([L, a, b], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rgb_to_lab`` (values outside the sRGB gamut are clipped to [0,1])."""
    L, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], dim=1)
    xyz = torch.where(f > 6 / 29, f ** 3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * _WHITE.to(lab.device).view(1, 3, 1, 1)
    lin = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_M).to(lab.device), xyz).clamp(0, 1)
    return torch.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin.clamp_min(1e-12) ** (1 / 2.4) - 0.055).clamp(0, 1)


@lru_cache(maxsize=1)
def ab_bins() -> torch.Tensor:
    """Centres (Q, 2) of the 10x10 ab bins that some sRGB colour falls into (Zhang et al. find Q = 313)."""
    steps = torch.linspace(0, 1, 96)
    r, g, b = torch.meshgrid(steps, steps, steps, indexing="ij")
    rgb = torch.stack([r.flatten(), g.flatten(), b.flatten()]).view(1, 3, -1, 1)
    ab = rgb_to_lab(rgb)[0, 1:, :, 0].T  # (n, 2)
    idx = torch.floor((ab + AB_RANGE) / AB_GRID).long()
    keys = torch.unique(idx, dim=0)
    return keys.float() * AB_GRID - AB_RANGE + AB_GRID / 2


def soft_encode(ab: torch.Tensor, bins: torch.Tensor, k: int = 5,
                sigma: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """ab (B,2,h,w) -> soft targets (B,Q,h,w) over the k nearest bins (Gaussian weights) and the nearest bin."""
    bsz, _, h, w = ab.shape
    pix = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    d2 = torch.cdist(pix, bins.to(ab.device)) ** 2
    near_d2, near = d2.topk(k, dim=1, largest=False)
    wts = torch.softmax(-near_d2 / (2 * sigma ** 2), dim=1)
    soft = torch.zeros(pix.shape[0], bins.shape[0], device=ab.device).scatter_(1, near, wts)
    return soft.view(bsz, h, w, -1).permute(0, 3, 1, 2), near[:, 0].view(bsz, h, w)


def coarse_size(image_size: int) -> int:
    return max(4, image_size // 4)


@dataclass(frozen=True)
class ColorizationOptions(Options):
    flag_prefix = "color"
    loss: str = setting("classification", Constraint("choice", choices=("classification", "l1", "l2")),
                        label="colorization loss", help="classification (default), l1 or l2")
    rebalance: float = setting(0.5, Constraint("real", 0.0, 1.0), label="colorization rebalance",
                               help="class-rebalancing lambda (default 0.5)")

    def __post_init__(self) -> None:
        check_settings(self)


@PRETEXTS.register("colorization")
class Colorization(Pretext):
    name = "colorization"
    Options = ColorizationOptions
    opts: ColorizationOptions

    def __init__(self, opts: ColorizationOptions | None = None) -> None:
        super().__init__(opts)
        self.bins = ab_bins()
        self.weights = torch.ones(self.bins.shape[0])
        self.regression = self.opts.loss in ("l1", "l2")

    needs_feature_map = True

    def not_applicable(self, grayscale: bool, backbone: str | None = None) -> str | None:
        if grayscale:
            return "colorization not applicable: the data set is grayscale (no colour to predict)"
        return super().not_applicable(grayscale, backbone)

    def prepare(self, images: np.ndarray) -> None:
        """Class-rebalancing weights from the empirical ab distribution of (up to 2,000 of) the images."""
        if self.regression or self.opts.rebalance >= 1.0:
            return
        x = torch.from_numpy(np.array(images[: min(len(images), 2000)])).float() / 255  # a copy: the store is read-only
        counts = torch.zeros(self.bins.shape[0])
        for i in range(0, x.shape[0], 256):
            ab = self._coarse_ab(x[i:i + 256])
            _, near = soft_encode(ab, self.bins, k=1)
            counts += torch.bincount(near.flatten(), minlength=self.bins.shape[0]).float()
        p = counts / counts.sum()
        d2 = torch.cdist(self.bins, self.bins) ** 2
        p = (torch.exp(-d2 / (2 * 5.0 ** 2)) @ p)  # smoothed
        p = p / p.sum()
        lam = self.opts.rebalance
        w = 1.0 / ((1 - lam) * p + lam / p.numel())
        self.weights = w / (p * w).sum()

    def _coarse_ab(self, x: torch.Tensor) -> torch.Tensor:
        ab = rgb_to_lab(x)[:, 1:]
        return F.adaptive_avg_pool2d(ab, coarse_size(x.shape[-1]))

    def feature_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the backbone sees, in training and at feature extraction: L replicated to 3 channels."""
        L = rgb_to_lab(x)[:, :1] / 100.0
        return self.normalize(L.expand(-1, 3, -1, -1).contiguous())

    def build_head(self, backbone: Backbone, image_size: int) -> nn.Module:
        c, h, _ = feature_map_shape(backbone, image_size)
        return Decoder(c, h, 2 if self.regression else self.bins.shape[0], coarse_size(image_size))

    def make_batch(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.feature_input(x), self._coarse_ab(x)

    def predict(self, backbone: Backbone, head: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return head(backbone(inputs))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        out = outputs.float()
        if self.regression:
            fn = F.l1_loss if self.opts.loss == "l1" else F.mse_loss
            return fn(out, targets / AB_RANGE)
        soft, near = soft_encode(targets, self.bins)
        per_pixel = -(soft * F.log_softmax(out, dim=1)).sum(1)
        w = self.weights.to(out.device)[near]
        return (per_pixel * w).sum() / w.sum()
