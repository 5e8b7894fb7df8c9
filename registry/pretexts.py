"""Self-supervised pretext tasks. Each says how a batch of images becomes (inputs, targets), which head
it needs for a backbone, how the head is applied, and its loss; ``benchmark.train`` is the one loop."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.specs import PretextSpec
from registry.backbones import Backbone
from registry.base import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) in [0,1] -> ImageNet-normalized, the input every backbone expects."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean).div_(std)


class Pretext:
    """Base class. ``make_batch`` gets images (B,3,S,S) in [0,1] on the device."""

    name = "base"
    reports_accuracy = False  # True when the task is a classification with a meaningful accuracy
    trains = True  # False for ``none``

    def __init__(self, opts: PretextSpec) -> None:
        self.opts = opts

    def not_applicable(self, grayscale: bool) -> str | None:
        """A reason this task cannot run on this data (e.g. colorization on grayscale images), or None."""
        return None

    def build_head(self, backbone: Backbone, image_size: int) -> nn.Module:
        raise NotImplementedError

    def prepare(self, images: np.ndarray) -> None:
        """Called once with the uint8 training images (N,3,S,S) before training (e.g. data statistics)."""

    def feature_input(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0,1] -> what the backbone sees at feature extraction (default: ImageNet-normalized RGB)."""
        return normalize(x)

    def make_batch(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def predict(self, backbone: Backbone, head: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Default: pooled backbone features through the head."""
        return head(backbone.features(inputs))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), targets)

    def n_correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> int:
        return int((outputs.argmax(1) == targets).sum())


PRETEXTS: Registry[Callable[[PretextSpec], Pretext]] = Registry("pretext")


@PRETEXTS.register("none")
class NoPretext(Pretext):
    """The backbone as built (pretrained weights if any, else random init): no training."""

    name = "none"
    trains = False


@PRETEXTS.register("rotation")
class Rotation(Pretext):
    """RotNet (Gidaris et al. 2018): every image at 0/90/180/270 degrees in the same batch; 4-way head."""

    name = "rotation"
    reports_accuracy = True

    def build_head(self, backbone: Backbone, image_size: int) -> nn.Module:
        return nn.Linear(backbone.dim, 4)

    def make_batch(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        rots = [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]
        targets = torch.arange(4, device=x.device).repeat_interleave(x.shape[0])
        return normalize(torch.cat(rots)), targets


def build_pretext(name: str, opts: PretextSpec | None = None) -> Pretext:
    return PRETEXTS.get(name)(opts or PretextSpec())


# the other tasks live in their own modules and register themselves on import
from registry import pretext_jigsaw, pretext_color, pretext_autoencoder  # noqa: E402,F401  isort: skip
