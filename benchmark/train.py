"""The one pretext training loop shared by every pretext task, and pooled feature extraction."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from benchmark.runtime import Runtime
from benchmark.specs import TrainSpec
from registry.backbones import Backbone
from registry.pretexts import Pretext, normalize


@dataclass
class TrainResult:
    """What training left behind: the last epoch's mean loss / accuracy and the loss curve."""

    final_loss: float | None = None
    final_acc: float | None = None
    seconds: float = 0.0
    steps: int = 0
    step_losses: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)


def to_device(batch: np.ndarray, rt: Runtime, channels_last: bool = False) -> torch.Tensor:
    """uint8 (B,3,S,S) numpy -> float (B,3,S,S) in [0,1] on the device (pinned, non-blocking on CUDA)."""
    if not batch.flags.writeable:  # a slice of the memory-mapped store: torch wants writable memory
        batch = batch.copy()
    t = torch.from_numpy(batch)
    if channels_last:  # re-layout the uint8 bytes, 4x less traffic than the float copy; float() keeps it
        t = t.contiguous(memory_format=torch.channels_last)
    if rt.pin_memory:
        t = t.pin_memory()
    return t.to(rt.torch_device, non_blocking=rt.pin_memory).float().mul_(1.0 / 255.0)


def make_optimizer(params: list[nn.Parameter], spec: TrainSpec) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)


def train_step(backbone: Backbone, head: nn.Module, pretext: Pretext, opt: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, x: torch.Tensor, gen: torch.Generator,
               autocast: Callable[[], ContextManager[object]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step of ``pretext`` on images x (B,3,S,S) in [0,1] on the device; the step that
    training runs and ``bench`` times. Returns (loss, outputs, targets), detached."""
    inputs, targets = pretext.make_batch(x, gen)
    with autocast():
        out = pretext.predict(backbone, head, inputs)
        loss = pretext.loss(out, targets)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss.detach(), out.detach(), targets


def train_pretext(backbone: Backbone, pretext: Pretext, images: np.ndarray, spec: TrainSpec, rt: Runtime,
                  seed: int, progress: bool = True) -> tuple[TrainResult, nn.Module]:
    """Train ``backbone`` (in place) with ``pretext`` on uint8 images (N,3,S,S). Returns (result, head).

    Seeded shuffling; cosine learning-rate decay over all steps; AMP and channels_last per ``rt``."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n, size = images.shape[0], images.shape[-1]
    pretext.prepare(images)
    head = pretext.build_head(backbone, size)
    backbone.to(rt.torch_device)
    head.to(rt.torch_device)
    if rt.channels_last:
        backbone.to(memory_format=torch.channels_last)
    params = [p for p in list(backbone.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = make_optimizer(params, spec)
    steps_per_epoch = max(1, n // spec.batch_size) if n >= 2 else 0
    total = spec.epochs * steps_per_epoch
    if spec.max_steps is not None:
        total = min(total, spec.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / max(total, 1))))
    scaler = torch.amp.GradScaler(rt.device, enabled=rt.amp_dtype == torch.float16)
    result = TrainResult()
    backbone.train()
    head.train()
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc=f"train {backbone.name}/{pretext.name}", unit="step", disable=not progress,
               leave=False)
    step = 0
    for _epoch in range(spec.epochs):
        if step >= total:
            break
        order = torch.randperm(n, generator=gen).numpy()
        loss_sum, correct, seen, batches = 0.0, 0, 0, 0
        for b in range(steps_per_epoch):
            if step >= total:
                break
            idx = np.sort(order[b * spec.batch_size:(b + 1) * spec.batch_size])
            x = to_device(images[idx], rt, rt.channels_last)
            loss, out, targets = train_step(backbone, head, pretext, opt, scaler, x, gen, rt.autocast)
            value = float(loss)
            if not math.isfinite(value):
                raise RuntimeError(f"pretext {pretext.name} loss diverged ({value}) at step {step}; "
                                   f"try a lower --lr than {spec.lr}")
            sched.step()
            result.step_losses.append(value)
            loss_sum += value
            batches += 1
            if pretext.reports_accuracy:
                correct += pretext.n_correct(out, targets)
                seen += int(targets.shape[0])
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}")
        if batches:
            result.epoch_losses.append(loss_sum / batches)
            result.final_loss = loss_sum / batches
            result.final_acc = correct / seen if seen else None
    bar.close()
    if rt.device == "cuda":
        torch.cuda.synchronize()
    result.seconds = time.perf_counter() - t0
    result.steps = step
    return result, head


@torch.inference_mode()
def extract_features(backbone: Backbone, images: np.ndarray, rt: Runtime, batch_size: int = 128,
                     progress: bool = True, pretext: Pretext | None = None) -> tuple[np.ndarray, float]:
    """Pooled features (N, D) float32 of uint8 images (N,3,S,S), and the seconds it took. The input is
    what ``pretext`` showed the backbone (``feature_input``; default ImageNet-normalized RGB)."""
    prepare = pretext.feature_input if pretext is not None else normalize
    backbone.to(rt.torch_device).eval()
    backbone.to(memory_format=torch.channels_last if rt.channels_last_infer else torch.contiguous_format)
    out = np.empty((images.shape[0], backbone.dim), np.float32)
    t0 = time.perf_counter()
    bar = tqdm(range(0, images.shape[0], batch_size), desc=f"extract {backbone.name}", unit="batch",
               disable=not progress, leave=False)
    for i in bar:
        x = prepare(to_device(images[i:i + batch_size], rt, rt.channels_last_infer))
        with rt.autocast():
            f = backbone.features(x)
        out[i:i + f.shape[0]] = f.float().cpu().numpy()
    if rt.device == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0
