"""Batched view generation and masking (engine/augment.py), checked against
torchvision.transforms.v2.functional and hand-written formulas."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from engine import augment as A
from engine.augment import (MEAN, NO_VIEWS, STD, ViewConfig, default_views, denormalize, identity,
                            make_view_pair, make_views, mask_image_patches, normalize, preview,
                            random_patch_mask)
from engine.config import check, describe, from_dict, to_dict


def images(b=6, c=3, h=32, w=32, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0


def only(**kw) -> ViewConfig:
    """The identity config with a few operations switched on."""
    return dataclasses.replace(identity(), **kw)


# --- normalisation --------------------------------------------------------------------------


def test_normalize_values_and_inverse():
    x = torch.tensor([0, 64, 128, 255], dtype=torch.uint8).view(1, 1, 2, 2)
    n = normalize(x)
    assert n.dtype == torch.float32
    expected = (torch.tensor([0, 64, 128, 255]) / 255.0 - MEAN) / STD
    torch.testing.assert_close(n.flatten(), expected, rtol=0, atol=1e-6)
    assert n.min().item() == pytest.approx(-2.0) and n.max().item() == pytest.approx(2.0)
    torch.testing.assert_close(denormalize(n), x.float() / 255.0, rtol=0, atol=1e-6)
    assert denormalize(torch.tensor([-5.0, 5.0])).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, 8, 8), torch.zeros(3, 8, 8, dtype=torch.uint8)])
def test_inputs_must_be_uint8_batches(bad):
    with pytest.raises(TypeError, match="uint8"):
        make_views(bad, ViewConfig(), gen())


def test_two_channel_input_is_refused():
    with pytest.raises(ValueError, match="1 or 3 channels"):
        normalize(torch.zeros(1, 2, 4, 4, dtype=torch.uint8))


# --- the pipeline ---------------------------------------------------------------------------


@pytest.mark.parametrize("c", [1, 3])
def test_same_seed_same_views_other_seed_other_views(c):
    x = images(c=c)
    cfg = dataclasses.replace(ViewConfig(), blur_p=0.5, solarize_p=0.3, noise_p=0.5)
    a = make_views(x, cfg, gen(1))
    b = make_views(x, cfg, gen(1))
    d = make_views(x, cfg, gen(2))
    assert torch.equal(a, b)
    assert (a - d).abs().mean() > 0.05
    # consecutive calls on one generator differ (fresh randomness per batch)
    g = gen(1)
    assert not torch.equal(make_views(x, cfg, g), make_views(x, cfg, g))


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("b", [1, 5])
@pytest.mark.parametrize("out", [0, 24, 40])
def test_shape_dtype_range(c, b, out):
    x = images(b=b, c=c, h=32, w=32)
    cfg = dataclasses.replace(default_views("cifar10", 32, c), out_size=out, blur_p=0.5, noise_p=0.5)
    v = make_views(x, cfg, gen())
    side = out or 32
    assert v.shape == (b, c, side, side) and v.dtype == torch.float32
    assert torch.isfinite(v).all()
    lo, hi = (0 - MEAN) / STD, (1 - MEAN) / STD
    assert v.min() >= lo - 1e-5 and v.max() <= hi + 1e-5


def test_non_square_input_keeps_its_shape():
    x = images(b=3, h=20, w=28)
    assert make_views(x, ViewConfig(), gen()).shape == (3, 3, 20, 28)
    assert make_views(x, identity(), gen()).shape == (3, 3, 20, 28)


def test_empty_batch():
    v = make_views(torch.zeros(0, 3, 8, 8, dtype=torch.uint8), ViewConfig(), gen())
    assert v.shape == (0, 3, 8, 8)


@pytest.mark.parametrize("c", [1, 3])
def test_identity_config_is_exactly_normalize(c):
    x = images(c=c)
    assert torch.equal(make_views(x, identity(), gen()), normalize(x))
    assert torch.equal(make_views(x, NO_VIEWS, gen(5)), normalize(x))
    # strengths set but probability 0 change nothing either
    cfg = only(brightness=0.9, contrast=0.9, saturation=0.9, hue=0.4, noise_std=0.3)
    assert torch.equal(make_views(x, cfg, gen()), normalize(x))


def test_flip_only_flips_exactly():
    x = images(b=16)
    assert torch.equal(make_views(x, only(flip_p=1.0), gen()), normalize(x).flip(-1))
    v = make_views(x, only(flip_p=0.5), gen(3))
    n = normalize(x)
    flipped = [torch.equal(v[i], n[i].flip(-1)) for i in range(16)]
    kept = [torch.equal(v[i], n[i]) for i in range(16)]
    assert all(f != k for f, k in zip(flipped, kept))     # each image exactly one or the other
    assert 2 <= sum(flipped) <= 14


def test_crop_of_a_known_box_matches_torchvision_resized_crop():
    x = images(b=2)
    boxes = torch.tensor([[4.0, 6.0, 16.0, 20.0], [10.0, 0.0, 22.0, 30.0]])
    y = A.resized_crop_flip(x, boxes, None, (32, 32))
    for i, (t, l, h, w) in enumerate(boxes.int().tolist()):
        ref = TF.resized_crop(unit(x[i]), t, l, h, w, [32, 32], antialias=True)
        d = (y[i] - ref).abs()
        # interior: the same bilinear weights; outermost pixels may lean on the pixel just
        # outside the box (grid_sample sees the whole image, crop-then-resize clamps at the box)
        assert d[:, 1:-1, 1:-1].max() < 1e-5
        assert d.mean() < 0.02
    # a flipped crop is the mirror image of the crop
    yf = A.resized_crop_flip(x, boxes, torch.tensor([True, False]), (32, 32))
    torch.testing.assert_close(yf[0], y[0].flip(-1), rtol=0, atol=1e-5)
    assert torch.equal(yf[1], y[1])
    # the whole-image box is the identity
    full = A.resized_crop_flip(x, torch.tensor([[0.0, 0.0, 32.0, 32.0]] * 2), None, (32, 32))
    torch.testing.assert_close(full, unit(x), rtol=0, atol=1e-6)


def test_axis_aligned_grid_equals_affine_grid():
    boxes = torch.rand(7, 4, generator=gen()) * 12 + 1
    theta = A.crop_theta(boxes, torch.rand(7, generator=gen(1)) < 0.5, 32, 28)
    ours = A.axis_aligned_grid(theta, (24, 20))
    ref = F.affine_grid(theta, [7, 3, 24, 20], align_corners=False)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_crop_boxes_follow_scale_and_ratio():
    B, H, W = 2000, 32, 32
    u = torch.rand(B, 22, generator=gen())
    boxes = A.sample_crop_boxes(u[:, :10], u[:, 10:20], u[:, 20:22], H, W, (0.2, 1.0), (3 / 4, 4 / 3))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= H + 1e-4).all() and (left + w <= W + 1e-4).all()
    area = h * w / (H * W)
    assert area.min() >= 0.2 - 1e-5 and area.max() <= 1 + 1e-5
    ratio = w / h
    assert ratio.min() >= 3 / 4 - 1e-5 and ratio.max() <= 4 / 3 + 1e-5
    assert area.max() - area.min() > 0.5          # the range is actually used
    # scale 1 on a square image: no try fits, torchvision's fallback is the whole image
    full = A.sample_crop_boxes(u[:5, :10], u[:5, 10:20], u[:5, 20:22], H, W, (1.0, 1.0), (3 / 4, 4 / 3))
    torch.testing.assert_close(full, torch.tensor([[0.0, 0.0, 32.0, 32.0]] * 5))


def test_crop_in_the_pipeline_zooms_in():
    # a horizontal ramp: a crop of a fraction of the area spans a smaller range of values
    ramp = torch.linspace(0, 255, 32).round().to(torch.uint8).view(1, 1, 1, 32).expand(64, 3, 32, 32)
    cfg = only(crop_scale_min=0.1, crop_scale_max=0.1, crop_ratio_min=1.0, crop_ratio_max=1.0)
    v = denormalize(make_views(ramp.contiguous(), cfg, gen()))
    spans = v[:, 0, 16].amax(1) - v[:, 0, 16].amin(1)
    side = (0.1 ** 0.5)                              # crop side / image side
    torch.testing.assert_close(spans, torch.full((64,), side * 31 / 32), rtol=0, atol=0.03)


# --- per-operation functions against torchvision ---------------------------------------------


@pytest.mark.parametrize("c", [1, 3])
def test_brightness_matches_torchvision(c):
    x = unit(images(b=4, c=c))
    f = torch.tensor([0.3, 0.9, 1.0, 1.6])
    y = A.adjust_brightness(x, f)
    for i in range(4):
        torch.testing.assert_close(y[i], TF.adjust_brightness(x[i], float(f[i])), rtol=0, atol=1e-5)


@pytest.mark.parametrize("c", [1, 3])
def test_contrast_matches_torchvision(c):
    x = unit(images(b=4, c=c))
    f = torch.tensor([0.2, 0.8, 1.0, 1.5])
    y = A.adjust_contrast(x, f)
    for i in range(4):
        torch.testing.assert_close(y[i], TF.adjust_contrast(x[i], float(f[i])), rtol=0, atol=1e-5)


def test_saturation_matches_torchvision():
    x = unit(images(b=4))
    f = torch.tensor([0.0, 0.6, 1.0, 1.4])
    y = A.adjust_saturation(x, f)
    for i in range(4):
        torch.testing.assert_close(y[i], TF.adjust_saturation(x[i], float(f[i])), rtol=0, atol=1e-5)
    gray = unit(images(b=2, c=1))
    assert torch.equal(A.adjust_saturation(gray, 0.3), gray)


def test_hue_matches_torchvision():
    x = unit(images(b=6))
    x[0] = x[0, :1]                                  # gray pixels (chroma 0)
    x[1] = (x[1] * 4).round() / 4                    # ties between channels
    shift = torch.tensor([0.25, -0.5, 0.1, -0.1, 0.5, 0.0])
    y = A.adjust_hue(x, shift)
    for i in range(6):
        torch.testing.assert_close(y[i], TF.adjust_hue(x[i], float(shift[i])), rtol=0, atol=1e-5)
    torch.testing.assert_close(A.adjust_hue(x, 0.0), x, rtol=0, atol=1e-6)


def test_per_op_functions_leave_their_input_alone():
    x = unit(images(b=2))
    before = x.clone()
    for fn in (A.adjust_brightness, A.adjust_contrast, A.adjust_saturation):
        fn(x, 1.3)
    A.adjust_hue(x, 0.2)
    A.solarize(x, 0.5)
    A.gaussian_blur(x, 1.0, 5)
    assert torch.equal(x, before)


def test_solarize_matches_the_formula():
    x = unit(images(b=4))
    ref = torch.where(x >= 0.4, 1.0 - x, x)
    assert torch.equal(A.solarize(x, 0.4), ref)
    assert torch.equal(A.solarize(x, 0.4), TF.solarize(x, 0.4))
    part = A.solarize(x, 0.4, apply=torch.tensor([True, False, True, False]))
    assert torch.equal(part[0], ref[0]) and torch.equal(part[1], x[1])
    # in the pipeline
    xu = images(b=4)
    v = make_views(xu, only(solarize_p=1.0, solarize_threshold=0.5), gen())
    u = unit(xu)
    torch.testing.assert_close(denormalize(v), torch.where(u >= 0.5, 1 - u, u), rtol=0, atol=1e-6)


@pytest.mark.parametrize("ks", [3, 7, 13])
def test_blur_matches_torchvision(ks):
    x = unit(images(b=4, h=20, w=24))
    sigma = torch.tensor([0.5, 1.0, 1.7, 3.0])
    y = A.gaussian_blur(x, sigma, ks)
    for i in range(4):
        ref = TF.gaussian_blur(x[i], [ks, ks], [float(sigma[i])] * 2)
        torch.testing.assert_close(y[i], ref, rtol=0, atol=1e-5)
    part = A.gaussian_blur(x, sigma, ks, apply=torch.tensor([False, True, False, True]))
    assert torch.equal(part[0], x[0]) and torch.equal(part[2], x[2])
    torch.testing.assert_close(part[1], y[1])


def test_blur_in_the_pipeline():
    x = images(b=3)
    cfg = only(blur_p=1.0, blur_sigma_min=1.2, blur_sigma_max=1.2)
    ks = A.blur_kernel_size(cfg, 32)
    assert ks == 2 * 4 + 1
    v = denormalize(make_views(x, cfg, gen()))
    for i in range(3):
        torch.testing.assert_close(v[i], TF.gaussian_blur(unit(x[i]), [ks, ks], [1.2, 1.2]),
                                   rtol=0, atol=1e-5)
    assert A.blur_kernel_size(dataclasses.replace(cfg, blur_sigma_max=5.0), 8) == 15  # radius ≤ side-1


def test_grayscale_makes_channels_equal():
    x = images(b=5)
    v = denormalize(make_views(x, only(grayscale_p=1.0), gen()))
    assert torch.equal(v[:, 0], v[:, 1]) and torch.equal(v[:, 1], v[:, 2])
    luma = TF.rgb_to_grayscale(unit(x))
    torch.testing.assert_close(v[:, :1], luma, rtol=0, atol=1e-6)
    # with p = 0.5 some images are gray, the others untouched
    v = make_views(x.repeat(4, 1, 1, 1), only(grayscale_p=0.5), gen(1))
    n = normalize(x.repeat(4, 1, 1, 1))
    gray = [torch.equal(v[i, 0], v[i, 1]) for i in range(20)]
    assert 3 <= sum(gray) <= 17
    assert all(torch.equal(v[i], n[i]) for i in range(20) if not gray[i])
    # one channel: nothing to do
    g1 = images(b=2, c=1)
    assert torch.equal(make_views(g1, only(grayscale_p=1.0), gen()), normalize(g1))


def test_jitter_factors_stay_in_range():
    # brightness only, always applied, on a mid-gray image: each view is the image times one factor
    x = torch.full((200, 3, 4, 4), 100, dtype=torch.uint8)
    v = denormalize(make_views(x, only(jitter_p=1.0, brightness=0.4), gen()))
    f = v[:, 0, 0, 0] / (100 / 255)
    assert torch.allclose(v, (f.view(-1, 1, 1, 1) * 100 / 255).expand_as(v), atol=1e-6)
    assert f.min() >= 0.6 - 1e-5 and f.max() <= 1.4 + 1e-5
    assert f.min() < 0.7 and f.max() > 1.3
    # applied with probability p
    v = make_views(x, only(jitter_p=0.5, brightness=0.4), gen(1))
    untouched = (v == normalize(x)).flatten(1).all(1).float().mean().item()
    assert 0.35 < untouched < 0.65


def test_hue_jitter_keeps_gray_images_gray():
    x = torch.full((4, 3, 8, 8), 90, dtype=torch.uint8)
    v = make_views(x, only(jitter_p=1.0, hue=0.5), gen())
    torch.testing.assert_close(v, normalize(x), rtol=0, atol=1e-6)


def test_noise_has_the_configured_std():
    x = torch.full((64, 3, 16, 16), 128, dtype=torch.uint8)
    v = denormalize(make_views(x, only(noise_p=1.0, noise_std=0.05), gen()))
    r = v - 128 / 255
    assert r.mean().abs() < 0.002
    assert r.std().item() == pytest.approx(0.05, rel=0.03)


def test_view_pair_gives_two_different_views():
    x = images(b=4)
    v1, v2 = make_view_pair(x, ViewConfig(), gen())
    assert v1.shape == v2.shape == (4, 3, 32, 32)
    assert (v1 - v2).abs().mean() > 0.1
    a1, a2 = make_view_pair(x, ViewConfig(), gen())
    assert torch.equal(v1, a1) and torch.equal(v2, a2)


def test_generator_device_is_used_for_the_draws():
    # parameters are drawn on the generator's device and moved to the data's device
    x = images(b=2)
    g = torch.Generator(device=x.device).manual_seed(0)
    assert make_views(x, ViewConfig(), g).device == x.device
    ids_keep, mask, _ = random_patch_mask(2, 16, 0.5, g, None)
    assert mask.device == g.device


# --- presets and config -------------------------------------------------------------------


def test_presets():
    cifar = default_views("cifar10", 32, 3)
    assert (cifar.crop_scale_min, cifar.crop_scale_max) == (0.2, 1.0)
    assert (cifar.jitter_p, cifar.brightness, cifar.contrast, cifar.saturation, cifar.hue) == \
        (0.8, 0.4, 0.4, 0.4, 0.1)
    assert cifar.grayscale_p == 0.2 and cifar.blur_p == 0 and cifar.solarize_p == 0
    assert cifar.flip_p == 0.5
    assert default_views("stl10", 96, 3).blur_p == 0.5
    mnist = default_views("MNIST", 28, 1)
    assert mnist.flip_p == 0 and mnist.crop_scale_min == 0.4
    assert mnist.saturation == mnist.hue == mnist.grayscale_p == 0
    assert default_views("digits", 8, 1).crop_scale_min >= 0.6
    svhn = default_views("svhn", 32, 3)
    assert svhn.flip_p == 0 and svhn.hue > 0
    shapes = default_views("shapes", 32, 3)
    assert shapes.flip_p > 0 and shapes.grayscale_p == 0 and 0 < shapes.hue <= 0.05
    gray_folder = default_views("my-folder", 64, 1)
    assert gray_folder.saturation == gray_folder.hue == 0
    for cfg in (cifar, mnist, shapes, gray_folder, identity(), NO_VIEWS, ViewConfig()):
        check(cfg)


def test_config_describes_itself():
    rows = describe(ViewConfig)
    names = [r["name"] for r in rows]
    for name in ("crop_scale_min", "crop_scale_max", "crop_ratio_min", "crop_ratio_max", "flip_p",
                 "jitter_p", "brightness", "contrast", "saturation", "hue", "grayscale_p", "blur_p",
                 "blur_sigma_min", "blur_sigma_max", "solarize_p", "noise_p", "noise_std", "out_size"):
        assert name in names
    assert all(r["help"] for r in rows)
    assert all(r["min"] is not None and r["max"] is not None for r in rows)
    cfg = default_views("shapes", 32, 3)
    assert from_dict(ViewConfig, to_dict(cfg)) == cfg


# --- preview -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(20, 32, 32, 3), (20, 28, 28, 1), (20, 28, 28)])
def test_preview_returns_drawable_uint8(shape):
    data = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    c = shape[3] if len(shape) == 4 else 1
    orig, v1, v2 = preview(data, default_views("x", shape[1], c), n=8, seed=3)
    for a in (orig, v1, v2):
        assert a.dtype == np.uint8 and a.shape == (8, shape[1], shape[2], c)
    assert not np.array_equal(v1, v2)
    # originals are images of the data set; same seed, same preview
    flat = data.reshape(len(data), -1)
    assert all((flat == o.reshape(-1)).all(1).any() for o in orig)
    again = preview(data, default_views("x", shape[1], c), n=8, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((orig, v1, v2), again))


def test_preview_of_identity_is_the_originals_and_out_size_applies():
    data = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    orig, v1, v2 = preview(data, identity(), n=8)
    assert orig.shape == (5, 16, 16, 3)
    assert np.array_equal(v1, orig) and np.array_equal(v2, orig)
    _, w1, _ = preview(data, dataclasses.replace(ViewConfig(), out_size=24), n=3)
    assert w1.shape == (3, 24, 24, 3)


# --- masking -------------------------------------------------------------------------------


@pytest.mark.parametrize("L,ratio", [(64, 0.75), (49, 0.75), (10, 0.25), (16, 0.0), (196, 0.9)])
def test_patch_mask_keeps_exactly_round_and_restores(L, ratio):
    B = 5
    ids_keep, mask, ids_restore = random_patch_mask(B, L, ratio, gen(), "cpu")
    n_keep = round(L * (1 - ratio))
    assert ids_keep.shape == (B, n_keep) and mask.shape == ids_restore.shape == (B, L)
    assert (mask.sum(1) == L - n_keep).all()
    # kept patches are exactly the zeros of the mask
    assert (mask.gather(1, ids_keep) == 0).all()
    # ids_restore inverts the shuffle: tokens shuffled then gathered come back in order
    ids_shuffle = torch.argsort(ids_restore, dim=1)
    assert torch.equal(ids_shuffle[:, :n_keep], ids_keep)
    tokens = torch.arange(L).expand(B, L)
    shuffled = tokens.gather(1, ids_shuffle)
    assert torch.equal(shuffled.gather(1, ids_restore), tokens)
    # unmasked MAE path: visible tokens + mask tokens, unshuffled, keep the visible ones in place
    visible = tokens.gather(1, ids_keep)
    full = torch.cat([visible, torch.full((B, L - n_keep), -1)], dim=1).gather(1, ids_restore)
    assert torch.equal(full[mask == 0], tokens[mask == 0]) and (full[mask == 1] == -1).all()


def test_patch_mask_is_seeded_and_varies_per_image():
    a = random_patch_mask(8, 64, 0.75, gen(4), "cpu")
    b = random_patch_mask(8, 64, 0.75, gen(4), "cpu")
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert len({tuple(m.tolist()) for m in a[1]}) == 8


@pytest.mark.parametrize("h,w", [(32, 32), (30, 26)])
def test_mask_image_patches(h, w):
    x = normalize(images(b=4, h=h, w=w)) + 5.0          # nothing is 0 before masking
    masked, mask = mask_image_patches(x, 4, 0.5, gen())
    assert masked.shape == x.shape and mask.shape == (4, 1, h, w)
    gh, gw = -(-h // 4), -(-w // 4)
    # constant on each 4×4 patch, exactly round(L/2) patches per image
    pm = F.pad(mask, (0, gw * 4 - w, 0, gh * 4 - h), value=-1).view(4, gh, 4, gw, 4)
    corners = pm[:, :, 0, :, 0]
    assert (corners.sum((1, 2)) == round(gh * gw * 0.5)).all()
    full = mask.bool().expand_as(x)
    assert (masked[full] == 0).all()
    assert torch.equal(masked[~full], x[~full])
    # fill value and ratio 0
    m2, _ = mask_image_patches(x, 4, 0.5, gen(), fill=-2.0)
    assert (m2[full] == -2.0).all()
    m0, k0 = mask_image_patches(x, 4, 0.0, gen())
    assert torch.equal(m0, x) and k0.sum() == 0
