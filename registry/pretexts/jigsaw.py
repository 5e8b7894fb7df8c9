"""Jigsaw pretext (Noroozi & Favaro 2016): a 3x3 grid of tiles cut with random gaps and jitter, shuffled by
one permutation of a set chosen for maximal minimum Hamming distance; every tile goes through the same
backbone (siamese), tile features are concatenated and classified into the permutation's index."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.interfaces import Constraint, Options, check_settings, setting
from registry.backbones import Backbone, min_image_size
from registry.pretexts import PRETEXTS, Pretext

GRID = 3
N_TILES = GRID * GRID


@lru_cache(maxsize=8)
def permutation_set(n: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """``n`` permutations of 9 tiles, greedily chosen for maximal minimum Hamming distance (the paper's
    algorithm: start from a random permutation, repeatedly add the permutation farthest from the set).
    Returns (perms (n, 9) int64, the set's minimum pairwise Hamming distance)."""
    all_perms = np.array(list(itertools.permutations(range(N_TILES))), dtype=np.int8)
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(all_perms)))]
    min_dist = (all_perms != all_perms[chosen[0]]).sum(1)
    while len(chosen) < n:
        nxt = int(np.argmax(min_dist))  # farthest from the set (first such index: deterministic)
        chosen.append(nxt)
        min_dist = np.minimum(min_dist, (all_perms != all_perms[nxt]).sum(1))
    perms = all_perms[chosen].astype(np.int64)
    d = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    np.fill_diagonal(d, N_TILES + 1)
    return perms, int(d.min())


def cut_tiles(x: torch.Tensor, gap: float, gen: torch.Generator | None) -> torch.Tensor:
    """(B,3,S,S) -> (B,9,3,t,t) in row-major cell order. Each cell of the 3x3 grid is S//3 wide; the tile is
    a (1-gap) fraction of it, placed at a random offset inside its cell (``gen`` None: centered), so
    neighbouring tiles never share an edge."""
    b, c, s, _ = x.shape
    cell = s // GRID
    t = max(1, int(round(cell * (1.0 - gap))))
    slack = cell - t
    tiles = []
    for i in range(GRID):
        for j in range(GRID):
            if gen is None or slack == 0:
                dy = dx = torch.full((b,), slack // 2, dtype=torch.long)
            else:
                dy = torch.randint(0, slack + 1, (b,), generator=gen)
                dx = torch.randint(0, slack + 1, (b,), generator=gen)
            tiles.append(torch.stack([x[k, :, i * cell + dy[k]: i * cell + dy[k] + t,
                                        j * cell + dx[k]: j * cell + dx[k] + t] for k in range(b)]))
    return torch.stack(tiles, dim=1)


def tile_normalize(tiles: torch.Tensor) -> torch.Tensor:
    """Per-tile, per-channel zero mean / unit std: removes low-level brightness/contrast shortcuts."""
    mean = tiles.mean(dim=(-2, -1), keepdim=True)
    std = tiles.std(dim=(-2, -1), keepdim=True).clamp_min(1e-3)
    return (tiles - mean) / std


def color_jitter(tiles: torch.Tensor, gen: torch.Generator, p_gray: float = 0.3) -> torch.Tensor:
    """Per tile: random channel shifts of up to 1 pixel (against chromatic-aberration cues) and, with
    probability ``p_gray``, grayscale (against colour-continuity cues)."""
    b, n, c, t, _ = tiles.shape
    out = tiles.clone()
    if t > 2:
        shifts = torch.randint(-1, 2, (c, 2), generator=gen)
        for ch in range(c):
            out[:, :, ch] = torch.roll(out[:, :, ch], shifts=(int(shifts[ch, 0]), int(shifts[ch, 1])), dims=(-2, -1))
    gray = (torch.rand(b, n, 1, 1, 1, generator=gen) < p_gray).to(tiles.device)
    return torch.where(gray, out.mean(dim=2, keepdim=True).expand_as(out), out)


class JigsawHead(nn.Module):
    """Shared per-tile fc (D -> 256), concatenation of 9 tiles, fc (2304 -> 512) and the classifier."""

    def __init__(self, dim: int, n_perms: int) -> None:
        super().__init__()
        self.tile_fc = nn.Sequential(nn.Linear(dim, 256), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Linear(N_TILES * 256, 512), nn.ReLU(inplace=True),
                                        nn.Linear(512, n_perms))

    def forward(self, tile_feats: torch.Tensor) -> torch.Tensor:
        """(B*9, D) -> (B, n_perms)."""
        z = self.tile_fc(tile_feats)
        return self.classifier(z.reshape(-1, N_TILES * z.shape[-1]))


@dataclass(frozen=True)
class JigsawOptions(Options):
    flag_prefix = "jigsaw"
    permutations: int = setting(24, Constraint("int", 2, 1000), label="jigsaw permutations",
                                help="permutation set size (default 24; 100 for full-size)")
    gap: float = setting(0.15, Constraint("real", 0.0, 0.5, hi_open=True), label="jigsaw gap",
                         help="fraction of a cell left as random gap (default 0.15)")

    def __post_init__(self) -> None:
        check_settings(self)


def tile_input_size(backbone: Backbone, tile: int) -> int:
    """Tiles smaller than the backbone's minimum input (at least 16 px) are upsampled to it."""
    return max(tile, min_image_size(backbone.name), 16)


@PRETEXTS.register("jigsaw")
class Jigsaw(Pretext):
    name = "jigsaw"
    feeds_crops = True
    Options = JigsawOptions
    opts: JigsawOptions
    reports_accuracy = True

    def __init__(self, opts: JigsawOptions | None = None) -> None:
        super().__init__(opts)
        perms, self.min_hamming = permutation_set(self.opts.permutations)
        self.perms = torch.from_numpy(perms)
        self.tile_input = 16

    def build_head(self, backbone: Backbone, image_size: int) -> nn.Module:
        tile = int(round(image_size // GRID * (1 - self.opts.gap)))
        self.tile_input = tile_input_size(backbone, tile)
        return JigsawHead(backbone.dim, len(self.perms))

    def make_batch(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        tiles = cut_tiles(x.contiguous(), self.opts.gap, gen)
        targets = torch.randint(0, len(self.perms), (b,), generator=gen)
        order = self.perms[targets]  # (B, 9): position j shows tile order[j]
        tiles = tiles[torch.arange(b)[:, None], order.to(tiles.device)]
        tiles = color_jitter(tiles, gen)
        flat = tiles.reshape(b * N_TILES, *tiles.shape[2:])
        if flat.shape[-1] != self.tile_input:
            flat = F.interpolate(flat, size=(self.tile_input, self.tile_input), mode="bilinear", align_corners=False)
        flat = tile_normalize(flat)  # per-tile standardization replaces the ImageNet normalization
        return flat, targets.to(x.device)

    def predict(self, backbone: Backbone, head: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return head(backbone.features(inputs))
