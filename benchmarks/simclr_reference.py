"""The harness's SimCLR training vs a plain PyTorch loop of the same model, views, loss and optimizer.

The plain loop is what one would write by hand: uint8 batches to float, two views (the same batched view ops),
backbone + projector, NT-Xent written out here, backward, LARS step, learning-rate schedule. The harness runs
``benchmark.train.loop.train_pretext`` (its loader, the method contract, the per-step update hook, the loss
tally and sync windows). Both train the same number of steps on the same images; the ratio is harness /
plain seconds per step, the median of interleaved pairs (A then B, B then A, ...) in one process on one thread.

    .venv/bin/python benchmarks/simclr_reference.py --pairs 5 --json benchmarks/simclr-reference.json
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.config.specs import TrainSpec
from benchmark.runtime.device import select_runtime
from benchmark.train.loop import train_pretext
from benchmark.train.optim import LARS
from registry.backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone
from registry.pretexts import build_pretext
from registry.pretexts._joint import mlp
from registry.pretexts._views import SIMCLR, make_view


def plain_loop(images: np.ndarray, backbone: str, size: int, batch: int, steps: int) -> float:
    """Seconds per step of a hand-written SimCLR loop (the harness's defaults: LARS 0.4 x batch / 256, weight
    decay 1e-4, warmup 0.01, cosine; projector 2048 -> 256; temperature 0.2)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    bb = build_backbone(backbone, size)
    proj = mlp([bb.dim, 2048, 256])
    params = list(bb.parameters()) + list(proj.parameters())
    lr = 0.4 * batch / 256
    opt = LARS(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    warm = int(round(0.01 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (
        1 + math.cos(math.pi * (s - warm) / max(steps - warm, 1))))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    bb.train()
    proj.train()
    t0 = time.perf_counter()
    for s in range(steps):
        idx = np.sort(np.random.default_rng(s).permutation(len(images))[:batch])
        x = torch.from_numpy(images[idx]).float().div_(255)
        v1, v2 = ((make_view(x, SIMCLR, gen) - mean) / std, (make_view(x, SIMCLR, gen) - mean) / std)
        z = F.normalize(torch.cat([proj(bb.features(v1)), proj(bb.features(v2))]), dim=1)
        sim = (z @ z.T / 0.2).fill_diagonal_(float("-inf"))
        loss = F.cross_entropy(sim, torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    float(loss)
    return (time.perf_counter() - t0) / steps


def harness(images: np.ndarray, backbone: str, size: int, batch: int, steps: int) -> float:
    """Seconds per step of the harness's SimCLR training (``train_pretext``, the same defaults)."""
    torch.manual_seed(0)
    bb = build_backbone(backbone, size)
    rt = select_runtime("cpu", cuda_available=False, bf16_supported=False)
    res, _head = train_pretext(bb, build_pretext("simclr"), images, TrainSpec(batch_size=batch, max_steps=steps,
                                                                             epochs=1), rt, 0, progress=False)
    return res.seconds / res.steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    n = a.batch_size * a.steps
    images = np.random.default_rng(0).integers(0, 256, (n, 3, a.image_size, a.image_size), dtype=np.uint8)
    args = (images, a.backbone, a.image_size, a.batch_size, a.steps)
    harness(*args)  # warm-up: allocator, first-call paths
    plain_loop(*args)
    ratios, hs, ps = [], [], []
    for i in range(a.pairs):
        order = (harness, plain_loop) if i % 2 == 0 else (plain_loop, harness)
        got = {f.__name__: f(*args) for f in order}
        hs.append(got["harness"])
        ps.append(got["plain_loop"])
        ratios.append(got["harness"] / got["plain_loop"])
        print(f"pair {i}: harness {got['harness'] * 1e3:.1f} ms/step, plain {got['plain_loop'] * 1e3:.1f} ms/step, "
              f"ratio {ratios[-1]:.3f}", flush=True)
    out = {"backbone": a.backbone, "image_size": a.image_size, "batch_size": a.batch_size, "views": 2,
           "steps_per_run": a.steps, "pairs": a.pairs, "threads": a.threads,
           "harness_ms_per_step": [round(x * 1e3, 2) for x in hs], "plain_ms_per_step": [round(x * 1e3, 2) for x in ps],
           "ratios": [round(r, 4) for r in ratios], "median_ratio": round(statistics.median(ratios), 4),
           "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
