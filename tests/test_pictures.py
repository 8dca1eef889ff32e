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


def test_precision_at_m_curves_run_in_numeric_order_as_metrics_json_reads_back(tmp_path, monkeypatch):
    """metrics.json keeps P@M's keys as text, in text order ("10" before "5"): the curve must not zigzag."""
    from hashcondense.evaluate import plots
    from hashcondense.utils import figures

    drawn = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: drawn.append(fig))
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.append(fig))
    metrics = {
        "pr": {"recall": [0.1, 0.5], "precision": [0.9, 0.5]},
        "precision_at_m": {"10": 0.5, "100": 0.4, "5": 0.6},
    }
    plots.plot_curves({"iem": metrics}, tmp_path)
    xs = [list(fig.axes[0].lines[0].get_xdata()) for fig in drawn]
    assert [5, 10, 100] in xs
