"""Relative patch location (Doersch, Gupta & Efros, ICCV 2015): cut the centre patch of a 3x3 grid and one
of its 8 neighbours; both go through the same backbone (shared weights, one (2B,3,t,t) batch), their pooled
features are concatenated (2D) and a small classifier names the neighbour's position (8-way).

Against the paper's trivial shortcuts (its section 3):

* gap and jitter: a patch covers a (1-gap) fraction of its cell (the paper: 96 of 144 px, gap ~1/3) and is
  placed at a random offset inside a centred window covering a ``jitter`` fraction of the free space; the
  rest of the free space is a gap no pair of neighbours can close (``min_gap``), so textures and lines
  never continue across the patch borders.
* chromatic aberration: each colour channel of each patch is cut at its own random offset (up to
  ``CHANNEL_SHIFT`` px, kept inside the patch's jitter window, so the gap guarantee holds per channel):
  the channels' relative misalignment, which in a photo points away from the lens centre, becomes noise.
  On top, each patch independently becomes grayscale with probability ``P_GRAY`` (as jigsaw's
  ``color_jitter``), against colour-continuity cues. The paper's alternatives were colour projection or
  dropping 2 of 3 channels.
* per-patch normalization (jigsaw's ``tile_normalize``): every patch, per channel, to zero mean and unit
  std, so brightness/contrast gradients across the image (vignetting) tell nothing.

Patches smaller than the backbone's minimum input are upsampled (bilinear) as jigsaw tiles are. Feature
extraction sees the whole ImageNet-normalized image (the default ``feature_input``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.interfaces import BadInput, Constraint, Options, check_settings, setting
from registry.backbones import Backbone
from registry.pretexts import PRETEXTS, Pretext
from registry.pretexts.jigsaw import GRID, tile_input_size, tile_normalize

CENTRE = GRID * GRID // 2  # cell 4 of the row-major 3x3 grid
NEIGHBOURS = (0, 1, 2, 3, 5, 6, 7, 8)  # target k: the neighbour is row-major cell NEIGHBOURS[k]
N_POSITIONS = len(NEIGHBOURS)
CHANNEL_SHIFT = 1  # px each colour channel may be displaced against the others
P_GRAY = 0.3  # probability that a patch becomes grayscale


def patch_geometry(image_size: int, gap: float) -> tuple[int, int]:
    """(cell, patch) side lengths in pixels: cells are S//3 wide, a patch is a (1-gap) fraction of its cell
    (jigsaw's rounding)."""
    cell = image_size // GRID
    if cell < 1:
        raise BadInput(f"bad image size {image_size} for relative_patch: it needs at least {GRID}")
    return cell, max(1, int(round(cell * (1.0 - gap))))


def jitter_window(slack: int, jitter: float) -> tuple[int, int]:
    """(lo, span): within a cell with ``slack`` free pixels, a patch's offset is drawn from lo..lo+span,
    a centred window of ``jitter * slack`` positions. Neighbours are then at least ``slack - span`` apart."""
    span = min(slack, int(round(jitter * slack)))
    return (slack - span) // 2, span


def min_gap(image_size: int, gap: float, jitter: float) -> int:
    """The fewest pixels between a patch and its neighbour that these options allow."""
    cell, t = patch_geometry(image_size, gap)
    return (cell - t) - jitter_window(cell - t, jitter)[1]


def cut_pairs(x: torch.Tensor, targets: torch.Tensor, gap: float, jitter: float,
              gen: torch.Generator | None, shift: int = CHANNEL_SHIFT) -> torch.Tensor:
    """(B,C,S,S) images and (B,) targets in 0..7 -> (B,2,C,t,t): [:,0] the centre patch, [:,1] the patch of
    cell NEIGHBOURS[target]. Offsets are random inside the jitter window, each channel moved by up to
    ``shift`` px more (clamped to the window); ``gen`` None: every patch centred, no channel shift."""
    b, c, s, _ = x.shape
    cell, t = patch_geometry(s, gap)
    slack = cell - t
    lo, span = jitter_window(slack, jitter)
    neighbour = torch.tensor(NEIGHBOURS)[targets.cpu()]
    cells = torch.stack([torch.full_like(neighbour, CENTRE), neighbour], 1)  # (B,2)
    if gen is None or span == 0:
        off = torch.full((b, 2, 1, 2), slack // 2 if gen is None else lo, dtype=torch.long)
    else:
        off = lo + torch.randint(0, span + 1, (b, 2, 1, 2), generator=gen)  # (B, patch, 1, [y, x])
    off = off.expand(b, 2, c, 2)
    if gen is not None and shift > 0 and span > 0:
        off = (off + torch.randint(-shift, shift + 1, (b, 2, c, 2), generator=gen)).clamp(lo, lo + span)
    ar = torch.arange(t)
    ys = ((cells // GRID)[:, :, None] * cell + off[..., 0])[..., None] + ar  # (B,2,C,t)
    xs = ((cells % GRID)[:, :, None] * cell + off[..., 1])[..., None] + ar
    bi = torch.arange(b).view(b, 1, 1, 1, 1)
    ci = torch.arange(c).view(1, 1, c, 1, 1)
    idx = [i.to(x.device) for i in (bi, ci, ys[..., :, None], xs[..., None, :])]
    return x[idx[0], idx[1], idx[2], idx[3]]


def random_grayscale(patches: torch.Tensor, gen: torch.Generator, p: float = P_GRAY) -> torch.Tensor:
    """(B,n,C,t,t) -> the same, each patch independently replaced by its channel mean with probability p."""
    b, n = patches.shape[:2]
    gray = (torch.rand(b, n, 1, 1, 1, generator=gen) < p).to(patches.device)
    return torch.where(gray, patches.mean(dim=2, keepdim=True).expand_as(patches), patches)


class RelativePatchHead(nn.Module):
    """Concatenated (centre, neighbour) features (2D) -> fc 512 -> ReLU -> fc 8 (the paper's fc layers
    after the pair of towers, shrunk)."""

    def __init__(self, dim: int, hidden: int = 512) -> None:
        super().__init__()
        self.classifier = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(inplace=True),
                                        nn.Linear(hidden, N_POSITIONS))

    def forward(self, patch_feats: torch.Tensor) -> torch.Tensor:
        """(2B, D) features, pairs adjacent (centre, neighbour) -> (B, 8) logits."""
        return self.classifier(patch_feats.reshape(-1, 2 * patch_feats.shape[-1]))


@dataclass(frozen=True)
class RelativePatchOptions(Options):
    flag_prefix = "patch"
    gap: float = setting(0.3, Constraint("real", 0.0, 0.5, hi_open=True), label="patch gap",
                         help="fraction of a grid cell its patch leaves free (default 0.3; the paper's 48 of 144 px)")
    jitter: float = setting(0.5, Constraint("real", 0.0, 1.0), label="patch jitter",
                            help="fraction of that free space a patch is randomly placed in; the rest is a gap "
                                 "always kept between neighbours (default 0.5; 0 = centred patches, no channel "
                                 "shifts)")

    def __post_init__(self) -> None:
        check_settings(self)


@PRETEXTS.register("relative_patch")
class RelativePatch(Pretext):
    """8-way classification of where a neighbour patch sits relative to the centre patch."""

    name = "relative_patch"
    feeds_crops = True
    Options = RelativePatchOptions
    opts: RelativePatchOptions
    reports_accuracy = True

    def __init__(self, opts: RelativePatchOptions | None = None) -> None:
        super().__init__(opts)
        self.patch_input = 16  # side the backbone sees; set by build_head

    def build_head(self, backbone: Backbone, image_size: int) -> nn.Module:
        _, t = patch_geometry(image_size, self.opts.gap)
        self.patch_input = tile_input_size(backbone, t)
        return RelativePatchHead(backbone.dim)

    def make_batch(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,3,S,S) in [0,1] -> inputs (2B,3,T,T) (pairs adjacent: centre, neighbour; each patch
        standardized), targets (B,) in 0..7."""
        b = x.shape[0]
        targets = torch.randint(0, N_POSITIONS, (b,), generator=gen)
        patches = random_grayscale(cut_pairs(x, targets, self.opts.gap, self.opts.jitter, gen), gen)
        flat = patches.reshape(2 * b, *patches.shape[2:])
        if flat.shape[-1] != self.patch_input:
            flat = F.interpolate(flat, size=(self.patch_input, self.patch_input), mode="bilinear",
                                 align_corners=False)
        return tile_normalize(flat), targets.to(x.device)
