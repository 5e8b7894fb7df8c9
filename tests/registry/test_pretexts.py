"""Pretext tasks: faithful mechanics (tiles, permutations, Lab) and learning on a tiny data set."""
import numpy as np
import pytest
import torch

from benchmark.config.specs import TrainSpec
from benchmark.train.loop import extract_features, train_pretext
from registry.backbones import build_backbone
from registry.pretexts import PRETEXTS, build_pretext, pretext_class
from registry.pretexts._joint import JointEmbedding
from registry.pretexts.autoencoder import AutoencoderOptions
from registry.pretexts.colorization import ColorizationOptions, ab_bins, lab_to_rgb, rgb_to_lab, soft_encode
from registry.pretexts.jigsaw import JigsawOptions, color_jitter, cut_tiles, permutation_set, tile_normalize
from tests.conftest import make_photo

TRAINING = [n for n in PRETEXTS.names() if n != "none"]
# the joint-embedding methods' own loss test fixes their views (tests/registry/test_joint_embedding.py): their loss
# moves with freshly drawn views, a queue and a center, so "falls over fresh batches" is not their invariant
SINGLE_VIEW = [n for n in TRAINING if not issubclass(pretext_class(n), JointEmbedding)]


def small_task(name, color_loss="classification"):
    """Fast options: a small jigsaw permutation set; colorization with the given loss."""
    opts = {"jigsaw": JigsawOptions(permutations=4), "colorization": ColorizationOptions(loss=color_loss)}
    return build_pretext(name, opts.get(name))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    arr = [np.asarray(make_photo(i % 2, rng, (int(rng.integers(30, 60)), 32)).resize((32, 32))).transpose(2, 0, 1)
           for i in range(32)]
    return np.stack(arr).astype(np.uint8)


@pytest.mark.parametrize("n,promised", [(4, 9), (24, 7), (100, 6)])
def test_permutation_set_has_promised_min_hamming_distance_and_no_duplicates(n, promised):
    perms, dmin = permutation_set(n)
    assert perms.shape == (n, 9) and len({tuple(p) for p in perms}) == n
    assert all(sorted(p) == list(range(9)) for p in perms)
    d = (perms[:, None] != perms[None]).sum(-1)
    assert d[~np.eye(n, dtype=bool)].min() == dmin >= promised


def test_tiles_come_from_their_grid_cells():
    s = 30
    img = torch.zeros(2, 3, s, s)
    for i in range(3):
        for j in range(3):
            img[:, :, i * 10:(i + 1) * 10, j * 10:(j + 1) * 10] = i * 3 + j
    for gen in (None, torch.Generator().manual_seed(0)):
        tiles = cut_tiles(img, gap=0.3, gen=gen)
        assert tiles.shape == (2, 9, 3, 7, 7)
        for k in range(9):
            assert torch.all(tiles[:, k] == k), k  # a tile never crosses into a neighbouring cell
    centered = cut_tiles(torch.arange(900.0).view(1, 1, 30, 30).expand(1, 3, 30, 30), 0.4, None)
    assert centered[0, 0, 0, 0, 0] == 2 * 30 + 2  # 6-pixel tile centred in a 10-pixel cell


def test_jigsaw_batch_is_the_permuted_tiles_with_per_tile_normalization():
    task = build_pretext("jigsaw", JigsawOptions(permutations=10))
    task.tile_input = 8
    x = torch.rand(4, 3, 30, 30)
    inputs, targets = task.make_batch(x, torch.Generator().manual_seed(1))
    assert inputs.shape == (36, 3, 8, 8) and targets.shape == (4,) and targets.max() < 10
    means = inputs.mean(dim=(-2, -1))
    assert means.abs().max() < 1e-4  # every tile standardized on its own
    t = tile_normalize(torch.rand(2, 9, 3, 5, 5) * 7 + 3)
    assert torch.allclose(t.std(dim=(-2, -1)), torch.ones(2, 9, 3), atol=1e-4)
    jit = color_jitter(torch.rand(2, 9, 3, 6, 6), torch.Generator().manual_seed(0), p_gray=1.0)
    assert torch.allclose(jit[:, :, 0], jit[:, :, 1])  # grayscale tiles


def test_lab_round_trip_and_reference_values():
    rgb = torch.rand(3, 3, 16, 16)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-4)
    white = rgb_to_lab(torch.ones(1, 3, 1, 1)).flatten()
    assert torch.allclose(white, torch.tensor([100.0, 0.0, 0.0]), atol=0.05)
    red = rgb_to_lab(torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1)).flatten()
    assert torch.allclose(red, torch.tensor([53.24, 80.09, 67.20]), atol=0.1)  # standard sRGB red in Lab


def test_ab_bins_cover_the_gamut_and_soft_encoding_sums_to_one():
    bins = ab_bins()
    assert 200 < bins.shape[0] < 330 and bins.abs().max() < 110
    soft, near = soft_encode(torch.tensor([[[[3.0]], [[-7.0]]]]), bins)
    assert soft.shape == (1, bins.shape[0], 1, 1) and torch.isclose(soft.sum(), torch.tensor(1.0))
    assert (soft > 0).sum() == 5 and torch.allclose(bins[near.flatten()[0]], torch.tensor([5.0, -5.0]))


def test_colorization_is_skipped_on_grayscale_data():
    reason = build_pretext("colorization").not_applicable(grayscale=True)
    assert reason and "grayscale" in reason
    assert build_pretext("colorization").not_applicable(grayscale=False) is None
    assert all(build_pretext(n).not_applicable(grayscale=True) is None for n in PRETEXTS.names()
               if n not in ("colorization", "split_brain"))  # split_brain: no ab either


@pytest.mark.parametrize("name", SINGLE_VIEW)
def test_pretext_loss_falls_over_a_few_steps(name, images, cpu):
    torch.manual_seed(0)
    task = small_task(name)
    bb = task.wrap_backbone(build_backbone("timm:resnet10t", 32))  # the network it trains (split_brain: two)
    # lr 0.02 diverged (jigsaw at chance)
    spec = TrainSpec(epochs=12, batch_size=16, lr=0.005, optimizer="adam", weight_decay=0.0)
    res, _ = train_pretext(bb, task, images, spec, cpu, 0, progress=False)
    first, last = np.mean(res.step_losses[:4]), np.mean(res.step_losses[-4:])
    assert last < first, (name, res.step_losses)
    if name in ("rotation", "jigsaw"):
        chance = 0.25
        assert res.final_acc > chance + 0.1, (name, res.final_acc)


@pytest.mark.parametrize("backbone", ["resnet18", "timm:mobilenetv3_small_100"])
@pytest.mark.parametrize("name", TRAINING)
def test_each_pretext_runs_with_torchvision_and_timm_backbones(name, backbone, images, cpu):
    torch.manual_seed(0)
    task = small_task(name, color_loss="l2" if backbone == "resnet18" else "classification")
    bb = task.wrap_backbone(build_backbone(backbone, 32))
    res, _ = train_pretext(bb, task, images[:16], TrainSpec(batch_size=8, max_steps=2), cpu, 0, progress=False)
    assert res.steps == 2 and np.isfinite(res.final_loss)
    feats, _ = extract_features(bb, images[:4], cpu, progress=False, pretext=task)
    assert feats.shape == (4, bb.dim) and np.isfinite(feats).all()


def test_denoising_autoencoder_corrupts_inputs_only():
    task = build_pretext("autoencoder", AutoencoderOptions(noise=0.2))
    x = torch.rand(2, 3, 8, 8)
    inputs, targets = task.make_batch(x, torch.Generator().manual_seed(0))
    assert torch.equal(targets, x) and inputs.shape == x.shape
    clean, _ = build_pretext("autoencoder").make_batch(x, torch.Generator())
    assert not torch.allclose(inputs, clean)
