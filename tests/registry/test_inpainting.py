"""Context encoders (inpainting): the masks, the mean fill, the weighted L2 against a slow reference and a hand
computation, learning on a fixed batch, and the adversarial option's discriminator and gradient separation."""
import numpy as np
import pytest
import torch

from registry.backbones import IMAGENET_MEAN, build_backbone
from registry.pretexts import build_pretext
from registry.pretexts.inpainting import InpaintingOptions, border_px, center_box, region_masks


def test_center_region_is_the_middle_half_side_square_with_its_border_visible():
    for size in (16, 28, 32, 128):
        task = build_pretext("inpainting")
        region, hole = region_masks(3, size, task.opts, None)
        off, side = center_box(size, 0.25)
        inset = border_px(size, 4 / 128)
        assert side == size // 2 and off == (size - side) // 2
        want = torch.zeros(size, size, dtype=torch.bool)
        want[off:off + side, off:off + side] = True
        want_hole = torch.zeros(size, size, dtype=torch.bool)
        want_hole[off + inset:off + side - inset, off + inset:off + side - inset] = True
        assert all(torch.equal(region[i, 0], want) and torch.equal(hole[i, 0], want_hole) for i in range(3))
    assert border_px(128, 4 / 128) == 4 and border_px(32, 4 / 128) == 1 and border_px(16, 4 / 128) == 1
    assert border_px(224, 4 / 128) == 7 and border_px(32, 0.0) == 0


def test_random_blocks_lie_inside_the_image_and_cover_about_the_area():
    opts = InpaintingOptions(region="random")
    region, hole = region_masks(64, 32, opts, torch.Generator().manual_seed(0))
    cover = region.float().mean(dim=(1, 2, 3))
    assert region.shape == (64, 1, 32, 32) and bool((hole <= region).all())  # the hole lies in the region
    assert bool((cover >= 0.25).all()) and bool((cover <= 0.25 + 1 / 16 + 1e-6).all())  # at most one block over
    again, _ = region_masks(64, 32, opts, torch.Generator().manual_seed(0))
    other, _ = region_masks(64, 32, opts, torch.Generator().manual_seed(1))
    assert torch.equal(again, region) and not torch.equal(other, region)  # seeded, and varying


def test_the_fill_is_the_per_channel_mean_of_the_training_images():
    task = build_pretext("inpainting")
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(task.make_batch(x, torch.Generator())[0][1], x)
    _, hole = region_masks(2, 16, task.opts, None)
    masked = task.make_batch(x, torch.Generator())[0][0]  # ImageNet-normalized; before prepare: ImageNet mean
    assert torch.allclose(masked[:, :, 7, 7], torch.zeros(2, 3), atol=1e-6)  # the mean normalizes to 0
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 3, 16, 16), dtype=np.uint8)
    images[:, 1] //= 2
    task.prepare(images)
    want = images.astype(np.float64).mean(axis=(0, 2, 3)) / 255
    assert np.allclose(task.fill.numpy(), want, atol=1e-6) and not np.allclose(want, IMAGENET_MEAN, atol=0.05)
    masked = task.make_batch(x, torch.Generator())[0][0]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1)
    pix = masked.flatten(2)[:, :, hole[0, 0].flatten()] * std + mean
    assert torch.allclose(pix, torch.tensor(want, dtype=torch.float32).view(1, 3, 1).expand_as(pix), atol=1e-5)
    outside = (~region_masks(2, 16, task.opts, None)[0][0, 0]).flatten()
    assert torch.allclose(masked.flatten(2)[:, :, outside] * std + mean, x.flatten(2)[:, :, outside], atol=1e-5)


def reference_l2(recon, x, size, side_off, side, inset, border_weight=10.0):
    """The weighted L2 pixel by pixel: 1 on the hole, border_weight on the border, over the region's pixels."""
    total, count = 0.0, 0
    for b in range(x.shape[0]):
        for i in range(size):
            for j in range(size):
                if not (side_off <= i < side_off + side and side_off <= j < side_off + side):
                    continue
                lo, hi = side_off + inset, side_off + side - inset
                in_hole = lo <= i < hi and lo <= j < hi
                w = 1.0 if in_hole else border_weight
                for c in range(x.shape[1]):
                    total += w * float(recon[b, c, i, j] - x[b, c, i, j]) ** 2
                    count += 1
    return total / count


def test_the_loss_is_the_weighted_l2_of_the_reference_and_of_a_hand_computed_case():
    task = build_pretext("inpainting")
    gen = torch.Generator().manual_seed(0)
    x, recon = torch.rand(2, 3, 16, 16, generator=gen), torch.rand(2, 3, 16, 16, generator=gen)
    _, targets = task.make_batch(x, gen)
    got = task.loss((recon, None, None, None), targets)
    assert got.item() == pytest.approx(reference_l2(recon, x, 16, 4, 8, 1), rel=1e-5)
    # 8 px: region 4 x 4 at 2, hole 2 x 2 at 3; error 1 everywhere: (4 x 1 + 12 x 10) / 16 = 7.75
    _, targets = task.make_batch(torch.ones(1, 3, 8, 8), gen)
    assert task.loss((torch.zeros(1, 3, 8, 8), None, None, None), targets).item() == pytest.approx(7.75)
    plain = build_pretext("inpainting", InpaintingOptions(border_weight=1.0))
    _, targets = plain.make_batch(x, gen)
    assert plain.loss((recon, None, None, None), targets).item() == pytest.approx(
        ((recon - x)[:, :, 4:12, 4:12] ** 2).mean().item(), rel=1e-5)


def _trained(task, steps=20):
    torch.manual_seed(0)
    bb = task.wrap_backbone(build_backbone("resnet18", 32))
    head = task.build_head(bb, 32)
    opt = torch.optim.Adam(list(bb.parameters()) + list(head.parameters()), lr=1e-3)
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        inputs, targets = task.make_batch(x, gen)
        loss = task.loss(task.predict(bb, head, inputs), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_the_loss_falls_over_seeded_steps_on_a_fixed_batch():
    losses = _trained(build_pretext("inpainting"))
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4]), losses


def test_the_adversarial_option_adds_a_discriminator_and_the_weighted_terms():
    torch.manual_seed(0)
    adv = build_pretext("inpainting", InpaintingOptions(adversarial=True))
    bb = adv.wrap_backbone(build_backbone("resnet18", 32))
    assert build_pretext("inpainting").build_head(bb, 32).disc is None
    head = adv.build_head(bb, 32)
    assert head.disc is not None and sum(p.numel() for p in head.disc.parameters()) > 0
    inputs, targets = adv.make_batch(torch.rand(4, 3, 32, 32), torch.Generator().manual_seed(0))
    out = adv.predict(bb, head, inputs)
    assert out[1].shape == out[2].shape == out[3].shape == (4, 1)
    t = adv.loss_terms(out, targets)
    total = adv.loss(out, targets)
    assert total.item() == pytest.approx((0.999 * t["l2"] + 0.001 * t["adv"] + t["disc"]).item(), rel=1e-6)
    plain = build_pretext("inpainting").loss((out[0], None, None, None), targets)
    assert plain.item() == pytest.approx(t["l2"].item(), rel=1e-6)  # the same L2 term without the option
    assert (total - t["disc"] - 0.999 * plain).item() == pytest.approx(0.001 * t["adv"].item(), rel=1e-4)


def test_no_gradient_crosses_between_the_discriminator_and_the_generator():
    torch.manual_seed(0)
    task = build_pretext("inpainting", InpaintingOptions(adversarial=True))
    bb = task.wrap_backbone(build_backbone("resnet18", 32))
    head = task.build_head(bb, 32)
    generator = list(bb.parameters()) + list(head.decoder.parameters())
    for term, silent, moved in (("disc", generator, list(head.disc.parameters())),
                                ("adv", list(head.disc.parameters()), generator)):
        inputs, targets = task.make_batch(torch.rand(4, 3, 32, 32), torch.Generator().manual_seed(0))
        bb.zero_grad(set_to_none=True)
        head.zero_grad(set_to_none=True)
        task.loss_terms(task.predict(bb, head, inputs), targets)[term].backward()
        assert all(p.grad is None for p in silent), term  # D's loss never reaches the encoder or decoder, ...
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in moved), term  # ... and G's never D


def test_random_blocks_train_and_the_adversarial_discriminator_sees_the_whole_image():
    task = build_pretext("inpainting", InpaintingOptions(region="random", adversarial=True))
    torch.manual_seed(0)
    bb = task.wrap_backbone(build_backbone("resnet18", 32))
    head = task.build_head(bb, 32)
    inputs, targets = task.make_batch(torch.rand(2, 3, 32, 32), torch.Generator().manual_seed(0))
    out = task.predict(bb, head, inputs)
    assert out[0].shape == (2, 3, 32, 32) and torch.isfinite(task.loss(out, targets))
