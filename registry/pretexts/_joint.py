"""What the joint-embedding methods (SimCLR, MoCo v2, BYOL, DINO) share: two augmented views per image made on
the device, MLP projectors, momentum (EMA) copies that the optimizer does not train, the cosine momentum schedule.

Views: each method names its two view recipes (``registry.pretexts._views``); on grayscale data (every image's
three channels equal, seen in ``prepare``) each recipe becomes its one-channel version (``grayscale_recipe``:
crops, flips, small rotations, brightness and contrast; no hue, saturation or grayscale).

The features a joint-embedding method leaves are the online backbone's (the network the optimizer trains), as
solo-learn's linear and kNN evaluations use them."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn as nn

from benchmark.interfaces import Constraint, Options, check_settings, setting
from registry.pretexts import Pretext, Recipe
from registry.pretexts._views import ViewRecipe, grayscale_recipe, make_view

OPTIMIZER = Constraint("choice", choices=("sgd", "adam", "lars"))


@dataclass(frozen=True)
class JointOptions(Options):
    """The reference optimisation every joint-embedding method's options carry (each method's subclass sets its
    config's values; flags ``--<method>-lr`` and so on). They apply where the user leaves the shared flags
    (``--optimizer``, ``--lr``, ``--weight-decay``, ``--warmup``) unset."""

    optimizer: str = setting("sgd", OPTIMIZER, help="optimizer of the reference config")
    lr: float = setting(0.01, Constraint("real", 0, cap=1e6, lo_open=True),
                        help="learning rate at base-batch images per step (scaled linearly to the batch size)")
    weight_decay: float = setting(0.0, Constraint("real", 0, cap=1), help="weight decay")
    warmup: float = setting(0.0, Constraint("real", 0, 1, hi_open=True), help="linear warmup, fraction of all steps")
    base_batch: int = setting(256, Constraint("int", 1, cap=1 << 20), help="the batch size lr is given for")

    def __post_init__(self) -> None:
        check_settings(self)


class JointEmbedding(Pretext):
    """Base of the joint-embedding methods: two views of every image, no targets."""

    views = 2
    view_recipes: tuple[ViewRecipe, ViewRecipe]
    opts: JointOptions

    def __init__(self, opts: Options | None = None) -> None:
        super().__init__(opts)
        self.gray = False

    def recipe(self) -> Recipe:
        o = self.opts
        return Recipe(o.optimizer, o.lr, o.weight_decay, o.warmup, o.base_batch)

    def prepare(self, images: np.ndarray) -> None:
        """Grayscale data (all three channels equal) gets the one-channel recipes."""
        sample = images[: min(len(images), 256)]
        self.gray = bool(sample.shape[1] == 1 or (np.array_equal(sample[:, 0], sample[:, 1])
                                                  and np.array_equal(sample[:, 1], sample[:, 2])))

    def recipes(self) -> tuple[ViewRecipe, ViewRecipe]:
        if self.gray:
            return grayscale_recipe(self.view_recipes[0]), grayscale_recipe(self.view_recipes[1])
        return self.view_recipes

    def make_batch(self, x: torch.Tensor, gen: torch.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor], None]:
        """(B,3,S,S) in [0,1] -> two normalized views (B,3,S,S) drawn with per-sample parameters; no targets."""
        first, second = self.recipes()
        return (self.normalize(make_view(x, first, gen)), self.normalize(make_view(x, second, gen))), None


def mlp(dims: list[int], bn: bool = True, last_bn: bool = False, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of sizes dims[0] -> ... -> dims[-1], BatchNorm and ``act`` between them (a projector or
    predictor as the methods' reference code builds them)."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        last = i == len(dims) - 2
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if not last:
            if bn:
                layers.append(nn.BatchNorm1d(dims[i + 1]))
            layers.append(act())
        elif last_bn:
            layers.append(nn.BatchNorm1d(dims[i + 1], affine=False))
    return nn.Sequential(*layers)


M = TypeVar("M", bound=nn.Module)


def momentum_copy(module: M) -> M:
    """A copy of ``module`` whose parameters require no gradient: the optimizer does not train it."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * target + (1 - tau) * online, parameter by parameter (buffers such as BatchNorm's running
    statistics are the target's own, as in solo-learn's ``MomentumUpdater``)."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(tau).add_(o.detach(), alpha=1 - tau)


def cosine_tau(step: int, total: int, base: float, final: float) -> float:
    """The EMA momentum of step ``step`` of ``total``: base at 0, rising to final on a half cosine (BYOL eq. 7:
    tau = 1 - (1 - base) (cos(pi k / K) + 1) / 2 for final = 1)."""
    return final - (final - base) * (math.cos(math.pi * min(step, total) / max(total, 1)) + 1) / 2
