"""Early-stage model pool (cache, reuse, corrupt members) and Acc-DD weight perturbation."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from hashcondense.condense import CondenseConfig, ModelPool, condense, perturb_
from hashcondense.models import create_model
from hashcondense.runtime import generator

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors run on one thread


def tiny_data(n_per_class=8, classes=3):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n_per_class * classes, 1, 32, 32, generator=g)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return images, labels


def make_pool(folder, epochs=1, **key):
    images, labels = tiny_data()
    base = {
        "format": "test",
        "dataset": "tiny",
        "arch": "convnet3",
        "arch_kwargs": {"width": 4},
        "hashing": "dpn",
        "bits": 8,
        "seed": 0,
        "epochs": epochs,
        "lr": 1e-3,
        "batch_size": 12,
    }
    base.update(key)
    return ModelPool(
        directory=folder,
        key=base,
        images=images,
        labels=labels,
        num_classes=3,
        device=torch.device("cpu"),
        member_seed=lambda k: 1000 + k,
    )


def test_pool_is_cached_and_reused(tmp_path):
    first = make_pool(tmp_path)
    first.ensure(2)
    assert first.trained == 2
    files = sorted(first.folder.glob("member_*.safetensors"))
    assert [f.name for f in files] == ["member_000.safetensors", "member_001.safetensors"]
    mtimes = [f.stat().st_mtime_ns for f in files]

    second = make_pool(tmp_path)
    second.ensure(2)
    assert second.trained == 0  # loaded, not retrained
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert second.digests == first.digests
    for a, b in zip(first.states, second.states, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(
        first.states[0]["backbone.features.0.weight"], first.states[1]["backbone.features.0.weight"]
    )

    bigger = make_pool(tmp_path)
    bigger.ensure(3)  # members do not depend on the pool size: only the third one is trained
    assert bigger.trained == 1 and bigger.digests[:2] == first.digests

    other = make_pool(tmp_path, epochs=2)  # other settings -> another folder
    assert other.folder != first.folder


def test_the_same_member_trains_into_the_same_bytes(tmp_path):
    """A member file holds no timings, so a pool trained again (another machine, another day) is
    byte-identical, not only equal in its tensors."""
    first, second = make_pool(tmp_path / "a"), make_pool(tmp_path / "b")
    first.ensure(1)
    second.ensure(1)
    assert first.member_path(0).read_bytes() == second.member_path(0).read_bytes()


def test_corrupt_member_is_retrained(tmp_path):
    pool = make_pool(tmp_path)
    pool.ensure(1)
    path = pool.member_path(0)
    path.write_bytes(path.read_bytes()[:100])
    again = make_pool(tmp_path)
    again.ensure(1)
    assert again.trained == 1 and again.digests == pool.digests


def test_network_loads_a_member(tmp_path):
    from hashcondense.hashing import create_hashing
    from hashcondense.train import build_network

    pool = make_pool(tmp_path)
    pool.ensure(1)
    net = build_network("convnet3", create_hashing("dpn", num_classes=3, hash_bits=8), 1, 32, width=4)
    pool.load_into(net, 0)
    assert all(torch.equal(v, pool.states[0][k]) for k, v in net.state_dict().items())
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_perturbation_per_filter_norms_and_determinism():
    net = create_model("convnet3", in_channels=3, image_size=32, width=16)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    alpha, beta = perturb_(net, generator(0, 7, 3))
    assert 0.01 <= abs(alpha) <= 0.09 and 0.01 <= abs(beta) <= 0.09
    lo, hi = abs(abs(alpha) - abs(beta)), abs(alpha) + abs(beta)
    expected = math.sqrt(alpha**2 + beta**2)  # d1, d2 independent Gaussians: nearly orthogonal
    ratios = []
    for name, p in net.state_dict().items():
        if p.dim() <= 1:
            assert torch.equal(p, before[name]), f"{name} (1-D) must not be perturbed"
            continue
        w = before[name].flatten(1)
        rel = (p.flatten(1) - w).norm(dim=1) / w.norm(dim=1)
        # per output filter: |alpha| ||d1|| and |beta| ||d2|| are alpha, beta times the filter norm
        assert (rel >= lo - 1e-4).all() and (rel <= hi + 1e-4).all(), name
        ratios.append(rel)
    rms = torch.cat(ratios).square().mean().sqrt().item()
    assert rms == pytest.approx(expected, rel=0.1)
    # overall between 0.01 * sqrt(2) and 0.09 * sqrt(2), up to the small correlation of d1 and d2
    assert 0.01 * math.sqrt(2) * 0.8 <= rms <= 0.09 * math.sqrt(2) * 1.2

    # deterministic for (seed, outer); another outer loop gives another perturbation
    again = create_model("convnet3", in_channels=3, image_size=32, width=16)
    again.load_state_dict(before)
    assert perturb_(again, generator(0, 7, 3)) == (alpha, beta)
    assert all(
        torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True)
    )
    other = create_model("convnet3", in_channels=3, image_size=32, width=16)
    other.load_state_dict(before)
    perturb_(other, generator(0, 7, 4))
    assert not torch.equal(other.features[0].weight, net.features[0].weight)


def test_iem_second_run_reuses_the_pool(tmp_path, digits):
    keep = [digits.train[digits.labels[digits.train] == c][:20] for c in range(10)]
    small = dataclasses.replace(digits, train=np.sort(np.concatenate(keep)))
    kw = dict(
        dataset="digits",
        method="iem",
        ipc=1,
        outer_loops=1,
        inner_loops=1,
        arch_kwargs={"width": 4},
        bits=8,
        batch_real=8,
        show_progress=False,
        export_images=False,
        options={"pool_size": 2, "pool_epochs": 1},
    )
    first = condense(CondenseConfig(out=str(tmp_path / "a"), **kw), dataset=small)
    pool, run = first.card["method_info"]["pool"], first.card["run"]
    assert run["pool_members_trained"] == 2 and run["pool_folder"].startswith(str(tmp_path / ".pool_cache"))
    second = condense(CondenseConfig(out=str(tmp_path / "b"), **kw), dataset=small)
    assert second.card["run"]["pool_members_trained"] == 0
    assert second.card["method_info"]["pool"]["members"] == pool["members"]
    assert torch.equal(first.synthetic.images, second.synthetic.images)


@pytest.mark.parametrize(
    ("preset", "options", "expected"),
    [
        ("cpu", {}, False),
        (None, {}, True),
        ("cpu", {"use_pool": True}, True),
        (None, {"use_pool": False}, False),
    ],
)
def test_the_cpu_preset_runs_iem_without_the_pool_unless_asked(tmp_path, digits, preset, options, expected):
    # measured: under CPU budgets fresh random networks matched better than the pool (RESULTS.md)
    from hashcondense.condense.setup import resolved_settings
    from hashcondense.experiments.cost import CostModel

    config = CondenseConfig(method="iem", dataset="digits", preset=preset, options=options, out=str(tmp_path))
    assert resolved_settings(config, dataset=digits)["options"]["use_pool"] is expected
    condense_values = {"method": "iem", "dataset": "digits", "preset": preset, "options": options}
    priced = CostModel(100.0).pool_seconds(condense_values, digits, pool_cached=False)
    assert (priced > 0) is expected
