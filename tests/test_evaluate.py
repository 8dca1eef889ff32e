"""Evaluation pipeline on digits: training improves retrieval, each hashing method trains, NaN is caught."""

import math

import pytest
import torch

from hashcondense.errors import HashCondenseError
from hashcondense.evaluate import evaluate_network, random_indices, resolve_train_set
from hashcondense.train import TrainConfig, train_hashing_network


def _train(images, labels, config, hashing="dhd", **kwargs):
    """A 16-bit ConvNet-3 of seed 0 trained on digits images (the call every test here makes)."""
    return train_hashing_network(
        images,
        labels,
        arch="convnet3",
        hashing=hashing,
        hash_bits=16,
        num_classes=10,
        config=config,
        seed=0,
        show_progress=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def digits16():
    """digits at 16 px: the 8 px originals lose nothing, and a step costs a quarter of 32 px."""
    from hashcondense.data import load_dataset

    return load_dataset("digits", image_size=16)


NARROW = {"arch_kwargs": {"width": 32}}  # ConvNet-3 of width 32: learns digits as well, 10x cheaper


def test_training_beats_an_untrained_network(digits16):
    images, labels, _ = resolve_train_set(digits16, "random:20", seed=0)
    config = TrainConfig(epochs=0, auto_steps=60, batch_size=100, lr=2e-3, augment=False)
    net, _, history = _train(images, labels, config, **NARROW)
    trained = evaluate_network(net, digits16, 16)["map"]
    untrained_config = TrainConfig(epochs=1, batch_size=100, lr=1e-12)
    net0, _, _ = _train(images, labels, untrained_config, **NARROW)
    untrained = evaluate_network(net0, digits16, 16)["map"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert trained > untrained + 0.2, (trained, untrained)


@pytest.mark.parametrize("method", ["dpn", "orthohash", "csq"])
def test_every_hashing_method_trains(digits, method):
    images, labels, _ = resolve_train_set(digits, "random:10", seed=0)
    config = TrainConfig(epochs=15, batch_size=100, lr=2e-3, flip=False)
    net, _, history = _train(images, labels, config, method)
    assert history[-1]["loss"] < history[0]["loss"]
    assert evaluate_network(net, digits, 16)["map"] > 0.3


def test_random_subset_is_seeded_and_per_class(digits):
    a = random_indices(digits, 7, seed=3)
    assert (a == random_indices(digits, 7, seed=3)).all()
    assert not (a == random_indices(digits, 7, seed=4)).all()
    assert set(a) <= set(digits.train)
    assert torch.bincount(torch.from_numpy(digits.labels[a])).tolist() == [7] * 10


def test_nan_training_images_stop_with_a_clear_error(digits):
    images, labels, _ = resolve_train_set(digits, "random:2", seed=0)
    images[0] = float("nan")
    with pytest.raises(HashCondenseError, match="diverged"):
        _train(images, labels, TrainConfig(epochs=1))


def test_optimizer_is_chosen_by_name_with_its_settings():
    from hashcondense.train import make_optimizer

    params = [torch.nn.Parameter(torch.ones(3))]
    sgd = make_optimizer(params, TrainConfig(optimizer="sgd", lr=0.01, momentum=0.8, weight_decay=5e-4))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.8 and sgd.param_groups[0]["weight_decay"] == 5e-4
    assert type(make_optimizer(params, TrainConfig())) is torch.optim.Adam  # the IEM default
    assert isinstance(make_optimizer(params, TrainConfig(optimizer="adamw")), torch.optim.AdamW)


def test_backbone_lr_scale_slows_only_the_backbone(digits):
    from hashcondense.train import parameter_groups

    images, labels, _ = resolve_train_set(digits, "random:10", seed=0)
    frozen, _, _ = _train(images, labels, TrainConfig(epochs=1, batch_size=50, lr=1e-12))
    scaled_config = TrainConfig(epochs=1, batch_size=50, lr=2e-3, backbone_lr_scale=1e-9)
    scaled, method, _ = _train(images, labels, scaled_config)
    # same initialisation: the backbone has (all but) not moved, the hash head has
    for name, value in frozen.backbone.state_dict().items():
        assert torch.allclose(value, scaled.backbone.state_dict()[name], atol=1e-7), name
    head_before, head_after = frozen.head.state_dict(), scaled.head.state_dict()
    assert max(float((head_before[k] - head_after[k]).abs().max()) for k in head_before) > 1e-4
    groups = parameter_groups(scaled, method, scaled_config)
    assert [g["lr_scale"] for g in groups] == [1e-9, 1.0]
    assert any(p is method.proxies for p in groups[1]["params"])  # DHD's proxies train at the full lr
    grouped = [id(p) for g in groups for p in g["params"]]
    everything = [p for p in list(scaled.parameters()) + list(method.parameters()) if p.requires_grad]
    assert sorted(grouped) == sorted(id(p) for p in everything)  # each parameter once
    assert len(parameter_groups(scaled, method, TrainConfig())) == 1


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"backbone_lr_scale": 0.0}, "backbone lr scale 0.0 cannot work; use a positive --backbone-lr-scale"),
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'; choose adam, adamw, sgd"),
        ({"momentum": 1.0}, "momentum 1.0 cannot work"),
        ({"weight_decay": -1e-4}, "weight decay -0.0001 cannot work"),
        ({"cutmix_prob": 1.5}, r"CutMix probability 1.5 cannot work; use a --cutmix-prob in \[0, 1\]"),
        ({"cutmix_beta": 0.0}, "CutMix beta 0.0 cannot work; use a positive --cutmix-beta"),
    ],
)
def test_impossible_optimizer_settings_are_refused(settings, message):
    with pytest.raises(HashCondenseError, match=message):
        TrainConfig(**settings).check()


def test_sgd_trains(digits16):
    # SGD learns DHD far more slowly than Adam here (60 steps: loss 3.2 -> 2.0, Adam reaches mAP > 0.8),
    # so this checks that it trains, not how well.
    images, labels, _ = resolve_train_set(digits16, "random:20", seed=0)
    config = TrainConfig(epochs=0, auto_steps=60, batch_size=100, lr=0.05, optimizer="sgd", augment=False)
    net, _, history = _train(images, labels, config, **NARROW)
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]


def test_cutmix_weighs_every_loss_term_between_both_labels(digits, monkeypatch):
    from hashcondense.hashing.dhd import DHD

    images, labels, _ = resolve_train_set(digits, "random:10", seed=0)
    calls = []
    original = DHD.loss_terms

    def spy(self, codes, y):
        terms = original(self, codes, y)
        calls.append((y.clone(), {k: float(v.detach()) for k, v in terms.items()}))
        return terms

    monkeypatch.setattr(DHD, "loss_terms", spy)
    config = TrainConfig(epochs=1, batch_size=100, lr=2e-3, cutmix_prob=1.0)
    _, _, history = _train(images, labels, config)
    # one step, always mixed: the terms against the batch's labels, then against a shuffle of them
    (y_a, terms_a), (y_b, terms_b) = calls
    assert sorted(y_a.tolist()) == sorted(y_b.tolist()) and not torch.equal(y_a, y_b)
    assert terms_a["sdh"] == pytest.approx(terms_b["sdh"])  # label-free terms are the same twice
    assert terms_a["hp"] != pytest.approx(terms_b["hp"])
    lo, hi = sorted([terms_a["hp"], terms_b["hp"]])
    assert lo < history[0]["loss_hp"] < hi  # a mix of the two, weighted by the pasted area


def test_cutmix_is_seeded_and_off_by_default(digits):
    images, labels, _ = resolve_train_set(digits, "random:10", seed=0)
    plain = TrainConfig(epochs=2, batch_size=50, lr=2e-3)
    mixed = TrainConfig(epochs=2, batch_size=50, lr=2e-3, cutmix_prob=0.5)
    loss = [_train(images, labels, c)[2][-1]["loss"] for c in (plain, mixed, mixed)]
    off = _train(images, labels, TrainConfig(epochs=2, batch_size=50, lr=2e-3, cutmix_prob=0.0))
    assert loss[1] == loss[2] and loss[1] != loss[0]
    assert off[2][-1]["loss"] == loss[0]  # off draws nothing: earlier runs keep their random streams


def test_jitter_views_train_reproducibly_and_need_the_normalization(digits):
    images, labels, _ = resolve_train_set(digits, "random:10", seed=0)
    stats = (digits.mean, digits.std)
    jitter = TrainConfig(epochs=2, batch_size=50, lr=2e-3, views="jitter")
    runs = [_train(images, labels, jitter, normalization=stats)[2][-1]["loss"] for _ in range(2)]
    plain = _train(images, labels, TrainConfig(epochs=2, batch_size=50, lr=2e-3))[2][-1]["loss"]
    assert runs[0] == runs[1] and math.isfinite(runs[0]) and runs[0] != plain
    with pytest.raises(HashCondenseError, match="mean and std"):
        _train(images, labels, jitter)
    with pytest.raises(HashCondenseError, match="unknown views"):
        _train(images, labels, TrainConfig(epochs=1, views="strong"))
