"""RESULTS.md from the cell store alone (no run): for every experiment and preset with results, each
cell's measured mAP (mean and sd over its evaluation seeds) beside the paper's value and the
difference, with the set's steps, distillation seconds and the date; then the cells not measured; then
the experiment's figures (PNG files in figures/ beside RESULTS.md, one curve or bar colour per method).
Text written by hand below `FINDINGS_MARK` in an existing report is kept."""

from __future__ import annotations

import fnmatch
import json
import statistics
from pathlib import Path
from typing import Any

from hashcondense.experiments.spec import Cell, Experiment, list_experiments, load_experiment
from hashcondense.experiments.store import CellStore
from hashcondense.io.atomic import write_text

__all__ = ["experiment_section", "write_report"]


def _measured(values: list[float]) -> str:
    if not values:
        return "-"
    spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2f}{spread} (n={len(values)})"


def _compiled_evaluation(folder: Path) -> bool:
    """Whether the evaluation in `folder` ran with torch.compile (its config.json says)."""
    path = folder / "config.json"
    if not path.is_file():
        return False
    return bool(json.loads(path.read_text()).get("config", {}).get("compile"))


def _row(experiment: Experiment, store: CellStore, cell: Cell, stale: bool = False) -> tuple[str, bool]:
    metrics = store.metrics(cell)
    values = [100 * m["map"] for m in metrics.values()]
    measured = _measured(values) + (", **stale**" if stale and values else "")
    paper = experiment.paper.get(cell.key)
    diff = f"{statistics.mean(values) - paper:+.2f}" if values and paper is not None else "-"
    card = store.set_card(cell)
    if card is None or not card.get("steps_total"):  # no set, or a selection (no optimisation)
        steps, seconds = "-", "-"
    else:
        steps = f"{card.get('steps_done', 0)}/{card.get('steps_total', 0)}"
        run = card.get("run", {})
        settings = run.get("config", {})
        budget = settings.get("time_budget")
        how = [settings.get("budget_clock", "wall")] if budget else []
        if settings.get("compile"):
            how.append("compiled")
        seconds = f"{run.get('distillation_seconds', 0):.0f}"
        seconds += f" of {budget:.0f}" if budget else ""
        seconds += f" ({', '.join(how)})" if how else ""
    done = [json.loads((store.seed_folder(cell, s) / "done.json").read_text()) for s in metrics]
    dates = sorted(facts["date"] for facts in done)
    date = dates[-1] if dates else "-"
    if any("adopted_from" in facts for facts in done):
        date += " (adopted train run)"
    if any(_compiled_evaluation(store.seed_folder(cell, s)) for s in metrics):
        date += " (compiled evaluation)"
    paper_text = f"{paper:.2f}" if paper is not None else "-"
    line = f"| {cell.key} | {measured} | {paper_text} | {diff} | {steps} | {seconds} | {date} |"
    return line, bool(values)


def _mean_curve(curves: list[list[float]]) -> list[float]:
    return [statistics.mean(points) for points in zip(*curves, strict=True)]


def draw_figure(
    figure: dict[str, Any], experiment: Experiment, store: CellStore, preset: str, path: Path
) -> int:
    """Draw one of the experiment's figures from its measured cells into `path`; returns how many
    cells it shows (0: nothing measured, nothing written)."""
    from hashcondense.utils.figures import plt, save_figure

    cells = [
        (cell, list(store.metrics(cell).values()))
        for cell in experiment.cells(preset)
        if fnmatch.fnmatch(cell.key, figure.get("cells", "*"))
    ]
    cells = [(cell, metrics) for cell, metrics in cells if metrics]
    if not cells:
        return 0
    series, x = figure.get("series", "method"), figure.get("x")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    kind = figure["kind"]
    if kind in ("line", "bars"):
        points: dict[str, dict[Any, list[float]]] = {}
        for cell, metrics in cells:
            maps = [100 * m["map"] for m in metrics]
            points.setdefault(str(cell.values.get(series)), {})[cell.values.get(x)] = maps
        groups = sorted({g for by_x in points.values() for g in by_x}, key=lambda v: (str(type(v)), v))
        width = 0.8 / max(1, len(points))
        for i, (label, by_x) in enumerate(points.items()):
            xs = [g for g in groups if g in by_x]
            means = [statistics.mean(by_x[g]) for g in xs]
            spread = [statistics.stdev(by_x[g]) if len(by_x[g]) > 1 else 0.0 for g in xs]
            if kind == "line":
                ax.errorbar(xs, means, yerr=spread, marker="o", capsize=3, label=label)
            else:
                where = [groups.index(g) + (i - (len(points) - 1) / 2) * width for g in xs]
                ax.bar(where, means, width=width, yerr=spread, capsize=3, label=label)
        if kind == "bars":
            ax.set_xticks(range(len(groups)), [str(g) for g in groups])
        ax.set(ylabel="mAP (%)")
    else:
        for cell, metrics in cells:
            label = str(cell.values.get(series, cell.key))
            if kind == "pr":
                recall = _mean_curve([m["pr"]["recall"] for m in metrics])
                ax.plot(recall, _mean_curve([m["pr"]["precision"] for m in metrics]), marker=".", label=label)
            else:
                tops = sorted(metrics[0]["precision_at_m"], key=int)  # JSON keys sort as text
                values = _mean_curve([[m["precision_at_m"][t] for t in tops] for m in metrics])
                ax.plot([int(t) for t in tops], values, marker=".", label=label)
        ax.set(
            xlabel="recall" if kind == "pr" else "number of top returned images M",
            ylabel="precision",
        )
    if figure.get("xlabel"):
        ax.set_xlabel(figure["xlabel"])
    ax.set_title(figure.get("title", figure["name"]), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return len(cells)


def _figures(experiment: Experiment, store: CellStore, preset: str, out_dir: Path) -> list[str]:
    lines = []
    for figure in experiment.figures:
        name = f"{experiment.name}-{preset}-{figure['name']}.png"
        shown = draw_figure(figure, experiment, store, preset, out_dir / "figures" / name)
        title = figure.get("title", figure["name"])
        lines.append(
            f"![{title}](figures/{name})  \n*{title}* ({shown} measured cells)"
            if shown
            else f"*{title}*: not drawn, none of its cells ({figure.get('cells', '*')}) is measured yet."
        )
    return lines


def stale_cells(experiment: Experiment, store: CellStore, preset: str, root: str | None) -> list[str]:
    """The keys of the cells whose stored set was made with settings the code no longer resolves (their
    data under `root` is loaded to resolve them; cells whose data does not load are not checked)."""
    from hashcondense.experiments.runner import plan_cells  # the report itself needs no runner

    return [s.cell.key for s in plan_cells(experiment, store, preset, root=root) if s.status == "stale"]


def experiment_section(
    experiment: Experiment,
    store: CellStore,
    preset: str,
    out_dir: Path | None = None,
    stale: list[str] | None = None,
) -> str | None:
    """The experiment's table under `preset` (and its figures, drawn into `out_dir`/figures), or None
    when the store holds none of its cells. `stale`: the cells to mark (`stale_cells`); None: not
    checked, said under the table."""
    cells = experiment.cells(preset)
    rows = [_row(experiment, store, cell, cell.key in (stale or ())) for cell in cells]
    if not any(measured for _, measured in rows):
        return None
    missing = [cell.key for cell, (_, measured) in zip(cells, rows, strict=True) if not measured]
    lines = [
        f"## {experiment.name} ({preset} preset): {experiment.title}",
        "",
        *([experiment.note, ""] if experiment.note else []),
        "| cell | measured mAP % | paper | difference | set steps | distillation s of budget | date |",
        "|---|---|---|---|---|---|---|",
        *(line for line, _ in rows),
        "",
        f"Not measured: {', '.join(missing)} (no finished evaluation in the store)."
        if missing
        else "All cells measured.",
        "",
    ]
    if stale is None:
        lines += ["Not checked against today's settings (`hashcondense report --check` checks).", ""]
    elif stale:
        lines += [
            f"Stale: {', '.join(stale)}: their sets were made with settings the code no longer resolves "
            f"(`hashcondense experiment {experiment.name}` recomputes them).",
            "",
        ]
    if out_dir is not None and experiment.figures:
        lines += [*_figures(experiment, store, preset, out_dir), ""]
    return "\n".join(lines)


def write_report(
    store: CellStore,
    out: str | Path,
    experiments: list[str] | None = None,
    check: bool = False,
    root: str | None = None,
) -> str:
    """Write RESULTS.md for `experiments` (default: every packaged one) and return its text. `check`:
    mark the cells whose sets the code would now make differently (`stale_cells`, data under `root`)."""
    sections, unmeasured = [], []
    for name in experiments or list_experiments():
        experiment = load_experiment(name)
        found = [
            experiment_section(
                experiment,
                store,
                p,
                Path(out).parent,
                stale_cells(experiment, store, p, root) if check else None,
            )
            for p in experiment.presets()
        ]
        sections += [section for section in found if section]
        if not any(found):
            why = f" {experiment.note}" if experiment.note else ""
            unmeasured.append(f"- {experiment.name}: {experiment.title}.{why}")
    if unmeasured:
        sections.append(
            "## Not measured here\n\nNo cell of these experiments has a finished evaluation in this store "
            "(`hashcondense experiment NAME --dry-run` prices them):\n\n" + "\n".join(unmeasured) + "\n"
        )
    head = (
        "# Results\n\nGenerated by `hashcondense report` from the cell store "
        f"`{store.root}`; measured values are mAP (%) over the evaluation seeds.\n\n"
    )
    text = head + ("\n".join(sections) if sections else "No cell has finished yet.\n")
    text += _kept_findings(Path(out))
    write_text(out, text)
    return text


FINDINGS_MARK = "<!-- findings: written by hand, kept by hashcondense report -->"


def _kept_findings(path: Path) -> str:
    """What follows `FINDINGS_MARK` in the report already at `path` (the investigations written by
    people, which the store cannot regenerate), with the mark; empty when there is none."""
    if not path.is_file():
        return ""
    old = path.read_text()
    return "\n" + old[old.index(FINDINGS_MARK) :] if FINDINGS_MARK in old else ""
