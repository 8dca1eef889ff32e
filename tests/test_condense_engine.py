"""Condensation engine: initial layout, siamese augmentation, loss decrease, files, resume, determinism,
time budget. Tiny problems: digits (32 px, 1 channel, 10 classes; 30 train images per class),
ConvNet-3 of width 8, ipc 1-2."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from hashcondense.condense import (
    CondenseConfig,
    EmbeddingMatching,
    MatchBatch,
    SyntheticSet,
    condense,
    decode,
    encode_tiles,
)
from hashcondense.condense.config import set_content_digest
from hashcondense.condense.methods.dm import DistributionMatching

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors run on one thread


TINY = {
    "arch_kwargs": {"width": 8},
    "bits": 16,
    "batch_real": 16,
    "show_progress": False,
    "export_images": False,
}


def config(tmp_path, name="run", **kw):
    base = dict(TINY, dataset="digits", ipc=1, out=str(tmp_path / name))
    base.update(kw)
    return CondenseConfig(**base)


@pytest.fixture(scope="module")
def small(digits):
    """digits with 30 train images per class (pool training and sampling stay cheap)."""
    keep = [digits.train[digits.labels[digits.train] == c][:30] for c in range(10)]
    return dataclasses.replace(digits, train=np.sort(np.concatenate(keep)))


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("pool"))


def iem_options(pool_dir, **kw):
    return {"pool_size": 2, "pool_epochs": 1, "pool_dir": pool_dir, **kw}


def losses(out):
    return [row["loss"] for row in json.loads((out / "history.json").read_text())["steps"]]


# ---- initialisation and decode layout ----------------------------------------------------------------


def test_initial_tiles_are_real_images_of_the_right_class(tmp_path, small):
    result = condense(config(tmp_path, method="random", ipc=2, factor=2), dataset=small)
    s = result.synthetic
    real, labels = small.tensor("train")
    assert s.images.shape == (20, 1, 32, 32) and s.factor == 2
    assert s.labels.tolist() == [c for c in range(10) for _ in range(2)]
    used = result.card["init_indices"]
    decoded, decoded_labels = s.decoded()
    for c in range(10):
        idx = torch.tensor(used[c])
        assert len(idx) == 8 and len(set(used[c])) == 8
        assert (labels[idx] == c).all()
        expected = decode(encode_tiles(real[idx], 2), 2, s.mean, s.std)  # tile k = real image k, row-major
        torch.testing.assert_close(decoded[c * 8 : (c + 1) * 8], expected)
        assert (decoded_labels[c * 8 : (c + 1) * 8] == c).all()
        # each decoded tile is closest to the real image it was made from
        err = (decoded[c * 8 : (c + 1) * 8, None] - real[idx][None]).square().mean(dim=(2, 3, 4))
        assert err.argmin(dim=1).tolist() == list(range(8))


def test_random_without_multiformation_stores_real_images(tmp_path, small):
    result = condense(config(tmp_path, method="random", ipc=2), dataset=small)
    real, labels = small.tensor("train")
    idx = torch.tensor([i for per in result.card["init_indices"] for i in per])
    assert torch.equal(result.synthetic.images, real[idx])
    assert torch.equal(result.synthetic.labels, labels[idx])
    assert result.stopped == "no_optimisation" and result.steps_total == 0


# ---- siamese augmentation ------------------------------------------------------------------------------


class Spy(EmbeddingMatching):
    """Records the batches; loss = sum of the synthetic views (any gradient will do)."""

    batches: list[MatchBatch] = []

    def begin_outer(self, outer):
        self.net = self.context.new_network(5, outer)

    def match_losses(self, batch):
        type(self).batches.append(batch)
        return torch.stack([v.mean() for v in batch.synthetic])


def test_siamese_draw_is_shared_and_differentiable(tmp_path, small):
    Spy.batches = []
    result = condense(
        config(
            tmp_path,
            method="dm",
            ipc=2,
            factor=2,
            outer_loops=2,
            inner_loops=1,
            aug_strategy="color_crop_cutout_flip_scale_rotate",
            aug_mode="all",
        ),
        dataset=small,
        method_cls=Spy,
    )
    assert len(Spy.batches) == 2
    aug = None
    for batch in Spy.batches:
        assert batch.classes == list(range(10))
        for real, syn, draw, real_raw, syn_raw in zip(
            batch.real, batch.synthetic, batch.draws, batch.real_images, batch.synthetic_images, strict=True
        ):
            assert draw.shared and real.shape[0] == 16 and syn.shape[0] == 8
            assert not real.requires_grad and syn.requires_grad
            from hashcondense.augment import DSA

            aug = aug or DSA("color_crop_cutout_flip_scale_rotate", mode="all")
            torch.testing.assert_close(real, aug.apply(real_raw, draw))
            torch.testing.assert_close(syn, aug.apply(syn_raw.detach(), draw))
            # the same image in either batch gets the same transform
            probe = real_raw[:1]
            both = aug.apply(torch.cat([probe, syn_raw.detach()]), draw)
            torch.testing.assert_close(both[:1], real[:1])
    # different classes and steps get different draws
    u = [d.uniforms for b in Spy.batches for d in b.draws]
    assert all(not torch.equal(u[0], x) for x in u[1:])
    init = condense(
        config(tmp_path, "init", method="random", ipc=2, factor=2), dataset=small
    ).synthetic.images
    assert not torch.equal(result.synthetic.images, init)  # the gradient reached the stored images


# ---- each method's loss decreases on a tiny problem ----------------------------------------------------


def test_dm_loss_decreases(tmp_path, small):
    out = tmp_path / "dm"
    result = condense(
        config(tmp_path, "dm", method="dm", ipc=2, outer_loops=20, batch_real=32), dataset=small
    )
    assert result.stopped == "finished" and result.steps_done == 20
    values = losses(out)
    assert len(values) == 20
    assert sum(values[-5:]) / 5 < 0.8 * sum(values[:5]) / 5


def test_iem_loss_decreases(tmp_path, small, pool_dir):
    out = tmp_path / "iem"
    result = condense(
        config(
            tmp_path,
            "iem",
            method="iem",
            ipc=2,
            outer_loops=4,
            inner_loops=5,
            lr_img=0.1,
            batch_real=32,
            options=iem_options(pool_dir),
        ),
        dataset=small,
    )
    assert result.synthetic.factor == 2 and result.steps_done == 20
    values = losses(out)
    assert sum(values[-5:]) / 5 < 0.8 * sum(values[:5]) / 5
    card = result.card
    assert card["config"]["lr_space"] == "pixel" and card["config"]["options"]["pool_size"] == 2
    assert card["lr_img_effective"] == pytest.approx(0.1 * 2 / 10)


# ---- files -----------------------------------------------------------------------------------------------


def test_outputs_and_round_trip(tmp_path, small, pool_dir):
    out = tmp_path / "files"
    result = condense(
        config(
            tmp_path,
            "files",
            method="iem",
            ipc=2,
            outer_loops=1,
            inner_loops=2,
            export_images=True,
            options=iem_options(pool_dir),
        ),
        dataset=small,
    )
    for name in (
        "synthetic.safetensors",
        "card.json",
        "stored.png",
        "decoded.png",
        "config.json",
        "log.txt",
        "history.json",
        "checkpoint.safetensors",
    ):
        assert (out / name).stat().st_size > 0, name
    pngs = sorted((out / "images").glob("*/*.png"))
    assert len(pngs) == 20 and {p.parent.name for p in pngs} == {str(c) for c in range(10)}
    loaded = SyntheticSet.load(out / "synthetic.safetensors")
    assert torch.equal(loaded.images, result.synthetic.images)
    assert torch.equal(loaded.labels, result.synthetic.labels)
    assert loaded.factor == 2 and loaded.class_names == [str(c) for c in range(10)]
    assert loaded.mean == tuple(small.mean) and loaded.std == tuple(small.std)
    card = json.loads((out / "card.json").read_text())
    for key in (
        "method",
        "dataset",
        "images_per_class",
        "factor",
        "mean",
        "std",
        "class_names",
        "hashing",
        "arch",
        "bits",
        "seed",
        "library_version",
        "config",
        "steps_done",
    ):
        assert key in card, key
    assert card["method"] == "iem" and card["images_per_class"] == 2 and card["steps_done"] == 2
    assert loaded.meta["config"] == card["config"]
    # timings and paths are the invocation's: in card.json, not in the set file
    assert card["run"]["distillation_seconds"] > 0 and card["run"]["config"]["out"] == str(out)
    assert "distillation_seconds" not in loaded.meta and "out" not in loaded.meta["config"]
    assert json.loads((out / "config.json").read_text())["config"]["ipc"] == 2
    assert "condense digits with iem" in (out / "log.txt").read_text()


# ---- resume, determinism, time budget ---------------------------------------------------------------------


def test_resume_equals_uninterrupted_run(tmp_path, small, pool_dir):
    kw = dict(method="iem", ipc=1, inner_loops=2, lr_img=0.1, batch_real=8, options=iem_options(pool_dir))
    straight = condense(config(tmp_path, "straight", outer_loops=4, **kw), dataset=small)
    condense(config(tmp_path, "split", outer_loops=2, **kw), dataset=small)
    resumed = condense(config(tmp_path, "split", outer_loops=4, resume=True, **kw), dataset=small)
    assert resumed.steps_done == 8
    assert torch.equal(straight.synthetic.images, resumed.synthetic.images)
    assert losses(tmp_path / "straight") == losses(tmp_path / "split")


def test_resume_from_the_middle_of_an_outer_loop(tmp_path, small):
    kw = dict(
        method="iem",
        ipc=1,
        outer_loops=2,
        inner_loops=3,
        lr_img=0.1,
        batch_real=8,
        options={"use_pool": False},
    )
    straight = condense(config(tmp_path, "straight", **kw), dataset=small)
    first = condense(config(tmp_path, "split", time_budget=1e-6, **kw), dataset=small)
    assert first.stopped == "time_budget" and first.steps_done == 1  # stopped after inner step 0 of outer 0
    resumed = condense(config(tmp_path, "split", resume=True, **kw), dataset=small)
    assert resumed.stopped == "finished" and resumed.steps_done == 6
    assert torch.equal(straight.synthetic.images, resumed.synthetic.images)


def _tensor_bytes(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k).numpy().tobytes() for k in f.keys()}


def test_same_seed_gives_identical_tensors(tmp_path, small):
    kw = dict(method="dm", ipc=1, outer_loops=3, factor=2, batch_real=8)
    condense(config(tmp_path, "a", **kw), dataset=small)
    condense(config(tmp_path, "b", **kw), dataset=small)
    condense(config(tmp_path, "c", seed=1, **kw), dataset=small)
    a, b, c = (_tensor_bytes(tmp_path / n / "synthetic.safetensors") for n in "abc")
    assert a == b
    assert a["images"] != c["images"]


CHANGED = {"bits": 32, "hashing": "dpn"}  # TINY condenses at 16 bits with DHD


@pytest.mark.parametrize(
    "method, kw, changed",
    [
        ("dm", {"outer_loops": 2}, CHANGED),
        ("iem", {"outer_loops": 2, "inner_loops": 1, "options": {"use_pool": False}}, CHANGED),
        (
            "iem",
            {"preset": "cpu", "outer_loops": 2, "inner_loops": 1},
            {**CHANGED, "options": {"pool_size": 3, "perturb_max": 0.5}},
        ),
        ("random", {}, {**CHANGED, "arch_kwargs": {"width": 16}}),
    ],
)
def test_settings_a_method_does_not_read_leave_its_set_and_content_digest_alone(
    tmp_path, small, method, kw, changed
):
    # what `unread_settings` declares is left out of `set_content_digest`, and the experiment store
    # then shares the set between cells that differ in it (a 32-bit cell uses the 64-bit DM set): it
    # must hold bit for bit. The third case is IEM without the pool by way of the cpu preset.
    condense(config(tmp_path, "a", method=method, ipc=1, batch_real=8, **kw), dataset=small)
    condense(config(tmp_path, "b", method=method, ipc=1, batch_real=8, **{**kw, **changed}), dataset=small)
    a, b = (_tensor_bytes(tmp_path / n / "synthetic.safetensors") for n in "ab")
    assert a == b
    recorded = [json.loads((tmp_path / n / "config.json").read_text()) for n in "ab"]
    assert recorded[0]["config_digest"] != recorded[1]["config_digest"]
    assert set_content_digest(recorded[0]["config"]) == set_content_digest(recorded[1]["config"])


def test_content_digest_of_a_method_this_process_does_not_know_leaves_nothing_out():
    # a store may hold sets of a plugin method that is not imported: they are compared in full
    resolved = {"method": "plugin", "bits": 16, "hashing": "dhd", "options": {}}
    assert set_content_digest(resolved) != set_content_digest({**resolved, "bits": 64})
    assert set_content_digest({**resolved, "method": "dm"}) == set_content_digest(
        {**resolved, "method": "dm", "bits": 64}
    )


def test_a_setting_the_method_reads_changes_the_content_digest(tmp_path, small, pool_dir):
    kw = dict(method="iem", ipc=1, outer_loops=1, inner_loops=1, options=iem_options(pool_dir, use_pool=True))
    condense(config(tmp_path, "a", **kw), dataset=small)
    condense(config(tmp_path, "b", **kw, bits=32), dataset=small)  # the pool trains with the hashing loss
    recorded = [json.loads((tmp_path / n / "config.json").read_text())["config"] for n in "ab"]
    assert set_content_digest(recorded[0]) != set_content_digest(recorded[1])
    assert _tensor_bytes(tmp_path / "a" / "synthetic.safetensors") != _tensor_bytes(
        tmp_path / "b" / "synthetic.safetensors"
    )


def test_time_budget_stops_early_and_writes_the_set(tmp_path, small):
    out = tmp_path / "budget"
    result = condense(
        config(tmp_path, "budget", method="dm", outer_loops=100000, time_budget=0.5), dataset=small
    )
    assert result.stopped == "time_budget"
    assert 1 <= result.steps_done < 100000
    card = json.loads((out / "card.json").read_text())
    assert card["stopped"] == "time_budget" and card["steps_done"] == result.steps_done
    assert SyntheticSet.load(out / "synthetic.safetensors").images.shape == (10, 1, 32, 32)
    assert (out / "checkpoint.safetensors").exists()
    assert "time budget" in (out / "log.txt").read_text()


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_the_budget_counts_on_its_clock(tmp_path, small, monkeypatch, clock):
    """A cpu-clock budget counts this process's CPU seconds (steady on a busy machine), a wall one
    elapsed seconds: here the CPU clock is made to run 10 s per reading and the wall clock not at all."""
    from hashcondense.condense import engine

    ticks = iter(range(0, 10**6, 10))
    frozen = engine.time.perf_counter()
    monkeypatch.setattr(engine.time, "process_time", lambda: float(next(ticks)))
    monkeypatch.setattr(engine.time, "perf_counter", lambda: frozen)
    run = config(tmp_path, clock, method="dm", outer_loops=6, time_budget=25, budget_clock=clock)
    result = condense(run, dataset=small)
    if clock == "cpu":
        assert result.stopped == "time_budget" and 1 <= result.steps_done < 6
    else:
        assert result.stopped == "finished" and result.steps_done == 6


def test_dm_draws_a_fresh_network_every_iteration(tmp_path, small):
    from hashcondense.condense import CondenseEngine

    engine = CondenseEngine(config(tmp_path, method="dm"), dataset=small)
    engine.setup()
    method = engine.method
    assert isinstance(method, DistributionMatching)
    method.begin_outer(0)
    w0 = next(method.net.parameters()).clone()
    method.begin_outer(1)
    w1 = next(method.net.parameters()).clone()
    method.begin_outer(0)
    assert not torch.equal(w0, w1) and torch.equal(w0, next(method.net.parameters()))
    assert not any(p.requires_grad for p in method.net.parameters())


def test_presets_and_user_values_merge_in_order(tmp_path, small):
    from hashcondense.condense import CondenseEngine

    def settings(**kw):
        engine = CondenseEngine(
            config(tmp_path, method="iem", options={"use_pool": False}, **kw), dataset=small
        )
        engine.setup()
        return engine.settings

    paper = settings()
    assert (paper.outer_loops, paper.inner_loops, paper.lr_img, paper.factor) == (300, 300, 0.005, 2)
    assert paper.batch_real == 16  # the user's value (TINY) beats the method default 64
    cpu = settings(preset="cpu")
    assert (cpu.outer_loops, cpu.inner_loops, cpu.lr_img) == (180, 10, 0.1)
    assert settings(preset="cpu", inner_loops=7).inner_loops == 7


def test_the_cpu_preset_keeps_its_pool_rate_for_iem_with_the_pool(tmp_path, small, monkeypatch):
    # the cpu preset's image rate was chosen without the pool; a run that asks for the pool gets the
    # rate measured with it (here made different to tell them apart)
    from hashcondense.condense import CondenseEngine
    from hashcondense.condense.methods.iem import IEM

    monkeypatch.setattr(IEM, "cpu_lr_img_with_pool", 0.03)

    def lr_img(**options):
        engine = CondenseEngine(config(tmp_path, method="iem", preset="cpu", options=options), dataset=small)
        engine.setup()
        return engine.settings.lr_img

    assert lr_img(use_pool=True, pool_size=1, pool_epochs=1) == 0.03
    assert lr_img(use_pool=False) == lr_img() == IEM.presets["cpu"]["lr_img"]
