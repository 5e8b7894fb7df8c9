"""Batched augmented views on the device for the joint-embedding methods (SimCLR, MoCo v2, BYOL, DINO).

Every op is a pure function of a batch (B,C,S,S) in [0,1] (C = 3, or 1) and per-sample parameter tensors; its
``draw_*`` function draws those parameters on the CPU from a seeded ``torch.Generator`` (so a seed gives the same
views on any device), and ``make_view`` moves them to the images' device in one copy. Each op reproduces the
torchvision ``transforms.v2.functional`` kernel it names, given the same parameters, and each draw follows the
torchvision transform's own rule, per sample instead of once per call (the same distributions; not torchvision's
random stream, which draws image by image):

- ``resized_crop``: ``RandomResizedCrop.get_params`` (10 candidates per sample, first valid one, else the
  centre crop), then ``F.resized_crop(..., antialias=True)``. The resampling is separable: one (out,S) weight
  matrix per sample and axis, built with torch's antialiased (PIL-style) filter, so a crop is two batched
  matmuls and equals torchvision's bilinear or bicubic, downscaling included (``grid_sample`` or ``roi_align``
  would sample the crop without torchvision's antialias filter when it shrinks it).
- ``color_jitter``: ``ColorJitter.get_params`` (a permutation of the four ops and their factors per sample),
  applied in four rounds; in each round a sample gets the op its permutation puts there, each op computed only
  on the samples that take it (the order is read on the CPU, so no device sync). Blur, likewise, runs only on
  the samples it is drawn for; the flip is folded into the crop's column weights.
- ``grayscale`` (ITU-R 601-2 luma), ``gaussian_blur`` (reflect padding, per-sample sigma), ``solarize``
  (>= threshold inverted), ``hflip``, ``rotate`` (bilinear, zero fill: ``F.rotate(..., fill=None)``).

Recipes: solo-learn's CIFAR augmentation files (github.com/vturrisi/solo-learn, ``scripts/pretrain/cifar/
augmentations/``; ``solo/data/pretrain_dataloader.py`` builds them): ``SIMCLR`` = ``symmetric.yaml`` (used by
``simclr.yaml``), ``MOCOV2`` = ``symmetric_weak.yaml`` (``mocov2plus.yaml``), ``BYOL`` = ``DINO`` = the two views
of ``asymmetric.yaml`` (``byol.yaml``, ``dino.yaml``). solo-learn resizes crops with PIL bicubic, which the
recipes keep. Its Gaussian blur is PIL's (radius = sigma, no kernel limit); here it is torchvision's kernel of
~10% of the side (SimCLR's and BYOL's convention), 3 taps at 32 px. Its solarize threshold is 128/255 on uint8.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

LUMA = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")  # op k of a jitter order


def draw_crop_boxes(gen: torch.Generator, n: int, side: int, scale: tuple[float, float] = (0.08, 1.0),
                    ratio: tuple[float, float] = (3 / 4, 4 / 3), attempts: int = 10) -> torch.Tensor:
    """(n,4) int64 boxes (top, left, height, width) inside a side x side image, by torchvision's
    ``RandomResizedCrop.get_params``: area fraction ~ U(scale), log aspect ~ U(log ratio), the first of
    ``attempts`` candidates that fits, else the centre crop clipped to ``ratio``."""
    area = float(side * side)
    target = area * torch.empty(n, attempts).uniform_(scale[0], scale[1], generator=gen).double()
    aspect = torch.exp(torch.empty(n, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                                         generator=gen)).double()
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    ok = (w > 0) & (w <= side) & (h > 0) & (h <= side)
    first = ok.long().argmax(1, keepdim=True)
    h, w, found = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0], ok.any(1)
    pos = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    fh, fw = side, side  # the fallback: a square image's ratio 1, clipped to the ratio range
    if ratio[0] > 1:
        fh = int(round(side / ratio[0]))
    elif ratio[1] < 1:
        fw = int(round(side * ratio[1]))
    h, w = torch.where(found, h, fh), torch.where(found, w, fw)
    top = torch.where(found, (pos[:, 0] * (side - h + 1)).long(), (side - fh) // 2)
    left = torch.where(found, (pos[:, 1] * (side - w + 1)).long(), (side - fw) // 2)
    return torch.stack([top, left, h, w], 1)


def _filter(d: torch.Tensor, mode: str) -> torch.Tensor:
    """torch's antialias kernels: the triangle (bilinear) and Keys' cubic with a = -0.5 (bicubic), as PIL's."""
    d = d.abs()
    if mode == "bilinear":
        return (1 - d).clamp(min=0)
    a = -0.5
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return torch.where(d < 1, near, torch.where(d < 2, far, torch.zeros_like(d)))


def _resample_matrix(start: torch.Tensor, length: torch.Tensor, side: int, out: int, mode: str,
                     antialias: bool) -> torch.Tensor:
    """(B,out,side) weights taking the crop [start, start + length) of each sample's axis to ``out`` pixels,
    as torch's ``interpolate(..., align_corners=False, antialias=antialias)`` computes them for that crop."""
    scale = (length.to(torch.float32) / out).view(-1, 1, 1)
    centre = scale * (torch.arange(out, device=start.device, dtype=torch.float32).view(1, -1, 1) + 0.5)
    pos = torch.arange(side, device=start.device).view(1, 1, -1) - start.view(-1, 1, 1)
    stretch = scale.clamp(min=1) if antialias else torch.ones_like(scale)
    w = _filter((pos + 0.5 - centre) / stretch, mode) * ((pos >= 0) & (pos < length.view(-1, 1, 1)))
    return w / w.sum(-1, keepdim=True)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, out: int, mode: str = "bilinear", antialias: bool = True,
                 flip: torch.Tensor | None = None) -> torch.Tensor:
    """(B,C,S,S), boxes (B,4) (top, left, height, width) -> (B,C,out,out): each crop resized as
    ``F.resized_crop(img, *box, [out, out], mode, antialias=antialias)``; bicubic (antialiased only) is clamped
    to [0,1] as a uint8 image would be. ``flip`` (B,) bool mirrors the chosen crops at no cost (their column
    weights reversed), as ``hflip`` after the crop."""
    if mode not in ("bilinear", "bicubic") or (mode == "bicubic" and not antialias):
        raise ValueError(f"resampling {mode!r} with antialias={antialias}: allowed bilinear, or bicubic antialiased")
    side = x.shape[-1]
    rows = _resample_matrix(boxes[:, 0], boxes[:, 2], side, out, mode, antialias).to(x.dtype)
    cols = _resample_matrix(boxes[:, 1], boxes[:, 3], side, out, mode, antialias).to(x.dtype)
    cols = cols if flip is None else torch.where(flip.view(-1, 1, 1), cols.flip(1), cols)
    y = rows.unsqueeze(1) @ x @ cols.transpose(1, 2).unsqueeze(1)
    return y.clamp(0, 1) if mode == "bicubic" else y


def draw_apply(gen: torch.Generator, n: int, p: float) -> torch.Tensor:
    """(n,) bool: which samples a ``RandomApply`` / random flip / random grayscale of probability ``p`` hits."""
    return torch.rand(n, generator=gen) < p


def hflip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W), flip (B,) bool -> the flipped samples mirrored left-right."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def draw_jitter(gen: torch.Generator, n: int, p: float, brightness: float, contrast: float, saturation: float,
                hue: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)`` per sample: factors (n,4)
    float32 (brightness, contrast, saturation ~ U(max(0, 1-v), 1+v); hue ~ U(-v, v)) and order (n,4) int64, a
    permutation of the ops (``JITTER_OPS`` indices) with -1 for an op that is off (its value 0) and a whole row
    of -1 where the jitter is not applied."""
    order = torch.rand(n, 4, generator=gen).argsort(1)
    lo = torch.tensor([max(0.0, 1 - v) for v in (brightness, contrast, saturation)] + [-hue])
    hi = torch.tensor([1 + brightness, 1 + contrast, 1 + saturation, hue])
    factors = lo + (hi - lo) * torch.rand(n, 4, generator=gen)
    off = torch.tensor([v == 0 for v in (brightness, contrast, saturation, hue)])
    applied = draw_apply(gen, n, p)
    return factors, torch.where(off[order] | ~applied.view(-1, 1), -1, order)


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) -> (B,1,H,W) luma, torchvision's ``rgb_to_grayscale``; (B,1,H,W) is returned as it is."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (r * LUMA[0] + g * LUMA[1] + b * LUMA[2]).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    f = f.view(-1, 1, 1, 1)
    return (x * f + other * (1 - f)).clamp(0, 1)


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W), f (B,) -> blended with black (``F.adjust_brightness``)."""
    return (x * f.view(-1, 1, 1, 1)).clamp(0, 1)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W), f (B,) -> blended with each image's mean luma (``F.adjust_contrast``)."""
    return _blend(x, rgb_to_gray(x).mean((1, 2, 3), keepdim=True), f)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W), f (B,) -> blended with its luma (``F.adjust_saturation``); one channel is left as it is."""
    return x if x.shape[1] == 1 else _blend(x, rgb_to_gray(x), f)


def _rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B,3,H,W) -> h, s, v (B,H,W) each, as torchvision's ``_rgb_to_hsv`` (PIL's formula)."""
    r, g, b = x.unbind(1)
    minc, maxc = torch.aminmax(x, dim=1)
    same = maxc == minc
    ones = torch.ones_like(maxc)
    s = (maxc - minc) / torch.where(same, ones, maxc)
    span = torch.where(same, ones, maxc - minc)
    h = torch.where(maxc == r, (g - b) / span, torch.where(maxc == g, 2.0 + (b - r) / span, 4.0 + (r - g) / span))
    return torch.fmod(h * (1.0 / 6.0) + 1.0, 1.0), s, maxc


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """h, s, v (B,H,W) -> (B,3,H,W): channel n of (r, g, b) is v - v s clamp(min(k, 4 - k), 0, 1) with
    k = (5, 3, 1)[n] + 6h mod 6, the closed form of torchvision's sextant table (equal to ~1e-6)."""
    n = torch.tensor([5.0, 3.0, 1.0], device=h.device, dtype=h.dtype).view(1, 3, 1, 1)
    k = torch.remainder(h.unsqueeze(1) * 6 + n, 6)
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1)


def adjust_hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W), f (B,) in [-0.5, 0.5] -> hue shifted by f turns in HSV (``F.adjust_hue``); one channel is
    left as it is."""
    if x.shape[1] == 1:
        return x
    h, s, v = _rgb_to_hsv(x)
    return _hsv_to_rgb(torch.remainder(h + f.view(-1, 1, 1), 1.0), s, v)


def _h2d(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on ``device``; to a GPU from pinned memory without blocking, so the host does not wait for
    the work already queued there."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)


_JITTER = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W), factors (B,4), order (B,4) from ``draw_jitter`` -> jittered. In round r each sample gets op
    ``order[:, r]`` (none where -1), computed only on the samples that take it. ``order`` is read on the CPU
    (it decides which kernels run; pass it there to keep the device free of syncs)."""
    order, x, factors = order.cpu(), x.clone(), factors.to(x.dtype)
    groups = [torch.nonzero(order[:, r] == k)[:, 0] for r in range(4) for k in range(4)]
    sizes = [len(g) for g in groups]
    rounds = _h2d(torch.cat(groups), x.device).split([sum(sizes[4 * r:4 * r + 4]) for r in range(4)])
    for r, idx in enumerate(rounds):
        if not len(idx):
            continue
        size = sizes[4 * r:4 * r + 4]
        part = x.index_select(0, idx)
        pieces = [op(chunk, factors.index_select(0, i)[:, k]) for k, (op, chunk, i)
                  in enumerate(zip(_JITTER, part.split(size), idx.split(size), strict=True)) if len(i)]
        x.index_copy_(0, idx, torch.cat(pieces))
    return x


def grayscale(x: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W), apply (B,) bool -> the chosen samples' luma on all C channels (``F.rgb_to_grayscale``)."""
    return torch.where(apply.view(-1, 1, 1, 1), rgb_to_gray(x).expand_as(x), x)


def draw_blur(gen: torch.Generator, n: int, p: float, sigma: tuple[float, float] = (0.1, 2.0)
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``RandomApply([GaussianBlur(k, sigma)], p)`` per sample: apply (n,) bool and sigma (n,) ~ U(sigma)."""
    s = torch.empty(n).uniform_(sigma[0], sigma[1], generator=gen)
    return draw_apply(gen, n, p), s


def blur_kernel_size(side: int) -> int:
    """The odd kernel of ~10% of the image side (SimCLR; BYOL's 23 at 224), at least 3."""
    k = int(round(0.1 * side))
    return max(3, k + 1 - k % 2)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel: int) -> torch.Tensor:
    """(B,C,H,W), sigma (B,) -> each sample blurred as ``F.gaussian_blur(img, kernel, sigma)``: reflect
    padding, then the separable kernel as ``kernel`` weighted shifts per axis (per-sample weights)."""
    b, hgt, wid, r = x.shape[0], x.shape[2], x.shape[3], kernel // 2
    taps = torch.arange(kernel, device=x.device, dtype=x.dtype) - r
    w = torch.softmax(-(taps / sigma.to(x.dtype).view(-1, 1)) ** 2 / 2, 1).view(b, 1, 1, 1, kernel)
    y = F.pad(x, [r, r, r, r], mode="reflect")
    rows = y[:, :, :hgt] * w[..., 0]
    for j in range(1, kernel):
        rows.addcmul_(y[:, :, j:j + hgt], w[..., j])
    out = rows[..., :wid] * w[..., 0]
    for j in range(1, kernel):
        out.addcmul_(rows[..., j:j + wid], w[..., j])
    return out


def solarize(x: torch.Tensor, apply: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(B,C,H,W), apply (B,) bool -> pixels >= threshold inverted in the chosen samples (``F.solarize``)."""
    cut = torch.where(apply, threshold, math.inf).to(x.dtype).view(-1, 1, 1, 1)
    return torch.where(x >= cut, 1.0 - x, x)


def draw_rotation(gen: torch.Generator, n: int, degrees: float) -> torch.Tensor:
    """(n,) angles in degrees ~ U(-degrees, degrees), as ``RandomRotation(degrees)``."""
    return torch.empty(n).uniform_(-degrees, degrees, generator=gen)


def rotate(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """(B,C,S,S), angle (B,) degrees counter-clockwise -> rotated about the centre, bilinear, zero outside
    (``F.rotate(img, angle, BILINEAR)``)."""
    a = torch.deg2rad(angle.to(x.dtype))
    cos, sin, zero = a.cos(), a.sin(), torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _check_range(name: str, lo: float, hi: float, low: float, high: float) -> None:
    if not low <= lo <= hi <= high:
        raise ValueError(f"{name} ({lo}, {hi}): allowed {low} <= low <= high <= {high}")


@dataclass(frozen=True)
class ViewRecipe:
    """One view's augmentation: crop -> flip (folded into the crop) -> colour jitter -> grayscale -> blur ->
    solarize -> rotation (when ``rotation_degrees`` > 0). solo-learn flips last; the flip commutes with the
    colour ops, the symmetric blur and solarize, so the views are the same. Probabilities are per
    sample; jitter strengths are torchvision's ``ColorJitter`` arguments; ``out_size`` None keeps the side."""

    out_size: int | None = None
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bilinear"
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    rotation_degrees: float = 0.0

    def __post_init__(self) -> None:
        if self.out_size is not None and self.out_size < 1:
            raise ValueError(f"out_size {self.out_size}: allowed None or >= 1")
        if self.interpolation not in ("bilinear", "bicubic"):
            raise ValueError(f"interpolation {self.interpolation!r}: allowed 'bilinear', 'bicubic'")
        _check_range("crop_scale", *self.crop_scale, 1e-9, 1.0)
        _check_range("crop_ratio", *self.crop_ratio, 1e-9, math.inf)
        _check_range("blur_sigma", *self.blur_sigma, 1e-9, math.inf)
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            _check_range(name, getattr(self, name), getattr(self, name), 0.0, 1.0)
        for name in ("brightness", "contrast", "saturation", "rotation_degrees"):
            _check_range(name, getattr(self, name), getattr(self, name), 0.0, math.inf)
        _check_range("hue", self.hue, self.hue, 0.0, 0.5)


def _to_device(device: torch.device, *params: torch.Tensor) -> list[torch.Tensor]:
    """The CPU parameters in one host-to-device copy (as float32 columns: exact for these bools, pixel counts
    and float32 draws), each back in its own dtype."""
    cols = [p.reshape(len(p), -1).to(torch.float32) for p in params]
    moved = _h2d(torch.cat(cols, 1), device).split([c.shape[1] for c in cols], 1)
    return [m.reshape(p.shape).to(p.dtype) for m, p in zip(moved, params, strict=True)]


def _on_chosen(x: torch.Tensor, chosen: torch.Tensor,
               fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """x (B,...) with ``fn(x[i], i)`` written over the samples i that the CPU mask ``chosen`` (B,) picks, in
    place (x is ``make_view``'s own intermediate): only the chosen samples are computed, with no device sync."""
    idx = _h2d(torch.nonzero(chosen)[:, 0], x.device)
    return x.index_copy_(0, idx, fn(x.index_select(0, idx), idx)) if len(idx) else x


def make_view(x: torch.Tensor, recipe: ViewRecipe, gen: torch.Generator) -> torch.Tensor:
    """(B,C,S,S) float in [0,1] (C = 3 or 1), on any device -> one view (B,C,out,out) by ``recipe``, every
    sample with its own parameters drawn from the CPU generator ``gen``."""
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[2] != x.shape[3] or not x.is_floating_point():
        raise ValueError(f"images {tuple(x.shape)} {x.dtype}: allowed float (B,3|1,S,S)")
    n, side, rc = x.shape[0], x.shape[-1], recipe
    out = rc.out_size or side
    boxes = draw_crop_boxes(gen, n, side, rc.crop_scale, rc.crop_ratio)
    factors, order = draw_jitter(gen, n, rc.jitter_p, rc.brightness, rc.contrast, rc.saturation, rc.hue)
    gray = draw_apply(gen, n, rc.grayscale_p)
    blur, sigma = draw_blur(gen, n, rc.blur_p, rc.blur_sigma)
    sol, flip = draw_apply(gen, n, rc.solarize_p), draw_apply(gen, n, rc.flip_p)
    angle = draw_rotation(gen, n, rc.rotation_degrees)
    boxes, factors, gray, sigma, sol, flip, angle = _to_device(x.device, boxes, factors, gray, sigma, sol, flip, angle)
    v = resized_crop(x, boxes, out, rc.interpolation, flip=flip if rc.flip_p > 0 else None)
    v = color_jitter(v, factors, order) if rc.jitter_p > 0 else v
    v = grayscale(v, gray) if rc.grayscale_p > 0 else v
    v = _on_chosen(v, blur, lambda part, i: gaussian_blur(part, sigma.index_select(0, i), blur_kernel_size(out)))
    v = solarize(v, sol) if rc.solarize_p > 0 else v
    return rotate(v, angle) if rc.rotation_degrees > 0 else v


def grayscale_recipe(recipe: ViewRecipe, degrees: float = 10.0) -> ViewRecipe:
    """``recipe`` for one-channel content (gray images stored as 3 equal channels keep them equal): crops,
    flips, blur, brightness/contrast jitter and small rotations of ``degrees``; no saturation, hue, grayscale
    or solarize."""
    return replace(recipe, saturation=0.0, hue=0.0, grayscale_p=0.0, solarize_p=0.0, rotation_degrees=degrees)


# solo-learn scripts/pretrain/cifar/augmentations/*.yaml; RandomResizedCrop(..., interpolation=BICUBIC)
SIMCLR = ViewRecipe(interpolation="bicubic", brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, blur_p=0.5)
MOCOV2 = ViewRecipe(interpolation="bicubic", saturation=0.4, blur_p=0.5)  # symmetric_weak.yaml
BYOL = (ViewRecipe(interpolation="bicubic"), ViewRecipe(interpolation="bicubic", solarize_p=0.2))  # asymmetric
DINO = BYOL  # dino.yaml uses asymmetric.yaml too (one crop per view on CIFAR, no multi-crop)
