"""Bad input to the condensation engine: one-line HashCondenseError naming the problem and the fix."""

import pytest
import torch

from hashcondense.condense import CondenseConfig, condense
from hashcondense.errors import HashCondenseError

TINY = {
    "arch_kwargs": {"width": 4},
    "bits": 8,
    "batch_real": 8,
    "show_progress": False,
    "export_images": False,
}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors run on one thread


def config(tmp_path, name="run", **kw):
    base = dict(TINY, dataset="digits", method="dm", ipc=1, outer_loops=1, out=str(tmp_path / name))
    base.update(kw)
    return CondenseConfig(**base)


def fails(cfg, dataset, *needles):
    with pytest.raises(HashCondenseError) as info:
        condense(cfg, dataset=dataset)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


@pytest.mark.parametrize(
    "ipc, needles", [(0, ["ipc=0", "--ipc"]), (101, ["--ipc 101", "100 training images"])]
)
def test_bad_ipc(tmp_path, digits, ipc, needles):
    fails(config(tmp_path, ipc=ipc), digits, *needles)


def test_ipc_times_factor_squared_needs_enough_real_images(tmp_path, digits):
    fails(config(tmp_path, ipc=30, factor=2), digits, "30 x 2^2 = 120", "--factor")


@pytest.mark.parametrize("factor, needle", [(0, "--factor 1"), (9, "smaller than 4 px")])
def test_bad_factor(tmp_path, digits, factor, needle):
    fails(config(tmp_path, factor=factor), digits, needle)


def test_unknown_method_and_option(tmp_path, digits):
    fails(config(tmp_path, method="nope"), digits, "unknown condensation method 'nope'", "iem")
    fails(config(tmp_path, options={"pool_size": 2}), digits, "has no option pool_size")


@pytest.mark.parametrize("payload", [b"not a safetensors file at all", None])
def test_corrupt_or_truncated_checkpoint(tmp_path, digits, payload):
    cfg = config(tmp_path, outer_loops=2)
    condense(cfg, dataset=digits)
    path = tmp_path / "run" / "checkpoint.safetensors"
    path.write_bytes(payload if payload is not None else path.read_bytes()[:-40])
    fails(config(tmp_path, outer_loops=3, resume=True), digits, "checkpoint", "corrupt", "start again")


def test_resume_with_other_settings_is_refused(tmp_path, digits):
    condense(config(tmp_path, outer_loops=2), dataset=digits)
    message = fails(
        config(tmp_path, outer_loops=4, lr_img=0.5, resume=True), digits, "other settings", "lr_img"
    )
    assert "1.0 -> 0.5" in message
    # a longer run, another time budget and another checkpoint interval are fine
    result = condense(
        config(tmp_path, outer_loops=3, time_budget=100.0, checkpoint_every=5, resume=True), dataset=digits
    )
    assert result.steps_done == 3


def test_existing_output_needs_resume_or_overwrite(tmp_path, digits):
    condense(config(tmp_path), dataset=digits)
    fails(config(tmp_path), digits, "--resume", "--overwrite")
    assert condense(config(tmp_path, overwrite=True), dataset=digits).steps_done == 1


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, digits):
    out = tmp_path / "run"
    message = fails(
        config(tmp_path, outer_loops=4, lr_img=1e30, checkpoint_every=1),
        digits,
        "lower --lr-img",
        "last good checkpoint",
        "outer loop 1",
    )
    assert "nan" in message or "inf" in message
    from hashcondense.io import load_tensors

    tensors, meta = load_tensors(out / "checkpoint.safetensors")
    assert meta["outer"] == 1 and meta["inner"] == 0 and torch.isfinite(tensors["images"]).all()
    assert not (out / "synthetic.safetensors").exists()


def test_bad_loop_settings(tmp_path, digits):
    fails(config(tmp_path, inner_loops=0), digits, "inner_loops=0")
    fails(config(tmp_path, lr_img=-1.0), digits, "--lr-img")
    fails(config(tmp_path, batch_real=0), digits, "--batch-real")
    fails(config(tmp_path, time_budget=0.0), digits, "--time-budget")
    fails(config(tmp_path, aug_strategy="warp"), digits, "unknown DSA group 'warp'")
    fails(config(tmp_path, preset="turbo"), digits, "unknown preset 'turbo'", "paper, cpu")
