"""The joint-embedding methods (SimCLR, MoCo v2, BYOL, DINO): each loss against a slow reference written here and
a case computed by hand; each method's step against the invariants that define it; learning and no collapse on
a fixed batch; the recipe (LARS, warmup + cosine, the shared flags winning)."""
from __future__ import annotations

import contextlib
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.config.specs import TrainSpec
from benchmark.train.loop import train_step
from benchmark.train.optim import LARS, lr_factor, make_optimizer, recipe_spec
from registry.backbones import build_backbone
from registry.pretexts import build_pretext, pretext_class
from registry.pretexts._joint import cosine_tau
from registry.pretexts._losses import byol_loss, dino_loss, info_nce, nt_xent
from registry.pretexts.dino import teacher_temperature
from tests.conftest import make_photo

METHODS = ("simclr", "moco", "byol", "dino")
SMALL = {"simclr": {"proj_hidden": 64, "proj_dim": 32}, "moco": {"dim": 32, "queue": 40},
         "byol": {"proj_hidden": 64, "proj_dim": 32, "pred_hidden": 64},
         "dino": {"hidden": 64, "bottleneck": 32, "prototypes": 64}}


def small(name: str, **extra):
    return build_pretext(name, pretext_class(name).Options(**{**SMALL[name], **extra}))


@pytest.fixture(scope="module")
def photos():
    rng = np.random.default_rng(0)
    arr = [np.asarray(make_photo(i % 2, rng, (int(rng.integers(30, 60)), 32)).resize((32, 32))).transpose(2, 0, 1)
           for i in range(16)]
    return np.stack(arr).astype(np.uint8)


# ---- losses against slow references -----------------------------------------------------------------------

def nt_xent_loop(z1, z2, t):
    z = [F.normalize(v, dim=0) for v in torch.cat([z1, z2])]
    n, total = z1.shape[0], 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        denom = sum(math.exp(float(z[i] @ z[j]) / t) for j in range(2 * n) if j != i)
        total += -math.log(math.exp(float(z[i] @ z[pos]) / t) / denom)
    return total / (2 * n)


def info_nce_loop(q, k, queue, t):
    total = 0.0
    for i in range(q.shape[0]):
        logits = [float(q[i] @ k[i]) / t] + [float(q[i] @ n) / t for n in queue]
        total += -logits[0] + math.log(sum(math.exp(v) for v in logits))
    return total / q.shape[0]


def dino_loop(s, t, c, ts, tt):
    total, pairs = 0.0, 0
    for i in range(t.shape[0]):
        for j in range(s.shape[0]):
            if i == j:
                continue
            for b in range(s.shape[1]):
                pt = [math.exp((float(t[i, b, k]) - float(c[0, k])) / tt) for k in range(s.shape[2])]
                ps = [math.exp(float(s[j, b, k]) / ts) for k in range(s.shape[2])]
                total += -sum(pt[k] / sum(pt) * math.log(ps[k] / sum(ps)) for k in range(s.shape[2])) / s.shape[1]
            pairs += 1
    return total / pairs


def test_losses_equal_slow_references_on_random_inputs():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    assert float(nt_xent(z1, z2, 0.2)) == pytest.approx(nt_xent_loop(z1, z2, 0.2), rel=1e-5)
    q, k = F.normalize(torch.randn(4, 6, generator=g), dim=1), F.normalize(torch.randn(4, 6, generator=g), dim=1)
    queue = F.normalize(torch.randn(9, 6, generator=g), dim=1)
    assert float(info_nce(q, k, queue, 0.1)) == pytest.approx(info_nce_loop(q, k, queue, 0.1), rel=1e-5)
    p, z = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    ref = sum(2 - 2 * float(p[i] @ z[i]) / (float(p[i].norm()) * float(z[i].norm())) for i in range(4)) / 4
    assert float(byol_loss(p, z)) == pytest.approx(ref, rel=1e-5)
    s, t, c = torch.randn(3, 4, 5, generator=g), torch.randn(2, 4, 5, generator=g), torch.randn(1, 5, generator=g)
    assert float(dino_loss(s, t, c, 0.1, 0.04)) == pytest.approx(dino_loop(s, t, c, 0.1, 0.04), rel=1e-5)


def test_losses_on_cases_computed_by_hand():
    e = torch.eye(2)
    # anchor e1: candidates e2 (0), e1 (1, the positive), e2 (0) at T = 1: -log(e / (e + 2)), the same for all four
    assert float(nt_xent(e, e, 1.0)) == pytest.approx(math.log((math.e + 2) / math.e), rel=1e-6)
    # q = k = e1, one negative e2, T = 1: -log(e / (e + 1))
    q = torch.tensor([[1.0, 0.0]])
    assert float(info_nce(q, q, torch.tensor([[0.0, 1.0]]), 1.0)) == pytest.approx(math.log((math.e + 1) / math.e))
    assert float(byol_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]]))) == pytest.approx(2.0)
    assert float(byol_loss(torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 2.0]]))) == pytest.approx(0.0, abs=1e-6)
    # equal logits everywhere: both distributions uniform over K = 8, the cross-entropy is log 8
    flat = torch.zeros(2, 3, 8)
    assert float(dino_loss(flat, flat, torch.zeros(1, 8), 0.1, 0.04)) == pytest.approx(math.log(8), rel=1e-6)


# ---- the methods' invariants ------------------------------------------------------------------------------

def one_step(name, x, step=0, total=10, **extra):
    torch.manual_seed(0)
    bb = build_backbone("resnet18", 32)
    task = small(name, **extra)
    task.prepare((x * 255).to(torch.uint8).numpy())
    head = task.build_head(bb, 32)
    params = [p for p in list(bb.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = make_optimizer(params, recipe_spec(TrainSpec(batch_size=x.shape[0]), task))
    return bb, head, task, opt, params


def run_step(bb, head, task, opt, x, gen, step, total):
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return train_step(bb, head, task, opt, scaler, x, gen, contextlib.nullcontext, step, total)


def test_the_two_views_of_an_image_differ_and_the_same_seed_gives_the_same_views(photos):
    x = torch.from_numpy(photos[:4]).float() / 255
    for name in METHODS:
        task = small(name)
        (a1, a2), _ = task.make_batch(x, torch.Generator().manual_seed(3))
        (b1, _b2), _ = task.make_batch(x, torch.Generator().manual_seed(3))
        assert a1.shape == a2.shape == x.shape and torch.equal(a1, b1)
        assert all(not torch.allclose(a1[i], a2[i]) for i in range(4)), name


def test_moco_queue_holds_the_last_keys_and_the_key_encoder_is_the_ema(photos):
    x = torch.from_numpy(photos[:8]).float() / 255
    bb, head, task, opt, params = one_step("moco", x)
    gen = torch.Generator().manual_seed(0)
    queue0 = head.queue.clone()
    key_params = list(head.key_backbone.parameters()) + list(head.key_mlp.parameters())
    assert all(not p.requires_grad for p in key_params) and not any(p is q for p in key_params for q in params)
    enqueued = []
    for step in range(3):
        before_key = [p.clone() for p in head.key_backbone.parameters()]
        _loss, out, _ = run_step(bb, head, task, opt, x, gen, step, 10)
        assert all(p.grad is None for p in key_params)  # no gradient into the key encoder
        for k_old, k_new, q in zip(before_key, head.key_backbone.parameters(), bb.parameters(), strict=True):
            assert torch.allclose(k_new, 0.99 * k_old + 0.01 * q, atol=1e-6)  # after the optimizer step
        enqueued.append(torch.cat([out["k"][0], out["k"][1]]))
    # 3 steps x 16 keys in a ring of 40: positions 0..39 written once, 40..47 wrapped onto 0..7
    keys = torch.cat(enqueued)
    assert int(head.ptr) == 48 % 40
    assert torch.allclose(head.queue[8:40], keys[8:40]) and torch.allclose(head.queue[:8], keys[40:48])
    assert not torch.allclose(head.queue, queue0)


def test_byol_target_is_the_ema_on_the_cosine_schedule_and_gets_no_gradient(photos):
    x = torch.from_numpy(photos[:8]).float() / 255
    bb, head, task, opt, params = one_step("byol", x)
    assert cosine_tau(0, 10, 0.99, 1.0) == pytest.approx(0.99) and cosine_tau(10, 10, 0.99, 1.0) == 1.0
    assert cosine_tau(5, 10, 0.99, 1.0) == pytest.approx(0.995)
    gen = torch.Generator().manual_seed(0)
    target = list(head.target_backbone.parameters()) + list(head.target_projector.parameters())
    for step in (0, 5):
        old = [p.clone() for p in target]
        run_step(bb, head, task, opt, x, gen, step, 10)
        tau = cosine_tau(step, 10, 0.99, 1.0)
        online = list(bb.parameters()) + list(head.projector.parameters())
        for t_old, t_new, o in zip(old, target, online, strict=True):
            assert torch.allclose(t_new, tau * t_old + (1 - tau) * o, atol=1e-6)
        assert all(p.grad is None and not p.requires_grad for p in target)


def test_dino_teacher_center_temperature_and_frozen_prototypes(photos):
    x = torch.from_numpy(photos[:8]).float() / 255
    bb, head, task, opt, params = one_step("dino", x, freeze_last_layer=0.2)
    o = task.opts
    assert teacher_temperature(o, 0, 10) == pytest.approx(0.04) and teacher_temperature(o, 3, 10) == 0.07
    assert teacher_temperature(o, 1, 10) == pytest.approx(0.05)
    gen = torch.Generator().manual_seed(0)
    proto0 = head.head.last_layer.parametrizations.weight.original1.clone()
    for step in range(3):
        center0, teacher0 = head.center.clone(), [p.clone() for p in head.teacher_backbone.parameters()]
        _loss, out, _ = run_step(bb, head, task, opt, x, gen, step, 10)
        t = out["teacher"]
        assert torch.allclose(head.center, 0.9 * center0 + 0.1 * t.reshape(-1, t.shape[-1]).mean(0, keepdim=True))
        tau = cosine_tau(step, 10, o.base_tau, o.final_tau)
        for t_old, t_new, s in zip(teacher0, head.teacher_backbone.parameters(), bb.parameters(), strict=True):
            assert torch.allclose(t_new, tau * t_old + (1 - tau) * s, atol=1e-6)
        assert float(head.teacher_temp) == pytest.approx(teacher_temperature(o, step + 1, 10))
        proto = head.head.last_layer.parametrizations.weight.original1
        assert torch.equal(proto, proto0) == (step < 2)  # frozen for 0.2 of 10 steps
    assert all(p.grad is None for p in head.teacher_head.parameters())


# ---- learning on a fixed batch, and no collapse -----------------------------------------------------------

def eval_loss(task, bb, head, head0_buffers, x):
    """The loss on fixed views of the fixed batch: what training has learned. MoCo: with the step-0 queue (the
    negatives otherwise move with training). DINO: the student's KL to the teacher with the current center and
    temperature, i.e. the loss minus the teacher's entropy (the term the student's gradient cannot change and
    that centering raises on purpose early in training)."""
    probe = copy.deepcopy(head)
    if task.name == "moco":
        probe.load_state_dict({**probe.state_dict(), **head0_buffers})
    with torch.no_grad():
        views, _ = task.make_batch(x, torch.Generator().manual_seed(123))
        out = task.predict(bb, probe, views)
        loss = float(task.loss(out, None))
        if task.name == "dino":
            t = F.softmax((out["teacher"] - out["center"]) / out["teacher_temp"], dim=-1)
            loss -= float(-(t * t.clamp_min(1e-12).log()).sum(-1).mean())
        return loss


@pytest.mark.parametrize("name", METHODS)
def test_loss_falls_over_seeded_steps_on_a_fixed_batch_and_byol_and_dino_do_not_collapse(name, photos):
    """12 optimizer steps on one batch of 8 images whose two views are drawn from the same seed every step."""
    images = np.ascontiguousarray(photos[:8, :, ::2, ::2])  # 8 images at 16 px: cheap steps
    x = torch.from_numpy(images).float() / 255
    torch.manual_seed(0)
    bb = build_backbone("resnet18", 16)
    task = small(name)
    task.prepare(images)
    head = task.build_head(bb, 16)
    buffers0 = {k: v.clone() for k, v in head.named_buffers()}
    params = [p for p in list(bb.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = make_optimizer(params, recipe_spec(TrainSpec(batch_size=8, lr=0.05), task))  # its optimizer, lr raised
    before = eval_loss(task, bb, head, buffers0, x)
    for step in range(12):
        run_step(bb, head, task, opt, x, torch.Generator().manual_seed(123), step, 12)
    after = eval_loss(task, bb, head, buffers0, x)
    assert after < before, (name, before, after)
    if name in ("byol", "dino"):  # the methods without negatives: collapse is their failure mode
        with torch.no_grad():
            bb.eval()
            head.eval()
            f = bb.features(task.feature_input(x))
            e = F.normalize(head.projector(f) if name == "byol" else head.head.mlp(f), dim=1)
        # the per-dimension std of the L2-normalised embeddings over the batch, x sqrt(d): about 1 when they
        # spread over the sphere, 0 when every image gets the same embedding (measured: BYOL 0.29, DINO 0.18)
        spread = float(e.std(dim=0).mean()) * math.sqrt(e.shape[1])
        assert spread > 0.1, (name, spread)


# ---- the recipe ---------------------------------------------------------------------------------------------

def test_the_method_recipe_applies_unless_the_shared_flags_are_set():
    simclr = build_pretext("simclr")
    r = recipe_spec(TrainSpec(batch_size=64), simclr)
    assert (r.optimizer, r.weight_decay, r.warmup) == ("lars", 1e-4, 0.01) and r.lr == pytest.approx(0.4 * 64 / 256)
    mine = recipe_spec(TrainSpec(batch_size=64, lr=0.3, optimizer="sgd", weight_decay=0.0, warmup=0.0), simclr)
    assert (mine.optimizer, mine.lr, mine.weight_decay, mine.warmup) == ("sgd", 0.3, 0.0, 0.0)
    old = recipe_spec(TrainSpec(), build_pretext("rotation"))
    assert (old.optimizer, old.lr, old.weight_decay, old.warmup) == ("sgd", 0.01, 5e-4, 0.0)  # as before
    assert recipe_spec(r, simclr) == r  # idempotent
    moco = recipe_spec(TrainSpec(batch_size=128), build_pretext("moco"))
    assert (moco.optimizer, moco.weight_decay) == ("sgd", 5e-4) and moco.lr == pytest.approx(0.06 * 128 / 512)


def test_warmup_then_cosine_and_the_historical_cosine():
    f = lr_factor(TrainSpec(warmup=0.2), 10)
    assert [round(f(s), 6) for s in range(3)] == [0.5, 1.0, 1.0]
    assert f(6) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    g = lr_factor(TrainSpec(), 10)
    assert all(g(s) == pytest.approx(0.5 * (1 + math.cos(math.pi * s / 10))) for s in range(11))


def test_lars_follows_its_update_rule():
    torch.manual_seed(0)
    w, b = torch.randn(4, 3, requires_grad=True), torch.randn(4, requires_grad=True)
    opt = LARS([w, b], lr=0.5, momentum=0.9, weight_decay=0.01, eta=0.02)
    ref_w, ref_b = w.detach().clone(), b.detach().clone()
    buf_w = buf_b = None
    for _ in range(3):
        gw, gb = torch.randn(4, 3), torch.randn(4)
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        ratio = min(0.02 * float(ref_w.norm()) / (float(gw.norm()) + 0.01 * float(ref_w.norm()) + 1e-8) / 0.5, 1.0)
        dw = (gw + 0.01 * ref_w) * ratio  # weight decay and the trust ratio: matrices only
        buf_w = dw if buf_w is None else 0.9 * buf_w + dw
        buf_b = gb if buf_b is None else 0.9 * buf_b + gb  # a bias: plain momentum SGD, no decay
        ref_w, ref_b = ref_w - 0.5 * buf_w, ref_b - 0.5 * buf_b
        assert torch.allclose(w.detach(), ref_w, atol=1e-6) and torch.allclose(b.detach(), ref_b, atol=1e-6)
