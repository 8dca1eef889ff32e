"""Resumable evaluation training: a run resumed from its checkpoint equals an uninterrupted one."""

import json

import pytest
import torch

from hashcondense import cli
from hashcondense.errors import HashCondenseError
from hashcondense.evaluate import TrainConfig, resolve_train_set
from hashcondense.io.tensors import load_tensors, save_tensors
from hashcondense.train import TrainCheckpoint, train_hashing_network


class Stop(Exception):
    pass


def _train(images, labels, config, checkpoint=None, on_epoch=None):
    return train_hashing_network(
        images,
        labels,
        arch="convnet3",
        hashing="dhd",
        hash_bits=16,
        num_classes=10,
        config=config,
        seed=3,
        on_epoch=on_epoch,
        show_progress=False,
        checkpoint=checkpoint,
    )


@pytest.fixture(scope="module")
def digits16():
    """digits at 16 px (the 8 px originals lose nothing): each step costs a quarter of 32 px."""
    from hashcondense.data import load_dataset

    return load_dataset("digits", image_size=16)


def _drop_lr_scale(path):
    """Rewrite a checkpoint as one written before parameter groups had an `lr_scale`."""
    tensors, meta = load_tensors(path)
    for group in meta["param_groups"]:
        del group["lr_scale"]
    save_tensors(path, tensors, meta)


# Adam's moments / SGD's momentum are restored; two parameter groups with their own lr; a checkpoint
# from before `lr_scale` existed (one group, scale 1) still resumes to the same numbers
@pytest.mark.parametrize(
    "optimizer, backbone_lr_scale, older_file",
    [("adam", 1.0, False), ("sgd", 1.0, False), ("adam", 0.05, False), ("adam", 1.0, True)],
)
def test_resumed_training_equals_uninterrupted(
    digits16, tmp_path, caplog, optimizer, backbone_lr_scale, older_file
):
    images, labels, _ = resolve_train_set(digits16, "random:20", seed=0)
    # 2 steps per epoch, augmented views
    recipe = {"batch_size": 100, "lr": 2e-3, "optimizer": optimizer, "backbone_lr_scale": backbone_lr_scale}
    config = TrainConfig(epochs=4, **recipe)
    net_a, method_a, history_a = _train(images, labels, config)

    path = tmp_path / "checkpoint.safetensors"

    def interrupt(epoch, net, method):
        raise Stop  # at epoch 2, before that epoch's checkpoint: the file holds epoch 1

    stopped = TrainConfig(epochs=4, eval_epochs=[2], **recipe)
    with pytest.raises(Stop):
        _train(images, labels, stopped, TrainCheckpoint(path, every_seconds=0, key="k"), interrupt)
    assert path.exists()
    if older_file:
        _drop_lr_scale(path)

    with caplog.at_level("INFO", logger="hashcondense"):
        net_b, method_b, history_b = _train(
            images, labels, config, TrainCheckpoint(path, resume=True, every_seconds=0, key="k")
        )
    assert "after epoch 1/4" in caplog.text  # it continued, rather than retraining from scratch
    assert [row["epoch"] for row in history_b] == [1, 2, 3, 4]
    assert [row["loss"] for row in history_b] == [row["loss"] for row in history_a]
    for name, value in net_a.state_dict().items():
        assert torch.equal(value, net_b.state_dict()[name]), name
    assert torch.equal(method_a.state_dict()["proxies"], method_b.state_dict()["proxies"])

    with pytest.raises(HashCondenseError, match="other settings"):
        _train(images, labels, config, TrainCheckpoint(path, resume=True, key="another recipe"))


def _argv(out, *extra):
    return [
        "train", "--dataset", "digits", "--train-set", "random:10", "--bits", "16", "--epochs", "3",
        "--batch-size", "50", "--checkpoint-seconds", "0", "--quiet", "--out", str(out), *extra,
    ]  # fmt: skip


def test_cli_resume_after_interrupt(tmp_path, monkeypatch, capsys):
    assert cli.main(_argv(tmp_path / "whole")) == 0
    expected = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert not (tmp_path / "whole" / "checkpoint.safetensors").exists()  # removed once finished

    out = tmp_path / "run"
    from hashcondense.evaluate import pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "evaluate_network", interrupted)
        assert cli.main(_argv(out, "--eval-epochs", "2")) == 130
    checkpoint = out / "checkpoint.safetensors"
    assert checkpoint.exists() and not (out / "metrics.json").exists()
    capsys.readouterr()

    # A fresh run into the same folder would throw the finished epochs away: refused.
    assert cli.main(_argv(out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err and "Traceback" not in err

    # Another recipe cannot continue this checkpoint; the file is kept.
    assert cli.main(_argv(out, "--resume", "--lr", "0.01")) == 2
    assert "other settings" in capsys.readouterr().err
    assert checkpoint.exists()

    assert cli.main(_argv(out, "--resume")) == 0
    assert "after epoch 1/3" in (out / "log.txt").read_text()
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["map"] == expected["map"]
    assert [r["loss"] for r in resumed["history"]] == [r["loss"] for r in expected["history"]]
    assert not checkpoint.exists()
    # The epoch trained before the interruption still counts in the times reported (history.json).
    timings = json.loads((out / "history.json").read_text())
    seconds = timings["seconds"]
    assert seconds["train"] == timings["epochs"][-1]["seconds"] > timings["epochs"][0]["seconds"] > 0
    assert seconds["total"] >= seconds["train"] + seconds["evaluate"]


def test_cli_truncated_checkpoint_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.safetensors").write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a')
    assert cli.main(_argv(out, "--resume")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "truncated or corrupt" in err and "delete it" in err


def test_checkpoints_from_before_the_optimizer_setting_still_resume():
    from hashcondense.evaluate.pipeline import EvalConfig, train_key

    resolved = EvalConfig().as_dict()
    older = json.loads(json.dumps(resolved))  # a run recorded before `optimizer`/`momentum` existed
    del older["train"]["optimizer"], older["train"]["momentum"]
    assert train_key(resolved) == train_key(older)
    sgd = json.loads(json.dumps(resolved))
    sgd["train"]["optimizer"] = "sgd"
    assert train_key(sgd) != train_key(resolved)
    sgd_momentum = json.loads(json.dumps(sgd))
    sgd_momentum["train"]["momentum"] = 0.5
    assert train_key(sgd_momentum) != train_key(sgd)
    before_cutmix = json.loads(json.dumps(resolved))  # and before `cutmix_prob`/`cutmix_beta`
    del before_cutmix["train"]["cutmix_prob"], before_cutmix["train"]["cutmix_beta"]
    assert train_key(before_cutmix) == train_key(resolved)
    mixed = json.loads(json.dumps(resolved))
    mixed["train"]["cutmix_prob"] = 0.5
    assert train_key(mixed) != train_key(resolved)
    before_views = json.loads(json.dumps(resolved))  # and before `views`
    del before_views["train"]["views"]
    assert train_key(before_views) == train_key(resolved)
    jitter = json.loads(json.dumps(resolved))
    jitter["train"]["views"] = "jitter"
    assert train_key(jitter) != train_key(resolved)
    before_groups = json.loads(json.dumps(resolved))  # and before `backbone_lr_scale`
    del before_groups["train"]["backbone_lr_scale"]
    assert train_key(before_groups) == train_key(resolved)
    scaled = json.loads(json.dumps(resolved))
    scaled["train"]["backbone_lr_scale"] = 0.05
    assert train_key(scaled) != train_key(resolved)
