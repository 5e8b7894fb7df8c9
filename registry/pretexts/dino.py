"""DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers"): self-distillation
with no labels. A student (backbone + DINO head) matches the teacher's output distribution over K prototypes;
the teacher is the student's EMA; the teacher's outputs are centered (a running mean, momentum 0.9) and
sharpened (a low teacher temperature), which is what keeps it from collapsing.

Defaults from solo-learn ``scripts/pretrain/cifar/dino.yaml`` and ``solo/methods/dino.py`` (ResNet-18, CIFAR):
head 2048 hidden -> 256 bottleneck (three Linear layers with GELU), L2-normalised, then a weight-normalised
last layer of 4096 prototypes without bias whose norm is fixed (``norm_last_layer``); student temperature 0.1,
teacher temperature 0.07 after a linear warmup from 0.04 (the official ``main_dino.py``'s schedule; its warmup
of 30 of 100 epochs is 0.3 of the steps here), center momentum 0.9, teacher momentum from 0.9995 to 1.0 on a
cosine, the last layer frozen for the first epoch of 1000 (0.001 of the steps), no gradient clipping
(``clip_grad: 0``), LARS lr 0.3 at batch 256, weight decay 1e-6, 10 warmup epochs of 1000 (0.01); the
asymmetric views (``_views.DINO``: two global crops, no multi-crop on CIFAR)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.interfaces import Constraint, check_settings, setting
from registry.backbones import Backbone
from registry.pretexts import PRETEXTS
from registry.pretexts._joint import OPTIMIZER, JointEmbedding, JointOptions, cosine_tau, ema_, mlp, momentum_copy
from registry.pretexts._losses import dino_loss
from registry.pretexts._views import DINO as DINO_VIEWS


@dataclass(frozen=True)
class DINOOptions(JointOptions):
    flag_prefix = "dino"
    hidden: int = setting(2048, Constraint("int", 1, cap=1 << 16), help="head hidden width")
    bottleneck: int = setting(256, Constraint("int", 1, cap=1 << 16), help="head bottleneck dimension")
    prototypes: int = setting(4096, Constraint("int", 2, cap=1 << 20), help="number of prototypes K")
    student_temp: float = setting(0.1, Constraint("real", 0, cap=10, lo_open=True), help="student temperature")
    teacher_temp: float = setting(0.07, Constraint("real", 0, cap=10, lo_open=True), help="teacher temperature")
    warmup_teacher_temp: float = setting(0.04, Constraint("real", 0, cap=10, lo_open=True),
                                         help="teacher temperature at the first step")
    teacher_temp_warmup: float = setting(0.3, Constraint("real", 0, 1), help="teacher temperature warmup, "
                                                                              "fraction of all steps")
    center_momentum: float = setting(0.9, Constraint("real", 0, 1), help="center EMA momentum")
    base_tau: float = setting(0.9995, Constraint("real", 0, 1), help="teacher EMA momentum at the first step")
    final_tau: float = setting(1.0, Constraint("real", 0, 1), help="teacher EMA momentum at the last step")
    freeze_last_layer: float = setting(0.001, Constraint("real", 0, 1), help="steps with the prototypes frozen, "
                                                                              "fraction of all steps")
    optimizer: str = setting("lars", OPTIMIZER, help="optimizer of the reference config")
    lr: float = setting(0.3, Constraint("real", 0, cap=1e6, lo_open=True), help="learning rate at base-batch images")
    weight_decay: float = setting(1e-6, Constraint("real", 0, cap=1), help="weight decay")
    warmup: float = setting(0.01, Constraint("real", 0, 1, hi_open=True), help="warmup, fraction of all steps")

    def __post_init__(self) -> None:
        check_settings(self)


class DINOHead(nn.Module):
    """MLP -> L2 normalisation -> weight-normalised prototypes (the norm of each prototype fixed to 1)."""

    def __init__(self, dim: int, o: DINOOptions) -> None:
        super().__init__()
        self.mlp = mlp([dim, o.hidden, o.hidden, o.bottleneck], bn=False, act=nn.GELU)
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(o.bottleneck, o.prototypes, bias=False))
        self.last_layer.parametrizations.weight.original0.data.fill_(1.0)
        self.last_layer.parametrizations.weight.original0.requires_grad_(False)  # norm_last_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


class DINOModules(nn.Module):
    """The student's head, the teacher (momentum copies of backbone and head), the center and the teacher
    temperature of the next step (buffers: in the checkpoint)."""

    center: torch.Tensor
    teacher_temp: torch.Tensor

    def __init__(self, backbone: Backbone, o: DINOOptions) -> None:
        super().__init__()
        self.head = DINOHead(backbone.dim, o)
        self.teacher_backbone = momentum_copy(backbone)
        self.teacher_head = momentum_copy(self.head)
        self.register_buffer("center", torch.zeros(1, o.prototypes))
        self.register_buffer("teacher_temp", torch.tensor(o.warmup_teacher_temp if o.teacher_temp_warmup > 0
                                                          else o.teacher_temp, dtype=torch.float64))


def teacher_temperature(o: DINOOptions, step: int, total: int) -> float:
    """Linear from warmup_teacher_temp to teacher_temp over the first ``teacher_temp_warmup`` of the steps."""
    warm = int(round(o.teacher_temp_warmup * total))
    if step >= warm:
        return o.teacher_temp
    return o.warmup_teacher_temp + (o.teacher_temp - o.warmup_teacher_temp) * step / max(warm, 1)


@PRETEXTS.register("dino")
class DINO(JointEmbedding):
    """DINO with two global views."""

    name = "dino"
    Options = DINOOptions
    opts: DINOOptions
    view_recipes = DINO_VIEWS

    def build_head(self, backbone: Backbone, image_size: int) -> nn.Module:
        return DINOModules(backbone, self.opts)

    def predict(self, backbone: Backbone, head: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
        """Views -> {"student": (V,B,K) logits, "teacher": (V,B,K) logits (no gradient), "center": (1,K),
        "teacher_temp": this step's temperature}."""
        h = cast(DINOModules, head)
        s = torch.stack([h.head(backbone.features(v)) for v in inputs])
        with torch.no_grad():
            t = torch.stack([h.teacher_head(h.teacher_backbone.features(v)) for v in inputs])
        return {"student": s, "teacher": t, "center": h.center, "teacher_temp": float(h.teacher_temp)}

    def loss(self, outputs: dict[str, Any], targets: None) -> torch.Tensor:
        return dino_loss(outputs["student"], outputs["teacher"], outputs["center"], self.opts.student_temp,
                         outputs["teacher_temp"])

    def after_backward(self, head: nn.Module, step: int, total: int) -> None:
        """The prototypes get no update during the first ``freeze_last_layer`` of the steps."""
        if step < int(round(self.opts.freeze_last_layer * total)):
            for p in cast(DINOModules, head).head.last_layer.parameters():
                p.grad = None

    def update(self, backbone: Backbone, head: nn.Module, outputs: Any, step: int, total: int) -> None:
        """Teacher EMA (tau on the cosine), center <- m center + (1 - m) mean of this step's teacher outputs,
        and the next step's teacher temperature."""
        tau = cosine_tau(step, total, self.opts.base_tau, self.opts.final_tau)
        h = cast(DINOModules, head)
        ema_(h.teacher_backbone, backbone, tau)
        ema_(h.teacher_head, h.head, tau)
        t = outputs["teacher"].float()
        batch_center = t.reshape(-1, t.shape[-1]).mean(dim=0, keepdim=True)
        m = self.opts.center_momentum
        h.center.mul_(m).add_(batch_center, alpha=1 - m)
        h.teacher_temp.fill_(teacher_temperature(self.opts, step + 1, total))
