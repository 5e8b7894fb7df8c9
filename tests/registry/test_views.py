"""Batched view ops (registry.pretexts._views) against torchvision's single-image kernels, and their draws.

Tolerances: every op is compared with torchvision's ``transforms.v2.functional`` kernel on each image given the
same parameters. The crop builds torch's own antialias (and plain) interpolation weights, so it is held to 1e-5
for bilinear with and without antialias and for bicubic, up- and downscaling alike; colour ops, grayscale,
solarize, blur (same reflect padding) and rotation to 1e-5; the whole pipeline (errors of up to six ops
chained, hue included) to 1e-4."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from registry.pretexts import _views as V

TOL = 1e-5
N_RATE = 4000  # draws behind every rate check: within 4 binomial sigma


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is fastest, and a loaded machine's spinning second thread cannot slow them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.rand(8, 3, 24, 24, generator=torch.Generator().manual_seed(0))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def each(fn, x: torch.Tensor, *params) -> torch.Tensor:
    """torchvision's ``fn`` applied image by image, with per-image Python parameters."""
    return torch.stack([fn(x[i], *(p[i].tolist() if torch.is_tensor(p) else p for p in params))
                        for i in range(len(x))])


def within_binomial(hits: torch.Tensor, p: float) -> bool:
    n = hits.numel()
    return abs(hits.float().sum().item() - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 1e-9


@pytest.mark.parametrize("mode, antialias", [("bilinear", True), ("bilinear", False), ("bicubic", True)])
@pytest.mark.parametrize("out", [16, 24, 40])
def test_resized_crop_equals_torchvision(x, mode, antialias, out):
    boxes = V.draw_crop_boxes(gen(1), len(x), 24)
    interp = InterpolationMode.BILINEAR if mode == "bilinear" else InterpolationMode.BICUBIC
    ref = torch.stack([TF.resized_crop(x[i], *boxes[i].tolist(), [out, out], interp, antialias=antialias)
                       for i in range(len(x))])
    ref = ref.clamp(0, 1) if mode == "bicubic" else ref  # a PIL / uint8 bicubic is clamped too
    got = V.resized_crop(x, boxes, out, mode, antialias)
    assert got.shape == (len(x), 3, out, out)
    torch.testing.assert_close(got, ref, atol=TOL, rtol=0)


def test_a_flip_folded_into_the_crop_is_hflip_after_it(x):
    boxes, flip = V.draw_crop_boxes(gen(1), len(x), 24), torch.tensor([True, False] * 4)
    want = V.hflip(V.resized_crop(x, boxes, 16, "bicubic"), flip)
    torch.testing.assert_close(V.resized_crop(x, boxes, 16, "bicubic", flip=flip), want, atol=TOL, rtol=0)


def test_antialias_matters_when_a_crop_shrinks(x):
    boxes = torch.tensor([[0, 0, 24, 24]] * len(x))
    shrunk = V.resized_crop(x, boxes, 8, "bilinear", True) - V.resized_crop(x, boxes, 8, "bilinear", False)
    assert shrunk.abs().max() > 0.05  # why grid_sample / plain bilinear would not match antialias=True
    with pytest.raises(ValueError, match="bicubic"):
        V.resized_crop(x, boxes, 8, "bicubic", False)


def _torchvision_get_params(target: float, aspect: float, pos: tuple[float, float], side: int):
    """torchvision's RandomResizedCrop.get_params body for one candidate; None when it does not fit."""
    w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
    if 0 < w <= side and 0 < h <= side:
        return [int(pos[0] * (side - h + 1)), int(pos[1] * (side - w + 1)), h, w]
    return None


@pytest.mark.parametrize("scale, ratio", [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.5, 1.0), (0.1, 10.0))])
def test_crop_boxes_take_the_first_fitting_candidate(scale, ratio):
    n, side = 64, 20
    boxes = V.draw_crop_boxes(gen(3), n, side, scale, ratio)
    g = gen(3)  # the same draws, in draw_crop_boxes' order
    target = side * side * torch.empty(n, 10).uniform_(*scale, generator=g).double()
    aspect = torch.exp(torch.empty(n, 10).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=g)).double()
    pos = torch.rand(n, 2, generator=g, dtype=torch.float64)
    for i in range(n):
        cands = [_torchvision_get_params(target[i, k].item(), aspect[i, k].item(), pos[i].tolist(), side)
                 for k in range(10)]
        want = next((c for c in cands if c is not None), [0, 0, side, side])
        assert boxes[i].tolist() == want


def test_crop_boxes_fall_back_to_the_centre_crop():
    boxes = V.draw_crop_boxes(gen(0), 16, 30, scale=(0.9, 1.0), ratio=(3.0, 4.0))  # nothing fits a square
    assert boxes.tolist() == [[10, 0, 10, 30]] * 16  # w = side, h = round(side / 3), centred


def test_crop_boxes_lie_inside_with_area_and_aspect_in_bounds():
    side, scale, ratio = 32, (0.08, 1.0), (3 / 4, 4 / 3)
    top, left, h, w = V.draw_crop_boxes(gen(5), N_RATE, side, scale, ratio).double().unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= side).all() and (left + w <= side).all()
    area = side * side  # the rounding of h and w moves each side by at most 1/2
    assert ((h - 0.5) * (w - 0.5) <= scale[1] * area).all() and ((h + 0.5) * (w + 0.5) >= scale[0] * area).all()
    assert ((w - 0.5) / (h + 0.5) <= ratio[1]).all() and ((w + 0.5) / (h - 0.5) >= ratio[0]).all()
    assert len(set(zip(h.tolist(), w.tolist(), strict=True))) > 50  # per sample, not one box for the batch


def test_hflip_mirrors_only_the_chosen(x):
    flip = torch.tensor([True, False] * 4)
    ref = torch.stack([TF.horizontal_flip(x[i]) if flip[i] else x[i] for i in range(len(x))])
    torch.testing.assert_close(V.hflip(x, flip), ref, atol=0, rtol=0)


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_apply_rates_are_within_binomial_bounds(p):
    hits = V.draw_apply(gen(7), N_RATE, p)
    assert hits.dtype == torch.bool and within_binomial(hits, p)
    blur, _ = V.draw_blur(gen(8), N_RATE, p)
    assert within_binomial(blur, p)
    _, order = V.draw_jitter(gen(9), N_RATE, p, 0.4, 0.4, 0.2, 0.1)
    assert within_binomial(order[:, 0] >= 0, p)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("ours, theirs, lo, hi", [
    (V.adjust_brightness, TF.adjust_brightness, 0.0, 2.0), (V.adjust_contrast, TF.adjust_contrast, 0.0, 2.0),
    (V.adjust_saturation, TF.adjust_saturation, 0.0, 2.0), (V.adjust_hue, TF.adjust_hue, -0.5, 0.5)])
@pytest.mark.parametrize("levels", [None, 4])
def test_colour_ops_equal_torchvision(x, channels, ours, theirs, lo, hi, levels):
    img = x[:, :channels] if levels is None else (x[:, :channels] * levels).round() / levels  # ties: gray, r = g
    f = torch.empty(len(img)).uniform_(lo, hi, generator=gen(2))
    torch.testing.assert_close(ours(img, f), each(theirs, img, f), atol=TOL, rtol=0)


def _torchvision_jitter(img: torch.Tensor, factors: list[float], order: list[int]) -> torch.Tensor:
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for k in order:
        img = img if k < 0 else ops[k](img, factors[k])
    return img


@pytest.mark.parametrize("p, strengths", [(1.0, (0.8, 0.8, 0.8, 0.2)), (0.5, (0.4, 0.0, 0.2, 0.0))])
@pytest.mark.parametrize("channels", [3, 1])
def test_color_jitter_equals_torchvision_in_each_samples_order(x, p, strengths, channels):
    img = x[:, :channels]
    factors, order = V.draw_jitter(gen(4), len(img), p, *strengths)
    ref = torch.stack([_torchvision_jitter(img[i], factors[i].tolist(), order[i].tolist()) for i in range(len(img))])
    torch.testing.assert_close(V.color_jitter(img, factors, order), ref, atol=TOL, rtol=0)


def test_jitter_draws_are_per_sample_in_torchvisions_ranges():
    factors, order = V.draw_jitter(gen(6), N_RATE, 1.0, 0.4, 0.3, 0.2, 0.1)
    for k, (lo, hi) in enumerate([(0.6, 1.4), (0.7, 1.3), (0.8, 1.2), (-0.1, 0.1)]):
        f = factors[:, k]
        assert lo <= f.min() and f.max() <= hi and f.std() > (hi - lo) / 5  # spread, not one value
    assert (order.sort(1).values == torch.arange(4)).all()  # every row a permutation
    assert len({tuple(r) for r in order.tolist()}) == 24  # all orders occur
    _, off = V.draw_jitter(gen(6), 100, 1.0, 0.4, 0.0, 0.2, 0.0)
    assert ((off == 1) | (off == 3)).sum() == 0 and ((off >= 0).sum(1) == 2).all()  # contrast, hue off


def test_grayscale_equals_torchvision_and_keeps_one_channel(x):
    apply = torch.tensor([True, False] * 4)
    ref = torch.stack([TF.rgb_to_grayscale(x[i], 3) if apply[i] else x[i] for i in range(len(x))])
    torch.testing.assert_close(V.grayscale(x, apply), ref, atol=TOL, rtol=0)
    torch.testing.assert_close(V.grayscale(x[:, :1], apply), x[:, :1], atol=0, rtol=0)


@pytest.mark.parametrize("kernel", [3, 7])
def test_gaussian_blur_equals_torchvision_with_reflect_padding(x, kernel):
    _, sigma = V.draw_blur(gen(11), len(x), 0.5)
    ref = torch.stack([TF.gaussian_blur(x[i], [kernel, kernel], [sigma[i].item()] * 2) for i in range(len(x))])
    torch.testing.assert_close(V.gaussian_blur(x, sigma, kernel), ref, atol=TOL, rtol=0)


def test_blur_sigma_and_kernel_size():
    _, sigma = V.draw_blur(gen(12), N_RATE, 0.5)
    assert 0.1 <= sigma.min() and sigma.max() <= 2.0 and sigma.std() > 0.4
    assert [V.blur_kernel_size(s) for s in (16, 32, 64, 96, 224)] == [3, 3, 7, 11, 23]


def test_solarize_equals_torchvision(x):
    apply = torch.tensor([True, False] * 4)
    ref = torch.stack([TF.solarize(x[i], 0.5) if apply[i] else x[i] for i in range(len(x))])
    torch.testing.assert_close(V.solarize(x, apply), ref, atol=0, rtol=0)


def test_rotate_equals_torchvision_and_angles_are_per_sample(x):
    angle = V.draw_rotation(gen(13), len(x), 10.0)
    ref = each(lambda img, a: TF.rotate(img, a, InterpolationMode.BILINEAR), x, angle)
    torch.testing.assert_close(V.rotate(x, angle), ref, atol=TOL, rtol=0)
    many = V.draw_rotation(gen(13), N_RATE, 10.0)
    assert -10 <= many.min() and many.max() <= 10 and many.std() > 4


def _torchvision_view(img, recipe, box, factors, order, gray, blur, sigma, sol, flip, angle, out):
    interp = InterpolationMode.BICUBIC if recipe.interpolation == "bicubic" else InterpolationMode.BILINEAR
    v = TF.resized_crop(img, *box.tolist(), [out, out], interp, antialias=True).clamp(0, 1)
    v = _torchvision_jitter(v, factors.tolist(), order.tolist())
    v = TF.rgb_to_grayscale(v, v.shape[0]) if gray else v
    k = V.blur_kernel_size(out)
    v = TF.gaussian_blur(v, [k, k], [sigma.item()] * 2) if blur else v
    v = TF.solarize(v, 0.5) if sol else v
    v = TF.horizontal_flip(v) if flip else v
    return TF.rotate(v, angle.item(), InterpolationMode.BILINEAR) if recipe.rotation_degrees > 0 else v


@pytest.mark.parametrize("recipe, out", [(V.SIMCLR, 20), (V.BYOL[1], 24), (V.grayscale_recipe(V.MOCOV2), 16)])
def test_make_view_is_torchvisions_pipeline_with_the_drawn_parameters(x, recipe, out):
    recipe = replace(recipe, out_size=out, solarize_p=max(recipe.solarize_p, 0.5))
    got = V.make_view(x, recipe, gen(21))
    g, n, r = gen(21), len(x), recipe  # the draws in make_view's order
    boxes = V.draw_crop_boxes(g, n, 24, r.crop_scale, r.crop_ratio)
    factors, order = V.draw_jitter(g, n, r.jitter_p, r.brightness, r.contrast, r.saturation, r.hue)
    gray = V.draw_apply(g, n, r.grayscale_p)
    blur, sigma = V.draw_blur(g, n, r.blur_p, r.blur_sigma)
    sol, flip = V.draw_apply(g, n, r.solarize_p), V.draw_apply(g, n, r.flip_p)
    angle = V.draw_rotation(g, n, r.rotation_degrees)
    ref = torch.stack([_torchvision_view(x[i], r, boxes[i], factors[i], order[i], gray[i], blur[i], sigma[i],
                                         sol[i], flip[i], angle[i], out) for i in range(n)])
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("recipe", [V.SIMCLR, V.MOCOV2, *V.BYOL, V.grayscale_recipe(V.SIMCLR)])
@pytest.mark.parametrize("channels", [3, 1])
def test_views_are_seeded_per_sample_and_in_range(x, recipe, channels):
    img = x[:, :channels]
    a = V.make_view(img, recipe, gen(1))
    assert a.shape == img.shape and 0 <= a.min() and a.max() <= 1
    torch.testing.assert_close(V.make_view(img, recipe, gen(1)), a, atol=0, rtol=0)
    assert not torch.equal(V.make_view(img, recipe, gen(2)), a)
    g = gen(3)
    v1, v2 = V.make_view(img, recipe, g), V.make_view(img, recipe, g)  # a method's two views of each image
    assert all(not torch.equal(v1[i], v2[i]) for i in range(len(img)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_views_keep_the_images_dtype(x, dtype):
    recipe = V.ViewRecipe(blur_p=1.0, solarize_p=1.0, rotation_degrees=5.0)
    v = V.make_view(x.to(dtype), recipe, gen(0))
    assert v.dtype == dtype
    if dtype == torch.float64:
        torch.testing.assert_close(v.float(), V.make_view(x, recipe, gen(0)), atol=TOL, rtol=0)


def test_out_size_can_differ_from_the_side(x):
    assert V.make_view(x, V.ViewRecipe(out_size=32), gen(0)).shape == (8, 3, 32, 32)
    assert V.make_view(x, V.ViewRecipe(out_size=10), gen(0)).shape == (8, 3, 10, 10)


def test_grayscale_recipe_keeps_gray_images_gray(x):
    gray = x[:, :1].expand(-1, 3, -1, -1).contiguous()
    for base in (V.SIMCLR, V.MOCOV2, *V.BYOL):
        recipe = V.grayscale_recipe(base)
        assert (recipe.saturation, recipe.hue, recipe.grayscale_p, recipe.solarize_p) == (0, 0, 0, 0)
        assert recipe.rotation_degrees == 10.0 and recipe.brightness == base.brightness
        for seed in range(4):
            v = V.make_view(gray, recipe, gen(seed))
            assert torch.equal(v[:, 0], v[:, 1]) and torch.equal(v[:, 1], v[:, 2])


def test_recipes_are_solo_learns_cifar_files():
    simclr, weak, (byol1, byol2) = V.SIMCLR, V.MOCOV2, V.BYOL  # symmetric, symmetric_weak, asymmetric.yaml
    for r in (simclr, weak, byol1, byol2):
        assert (r.crop_scale, r.jitter_p, r.grayscale_p, r.flip_p) == ((0.08, 1.0), 0.8, 0.2, 0.5)
        assert r.interpolation == "bicubic"
    jitter = [(r.brightness, r.contrast, r.saturation, r.hue) for r in (simclr, weak, byol1, byol2)]
    assert jitter == [(0.8, 0.8, 0.8, 0.2), (0.4, 0.4, 0.4, 0.1), (0.4, 0.4, 0.2, 0.1), (0.4, 0.4, 0.2, 0.1)]
    assert [(r.blur_p, r.solarize_p) for r in (simclr, weak, byol1, byol2)] == [(0.5, 0), (0.5, 0), (0, 0), (0, 0.2)]
    assert V.DINO == V.BYOL


@pytest.mark.parametrize("field, value", [("flip_p", 1.5), ("hue", 0.6), ("crop_scale", (0.5, 0.2)),
                                          ("crop_ratio", (0.0, 1.0)), ("brightness", -0.1), ("out_size", 0),
                                          ("interpolation", "nearest"), ("rotation_degrees", -1.0)])
def test_recipe_rejects_bad_values_naming_them(field, value):
    with pytest.raises(ValueError, match=field):
        V.ViewRecipe(**{field: value})


def test_make_view_rejects_images_it_cannot_read(x):
    for bad in (x[:, :2], x[..., :20], (x * 255).to(torch.uint8)):
        with pytest.raises(ValueError, match="images"):
            V.make_view(bad, V.SIMCLR, gen(0))
