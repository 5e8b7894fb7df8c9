"""What every backbone family shares: the ``Backbone`` module, its ``BackboneInfo``, the registry, weights.

A backbone maps (B,3,S,S) normalized images to a feature map (B,C,h,w) (or tokens (B,L,C) for
transformers) and ``pool`` turns that into (B,D). Its info declares what the harness may know without
building it, its stages (``--feature-layer``; timm's ``feature_info`` is the model) among them."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from benchmark.interfaces import BadInput
from registry.base import Registry
from registry.weights import RANDOM, Init

TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class WeightsRequest:
    """The init a backbone is built with, resolved and verified beforehand (``registry.weights.resolve``):
    random (the family's seeded initialisation), imagenet (a weight source's file), a checkpoint. Nothing
    depends on what a cache holds: the factory loads exactly the file named here or none."""

    init: Init = RANDOM

    @classmethod
    def checkpoint(cls, path: str | None) -> WeightsRequest:
        """A local state_dict (checked when loaded); None: random."""
        return cls(Init("checkpoint", "file", path)) if path else cls()

    @property
    def path(self) -> str | None:
        """The checkpoint file of a checkpoint init (None for the others)."""
        return self.init.path if self.init.kind == "checkpoint" else None


class Backbone(nn.Module):
    """Feature extractor with a declared feature dimension and a pooling to (B, D)."""

    def __init__(self, name: str, body: nn.Module, dim: int, weights: str,
                 pool_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 trainable: bool = True, make_decoder: Callable[[], nn.Module] | None = None,
                 init: Init = RANDOM) -> None:
        super().__init__()
        self.name = name
        self.body = body
        self.dim = dim
        self.weights = weights  # the init's identity: "random", "imagenet:<source>/<file>@sha256:...", ...
        self.init = init  # its mean/std are the input normalisation (the weight source owns it)
        self.trainable = trainable
        self._pool_fn = pool_fn
        self.make_decoder = make_decoder  # its own decoder (paper autoencoders): the autoencoder pretext uses it

    @property
    def mean(self) -> tuple[float, ...]:
        return self.init.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.init.std

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) in [0,1] -> normalised with the statistics of the weights' source (the pretexts' and
        the joint-embedding methods' input goes through this, not their own)."""
        mean = torch.tensor(self.init.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.init.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean).div_(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,S,S) -> feature map (B,C,h,w) or tokens (B,L,C)."""
        return self.body(x)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """Feature map -> (B, D) float features."""
        if self._pool_fn is not None:
            return self._pool_fn(fmap)
        if fmap.dim() == 4:
            return fmap.mean(dim=(2, 3))
        if fmap.dim() == 3:
            return fmap.mean(dim=1)
        return fmap.flatten(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward(x))

    def cut_at(self, layer: str, cut: Callable[[Backbone, str], Backbone]) -> Backbone:
        """The same weights cut after stage ``layer`` by the family's ``cut`` (a wrapper, split_brain's two
        copies, cuts what it wraps)."""
        return cut(self, layer)


BackboneFactory = Callable[..., Backbone]  # (image_size, WeightsRequest[, channels=] when data_channels)
BACKBONES: Registry[BackboneFactory] = Registry("backbone", package="registry.backbones")


@dataclass(frozen=True)
class BackboneInfo:
    """What the harness may know about a backbone without building it. ``stages``: the names
    ``--feature-layer`` accepts; ``cut(backbone, stage)``: the same weights cut after that stage."""

    trainable: bool = True  # False: no parameters, a pretext has nothing to train (raw pixels)
    min_image_size: int = 8  # smaller inputs vanish in the network
    uses_weights: bool = True  # False: --weights does not apply
    data_channels: bool = False  # True: built for the data's channels (1 for grayscale data, else 3)
    input_size: int | None = None  # the one image size it takes (paper autoencoders: 28 for 1 x 28 x 28)
    spatial: bool = True  # False: its output is a vector (no feature map for a generic decoder)
    own_decoder: bool = False  # True: it brings the decoder the autoencoder pretext uses
    stages: tuple[str, ...] = ()
    cut: Callable[[Backbone, str], Backbone] | None = field(default=None, compare=False)


def describe(**info: Any) -> Callable[[BackboneFactory], BackboneFactory]:
    """Attach ``BackboneInfo`` fields to a factory: ``@describe(min_image_size=32)``."""

    def deco(factory: BackboneFactory) -> BackboneFactory:
        described: Any = factory  # a function: it takes the attribute ``backbone_info`` reads
        described.info = BackboneInfo(**info)
        return factory

    return deco


def load_checkpoint(model: nn.Module, path: str) -> None:
    """Load a local state_dict (``weights_only``: no code in the file runs) that matches the model exactly.
    BadInput names the file and what is wrong with it (the weights column: ``identity``)."""
    if not os.path.isfile(path):
        raise BadInput(f"bad weights path {path!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  pickles with code, text, truncated zips: many types
        why = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"bad weights file {path!r}: not a weights-only state_dict ({why})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInput(f"bad weights file {path!r}: need a state_dict (parameter name -> tensor), "
                       f"got {type(state).__name__}")
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shape = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    if missing or extra or shape:
        what = (f"{len(missing)} missing (e.g. {missing[0]})" if missing else
                f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else
                f"{len(shape)} of another shape (e.g. {shape[0]}: {tuple(state[shape[0]].shape)} vs "
                f"{tuple(want[shape[0]].shape)})")
        raise BadInput(f"bad weights file {path!r}: it does not match {type(model).__name__}: {what} tensors")
    model.load_state_dict(state, strict=True)


def with_checkpoint(bb: Backbone, req: WeightsRequest) -> Backbone:
    """A local state_dict of the encoder (``body``), checked and loaded weights-only (a no-op for random)."""
    if req.path:
        load_checkpoint(bb.body, req.path)
        bb.weights, bb.init = identity(req, req.path), req.init
    return bb


def identity(req: WeightsRequest, path: str) -> str:
    """The weights column of a checkpoint: the resolved init's identity, or the file's name (unresolved)."""
    return req.init.identity if req.init.sha256 else f"checkpoint:{Path(path).name}"


def no_imagenet(name: str, req: WeightsRequest) -> None:
    """A family without ImageNet weights refuses an imagenet init (the resolver refuses it first)."""
    if req.init.kind == "imagenet":
        raise BadInput(f"bad --init imagenet for backbone {name!r}: it has no ImageNet weights; allowed: random or "
                       "a checkpoint file")
