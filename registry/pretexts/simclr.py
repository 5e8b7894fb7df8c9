"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations"): two views
of every image, an MLP projector, the NT-Xent loss over the batch.

Defaults from solo-learn ``scripts/pretrain/cifar/simclr.yaml`` (ResNet-18, CIFAR): projector 2048 hidden ->
256 out (Linear, BatchNorm, ReLU, Linear), temperature 0.2, LARS with lr 0.4 at batch 256 (scaled linearly),
weight decay 1e-4, eta 0.02, biases and norms excluded, ``warmup_cosine`` with 10 warmup epochs of 1000 (a
warmup of 0.01 of the steps here); views from ``augmentations/symmetric.yaml`` (``_views.SIMCLR``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn as nn

from benchmark.interfaces import Constraint, check_settings, setting
from registry.backbones import Backbone
from registry.pretexts import PRETEXTS
from registry.pretexts._joint import OPTIMIZER, JointEmbedding, JointOptions, mlp
from registry.pretexts._losses import nt_xent
from registry.pretexts._views import SIMCLR


@dataclass(frozen=True)
class SimCLROptions(JointOptions):
    flag_prefix = "simclr"
    temperature: float = setting(0.2, Constraint("real", 0, cap=100, lo_open=True), help="NT-Xent temperature")
    proj_hidden: int = setting(2048, Constraint("int", 1, cap=1 << 16), help="projector hidden width")
    proj_dim: int = setting(256, Constraint("int", 1, cap=1 << 16), help="projector output dimension")
    optimizer: str = setting("lars", OPTIMIZER, help="optimizer of the reference config")
    lr: float = setting(0.4, Constraint("real", 0, cap=1e6, lo_open=True), help="learning rate at base-batch images")
    weight_decay: float = setting(1e-4, Constraint("real", 0, cap=1), help="weight decay")
    warmup: float = setting(0.01, Constraint("real", 0, 1, hi_open=True), help="warmup, fraction of all steps")

    def __post_init__(self) -> None:
        check_settings(self)


@PRETEXTS.register("simclr")
class SimCLR(JointEmbedding):
    """Two views -> backbone -> projector -> NT-Xent (every other image of the batch a negative)."""

    name = "simclr"
    Options = SimCLROptions
    opts: SimCLROptions
    view_recipes = (SIMCLR, SIMCLR)

    def build_head(self, backbone: Backbone, image_size: int) -> nn.Module:
        return nn.ModuleDict({"projector": mlp([backbone.dim, self.opts.proj_hidden, self.opts.proj_dim])})

    def predict(self, backbone: Backbone, head: nn.Module, inputs: tuple[torch.Tensor, ...]
                ) -> tuple[torch.Tensor, ...]:
        """Views (B,3,S,S) each -> projections (B, proj_dim) each (one forward per view: BatchNorm statistics
        per view, as solo-learn's forward over its list of crops)."""
        projector = cast(nn.ModuleDict, head)["projector"]
        return tuple(projector(backbone.features(v)) for v in inputs)

    def loss(self, outputs: tuple[torch.Tensor, ...], targets: None) -> torch.Tensor:
        return nt_xent(outputs[0], outputs[1], self.opts.temperature)
