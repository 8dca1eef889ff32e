"""The PNGs a run writes: a curve only where there is one, grids whose labels stay readable."""

import pytest
import torch
from PIL import Image

from hashcondense import cli
from hashcondense.condense import SyntheticSet
from hashcondense.condense.outputs import save_grids


def _train(out, *extra):
    return [
        "train", "--dataset", "digits", "--image-size", "16", "--train-set", "random:3", "--bits", "16",
        "--epochs", "3", "--threads", "1", "--quiet", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("eval_epochs, curve", [((), False), (("--eval-epochs", "1,2"), True)])
def test_map_vs_epoch_only_when_there_is_a_curve(tmp_path, eval_epochs, curve):
    assert cli.main(_train(tmp_path / "run", *eval_epochs)) == 0
    assert (tmp_path / "run" / "pr.png").exists()
    assert (tmp_path / "run" / "map_vs_epoch.png").exists() == curve


def test_grids_stay_legible_with_many_decoded_images(tmp_path):
    # 10 classes x 10 stored images of 16 px at factor 2: 40 decoded images per class
    images = torch.rand(100, 1, 16, 16)
    synthetic = SyntheticSet(images, torch.arange(10).repeat_interleave(10), factor=2, meta={"method": "iem"})
    assert save_grids(synthetic, tmp_path) == ["stored.png", "decoded.png"]
    stored, decoded = (Image.open(tmp_path / f"{n}.png") for n in ("stored", "decoded"))
    # a cell keeps about 0.6 inch whatever the resolution; the picture stays within a screen's width
    assert decoded.size[0] < 1600 and stored.size[0] < 1000
    cells_wide = (decoded.size[0] - 1.2 * 110) / 20  # 20 decoded images shown per class
    assert cells_wide > 50  # pixels per 16 px image: magnified, not shrunk
