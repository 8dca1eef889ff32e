"""PNG plots of retrieval curves: precision-recall, P@top-M and mAP against the evaluation epoch."""

from __future__ import annotations

import os
from collections.abc import Mapping

from hashcondense.utils.figures import plt, save_figure

__all__ = ["plot_curves"]


def plot_curves(metrics_by_label: Mapping[str, Mapping], out_dir: str | os.PathLike[str]) -> list[str]:
    """Writes pr.png, precision_at_m.png and, when a run was measured at two epochs or more
    (`--eval-epochs`), map_vs_epoch.png."""
    written = []
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, m in metrics_by_label.items():
        ax.plot(m["pr"]["recall"], m["pr"]["precision"], marker=".", label=label)
    ax.set(xlabel="recall", ylabel="precision", title="precision-recall (Hamming radius)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, os.path.join(out_dir, "pr.png"))
    written.append("pr.png")

    fig, ax = plt.subplots(figsize=(5, 4))
    for label, m in metrics_by_label.items():
        pm = m["precision_at_m"]
        tops = sorted(pm, key=int)  # a metrics.json read back has its keys in text order ("10" < "5")
        ax.plot([int(k) for k in tops], [pm[k] for k in tops], marker=".", label=label)
    ax.set(xlabel="number of top returned images M", ylabel="precision", title="P@top-M")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, os.path.join(out_dir, "precision_at_m.png"))
    written.append("precision_at_m.png")

    # a curve needs two epochs: a run measured only at its end is one dot, already in metrics.json
    series = {
        k: m["map_per_epoch"] for k, m in metrics_by_label.items() if len(m.get("map_per_epoch") or []) > 1
    }
    if series:
        fig, ax = plt.subplots(figsize=(5, 4))
        for label, rows in series.items():
            ax.plot([r["epoch"] for r in rows], [100 * r["map"] for r in rows], marker="o", label=label)
        ax.set(xlabel="training epoch", ylabel="mAP (%)", title="mAP vs evaluation epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save_figure(fig, os.path.join(out_dir, "map_vs_epoch.png"))
        written.append("map_vs_epoch.png")
    return written
