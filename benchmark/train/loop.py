"""The one pretext training loop shared by every pretext task, and pooled feature extraction."""
from __future__ import annotations

import math
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterator

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from benchmark.config.specs import TrainSpec
from benchmark.data.loader import batches
from benchmark.runtime.device import Runtime
from benchmark.train.checkpoint import Checkpoint, ResumedFromCheckpoint
from benchmark.train.optim import lr_factor, make_optimizer, recipe_spec
from registry.backbones import Backbone
from registry.pretexts import Pretext

SYNC_EVERY = 16  # steps between host reads of the loss (progress bar, divergence check): no per-step sync


@dataclass
class TrainResult:
    """What training left behind: the last epoch's mean loss / accuracy and the loss curve."""

    final_loss: float | None = None
    final_acc: float | None = None
    seconds: float = 0.0
    steps: int = 0
    step_losses: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    compile_s: float = 0.0  # with --compile: the first step's wall time (compilation + one step), not in seconds
    stopped_at_epoch: int | None = None  # the plateau rule stopped training after this epoch
    resumed_at_step: int | None = None  # training went on from a checkpoint saved after this many steps
    checkpoints: int = 0  # checkpoints this process wrote


def compile_backend() -> str:
    """torch.compile's backend: inductor, or SSLBENCH_COMPILE_BACKEND (the tests use aot_eager: inductor
    compiles for ~40 s per model on the 2-core VM)."""
    return os.environ.get("SSLBENCH_COMPILE_BACKEND", "inductor")


@contextmanager
def compiled_forward(backbone: Backbone, rt: Runtime) -> Iterator[None]:
    """With ``rt.compile``: the backbone's forward (``features``) compiled for the duration of the block."""
    if not rt.compile:
        yield
        return
    # an instance attribute shadows the method (nn.Module keeps a plain function in the instance's __dict__)
    vars(backbone)["features"] = torch.compile(type(backbone).features.__get__(backbone), backend=compile_backend())
    try:
        yield
    finally:
        del backbone.features  # the class's method again


def train_step(backbone: Backbone, head: nn.Module, pretext: Pretext, opt: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, x: torch.Tensor, gen: torch.Generator,
               autocast: Callable[[], ContextManager[object]], step: int = 0, total: int = 1
               ) -> tuple[torch.Tensor, Any, Any]:
    """Optimizer step ``step`` (0-based) of ``total`` of ``pretext`` on images x (B,3,S,S) in [0,1] on the
    device, then the method's per-step update (EMA, queue, center); the step that training runs and ``bench``
    times. Returns (loss detached, outputs, targets)."""
    inputs, targets = pretext.make_batch(x, gen)
    with autocast():
        out = pretext.predict(backbone, head, inputs)
        loss = pretext.loss(out, targets)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    pretext.after_backward(head, step, total)
    scaler.step(opt)
    scaler.update()
    with torch.no_grad():
        pretext.update(backbone, head, out, step, total)
    return loss.detach(), _detached(out), targets


def _detached(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.detach()
    if isinstance(out, (tuple, list)):
        return type(out)(_detached(o) for o in out)
    return out


def train_pretext(backbone: Backbone, pretext: Pretext, images: np.ndarray, spec: TrainSpec, rt: Runtime,
                  seed: int, progress: bool = True, checkpoint: Checkpoint | None = None
                  ) -> tuple[TrainResult, nn.Module]:
    """Train ``backbone`` (in place) with ``pretext`` on uint8 images (N,3,S,S). Returns (result, head).

    Seeded shuffling; cosine learning-rate decay over all steps; AMP and channels_last per ``rt``. With
    ``checkpoint``: goes on from the checkpoint's step when one is saved, and saves one when it is due
    (a resumed training ends with the same weights and losses as one that never stopped)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    spec = recipe_spec(spec, pretext)
    n, size = images.shape[0], images.shape[-1]
    pretext.use_backbone(backbone).prepare(images)  # the backbone's normalisation, then data statistics
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
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(spec, total))
    scaler = torch.amp.GradScaler(rt.device, enabled=rt.amp_dtype == torch.float16)
    result = TrainResult()
    backbone.train()
    head.train()
    plan = _step_plan(n, spec.batch_size, spec.epochs, steps_per_epoch, total, gen)
    tally = _Tally()
    plateau = _Plateau(spec.plateau_patience, spec.plateau_delta) if spec.plateau_patience else None
    parts = _Parts(backbone, head, opt, sched, scaler, gen, tally, plateau, rt)
    start, before_s, resumed = _resume(checkpoint, parts, len(plan))
    result.resumed_at_step = start if resumed else None
    t0 = time.perf_counter()
    bar = tqdm(total=len(plan), initial=start, desc=f"train {backbone.name}/{pretext.name}", unit="step",
               disable=not progress, leave=False)
    stream = batches(images, (idx for _epoch, idx in plan[start:]), rt, rt.channels_last)

    def step_fn(x: torch.Tensor, step: int) -> tuple[torch.Tensor, Any, Any]:
        out = train_step(backbone, head, pretext, opt, scaler, x, gen, rt.autocast, step, len(plan))
        sched.step()
        return out

    def save(done: int) -> None:  # at a sync window, when a checkpoint is due
        if checkpoint is not None and checkpoint.due():
            checkpoint.save(_snapshot(parts, done, len(plan), before_s + time.perf_counter() - t0 - result.compile_s))

    with compiled_forward(backbone, rt):
        done = _run_steps(plan, stream, step_fn, pretext, rt, spec, bar, result, tally, plateau, start, save)
    _summarize(result, [e for e, _ in plan[:done]], tally)
    bar.close()
    if rt.device == "cuda":
        torch.cuda.synchronize()
    result.seconds = before_s + time.perf_counter() - t0 - result.compile_s
    result.steps = done
    result.checkpoints = checkpoint.saved if checkpoint is not None else 0
    return result, head


@dataclass
class _Parts:
    """Everything a training's next step depends on: what a checkpoint saves and restores."""

    backbone: nn.Module
    head: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    gen: torch.Generator
    tally: "_Tally"
    plateau: "_Plateau | None"
    rt: Runtime


def _snapshot(p: _Parts, step: int, planned: int, seconds: float) -> dict[str, object]:
    """The state after ``step`` of ``planned`` steps (taken at a sync window: the tallies are already read)."""
    t = p.tally
    return {"step": step, "planned": planned, "seconds": seconds,
            "backbone": p.backbone.state_dict(), "head": p.head.state_dict(), "opt": p.opt.state_dict(),
            "sched": p.sched.state_dict(), "scaler": p.scaler.state_dict(),
            "gen": p.gen.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if p.rt.device == "cuda" else [],
            "losses": torch.stack(t.losses) if t.losses else torch.empty(0),
            "corrects": torch.stack(t.corrects) if t.corrects else torch.empty(0),
            "seen": list(t.seen),
            "plateau": [p.plateau.best, p.plateau.waited] if p.plateau is not None else None}


def _resume(checkpoint: Checkpoint | None, p: _Parts, planned: int) -> tuple[int, float, bool]:
    """(steps done, seconds trained before, whether resumed) after loading the checkpoint into ``p``; a
    checkpoint of another plan (another number of steps) is not used: training starts over."""
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is None or saved.get("planned") != planned:
        return 0, 0.0, False
    step, seconds = _restore(saved, p)
    name = checkpoint.path.name if checkpoint is not None else ""
    warnings.warn(ResumedFromCheckpoint(f"training goes on from its checkpoint {name} after step {step} of "
                                        f"{planned}"), stacklevel=2)
    return step, seconds, True


def _restore(state: dict[str, Any], p: _Parts) -> tuple[int, float]:
    """Load a checkpoint into the training's parts; returns (steps done, seconds trained before)."""
    p.backbone.load_state_dict(state["backbone"])
    p.head.load_state_dict(state["head"])
    p.opt.load_state_dict(state["opt"])
    p.sched.load_state_dict(state["sched"])
    p.scaler.load_state_dict(state["scaler"])
    p.gen.set_state(state["gen"])
    torch.set_rng_state(state["torch_rng"])
    if p.rt.device == "cuda" and state["cuda_rng"]:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    dev = p.rt.torch_device
    p.tally.losses[:] = list(state["losses"].to(dev))
    p.tally.corrects[:] = list(state["corrects"].to(dev))
    p.tally.seen[:] = list(state["seen"])
    if p.plateau is not None and state["plateau"] is not None:
        p.plateau.best, p.plateau.waited = state["plateau"]
    return int(state["step"]), float(state["seconds"])


@dataclass
class _Tally:
    """Per-step device scalars, read by the host once per sync window."""

    losses: list[torch.Tensor] = field(default_factory=list)
    corrects: list[torch.Tensor] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)


def _run_steps(plan: list[tuple[int, np.ndarray]], stream: Iterator[torch.Tensor], step_fn, pretext: Pretext,
               rt: Runtime, spec: TrainSpec, bar: tqdm, result: TrainResult, tally: _Tally,
               plateau: _Plateau | None, start: int, save: Callable[[int], None]) -> int:
    """Run the planned steps from ``start``; returns how many steps are done in all (fewer than planned when
    the plateau rule stopped training). ``save(steps done)`` runs at each sync window before the last."""
    losses, corrects, seen = tally.losses, tally.corrects, tally.seen
    checked = start
    for step, ((epoch, _idx), x) in enumerate(zip(plan[start:], stream, strict=False), start):
        t_first = time.perf_counter()
        loss, out, targets = step_fn(x, step)
        if step == start and rt.compile:
            loss.item()  # synchronize: the first step holds the compilation
            result.compile_s = time.perf_counter() - t_first
        losses.append(loss.float())
        if pretext.reports_accuracy:
            corrects.append(pretext.correct_count(out, targets))
            seen.append(int(targets.shape[0]))
        if (step + 1) % SYNC_EVERY == 0 or step + 1 == len(plan):
            _check_finite(losses, checked, pretext, spec)
            bar.update(step + 1 - checked)
            checked = step + 1
            bar.set_postfix(loss=f"{float(losses[-1]):.3f}")
        last_of_epoch = step + 1 == len(plan) or plan[step + 1][0] != epoch
        if plateau is not None and last_of_epoch and plateau.stop(_epoch_score(plan, step, epoch, tally)):
            result.stopped_at_epoch = epoch + 1
            return step + 1
        if checked == step + 1 < len(plan):
            save(step + 1)
    return len(plan)


@dataclass
class _Plateau:
    """Stop when the score has not improved by more than ``delta`` for ``patience`` epochs."""

    patience: int
    delta: float
    best: float = -math.inf
    waited: int = 0

    def stop(self, score: float) -> bool:
        if score > self.best + self.delta:
            self.best, self.waited = score, 0
            return False
        self.waited += 1
        return self.waited >= self.patience


def _epoch_score(plan: list[tuple[int, np.ndarray]], step: int, epoch: int, tally: _Tally) -> float:
    """The finished epoch's pretext accuracy (minus its mean loss where the pretext has no accuracy)."""
    first = next(i for i in range(step + 1) if plan[i][0] == epoch)
    if tally.corrects:
        hits = float(torch.stack(tally.corrects[first:step + 1]).sum())
        return hits / max(1, sum(tally.seen[first:step + 1]))
    return -float(torch.stack(tally.losses[first:step + 1]).mean())


def _step_plan(n: int, batch: int, epochs: int, steps_per_epoch: int, total: int, gen: torch.Generator
               ) -> list[tuple[int, np.ndarray]]:
    """(epoch, sorted row indices) of every step: seeded shuffling per epoch, ``total`` steps in all."""
    plan: list[tuple[int, np.ndarray]] = []
    for epoch in range(epochs):
        if len(plan) >= total:
            break
        order = torch.randperm(n, generator=gen).numpy()
        for b in range(min(steps_per_epoch, total - len(plan))):
            plan.append((epoch, np.sort(order[b * batch:(b + 1) * batch])))
    return plan


def _check_finite(losses: list[torch.Tensor], first: int, pretext: Pretext, spec: TrainSpec) -> None:
    """Raise at the first non-finite loss among the steps not checked yet (one host read per call)."""
    recent = torch.stack(losses[first:]).cpu().numpy() if first < len(losses) else np.empty(0)
    bad = np.flatnonzero(~np.isfinite(recent))
    if bad.size:
        step = first + int(bad[0])
        raise RuntimeError(f"pretext {pretext.name} loss diverged ({recent[bad[0]]}) at step {step}; "
                           f"try a lower --lr than {spec.lr}")


def _summarize(result: TrainResult, epochs: list[int], tally: _Tally) -> None:
    """Per-step losses, per-epoch means and the last epoch's accuracy, read from the device once."""
    losses, corrects, seen = tally.losses, tally.corrects, tally.seen
    if not losses:
        return
    values = torch.stack(losses).cpu().numpy().astype(float)
    result.step_losses = values.tolist()
    ep = np.asarray(epochs)
    result.epoch_losses = [float(values[ep == e].mean()) for e in np.unique(ep)]
    result.final_loss = result.epoch_losses[-1]
    if corrects:
        hits = torch.stack(corrects).cpu().numpy()
        last = ep == ep[-1]
        result.final_acc = float(hits[last].sum() / np.asarray(seen)[last].sum())


STAGE_BATCHES = 16  # batches of features held on the host before they are written to ``out``


@torch.inference_mode()
def extract_features(backbone: Backbone, images: np.ndarray, rt: Runtime, batch_size: int = 128,
                     progress: bool = True, pretext: Pretext | None = None,
                     timing: dict[str, float] | None = None, out: np.ndarray | None = None
                     ) -> tuple[np.ndarray, float]:
    """Pooled features (N, D) float32 of uint8 images (N,3,S,S), and the seconds it took without the
    compilation (with ``rt.compile``: the first batch's time, stored in ``timing["compile_s"]``). The
    input is what ``pretext`` showed the backbone (``feature_input``; default RGB normalised with the backbone's
    weight source's statistics).
    ``out``: a writable (N, D) float32 array (a memory map: the features are never held whole) that
    receives them every STAGE_BATCHES batches and is returned."""
    prepare = pretext.use_backbone(backbone).feature_input if pretext is not None else backbone.normalize
    backbone.to(rt.torch_device).eval()
    backbone.to(memory_format=torch.channels_last if rt.channels_last_infer else torch.contiguous_format)
    n = images.shape[0]
    # features land in a pinned host buffer by non-blocking copies: no sync per batch on CUDA
    span = n if out is None else min(n, STAGE_BATCHES * batch_size)
    buf = torch.empty((span, backbone.dim), dtype=torch.float32, pin_memory=rt.pin_memory)
    t0 = time.perf_counter()
    starts = range(0, n, batch_size)
    bar = tqdm(total=len(starts), desc=f"extract {backbone.name}", unit="batch", disable=not progress, leave=False)
    stream = batches(images, (slice(i, i + batch_size) for i in starts), rt, rt.channels_last_infer)
    compile_s = 0.0
    base = 0  # the row of ``out`` that buf[0] is

    def flush(upto: int) -> None:
        if out is not None and upto > base:
            sync(rt)
            out[base:upto] = buf[:upto - base].numpy()

    with compiled_forward(backbone, rt):
        for i, x in zip(starts, stream, strict=False):
            t_first = time.perf_counter()
            with rt.autocast():
                f = backbone.features(prepare(x))
            if i - base + f.shape[0] > span:
                flush(i)
                base = i
            buf[i - base:i - base + f.shape[0]].copy_(f.float(), non_blocking=rt.pin_memory)
            if i == 0 and rt.compile:
                sync(rt)  # the first batch holds the compilation
                compile_s = time.perf_counter() - t_first
            bar.update(1)
    bar.close()
    sync(rt)
    flush(n)
    if timing is not None:
        timing["compile_s"] = compile_s
    return (buf.numpy() if out is None else out), time.perf_counter() - t0 - compile_s


def sync(rt: Runtime) -> None:
    if rt.device == "cuda":
        torch.cuda.synchronize()
