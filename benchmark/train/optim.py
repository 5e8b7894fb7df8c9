"""Optimizers and the learning-rate schedule of the one training loop: SGD, Adam and LARS; a linear warmup over
a fraction of all steps, then the cosine.

LARS (You et al. 2017, "Large Batch Training of Convolutional Networks") as solo-learn's
``solo/utils/lars.py`` configures it for SimCLR, BYOL and DINO (``scripts/pretrain/cifar/*.yaml``: ``eta:
0.02``, ``clip_lr: True``, ``exclude_bias_n_norm: True``): for every parameter that is not one-dimensional
(biases and normalisation weights are excluded) the step is scaled by the trust ratio
``eta * ||w|| / (||g|| + wd * ||w|| + eps)``, clipped so that ``ratio <= lr`` (the local rate never exceeds the
global one), weight decay added to the gradient before the scaling; then heavy-ball momentum. Excluded
parameters get plain momentum SGD without weight decay. torch has no LARS; this one is tested against the rule
above written out in the test.

The schedule of solo-learn's ``warmup_cosine`` (``LinearWarmupCosineAnnealingLR``, stepped per optimizer step):
the rate rises linearly over the first ``warmup`` fraction of the steps, then follows the cosine to 0 over the
rest; with ``warmup = 0`` it is the harness's historical cosine over all steps."""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
import torch.nn as nn

from benchmark.config.specs import TrainSpec
from registry.pretexts import Pretext


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratios (see the module docstring)."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.02, clip_lr: bool = True, exclude_bias_n_norm: bool = True, eps: float = 1e-8
                 ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta, "clip_lr": clip_lr,
                    "exclude_bias_n_norm": exclude_bias_n_norm, "eps": eps}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]  # overloads
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if p.ndim != 1 or not group["exclude_bias_n_norm"]:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d_p)
                    ratio = group["eta"] * w_norm / (g_norm + w_norm * group["weight_decay"] + group["eps"])
                    if group["clip_lr"]:
                        ratio = torch.clamp(ratio / group["lr"], max=1.0)
                    ratio = torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))
                    d_p = d_p.add(p, alpha=group["weight_decay"]).mul(ratio)
                if group["momentum"]:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d_p.detach().clone()
                    else:
                        buf.mul_(group["momentum"]).add_(d_p)
                    d_p = buf
                p.add_(d_p, alpha=-group["lr"])
        return loss


def recipe_spec(spec: TrainSpec, pretext: Pretext) -> TrainSpec:
    """``spec`` with the fields the user left unset taken from ``pretext``'s recipe (idempotent)."""
    r = pretext.recipe()
    return spec.resolved(r.optimizer, r.lr, r.weight_decay, r.warmup, r.base_batch)


def make_optimizer(params: list[nn.Parameter], spec: TrainSpec) -> torch.optim.Optimizer:
    """The optimizer of a resolved spec (``recipe_spec``)."""
    lr = float(spec.lr if spec.lr is not None else 0.01)
    wd = float(spec.weight_decay if spec.weight_decay is not None else 0.0)
    if spec.optimizer == "lars":
        return LARS(params, lr=lr, momentum=spec.momentum, weight_decay=wd)
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, momentum=spec.momentum, weight_decay=wd)


def lr_factor(spec: TrainSpec, total: int) -> Callable[[int], float]:
    """The learning-rate multiplier of step s (0-based) of ``total``: linear warmup over ``spec.warmup`` of the
    steps, then cosine to 0 (``lr_schedule = "cosine"``) or constant."""
    warm = int(round((spec.warmup or 0.0) * total))
    cosine = spec.lr_schedule == "cosine"

    def factor(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        if not cosine:
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * min(s - warm, total - warm) / max(total - warm, 1)))

    return factor
