"""Self-supervised methods, one module each in this package (discovered, no import list): the pretext tasks
and the joint-embedding methods (SimCLR, MoCo v2, BYOL, DINO) under one contract.

A method says how a batch of images becomes (inputs, targets) on the device (inputs may be several augmented
views), the extra modules it owns for a backbone (``build_head``: a head, projector, predictor, prototypes, a
momentum encoder whose parameters do not require gradients, and buffers such as a queue or a center; all of it
is in the training checkpoint), how they are applied (``predict``), its loss (a pure function of the outputs),
and its per-step update after the optimizer step (``update``: EMA, queue, center, schedules). Its reference
recipe (optimizer, learning rate, weight decay, warmup) is ``recipe()``; the shared training flags override it
when the user sets them. ``benchmark.train.loop`` is the one loop. A method declares its own options
(``Options``, a frozen dataclass): they are its only contribution to the feature cache key. Losses and
view-making shared by several methods live in the ``_``-prefixed helper modules of this package."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.interfaces import NoOptions, Options
from registry.backbones import IMAGENET_MEAN, IMAGENET_STD, Backbone, backbone_info
from registry.base import Registry

TaskOptions = Options  # inside Pretext, ``Options`` names the task's own options class


def normalize(x: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN,
              std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """(B,3,H,W) in [0,1] -> normalized with (mean, std) (default: ImageNet's, the random inits' statistics)."""
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m).div_(s)


@dataclass(frozen=True)
class Recipe:
    """A method's reference optimisation (from its config): optimizer (sgd, adam, lars), learning rate at
    ``base_batch`` images per step (scaled linearly to the batch size used when ``base_batch`` is set, as
    solo-learn's ``main_pretrain.py`` does), weight decay and the linear warmup as a fraction of all steps.
    The pretext tasks' recipe is the harness's historical one: SGD 0.01, weight decay 5e-4, no warmup."""

    optimizer: str = "sgd"
    lr: float = 0.01
    weight_decay: float = 5e-4
    warmup: float = 0.0
    base_batch: int | None = None


class Pretext:
    """Base class. ``make_batch`` gets images (B,3,S,S) in [0,1] on the device."""

    name = "base"
    Options: type[Options] = NoOptions  # the task's own options (and key contribution)
    version = 1  # bump when the task's training changes, so its cached weights are not reused
    reports_accuracy = False  # True when the task is a classification with a meaningful accuracy
    mean: tuple[float, ...] = IMAGENET_MEAN  # the input normalisation: the backbone's (``use_backbone``)
    std: tuple[float, ...] = IMAGENET_STD
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

    views = 1  # augmented views of each source image a training step sees (bench counts source images)

    def build_head(self, backbone: Backbone, image_size: int) -> nn.Module:
        """The modules and buffers the method owns beside the backbone (trained unless requires_grad is off)."""
        raise NotImplementedError

    def recipe(self) -> Recipe:
        """The method's reference optimisation (applied where the user did not set the shared flags)."""
        return Recipe()

    def wrap_backbone(self, backbone: Backbone) -> Backbone:
        """The network the method trains and extracts features with (default: the backbone itself; the
        split-brain autoencoder doubles it). Called for training and for extraction alike."""
        return backbone

    def feature_dim(self, dim: int) -> int:
        """The feature dimension given the backbone's (default: unchanged)."""
        return dim

    def after_backward(self, head: nn.Module, step: int, total: int) -> None:
        """Between the backward pass and the optimizer step (e.g. DINO's prototypes frozen early)."""

    def update(self, backbone: Backbone, head: nn.Module, outputs: Any, step: int, total: int) -> None:
        """After the optimizer step of step ``step`` (0-based) of ``total``, without gradients: a momentum
        encoder's EMA, a queue, a center, a schedule held in the head's buffers."""

    def prepare(self, images: np.ndarray) -> None:
        """Called once with the uint8 training images (N,3,S,S) before training (e.g. data statistics)."""

    def use_backbone(self, backbone: Backbone) -> Pretext:
        """Take ``backbone``'s input normalisation (its weight source's mean/std): every input the method makes
        goes through ``normalize``. Called by the training loop and the extraction before any batch."""
        self.mean, self.std = tuple(backbone.mean), tuple(backbone.std)
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) in [0,1] -> normalised with the backbone's statistics (``use_backbone``; ImageNet's before)."""
        return normalize(x, self.mean, self.std)

    def feature_input(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0,1] -> what the backbone sees at feature extraction (default: normalized RGB)."""
        return self.normalize(x)

    def make_batch(self, x: torch.Tensor, gen: torch.Generator) -> tuple[Any, Any]:
        """Images (B,3,S,S) in [0,1] on the device -> (inputs, targets); inputs may be a tuple of views."""
        raise NotImplementedError

    def predict(self, backbone: Backbone, head: nn.Module, inputs: Any) -> Any:
        """Default: pooled backbone features through the head."""
        return head(backbone.features(inputs))

    def loss(self, outputs: Any, targets: Any) -> torch.Tensor:
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
