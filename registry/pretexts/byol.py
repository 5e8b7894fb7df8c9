"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent"): an online network (backbone, projector, predictor)
regresses the projection of the other view by a target network, the online network's EMA; no negatives.

Defaults from solo-learn ``scripts/pretrain/cifar/byol.yaml`` (ResNet-18, CIFAR): projector 4096 hidden -> 256,
predictor 4096 hidden -> 256 (Linear, BatchNorm, ReLU, Linear), target momentum tau from 0.99 to 1.0 on a cosine
over all steps (BYOL eq. 7; solo-learn's ``MomentumUpdater``), LARS lr 1.0 at batch 256, weight decay 1e-5,
eta 0.02, biases and norms excluded, ``warmup_cosine`` with 10 warmup epochs of 1000 (0.01 of the steps);
the asymmetric views of ``augmentations/asymmetric.yaml`` (``_views.BYOL``: solarize on the second). The loss
is symmetric: 2 - 2 cos(p1, z2') + 2 - 2 cos(p2, z1')."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn as nn

from benchmark.interfaces import Constraint, check_settings, setting
from registry.backbones import Backbone
from registry.pretexts import PRETEXTS
from registry.pretexts._joint import OPTIMIZER, JointEmbedding, JointOptions, cosine_tau, ema_, mlp, momentum_copy
from registry.pretexts._losses import byol_loss
from registry.pretexts._views import BYOL as BYOL_VIEWS


@dataclass(frozen=True)
class BYOLOptions(JointOptions):
    flag_prefix = "byol"
    proj_hidden: int = setting(4096, Constraint("int", 1, cap=1 << 16), help="projector hidden width")
    proj_dim: int = setting(256, Constraint("int", 1, cap=1 << 16), help="projection dimension")
    pred_hidden: int = setting(4096, Constraint("int", 1, cap=1 << 16), help="predictor hidden width")
    base_tau: float = setting(0.99, Constraint("real", 0, 1), help="target EMA momentum at the first step")
    final_tau: float = setting(1.0, Constraint("real", 0, 1), help="target EMA momentum at the last step")
    optimizer: str = setting("lars", OPTIMIZER, help="optimizer of the reference config")
    lr: float = setting(1.0, Constraint("real", 0, cap=1e6, lo_open=True), help="learning rate at base-batch images")
    weight_decay: float = setting(1e-5, Constraint("real", 0, cap=1), help="weight decay")
    warmup: float = setting(0.01, Constraint("real", 0, 1, hi_open=True), help="warmup, fraction of all steps")

    def __post_init__(self) -> None:
        check_settings(self)


class BYOLHead(nn.Module):
    """Online projector and predictor; the target backbone and projector (momentum copies)."""

    def __init__(self, backbone: Backbone, o: BYOLOptions) -> None:
        super().__init__()
        self.projector = mlp([backbone.dim, o.proj_hidden, o.proj_dim])
        self.predictor = mlp([o.proj_dim, o.pred_hidden, o.proj_dim])
        self.target_backbone = momentum_copy(backbone)
        self.target_projector = momentum_copy(self.projector)


@PRETEXTS.register("byol")
class BYOL(JointEmbedding):
    """BYOL with the cosine target-momentum schedule."""

    name = "byol"
    Options = BYOLOptions
    opts: BYOLOptions
    view_recipes = BYOL_VIEWS

    def build_head(self, backbone: Backbone, image_size: int) -> nn.Module:
        return BYOLHead(backbone, self.opts)

    def predict(self, backbone: Backbone, head: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
        """Views -> {"p": online predictions (V,B,d), "z": target projections (V,B,d), no gradient}."""
        h = cast(BYOLHead, head)
        p = torch.stack([h.predictor(h.projector(backbone.features(v))) for v in inputs])
        with torch.no_grad():
            z = torch.stack([h.target_projector(h.target_backbone.features(v)) for v in inputs])
        return {"p": p, "z": z}

    def loss(self, outputs: dict[str, Any], targets: None) -> torch.Tensor:
        p, z = outputs["p"], outputs["z"]
        return byol_loss(p[0], z[1]) + byol_loss(p[1], z[0])

    def update(self, backbone: Backbone, head: nn.Module, outputs: Any, step: int, total: int) -> None:
        """target <- tau_k target + (1 - tau_k) online, tau_k on the cosine from base_tau to final_tau."""
        tau = cosine_tau(step, total, self.opts.base_tau, self.opts.final_tau)
        h = cast(BYOLHead, head)
        ema_(h.target_backbone, backbone, tau)
        ema_(h.target_projector, h.projector, tau)
