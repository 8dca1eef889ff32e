"""Tests of hashcondense.augment: DSA (determinism, Siamese draws, DSA semantics, gradients) and CutMix."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hashcondense.augment import (
    DSA,
    DSA_STRATEGY,
    GROUPS,
    DSADraw,
    DSAParams,
    JitterAugment,
    create_augment,
    cutmix,
    strong_augment,
    weak_augment,
)
from hashcondense.errors import HashCondenseError
from hashcondense.runtime import generator


def _images(b: int = 6, c: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, size, size, generator=torch.Generator().manual_seed(seed))


def _forced(dsa: DSA, groups: tuple[str, ...], b: int, seed: int = 0, shared: bool = False) -> DSADraw:
    """A draw of `dsa` with the group choice replaced (to test one group at a time)."""
    draw = dsa.sample(b, generator(seed), shared=shared)
    return DSADraw(groups, draw.shared, draw.batch_size, draw.uniforms, draw.params)


# ---- a literal, per-transform reference following DSA's utils.py (gathers, meshgrid masks, one
# ---- affine_grid + grid_sample per transform), fed with the parameters of a draw.


def _ref_apply(x: torch.Tensor, draw: DSADraw) -> torch.Tensor:
    b, _, h, w = x.shape

    def rows(t: torch.Tensor) -> torch.Tensor:
        return t.expand(b, *t.shape[1:]) if t.shape[0] == 1 else t

    for g in draw.groups:
        if g == "color":
            bb = rows(draw.brightness).view(-1, 1, 1, 1)
            s = rows(draw.saturation).view(-1, 1, 1, 1)
            k = rows(draw.contrast).view(-1, 1, 1, 1)
            x = x + bb
            m = x.mean(dim=1, keepdim=True)
            x = (x - m) * s + m
            m = x.mean(dim=[1, 2, 3], keepdim=True)
            x = (x - m) * k + m
        elif g == "crop":
            sh = rows(draw.crop_shifts(h, w))
            gb, gx, gy = torch.meshgrid(torch.arange(b), torch.arange(h), torch.arange(w), indexing="ij")
            gx = torch.clamp(gx + sh[:, 0].view(-1, 1, 1) + 1, 0, h + 1)
            gy = torch.clamp(gy + sh[:, 1].view(-1, 1, 1) + 1, 0, w + 1)
            xp = F.pad(x, [1, 1, 1, 1])
            x = xp.permute(0, 2, 3, 1)[gb, gx, gy].permute(0, 3, 1, 2)
        elif g == "cutout":
            boxes = rows(draw.cutout_boxes(h, w))
            mask = torch.ones(b, h, w)
            for i in range(b):
                r0, r1, c0, c1 = boxes[i].tolist()
                mask[i, max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)] = 0
            x = x * mask.unsqueeze(1)
        elif g == "flip":
            f = rows(draw.flip).view(-1, 1, 1, 1)
            x = torch.where(f, x.flip(3), x)
        else:
            theta = torch.zeros(b, 2, 3)
            if g == "scale":
                s = rows(draw.scale)
                theta[:, 0, 0], theta[:, 1, 1] = s[:, 0], s[:, 1]
            else:
                a = torch.deg2rad(rows(draw.angle))
                theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a)
                theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a), torch.cos(a)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, align_corners=False)
    return x


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("shared", [False, True])
def test_each_group_matches_dsa_reference(group: str, shared: bool) -> None:
    dsa = DSA(mode="all")
    x = _images(b=8, size=16)
    draw = _forced(dsa, (group,), 8, seed=3, shared=shared)
    torch.testing.assert_close(dsa.apply(x, draw), _ref_apply(x, draw), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "groups",
    [
        ("crop", "cutout", "flip"),
        ("flip", "crop", "cutout"),
        ("flip", "color", "crop", "cutout"),
        ("crop", "flip", "cutout", "crop"),
        ("color", "crop", "cutout", "flip", "scale"),
    ],
)
def test_composed_chains_are_exact(groups: tuple[str, ...]) -> None:
    """Crop and flip fold into one sampling pass, cutout moves in front of them: no change."""
    dsa = DSA(mode="all")
    for seed in range(4):
        x = _images(b=8, size=12, seed=seed)
        draw = _forced(dsa, groups, 8, seed=seed)
        torch.testing.assert_close(dsa.apply(x, draw), _ref_apply(x, draw), atol=1e-5, rtol=1e-5)


def test_scale_rotate_single_pass_is_close_to_two_passes() -> None:
    dsa = strong_augment()
    x = F.avg_pool2d(_images(b=16, size=32), 3, 1, 1)  # smooth images: only resampling differs
    draw = dsa.sample(16, generator(1))
    assert draw.groups == tuple(DSA_STRATEGY.split("_"))
    ours, ref = dsa.apply(x, draw), _ref_apply(x, draw)
    inner = (slice(None), slice(None), slice(8, 24), slice(8, 24))  # away from the corners
    assert (ours - ref)[inner].abs().mean() < 0.02


# ---- reproducibility and the global generator


@pytest.mark.parametrize("name", ["dsa", "strong", "weak", "idc"])
def test_same_seed_same_output_different_seed_differs(name: str) -> None:
    dsa = create_augment(name)
    x = _images(b=32, size=16)
    a = dsa(x, generator(7, 1, 2))
    b = dsa(x, generator(7, 1, 2))
    assert torch.equal(a, b)
    outs = [dsa(x, generator(7, 1, s)) for s in range(3, 8)]
    assert all(not torch.equal(a, o) for o in outs)


def test_global_rng_neither_used_nor_advanced() -> None:
    dsa = strong_augment()
    x = _images(b=16, size=16)
    torch.manual_seed(0)
    a = dsa(x, generator(5))
    torch.manual_seed(12345)
    state = torch.get_rng_state()
    b = dsa(x, generator(5))
    cutmix(x, torch.arange(16), generator(5), prob=1.0)
    DSA(mode="single").sample(4, generator(6), shared=True)
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())


def test_generator_stream_use_does_not_depend_on_the_choice() -> None:
    dsa = DSA()
    g1, g2 = generator(9), generator(9)
    for _ in range(5):
        dsa.sample(10, g1)
    for _ in range(5):
        dsa.sample(10, g2)
    assert torch.equal(g1.get_state(), g2.get_state())


# ---- Siamese (shared) and per-image draws


@pytest.mark.parametrize("mode", ["single", "all", "idc"])
def test_shared_draw_gives_identical_transforms_across_batch_sizes(mode: str) -> None:
    dsa = DSA(mode=mode)
    one = _images(b=1, size=16, seed=4)
    for seed in range(6):
        draw = dsa.sample(1, generator(seed), shared=True)
        small, big = dsa.apply(one.expand(3, -1, -1, -1), draw), dsa.apply(one.repeat(10, 1, 1, 1), draw)
        assert small.shape[0] == 3 and big.shape[0] == 10
        assert torch.equal(small, small[:1].expand_as(small))
        assert torch.equal(big, big[:1].expand_as(big))
        torch.testing.assert_close(small[0], big[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("group", GROUPS)
def test_per_image_draws_differ_across_images(group: str) -> None:
    dsa = DSA(mode="all")
    one = _images(b=1, size=16, seed=4)
    out = dsa.apply(one.repeat(16, 1, 1, 1), _forced(dsa, (group,), 16, seed=2))
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 1


def test_per_image_draw_rejects_other_batch_size() -> None:
    dsa = DSA()
    draw = dsa.sample(4, generator(0))
    with pytest.raises(HashCondenseError, match="shared=True"):
        dsa.apply(_images(b=5), draw)


# ---- shapes, gradients, devices


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("channels,size", [(1, 8), (3, 32)])
def test_gradient_flows_for_every_group(group: str, channels: int, size: int) -> None:
    dsa = DSA(group, mode="all")
    x = _images(b=4, c=channels, size=size).requires_grad_(True)
    out = dsa(x, generator(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    (out * torch.linspace(0.5, 2.0, out.numel()).view_as(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["dsa", "strong", "weak", "idc"])
def test_presets_keep_shape_and_dtype(name: str) -> None:
    dsa = create_augment(name)
    for c, size, dtype in [(1, 8, torch.float32), (3, 32, torch.float32), (3, 16, torch.float64)]:
        x = _images(b=5, c=c, size=size).to(dtype)
        for shared in (False, True):
            out = dsa(x, generator(2), shared=shared)
            assert out.shape == x.shape and out.dtype == dtype and torch.isfinite(out).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    dsa = strong_augment()
    x = _images(b=8, size=32)
    torch.testing.assert_close(dsa(x.cuda(), generator(3)).cpu(), dsa(x, generator(3)), atol=1e-4, rtol=1e-4)


def test_identity_and_flip() -> None:
    x = _images(b=4)
    for strategy in ("", "none", "None"):
        assert DSA(strategy)(x, generator(0)) is x
    assert create_augment("none")(x, generator(0)) is x
    flip = DSA("flip", DSAParams(flip=1.0))
    assert torch.equal(flip(x, generator(0)), torch.flip(x, dims=[3]))
    assert torch.equal(DSA("flip", DSAParams(flip=0.0))(x, generator(0)), x)


def test_weak_augment_translates_and_flips_only() -> None:
    dsa = weak_augment()
    x = _images(b=64, size=32)
    draw = dsa.sample(64, generator(0))
    assert draw.groups == ("crop", "flip")
    assert draw.crop_shifts(32, 32).abs().max() == 4
    out = dsa.apply(x, draw)
    # every output pixel is an input pixel of the same image or 0 (exact, no interpolation)
    for i in range(0, 64, 9):
        vals = set(x[i].flatten().tolist()) | {0.0}
        assert set(out[i].flatten().tolist()) <= vals


def test_single_mode_picks_every_group() -> None:
    dsa = DSA()
    g = generator(11)
    seen = {dsa.sample(2, g).groups for _ in range(300)}
    assert seen == {(grp,) for grp in GROUPS}
    idc = DSA(mode="idc")
    seen = {idc.sample(2, g).groups for _ in range(100)}
    assert seen == {("flip", "color", grp, "cutout") for grp in ("crop", "scale", "rotate")}


def test_parameter_ranges() -> None:
    draw = DSA().sample(4000, generator(0))
    assert 0.45 < draw.flip.float().mean() < 0.55
    assert draw.scale.min() >= 1 / 1.2 - 1e-6 and draw.scale.max() <= 1.2
    assert draw.angle.abs().max() <= 15.0
    assert draw.brightness.abs().max() <= 0.5
    assert 0 <= draw.saturation.min() and draw.saturation.max() <= 2.0
    assert 0.5 <= draw.contrast.min() and draw.contrast.max() <= 1.5
    shifts = draw.crop_shifts(32, 32)
    assert set(shifts.flatten().tolist()) == set(range(-4, 5))
    boxes = draw.cutout_boxes(32, 32)
    assert ((boxes[:, 1] - boxes[:, 0]) == 16).all()
    assert boxes[:, 0].min() == -8 and boxes[:, 0].max() == 24  # centres 0..32 as in DSA


def test_bad_settings_raise() -> None:
    with pytest.raises(HashCondenseError, match="unknown DSA group 'blur'"):
        DSA("color_blur")
    with pytest.raises(HashCondenseError, match="unknown DSA mode"):
        DSA(mode="M")
    with pytest.raises(HashCondenseError, match="DSAParams.flip"):
        DSAParams(flip=1.5)
    with pytest.raises(HashCondenseError, match="unknown augmentation"):
        create_augment("heavy")


# ---- CutMix


def test_cutmix_labels_and_lam_are_consistent() -> None:
    x = _images(b=16, size=16)
    y = torch.arange(16)  # label i = image i, so labels_b names the image each box came from
    mixed_calls = 0
    for seed in range(40):
        out, ya, yb, lam = cutmix(x, y, generator(seed), beta=1.0, prob=0.5)
        assert out.shape == x.shape and torch.equal(ya, y)
        if lam == 1.0:  # not mixed (or an empty box)
            assert torch.equal(out, x)
            continue
        mixed_calls += 1
        assert 0.0 <= lam < 1.0 and sorted(yb.tolist()) == list(range(16))
        i = next(k for k in range(16) if int(yb[k]) != k)
        box = (out[i] == x[yb[i]]).all(dim=0)  # (H, W): the pasted pixels
        assert abs(box.float().mean().item() - (1.0 - lam)) < 1e-6
        rows, cols = box.any(dim=1).nonzero(), box.any(dim=0).nonzero()
        assert box.sum() == len(rows) * len(cols)  # a rectangle
        for k in range(16):
            assert torch.equal(out[k][:, box], x[yb[k]][:, box])
            assert torch.equal(out[k][:, ~box], x[k][:, ~box])
    assert 10 < mixed_calls < 30  # prob 0.5


def test_cutmix_is_reproducible_and_differentiable() -> None:
    x = _images(b=8, size=16).requires_grad_(True)
    y = torch.arange(8)
    a = cutmix(x, y, generator(3), prob=1.0)
    b = cutmix(x, y, generator(3), prob=1.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) and a[3] == b[3]
    a[0].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    out, ya, yb, lam = cutmix(x, y, generator(3), prob=0.0)
    assert out is x and ya is y and yb is y and lam == 1.0
    g1, g2 = generator(4), generator(4)
    cutmix(x, y, g1, prob=0.0)
    cutmix(x, y, g2, prob=1.0)
    assert torch.equal(g1.get_state(), g2.get_state())


# ---- DHD's jitter views

_STATS = ((0.5, 0.4, 0.3), (0.25, 0.2, 0.3))


def _normalised(b: int = 6, c: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    mean = torch.tensor(_STATS[0][:c]).view(1, -1, 1, 1)
    std = torch.tensor(_STATS[1][:c]).view(1, -1, 1, 1)
    return (_images(b, c, size, seed) - mean) / std


def test_jitter_at_strength_zero_is_the_identity_and_full_strength_is_seeded() -> None:
    x = _normalised()
    same = JitterAugment(*_STATS, strength=0.0)(x, generator(0))
    assert torch.allclose(same, x, atol=1e-5)
    aug = JitterAugment(*_STATS, strength=1.0)
    a, b, c = aug(x, generator(1)), aug(x, generator(1)), aug(x, generator(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype
    # the chain works on pixels in [0, 1]: its output de-normalises into that range
    pixels = a * torch.tensor(_STATS[1]).view(1, -1, 1, 1) + torch.tensor(_STATS[0]).view(1, -1, 1, 1)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5


def test_jitter_draws_the_same_stream_whatever_the_data() -> None:
    g1, g2 = generator(3), generator(3)
    aug = JitterAugment(*_STATS)
    aug(_normalised(seed=0), g1)
    aug(_normalised(seed=1), g2)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_jitter_flip_and_crop_geometry() -> None:
    from hashcondense.augment.jitter import _resized_crop_flip

    x = _images(4)
    off, on = torch.zeros(4, dtype=torch.bool), torch.ones(4, dtype=torch.bool)
    half = torch.full((4,), 0.5)
    full, one = torch.ones(4), torch.ones(4)
    assert torch.allclose(_resized_crop_flip(x, off, full, one, half, half, on), x.flip(-1), atol=1e-6)
    assert torch.equal(_resized_crop_flip(x, off, full, one, half, half, off), x)
    # a quarter-area square box in the top-left corner, resized back: the corner's pixels, zoomed x2
    quarter = torch.full((4,), 0.25)
    zero = torch.zeros(4)
    crop = _resized_crop_flip(x, on, quarter, one, zero, zero, off)
    ref = F.interpolate(x[:, :, :8, :8], scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(crop[:, :, 1:-1, 1:-1], ref[:, :, 1:-1, 1:-1], atol=1e-5)


def test_hsv_round_trip_and_gray_images() -> None:
    from hashcondense.augment.jitter import hsv_to_rgb, rgb_to_hsv

    x = _images(8, size=8)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    pure = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).view(3, 3, 1, 1)
    assert torch.allclose(rgb_to_hsv(pure)[:, 0].flatten(), torch.tensor([0.0, 1 / 3, 2 / 3]))
    gray = torch.full((2, 3, 4, 4), 0.3)
    hsv = rgb_to_hsv(gray)
    assert torch.all(hsv[:, 0] == 0) and torch.all(hsv[:, 1] == 0)


def test_jitter_blur_keeps_a_constant_image_and_one_channel_works() -> None:
    from hashcondense.augment.jitter import _gaussian_blur

    flat = torch.full((2, 3, 8, 8), 0.4)
    assert torch.allclose(_gaussian_blur(flat, 3, torch.tensor([0.5, 2.0])), flat, atol=1e-6)
    edge = torch.zeros(1, 1, 8, 8)
    edge[..., 4:] = 1.0
    blurred = _gaussian_blur(edge, 3, torch.tensor([1.0]))
    assert 0 < blurred[0, 0, 0, 3] < 0.5 < blurred[0, 0, 0, 4] < 1
    gray = JitterAugment(_STATS[0][:1], _STATS[1][:1], flip=False)
    out = gray(_normalised(c=1), generator(0))
    assert out.shape == (6, 1, 16, 16) and torch.isfinite(out).all()
    with pytest.raises(HashCondenseError, match="1- or 3-channel"):
        JitterAugment((0.5,) * 2, (0.2,) * 2)(torch.zeros(1, 2, 8, 8), generator(0))
    with pytest.raises(HashCondenseError, match="strength"):
        JitterAugment(*_STATS, strength=1.5)
