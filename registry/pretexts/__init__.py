"""Self-supervised pretext tasks, one module each in this package (discovered, no import list).

Each task says how a batch of images becomes (inputs, targets), which head it needs for a backbone, how
the head is applied, and its loss; ``benchmark.train.loop`` is the one loop. A task declares its own options
(``Options``, a frozen dataclass): they are its only contribution to the feature cache key."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.interfaces import NoOptions, Options
from registry.backbones import IMAGENET_MEAN, IMAGENET_STD, Backbone, backbone_info
from registry.base import Registry

TaskOptions = Options  # inside Pretext, ``Options`` names the task's own options class


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) in [0,1] -> ImageNet-normalized, the input every backbone expects."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean).div_(std)


class Pretext:
    """Base class. ``make_batch`` gets images (B,3,S,S) in [0,1] on the device."""

    name = "base"
    Options: type[Options] = NoOptions  # the task's own options (and key contribution)
    version = 1  # bump when the task's training changes, so its cached weights are not reused
    reports_accuracy = False  # True when the task is a classification with a meaningful accuracy
    trains = True  # False for ``none``

    def __init__(self, opts: TaskOptions | None = None) -> None:
        self.opts = opts if opts is not None else self.Options()
        if not isinstance(self.opts, self.Options):
            raise TypeError(f"{self.name} takes {self.Options.__name__}, not {type(self.opts).__name__}")

    def key(self) -> dict[str, object]:
        """What this task contributes to a cache key: its name, version and own options."""
        return {"pretext": self.name, "version": self.version, "options": self.opts.key()}

    feeds_crops = False  # True: the backbone sees tiles/patches smaller than the image (jigsaw, patches)
    needs_feature_map = False  # True: its head decodes the backbone's spatial feature map
    uses_backbone_decoder = False  # True: a backbone's own decoder replaces that head (autoencoder)

    def not_applicable(self, grayscale: bool, backbone: str | None = None) -> str | None:
        """A reason this task cannot run on this data (e.g. colorization on grayscale images) or with this
        backbone (crops for a backbone of one fixed input size; a decoder for one without a feature map)."""
        if backbone is None:
            return None

        info = backbone_info(backbone)
        if self.feeds_crops and info.input_size is not None:
            return (f"{self.name} not applicable: it feeds crops smaller than the 1 x {info.input_size} x "
                    f"{info.input_size} input {backbone} takes")
        if self.needs_feature_map and not info.spatial and not (info.own_decoder and self.uses_backbone_decoder):
            return f"{self.name} not applicable: {backbone} has no spatial feature map to decode"
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

    def correct_count(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Correct predictions as a device scalar (read by the host once per epoch, not per step)."""
        return (outputs.argmax(1) == targets).sum()

    def n_correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> int:
        return int(self.correct_count(outputs, targets))


PRETEXTS: Registry[type[Pretext]] = Registry("pretext", package=__name__)


def pretext_class(name: str) -> type[Pretext]:
    return PRETEXTS.get(name)


def build_pretext(name: str, opts: Options | None = None) -> Pretext:
    return PRETEXTS.get(name)(opts)
