"""Split-brain autoencoder: the Lab input, the bins, the doubled backbone's 2D features, the cross-entropy
against a direct reference, grayscale data refused, learning, and a state_dict round trip as export does it."""
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from registry.backbones import at_layer, build_backbone
from registry.pretexts import build_pretext
from registry.pretexts.colorization import AB_RANGE, ab_bins, lab_to_rgb, rgb_to_lab
from registry.pretexts.split_brain import SplitBrainBackbone, SplitBrainOptions, ab_bin_index, l_bin_index


def wrapped(name="resnet18", size=32, seed=0):
    torch.manual_seed(seed)
    task = build_pretext("split_brain")
    return task, task.wrap_backbone(build_backbone(name, size))


def test_the_input_is_lab_scaled_and_round_trips_to_rgb():
    task = build_pretext("split_brain")
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    inp = task.feature_input(x)
    lab = torch.cat([inp[:, :1] * 100, inp[:, 1:] * AB_RANGE], dim=1)
    assert torch.allclose(lab, rgb_to_lab(x), atol=1e-5) and torch.allclose(lab_to_rgb(lab), x, atol=1e-4)
    assert inp[:, 0].min() >= 0 and inp[:, 0].max() <= 1 and inp[:, 1:].abs().max() <= 1
    batch_in, targets = task.make_batch(x, torch.Generator())
    assert torch.equal(batch_in, inp) and torch.allclose(targets, rgb_to_lab(x))


def test_ab_and_l_bins_are_in_range_and_nearest():
    bins = ab_bins()
    ab = (torch.rand(2, 2, 5, 5) * 2 - 1) * 100
    idx = ab_bin_index(ab, bins)
    assert idx.shape == (2, 5, 5) and idx.min() >= 0 and idx.max() < bins.shape[0]
    d = torch.cdist(ab.permute(0, 2, 3, 1).reshape(-1, 2), bins)
    assert torch.equal(d.gather(1, idx.view(-1, 1)).squeeze(1), d.min(1).values)
    L = torch.tensor([[0.0, 0.5, 1.0, 49.99, 50.0, 99.99, 100.0]])
    assert l_bin_index(L, 100).tolist() == [[0, 0, 1, 49, 50, 99, 99]]
    assert l_bin_index(L, 10).tolist() == [[0, 0, 0, 4, 5, 9, 9]]


def test_features_are_two_d_and_the_two_halves_differ():
    task, bb = wrapped()
    assert isinstance(bb, SplitBrainBackbone) and bb.dim == 1024 == task.feature_dim(512)
    assert sum(p.numel() for p in bb.parameters()) > 2 * 11_000_000  # two ResNet-18s
    bb.eval()
    x = task.feature_input(torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        f = bb.features(x)
        f_L, f_ab = bb.halves(x)
    assert f.shape == (3, 1024) and torch.allclose(f[:, :512], bb.net_L.pool(f_L))
    assert torch.allclose(f[:, 512:], bb.net_ab.pool(f_ab)) and not torch.allclose(f[:, :512], f[:, 512:])
    assert bb.net_ab is not bb.net_L and all(  # the copy starts from the same weights, held apart
        torch.equal(a, b) and a.data_ptr() != b.data_ptr()
        for a, b in zip(bb.net_L.parameters(), bb.net_ab.parameters(), strict=True))
    cut = at_layer(bb, "layer3")
    assert isinstance(cut, SplitBrainBackbone) and cut.dim == 512
    with torch.no_grad():
        assert cut.features(x).shape == (3, 512)


def test_timm_copies_pool_with_their_own_head():
    task, bb = wrapped("timm:mobilenetv3_small_100")
    pool_L, pool_ab = bb.net_L._pool_fn, bb.net_ab._pool_fn
    assert pool_L.model is bb.net_L.body.model and pool_ab.model is bb.net_ab.body.model  # not the original's
    assert bb.dim == 2 * 1024


def test_the_loss_is_the_sum_of_the_two_cross_entropies():
    task, bb = wrapped()
    head = task.build_head(bb, 32)
    assert head.to_ab.out_channels == ab_bins().shape[0] and head.to_L.out_channels == 100
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    inputs, lab = task.make_batch(x, torch.Generator())
    ab_logits = torch.randn(4, ab_bins().shape[0], 2, 2)
    l_logits = torch.randn(4, 100, 2, 2)
    got = task.loss((ab_logits, l_logits), lab)
    small = F.avg_pool2d(lab, 16)  # 32 -> 2 x 2, each the mean of a 16 x 16 block
    ab_ref = torch.tensor([[[int(((ab_bins() - small[b, 1:, i, j]) ** 2).sum(1).argmin()) for j in range(2)]
                            for i in range(2)] for b in range(4)])
    l_ref = (small[:, 0]).floor().clamp(0, 99).long()
    logp_ab, logp_l = F.log_softmax(ab_logits, 1), F.log_softmax(l_logits, 1)
    ref = -np.mean([float(logp_ab[b, ab_ref[b, i, j], i, j]) for b in range(4) for i in range(2) for j in range(2)])
    ref -= np.mean([float(logp_l[b, l_ref[b, i, j], i, j]) for b in range(4) for i in range(2) for j in range(2)])
    assert got.item() == pytest.approx(ref, rel=1e-5)
    out = task.predict(bb, head, inputs)
    assert out[0].shape == (4, ab_bins().shape[0], 1, 1) and out[1].shape == (4, 100, 1, 1)


def test_grayscale_data_and_backbones_without_a_feature_map_are_refused():
    task = build_pretext("split_brain")
    assert task.not_applicable(grayscale=True) == \
        "split_brain not applicable: grayscale images have no ab channels to predict"
    assert task.not_applicable(grayscale=False) is None and task.not_applicable(False, "resnet18") is None
    assert "no spatial feature map" in task.not_applicable(False, "dec_ae")
    with pytest.raises(TypeError, match="wrap_backbone"):
        task.build_head(build_backbone("resnet18", 32), 32)


def test_the_loss_falls_over_seeded_steps():
    task = build_pretext("split_brain", SplitBrainOptions(l_bins=10))
    _, bb = wrapped()
    head = task.build_head(bb, 32)
    opt = torch.optim.Adam(list(bb.parameters()) + list(head.parameters()), lr=1e-3)
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(12):
        inputs, targets = task.make_batch(x, torch.Generator())
        loss = task.loss(task.predict(bb, head, inputs), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3]), losses


def test_a_state_dict_round_trip_through_wrap_backbone_reproduces_the_features():
    """What training stores and export / extraction load: the wrapped network's state_dict."""
    task, bb = wrapped(seed=0)
    with torch.no_grad():
        for p in bb.parameters():  # as if trained: the two copies and the adapter apart from any init
            p.add_(torch.randn_like(p) * 0.01)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in bb.state_dict().items()}, buf)
    _, fresh = wrapped(seed=3)
    fresh.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    x = task.feature_input(torch.rand(2, 3, 32, 32))
    bb.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(bb.features(x), fresh.features(x))
    keys = set(bb.state_dict())
    assert any(k.startswith("net_L.") for k in keys) and any(k.startswith("net_ab.") for k in keys)
    assert "adapt_ab.weight" in keys
