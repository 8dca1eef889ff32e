"""Table 2 (and the ImageNet halves of Tables 3 and 4) run end to end on a user's ImageNet folder: here a
generated tree with the ImageNet-10 class folders, 130 train images per class, at the cpu preset's
64 px with narrow networks and a few steps."""

import json

import numpy as np
import pytest
from PIL import Image

from hashcondense.data.imagenet import IMAGENET10_CLASSES
from hashcondense.experiments.report import write_report
from hashcondense.experiments.runner import run_experiment
from hashcondense.experiments.spec import load_experiment
from hashcondense.experiments.store import CellStore

pytestmark = pytest.mark.usefixtures("one_thread")


def _tree(root, train=130, val=2):
    rng = np.random.default_rng(0)
    for c, wnid in enumerate(IMAGENET10_CLASSES):
        for part, count in (("train", train), ("val", val)):
            folder = root / part / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, size=(12, 14, 3), dtype=np.uint8)
                pixels[..., c % 3] = 40 + 20 * c  # a class colour
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG", quality=80)
    return root


def _tiny_table2(tmp_path):
    """table2.json with its cpu preset shrunk to seconds: the grid, data and keys stay the packaged ones."""
    raw = json.loads(load_experiment("table2").source.read_text())
    narrow = {"width": 4}
    raw["presets"]["cpu"] = {
        "condense": {
            "preset": "cpu", "image_size": 64, "outer_loops": 1, "inner_loops": 2, "arch_kwargs": narrow,
            "batch_real": 8, "export_images": False,
        },
        "evaluate": {"image_size": 64, "arch_kwargs": narrow, "train": {"epochs": 1, "batch_size": 50}},
        # the pool's training on 1,300 images is the one slow part; tests/test_condense_pool.py covers it
        "cells": {"*/iem/*": {"condense": {"options": {"use_pool": False}}}},
    }  # fmt: skip
    path = tmp_path / "table2.json"
    path.write_text(json.dumps(raw))
    return load_experiment(str(path))


def test_table2_runs_on_an_imagenet_folder_and_reports_its_rows(tmp_path):
    root = _tree(tmp_path / "imagenet")
    experiment, store = _tiny_table2(tmp_path), CellStore(tmp_path / "store")
    measured = ("imagenet10/iem/3/64", "imagenet10/random/1/64")
    for key in measured:
        outcome = dict(run_experiment(experiment, store, "cpu", key, root=str(root), quiet=True))
        assert outcome == {key: "done"}
    cells = {cell.key: cell for cell in experiment.cells("cpu", root=str(root))}
    card = store.set_card(cells["imagenet10/iem/3/64"])
    # 64 px images get IEM's large-image settings (factor 3) by their size, whatever their folder is called
    assert card["factor"] == 3 and card["images_per_class"] == 3 and card["image_shape"] == [3, 64, 64]
    metrics = store.metrics(cells["imagenet10/random/1/64"])[0]
    assert metrics["topk"] == 1000 and metrics["num_database"] == 1300 and metrics["num_queries"] == 20

    text = write_report(store, tmp_path / "RESULTS.md", [str(experiment.source)])
    for key in measured:
        row = next(line for line in text.splitlines() if line.startswith(f"| {key} |"))
        assert "(n=1)" in row and f"{experiment.paper[key]:.2f}" in row
    missing = next(line for line in text.splitlines() if line.startswith("Not measured: "))
    assert "imagenet10/dm/1/64" in missing and "imagenet20/whole/64" in missing
    assert "imagenet10/random/1/64," not in missing
    assert experiment.note in text  # why the ImageNet rows are empty on a machine without ImageNet
