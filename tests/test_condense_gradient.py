"""Gradient matching (DSA, IDC): the distance, the matched parameters, siamese views, loss decrease,
network updates, defaults, determinism, resume and the CLI. Tiny problems as in test_condense_engine:
digits (32 px, 1 channel, 10 classes) with 30 train images per class, ConvNet-3 of width 8, ipc 1."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from safetensors import safe_open
from test_condense_engine import _tensor_bytes, config, losses

from hashcondense.condense import CondenseEngine, MatchBatch, SyntheticSet, condense
from hashcondense.condense.gradient_matching import gradient_distance
from hashcondense.condense.methods.dsa import DSAMatching, dc_loops
from hashcondense.condense.methods.idc import IDC
from hashcondense.errors import HashCondenseError

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors run on one thread


@pytest.fixture(scope="module")
def small(digits):
    """digits with 30 train images per class."""
    keep = [digits.train[digits.labels[digits.train] == c][:30] for c in range(10)]
    return dataclasses.replace(digits, train=np.sort(np.concatenate(keep)))


def engine(tmp_path, small, **kw):
    e = CondenseEngine(config(tmp_path, **kw), dataset=small)
    e.setup()
    return e


# ---- the distance -------------------------------------------------------------------------------------


def test_distance_is_zero_for_identical_gradients():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(shape, generator=g) for shape in ((4, 3, 3, 3), (4,), (5, 6), (2, 3, 4))]
    assert float(gradient_distance(grads, [t.clone() for t in grads], "cos")) == pytest.approx(0.0, abs=1e-5)
    assert float(gradient_distance(grads, [t.clone() for t in grads], "mse")) == 0.0
    assert float(gradient_distance(grads, [t.clone() for t in grads], "l1")) == 0.0


def test_distance_matches_hand_computed_values():
    conv_r = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(2, 1, 1, 2)  # two output channels
    conv_s = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).reshape(2, 1, 1, 2).requires_grad_(True)
    bias_r, bias_s = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])
    lin_r, lin_s = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 1.0], [0.0, 3.0]])
    real, syn = [conv_r, bias_r, lin_r], [conv_s, bias_s, lin_s]
    detached = [t.detach() for t in syn]
    # per output channel 1 - cos: conv rows 0 and 1 - 1/sqrt(2); bias 0 (DC: 'do nothing');
    # linear rows 1 and 0
    expected = (1 - 1 / (math.sqrt(2) + 1e-6)) + 1.0 + (1 - 6 / (6 + 1e-6))
    cos = gradient_distance(real, syn, "cos")
    assert float(cos.detach()) == pytest.approx(expected, rel=1e-6)
    assert float(gradient_distance(real, detached, "mse")) == pytest.approx(1 + 8 + (1 + 1 + 1))
    assert float(gradient_distance(real, detached, "l1")) == pytest.approx(1 + 4 + (1 + 1 + 1))
    cos.backward()
    assert conv_s.grad is not None and conv_s.grad.abs().sum() > 0
    with pytest.raises(HashCondenseError, match="cos, mse, l1"):
        gradient_distance(real, syn, "l3")


# ---- what is matched ----------------------------------------------------------------------------------


def test_idc_matches_only_conv_weights_and_the_proxies(tmp_path, small):
    method = engine(tmp_path, small, method="idc").method
    assert isinstance(method, IDC)
    method.begin_outer(0)
    net, hashing = method.net, method.hashing
    convs = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert method.groups == [["sdh", "bceq"], ["hp"]]
    assert [id(p) for p in method.matched[0]] == [id(p) for p in convs] and len(convs) == 3
    assert method.matched[1] == [hashing.proxies]
    assert all(p.requires_grad for p in net.parameters())


def test_dsa_matches_every_network_parameter(tmp_path, small):
    def matched(**options):
        method = engine(tmp_path, small, method="dsa", options=options).method
        method.begin_outer(0)
        return method, [id(p) for p in method.matched[0]]

    method, ids = matched()
    # cosine: 1-D tensors have distance 0 (DC), so their gradients are not even computed
    assert ids == [id(p) for p in method.net.parameters() if p.dim() > 1]
    assert id(method.net.head[0].weight) in ids  # the hash layer
    method, ids = matched(metric="mse")
    assert ids == [id(p) for p in method.net.parameters()]


def test_real_and_synthetic_views_share_their_transforms(tmp_path, small):
    """The same images as real and as synthetic batch, augmented with one draw: zero distance."""
    e = engine(tmp_path, small, method="idc", factor=1, aug_mode="all", aug_strategy="color_crop_flip_rotate")
    method, ctx = e.method, e.context
    method.begin_outer(0)
    images = ctx.images[ctx.sampler.sample(3, 4, ctx.rng(1, 2))]
    other = ctx.images[ctx.sampler.sample(4, 4, ctx.rng(1, 3))]

    def loss(syn_raw):
        syn_raw = syn_raw.clone().requires_grad_(True)
        draw = ctx.augment.sample(1, ctx.rng(5, 6), shared=True)
        batch = MatchBatch(
            outer=0,
            inner=0,
            classes=[3],
            real=[ctx.augment.apply(images, draw)],
            synthetic=[ctx.augment.apply(syn_raw, draw)],
            draws=[draw],
            real_images=[images],
            synthetic_images=[syn_raw],
        )
        return method.match_losses(batch).detach()

    assert float(loss(images)) == pytest.approx(0.0, abs=1e-9)  # teacher and student views both shared
    assert float(loss(other)) > 0


# ---- optimisation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, hashing, lr",
    [("dsa", "csq", 0.1), ("idc", "dhd", 0.5)],
)
def test_loss_decreases(tmp_path, small, method, hashing, lr):
    """A fixed network (no updates), no augmentation, the whole class as the real batch."""
    condense(
        config(
            tmp_path,
            method,
            method=method,
            hashing=hashing,
            outer_loops=1,
            inner_loops=8,
            lr_img=lr,
            aug_strategy="none",
            batch_real=30,
            options={"net_data": "none"},
        ),
        dataset=small,
    )
    values = losses(tmp_path / method)
    assert len(values) == 8
    assert sum(values[-3:]) / 3 < 0.9 * sum(values[:3]) / 3


def test_network_trains_between_steps_only(tmp_path, small):
    e = engine(tmp_path, small, method="idc", inner_loops=2, options={"net_images": 8})
    method = e.method
    method.begin_outer(0)
    before = [p.detach().clone() for p in method.net.parameters()]
    proxies = method.hashing.proxies.detach().clone()
    method.after_inner(0, 0, e.context.images[:0])  # IDC trains on real data: the stored images go unused
    after = [p.detach().clone() for p in method.net.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert not torch.equal(proxies, method.hashing.proxies)
    assert method.state_dict()["gradient_position"] == [0, 1]
    method.after_inner(0, 1, e.context.images[:0])  # the outer loop's last step: its network is discarded
    assert all(torch.equal(a, p) for a, p in zip(after, method.net.parameters(), strict=True))
    assert method.state_dict() == {}


def test_dsa_trains_the_network_on_the_updated_synthetic_set(tmp_path, small):
    e = CondenseEngine(
        config(tmp_path, method="dsa", outer_loops=1, inner_loops=2, options={"net_images": 10}),
        dataset=small,
    )
    e.setup()
    handed, trained_on = [], []
    after_inner, train = e.method.after_inner, e.method._train

    def spy_after(outer, inner, stored):
        handed.append((stored is e.images, stored.detach().clone()))
        after_inner(outer, inner, stored)

    def spy_train(images, labels, count, g):
        trained_on.append((images.clone(), labels.clone()))
        train(images, labels, count, g)

    e.method.after_inner, e.method._train = spy_after, spy_train
    e.run()
    # the engine's stored images themselves, after the step's update; the network trains on them decoded
    assert [same for same, _ in handed] == [True, True]
    ((images, labels),) = trained_on
    assert torch.equal(images, handed[0][1]) and labels.tolist() == list(range(10))


def test_single_group_hashing_and_batch_norm(tmp_path, small):
    """OrthoHash: one loss group, a BatchNorm1d head and one synthetic image per class."""
    result = condense(
        config(
            tmp_path,
            method="dsa",
            hashing="orthohash",
            outer_loops=1,
            inner_loops=2,
            options={"net_images": 10},
        ),
        dataset=small,
    )
    assert result.card["method_info"]["loss_groups"] == [["ce"]]
    assert all(math.isfinite(v) for v in losses(tmp_path / "run"))


# ---- defaults -----------------------------------------------------------------------------------------


def test_defaults_follow_dc_and_idc(tmp_path, small):
    def pick(obj, names):
        return {n: obj[n] if isinstance(obj, dict) else getattr(obj, n) for n in names}

    assert [dc_loops(i) for i in (1, 2, 10, 50)] == [(1, 1), (1, 1), (10, 50), (50, 10)]
    dsa = engine(tmp_path, small, method="dsa", ipc=10, batch_real=None)
    assert isinstance(dsa.method, DSAMatching)
    assert pick(
        dsa.settings, ["factor", "outer_loops", "inner_loops", "lr_img", "batch_real", "aug_mode"]
    ) == {
        "factor": 1,
        "outer_loops": 1000,
        "inner_loops": 10,
        "lr_img": 0.1,
        "batch_real": 256,
        "aug_mode": "single",
    }
    assert pick(dsa.method.opts, ["metric", "net_data", "net_images", "net_batch", "net_momentum"]) == {
        "metric": "cos",
        "net_data": "synthetic",
        "net_images": 50 * 100,  # DC: 50 epochs over 10 x 10 images at ipc 10
        "net_batch": 256,
        "net_momentum": 0.0,
    }
    idc = engine(tmp_path, small, method="idc", ipc=10, batch_real=None)
    assert idc.settings.as_dict() == {
        "factor": 2,
        "outer_loops": 2000,
        "inner_loops": 100,
        "lr_img": 5e-3,
        "momentum": 0.5,
        "batch_real": 64,
        "batch_syn_max": 128,
        "lr_space": "pixel",
        "lr_scale_ipc": True,
        "clamp": True,
        "aug_strategy": "color_crop_cutout",
        "aug_mode": "idc",
        "checkpoint_every": 1,
    }
    assert idc.lr == pytest.approx(5e-3)  # x ipc / 10 = 1 at ipc 10
    assert idc.method.opts == {
        "metric": "mse",
        "match_params": "conv",
        "net_data": "real",
        "net_images": 2000,
        "net_batch": 64,
        "net_lr": 0.01,
        "net_momentum": 0.9,
        "net_weight_decay": 5e-4,
        "cutmix_prob": 0.5,
        "cutmix_beta": 1.0,
        "early_epochs": 0,
        "norm_batch": 16,
    }
    assert idc.method.train_aug.strategy == "color_crop"  # IDC removes cutout when CutMix is on
    cpu = engine(tmp_path, small, method="idc", preset="cpu")
    assert (cpu.settings.outer_loops, cpu.settings.inner_loops) == (20, 20)
    assert cpu.method.opts["net_images"] == 256


def test_bad_options_are_one_line_errors(tmp_path, small):
    with pytest.raises(HashCondenseError, match="metric='l3'.*cos, mse, l1"):
        engine(tmp_path, small, method="idc", options={"metric": "l3"})
    with pytest.raises(HashCondenseError, match="net_images"):
        engine(tmp_path, small, method="dsa", options={"net_images": 0})


# ---- determinism and resume ---------------------------------------------------------------------------


def test_same_seed_gives_identical_tensors(tmp_path, small):
    kw = dict(method="idc", outer_loops=2, inner_loops=2, batch_real=8, options={"net_images": 16})
    condense(config(tmp_path, "a", **kw), dataset=small)
    condense(config(tmp_path, "b", **kw), dataset=small)
    condense(config(tmp_path, "c", seed=1, **kw), dataset=small)
    a, b, c = (_tensor_bytes(tmp_path / n / "synthetic.safetensors") for n in "abc")
    assert a == b
    assert a["images"] != c["images"]


@pytest.mark.parametrize("method", ["dsa", "idc"])
def test_resume_equals_uninterrupted_run(tmp_path, small, method):
    kw = dict(method=method, inner_loops=2, batch_real=8, lr_img=0.05, options={"net_images": 16})
    straight = condense(config(tmp_path, "straight", outer_loops=2, **kw), dataset=small)
    # at an outer-loop boundary
    condense(config(tmp_path, "split", outer_loops=1, **kw), dataset=small)
    resumed = condense(config(tmp_path, "split", outer_loops=2, resume=True, **kw), dataset=small)
    assert torch.equal(straight.synthetic.images, resumed.synthetic.images)
    assert losses(tmp_path / "straight") == losses(tmp_path / "split")
    # in the middle of an outer loop: the trained network (and IDC's SGD momentum) is checkpointed
    first = condense(config(tmp_path, "mid", outer_loops=2, time_budget=1e-6, **kw), dataset=small)
    assert first.stopped == "time_budget" and first.steps_done == 1
    with safe_open(str(tmp_path / "mid" / "checkpoint.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert any(k.startswith("method.net.") for k in keys)
    assert any(k.startswith("method.opt.") for k in keys) == (method == "idc")
    resumed = condense(config(tmp_path, "mid", outer_loops=2, resume=True, **kw), dataset=small)
    assert resumed.steps_done == 4
    assert torch.equal(straight.synthetic.images, resumed.synthetic.images)
    assert losses(tmp_path / "straight") == losses(tmp_path / "mid")


# ---- CLI -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dsa", "idc"])
def test_cli_writes_the_set(tmp_path, method):
    from hashcondense.cli import main

    out = tmp_path / method
    argv = ["condense", "--dataset", "digits", "--image-size", "16", "--method", method, "--ipc", "1"]
    argv += ["--outer-loops", "1", "--inner-loops", "1", "--bits", "16", "--batch-real", "4"]
    argv += ["--device", "cpu", "--quiet", "--no-images", "--out", str(out)]
    assert main(argv) == 0
    s = SyntheticSet.load(out / "synthetic.safetensors")
    assert s.images.shape == (10, 1, 16, 16) and s.factor == (2 if method == "idc" else 1)
    assert s.meta["method"] == method
