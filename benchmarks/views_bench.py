"""Images per second of making one augmented view of a batch (256 images, 3 channels, 32 and 64 px) three
ways: ``registry.pretexts._views.make_view`` (batched, per-sample parameters), kornia.augmentation's
equivalent pipeline (when kornia is importable), and torchvision's v2 ``Compose`` on each image in a Python
loop (what solo-learn runs per image, here on float tensors rather than PIL images).
``python benchmarks/views_bench.py --json benchmarks/views-bench.json``.

The pipeline (every op on, so each implementation does all of its work): RandomResizedCrop (0.08-1, 3/4-4/3,
bilinear) -> flip 0.5 -> ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8 -> grayscale 0.2 -> Gaussian blur (kernel ~10%
of the side, sigma 0.1-2) p 0.5 -> solarize (0.5) p 0.2. Each repeat times every implementation once, in
turn (interleaved); the median of the repeats is reported, after one warm-up call each. Also recorded: the
largest difference of each implementation's crop from torchvision's ``F.resized_crop(..., antialias=True)``
for the same boxes, the correctness side of the choice."""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from registry.pretexts._views import ViewRecipe

ROOT = Path(__file__).resolve().parents[1]
BATCH = 256


def views() -> ModuleType:
    """``registry.pretexts._views`` of this checkout (imported after putting the checkout first on the path)."""
    sys.path.insert(0, str(ROOT))
    from registry.pretexts import _views

    return _views


def recipe(side: int) -> ViewRecipe:
    V = views()
    return V.ViewRecipe(out_size=side, interpolation="bilinear", blur_p=0.5, solarize_p=0.2)


def ours(side: int) -> Callable[[torch.Tensor], torch.Tensor]:
    V, gen, r = views(), torch.Generator().manual_seed(0), recipe(side)
    return lambda x: V.make_view(x, r, gen)


def kornia_pipeline(side: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    try:
        import kornia.augmentation as K
    except ImportError:
        return None
    k = views().blur_kernel_size(side)
    aug = torch.nn.Sequential(
        K.RandomResizedCrop((side, side), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
        K.RandomHorizontalFlip(p=0.5), K.ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8), K.RandomGrayscale(p=0.2),
        K.RandomGaussianBlur((k, k), (0.1, 2.0), p=0.5), K.RandomSolarize(thresholds=0.0, additions=0.0, p=0.2))
    return aug


def torchvision_loop(side: int) -> Callable[[torch.Tensor], torch.Tensor]:
    import torchvision.transforms.v2 as T

    k = views().blur_kernel_size(side)
    compose = T.Compose([
        T.RandomResizedCrop(side, scale=(0.08, 1.0), antialias=True), T.RandomHorizontalFlip(0.5),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), T.RandomGrayscale(0.2),
        T.RandomApply([T.GaussianBlur(k, (0.1, 2.0))], p=0.5), T.RandomSolarize(0.5, p=0.2)])
    return lambda x: torch.stack([compose(img) for img in x])


def crop_errors(side: int) -> dict[str, float]:
    """Max |crop - torchvision F.resized_crop(antialias=True)| over a batch's boxes, output = side // 2."""
    import torchvision.transforms.v2.functional as TF

    V = views()
    x = torch.rand(32, 3, side, side, generator=torch.Generator().manual_seed(1))
    boxes = V.draw_crop_boxes(torch.Generator().manual_seed(2), len(x), side)
    out = side // 2
    ref = torch.stack([TF.resized_crop(x[i], *boxes[i].tolist(), [out, out], antialias=True) for i in range(len(x))])
    errs = {"ours": (V.resized_crop(x, boxes, out) - ref).abs().max().item(),
            "ours_without_antialias": (V.resized_crop(x, boxes, out, antialias=False) - ref).abs().max().item()}
    try:
        from kornia.geometry.transform import crop_and_resize
    except ImportError:
        return errs
    t, left, h, w = boxes.float().unbind(1)
    r, b = left + w - 1, t + h - 1
    corners = torch.stack([torch.stack(p, 1) for p in ((left, t), (r, t), (r, b), (left, b))], 1)
    errs["kornia_crop_and_resize"] = (crop_and_resize(x, corners, (out, out)) - ref).abs().max().item()
    return errs


def timed(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(side: int, repeats: int, device: torch.device) -> list[dict[str, object]]:
    x = torch.rand(BATCH, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
    impls = {"ours": ours(side), "kornia": kornia_pipeline(side), "torchvision_v2_loop": torchvision_loop(side)}
    runs = {name: fn for name, fn in impls.items() if fn is not None}
    for fn in runs.values():
        timed(fn, x, device)  # warm-up
    secs: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            secs[name].append(timed(fn, x, device))
    rows: list[dict[str, object]] = []
    for name in impls:
        if name not in runs:
            rows.append({"side": side, "impl": name, "skipped": "not importable"})
            continue
        med = statistics.median(secs[name])
        rows.append({"side": side, "impl": name, "median_s": med, "img_per_s": BATCH / med,
                     "seconds": secs[name]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    load_before = os.getloadavg()
    rows = [row for side in (32, 64) for row in measure(side, a.repeats, device)]
    by = {(r["side"], r["impl"]): r for r in rows}
    ratios = {f"ours_over_{impl}_{side}px": float(by[(side, "ours")]["img_per_s"]) / float(r["img_per_s"])
              for (side, impl), r in by.items() if impl != "ours" and "img_per_s" in r}
    try:
        import kornia
        kornia_version: str | None = kornia.__version__
    except ImportError:
        kornia_version = None
    import torchvision

    report = {"batch": BATCH, "channels": 3, "threads": a.threads, "repeats": a.repeats, "device": str(device),
              "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "torchvision": torchvision.__version__, "kornia": kornia_version,
              "cpus": os.cpu_count(), "loadavg_1_5_15_before_after": [load_before, os.getloadavg()],
              "rows": rows, "ratios": ratios,
              "crop_max_abs_diff_vs_torchvision_antialias": {f"{s}px": crop_errors(s) for s in (32, 64)}}
    print(f"{'side':>5} {'impl':<22} {'img/s':>12}")
    for r in rows:
        print(f"{r['side']:>5} {r['impl']:<22} {r.get('img_per_s', float('nan')):>12,.0f}")
    print(json.dumps(ratios, indent=1), json.dumps(report["crop_max_abs_diff_vs_torchvision_antialias"], indent=1))
    if a.json:
        a.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
