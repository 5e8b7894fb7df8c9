"""Relative patch location: patch geometry (cells, gap, jitter), target balance, training on a tiny case."""
import contextlib

import pytest
import torch

from benchmark.train.loop import train_step
from registry.backbones import build_backbone
from registry.pretexts import PRETEXTS, build_pretext
from registry.pretexts.jigsaw import JigsawOptions
from registry.pretexts.relative_patch import (
    NEIGHBOURS,
    RelativePatchOptions,
    cut_pairs,
    jitter_window,
    min_gap,
    patch_geometry,
    random_grayscale,
)

S = 30  # 10-pixel cells
DIRECTIONS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]  # (drow, dcol) of target k


def cell_image(b: int, s: int = S) -> torch.Tensor:
    """(b,3,s,s): cell (i, j) of the 3x3 grid is the constant gray value 3i+j (all channels equal)."""
    img = torch.zeros(b, 3, s, s)
    cell = s // 3
    for i in range(3):
        for j in range(3):
            img[:, :, i * cell:(i + 1) * cell, j * cell:(j + 1) * cell] = 3 * i + j
    return img


def coord_image(b: int, s: int = S) -> torch.Tensor:
    """(b,3,s,s): every pixel holds y*s + x in all channels, so a patch tells where it was cut."""
    return torch.arange(s * s, dtype=torch.float32).view(1, 1, s, s).expand(b, 3, s, s).contiguous()


def radial_images(n: int, s: int, gen: torch.Generator) -> torch.Tensor:
    """An easy case: brightness grows with the distance from a (slightly moved) image centre, so every
    neighbour patch shows a gradient pointing away from the centre patch. (n,3,s,s) in [0,1]."""
    yy, xx = torch.meshgrid(torch.arange(s).float(), torch.arange(s).float(), indexing="ij")
    c = (s - 1) / 2 + torch.randint(-1, 2, (n, 2), generator=gen).float()
    d = ((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2).sqrt() / s
    gain = 0.5 + torch.rand(n, 3, 1, 1, generator=gen)
    return (d[:, None] * gain + 0.02 * torch.rand(n, 3, s, s, generator=gen)).clamp(0, 1)


def test_registered_with_options_and_accuracy():
    task = build_pretext("relative_patch")
    assert "relative_patch" in PRETEXTS.names() and task.reports_accuracy
    assert [flag for flag, _ in RelativePatchOptions.flags()] == ["patch-gap", "patch-jitter"]
    assert task.key()["options"] == {"gap": 0.3, "jitter": 0.5}
    with pytest.raises(TypeError):
        build_pretext("relative_patch", JigsawOptions())


@pytest.mark.parametrize("jitter,seeded", [(0.0, False), (0.0, True), (0.5, True), (1.0, True)])
def test_each_of_the_8_positions_is_cut_from_its_stated_cell(jitter, seeded):
    targets = torch.arange(8).repeat(4)
    gen = torch.Generator().manual_seed(0) if seeded else None
    pairs = cut_pairs(cell_image(32), targets, gap=0.3, jitter=jitter, gen=gen)
    assert pairs.shape == (32, 2, 3, 7, 7)
    assert torch.all(pairs[:, 0] == 4)  # the centre patch never leaves the centre cell
    want = torch.tensor(NEIGHBOURS)[targets].float().view(32, 1, 1, 1)
    assert torch.equal(pairs[:, 1], want.expand(32, 3, 7, 7))  # nor a neighbour (channel shifts included)
    if gen is not None:  # gray cells: grayscale changes nothing
        assert torch.equal(random_grayscale(pairs, gen, p=1.0), pairs)


def test_neighbour_lies_in_the_stated_direction_and_patches_are_whole_squares():
    targets = torch.arange(8)
    pairs = cut_pairs(coord_image(8), targets, gap=0.3, jitter=0.0, gen=None)  # centred, no shifts
    y0, x0 = pairs[..., 0, 0, 0] // S, pairs[..., 0, 0, 0] % S  # (8, 2) top-left corners
    for k, (dr, dc) in enumerate(DIRECTIONS):
        assert (y0[k, 1] - y0[k, 0], x0[k, 1] - x0[k, 0]) == (10 * dr, 10 * dc), k
    ar = torch.arange(7.0)
    square = pairs[:, :, :, :1, :1] + S * ar.view(7, 1) + ar.view(1, 7)
    assert torch.equal(pairs, square)  # contiguous t x t windows, all channels aligned
    assert y0[0, 0] == 10 + 1 and x0[0, 0] == 10 + 1  # 7-pixel patch centred in a 10-pixel cell


@pytest.mark.parametrize("s,gap,jitter", [(30, 0.3, 0.5), (30, 0.3, 1.0), (63, 0.3, 0.5), (96, 0.15, 0.3)])
def test_jitter_spans_its_window_and_the_gap_is_never_closed(s, gap, jitter):
    b = 2000
    targets = torch.arange(8).repeat(b // 8)
    pairs = cut_pairs(coord_image(b, s), targets, gap, jitter, torch.Generator().manual_seed(0))
    cell, t = patch_geometry(s, gap)
    lo, span = jitter_window(cell - t, jitter)
    corner = pairs[..., 0, 0].long()  # (B, 2, C): each channel's top-left pixel
    oy, ox = corner // s % cell, corner % s % cell  # offsets inside the cell
    for o in (oy, ox):
        assert set(o.unique().tolist()) == set(range(lo, lo + span + 1))  # the whole window, no more
    assert (oy != oy[..., :1]).any() == (span > 0)  # channels shifted against each other
    y, x = corner // s, corner % s
    sep = torch.stack([(y[:, 1] - y[:, 0]).abs(), (x[:, 1] - x[:, 0]).abs()], -1) - t  # (B, C, 2)
    apart = torch.tensor(DIRECTIONS)[targets].ne(0)[:, None, :].expand_as(sep)  # axes the cells differ on
    assert sep[apart].min() == min_gap(s, gap, jitter)  # every channel, every separating axis
    assert (min_gap(s, gap, jitter) > 0) == (jitter < 1)  # full jitter may close the gap


def test_targets_are_uniform_and_inputs_standardized_pairs():
    task = build_pretext("relative_patch")
    task.patch_input = 16
    b = 4000
    inputs, targets = task.make_batch(torch.rand(b, 3, S, S), torch.Generator().manual_seed(0))
    assert inputs.shape == (2 * b, 3, 16, 16) and targets.shape == (b,)
    counts = torch.bincount(targets, minlength=8)
    assert counts.numel() == 8 and counts.min() > 0.85 * b / 8 and counts.max() < 1.15 * b / 8
    assert inputs.mean(dim=(-2, -1)).abs().max() < 1e-4  # per-patch normalization
    gray = (inputs[:, 0] == inputs[:, 1]).flatten(1).all(1).float().mean()
    assert 0.2 < gray < 0.4  # about 30% of the patches grayscale


def test_one_training_step_with_resnet18():
    torch.manual_seed(0)
    bb = build_backbone("resnet18", 32)
    task = build_pretext("relative_patch")
    head = task.build_head(bb, 32)
    assert task.patch_input == 16  # 7-pixel patches upsampled to the 16-pixel minimum
    opt = torch.optim.SGD(list(bb.parameters()) + list(head.parameters()), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    x = torch.rand(6, 3, 32, 32)
    loss, out, targets = train_step(bb, head, task, opt, scaler, x, torch.Generator().manual_seed(0),
                                    contextlib.nullcontext)
    assert out.shape == (6, 8) and targets.shape == (6,) and torch.isfinite(loss)
    assert 0 <= task.n_correct(out, targets) <= 6
    with torch.no_grad():
        assert bb.features(task.feature_input(x)).shape == (6, bb.dim)  # features: the whole image


def test_loss_falls_on_an_easy_case():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    bb = build_backbone("resnet18", 32)
    task = build_pretext("relative_patch")
    head = task.build_head(bb, 32)
    opt = torch.optim.Adam(list(bb.parameters()) + list(head.parameters()), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    x = radial_images(16, 32, gen)
    losses, hits = [], []
    for _ in range(24):
        loss, out, targets = train_step(bb, head, task, opt, scaler, x, gen, contextlib.nullcontext)
        losses.append(float(loss))
        hits.append(task.n_correct(out, targets) / len(targets))
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.6 * first, losses
    assert sum(hits[-4:]) / 4 > 0.5, hits  # chance is 1/8


@pytest.mark.parametrize("field,value", [("gap", -0.1), ("gap", 0.5), ("gap", float("nan")), ("gap", True),
                                         ("gap", "0.2"), ("jitter", -0.01), ("jitter", 1.5), ("jitter", True),
                                         ("jitter", None)])
def test_options_reject_bad_values(field, value):
    with pytest.raises(ValueError, match=f"bad patch {field} .*allowed") as err:
        RelativePatchOptions(**{field: value})
    assert "\n" not in str(err.value) and repr(value) in str(err.value)


def test_tiny_images_are_refused_clearly():
    assert patch_geometry(16, 0.3) == (5, 4)
    with pytest.raises(ValueError, match="bad image size 2"):
        patch_geometry(2, 0.3)
