"""MoCo v2 (He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation Learning"; Chen et al.
2020, "Improved Baselines with Momentum Contrastive Learning"): a query encoder trained by SGD, a key encoder
that is its exponential moving average, a queue of past keys as negatives, InfoNCE.

Defaults from the official CIFAR-10 demo (facebookresearch/moco ``colab/moco_cifar10_demo.ipynb``): feature
dimension 128, queue K = 4096, momentum m = 0.99, temperature 0.1, the symmetric loss (loss(q1, k2) +
loss(q2, k1), both views' keys enqueued), SGD lr 0.06 at batch 512, weight decay 5e-4, momentum 0.9, cosine
schedule, no warmup; MoCo v2's MLP head from the official ``moco/builder.py`` (``--mlp``: Linear(D, D), ReLU,
Linear(D, 128)) and its views from solo-learn ``scripts/pretrain/cifar/augmentations/symmetric_weak.yaml``
(``_views.MOCOV2``). The demo's SplitBatchNorm (shuffle-BN emulated on one GPU) is not reproduced: the key
encoder's BatchNorm sees the whole batch. The queue starts as random unit vectors (as the official code)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.interfaces import Constraint, check_settings, setting
from registry.backbones import Backbone
from registry.pretexts import PRETEXTS
from registry.pretexts._joint import OPTIMIZER, JointEmbedding, JointOptions, ema_, momentum_copy
from registry.pretexts._losses import info_nce
from registry.pretexts._views import MOCOV2


@dataclass(frozen=True)
class MoCoOptions(JointOptions):
    flag_prefix = "moco"
    dim: int = setting(128, Constraint("int", 1, cap=1 << 16), help="embedding dimension")
    queue: int = setting(4096, Constraint("int", 1, cap=1 << 24), help="queue length K (negatives)")
    momentum: float = setting(0.99, Constraint("real", 0, 1), help="key encoder EMA momentum m")
    temperature: float = setting(0.1, Constraint("real", 0, cap=100, lo_open=True), help="InfoNCE temperature")
    symmetric: bool = setting(True, Constraint("bool"), help="symmetric loss (the CIFAR-10 demo's)")
    optimizer: str = setting("sgd", OPTIMIZER, help="optimizer of the reference config")
    lr: float = setting(0.06, Constraint("real", 0, cap=1e6, lo_open=True), help="learning rate at base-batch images")
    weight_decay: float = setting(5e-4, Constraint("real", 0, cap=1), help="weight decay")
    warmup: float = setting(0.0, Constraint("real", 0, 1, hi_open=True), help="warmup, fraction of all steps")
    base_batch: int = setting(512, Constraint("int", 1, cap=1 << 20), help="the batch size lr is given for")

    def __post_init__(self) -> None:
        check_settings(self)


class MoCoHead(nn.Module):
    """The query MLP, the key encoder (a momentum copy of backbone + MLP) and the queue with its pointer."""

    queue: torch.Tensor
    ptr: torch.Tensor

    def __init__(self, backbone: Backbone, dim: int, size: int) -> None:
        super().__init__()
        d = backbone.dim
        self.mlp = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, dim))
        self.key_backbone = momentum_copy(backbone)
        self.key_mlp = momentum_copy(self.mlp)
        self.register_buffer("queue", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest len(keys) entries (a ring: the pointer wraps around K)."""
        k = self.queue.shape[0]
        keys = keys[-k:]
        idx = (self.ptr + torch.arange(keys.shape[0], device=keys.device)) % k
        self.queue[idx] = keys.to(self.queue.dtype)
        self.ptr.copy_((self.ptr + keys.shape[0]) % k)


@PRETEXTS.register("moco")
class MoCo(JointEmbedding):
    """MoCo v2 with the symmetric loss of the CIFAR-10 demo."""

    name = "moco"
    Options = MoCoOptions
    opts: MoCoOptions
    view_recipes = (MOCOV2, MOCOV2)

    def build_head(self, backbone: Backbone, image_size: int) -> nn.Module:
        return MoCoHead(backbone, self.opts.dim, self.opts.queue)

    def predict(self, backbone: Backbone, head: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
        """Views -> {"q": queries (V,B,dim), "k": keys (V,B,dim), no gradient, "queue": (K,dim)}, normalised."""
        h = cast(MoCoHead, head)
        q = torch.stack([F.normalize(h.mlp(backbone.features(v)), dim=1) for v in inputs])
        with torch.no_grad():
            k = torch.stack([F.normalize(h.key_mlp(h.key_backbone.features(v)), dim=1) for v in inputs])
        return {"q": q, "k": k, "queue": h.queue}  # enqueued only after the step

    def loss(self, outputs: dict[str, Any], targets: None) -> torch.Tensor:
        q, k, queue, t = outputs["q"], outputs["k"], outputs["queue"], self.opts.temperature
        if self.opts.symmetric:
            return info_nce(q[0], k[1], queue, t) + info_nce(q[1], k[0], queue, t)
        return info_nce(q[0], k[1], queue, t)

    def update(self, backbone: Backbone, head: nn.Module, outputs: Any, step: int, total: int) -> None:
        """The key encoder's EMA (momentum m), then the step's keys into the queue (both views' when
        symmetric: [k1, k2] as the demo's ``torch.cat([k1, k2])``)."""
        h = cast(MoCoHead, head)
        ema_(h.key_backbone, backbone, self.opts.momentum)
        ema_(h.key_mlp, h.mlp, self.opts.momentum)
        k = outputs["k"]
        h.enqueue(torch.cat([k[0], k[1]]) if self.opts.symmetric else k[1])
