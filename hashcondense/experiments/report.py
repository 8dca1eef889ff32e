"""RESULTS.md from the cell store alone (no run): for every experiment and preset with results, each
cell's measured mAP (mean and sd over its evaluation seeds) beside the paper's value and the
difference, with the set's steps, distillation seconds and the date; then the cells not measured; then
the experiment's figures (PNG files in figures/ beside RESULTS.md, one curve or bar colour per method).
Text written by hand below `FINDINGS_MARK` in an existing report is kept.

The report never drops a published measurement silently: a row the report already at the output path
shows measured, whose cell this store holds no evaluation of (the store it came from is gone, or this is
another store), is carried over as it was and marked `carried`. Line and bar figures draw such rows
(hollow markers, hatched bars); a published figure this store would draw with fewer cells, or with none
it measured itself, is kept as it was. `carry=False` writes from the store alone."""

from __future__ import annotations

import fnmatch
import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hashcondense.experiments.spec import Cell, Experiment, list_experiments, load_experiment
from hashcondense.experiments.store import CellStore
from hashcondense.io.atomic import write_text

__all__ = ["CARRIED", "Published", "experiment_section", "published", "write_report"]


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


CARRIED = "carried"


@dataclass
class Published:
    """What a report already written shows for one experiment and preset: its rows with a measured value
    (cell key -> the table line) and its drawn figures (file name -> the image and caption lines, and
    how many cells it showed)."""

    rows: dict[str, str] = field(default_factory=dict)
    figures: dict[str, tuple[str, int]] = field(default_factory=dict)


_SECTION = re.compile(r"^## (\S+) \((\S+) preset\): ")
_FIGURE = re.compile(r"^!\[.*\]\(figures/([^)]+)\)  $")
_SHOWN = re.compile(r"\((\d+) measured cells")


def _columns(line: str) -> list[str]:
    """The columns of a table line, as written (spaces kept): column 1 is the measured value."""
    return line.strip("|").split("|")


def published(path: Path) -> dict[tuple[str, str], Published]:
    """(experiment, preset) -> what the report at `path` shows measured (its generated part, above
    `FINDINGS_MARK`); empty when there is no report."""
    if not path.is_file():
        return {}
    found: dict[tuple[str, str], Published] = {}
    current: Published | None = None
    lines = path.read_text().split(FINDINGS_MARK)[0].splitlines()
    for i, line in enumerate(lines):
        if line.startswith("## "):
            match = _SECTION.match(line)
            current = found.setdefault(match.groups(), Published()) if match else None
        elif current is None:
            continue
        elif line.startswith("| ") and not line.startswith("| cell |"):
            columns = [c.strip() for c in _columns(line)]
            if len(columns) == 7 and columns[1] != "-":
                current.rows[columns[0]] = line
        elif (figure := _FIGURE.match(line)) and i + 1 < len(lines):
            shown = _SHOWN.search(lines[i + 1])
            current.figures[figure.group(1)] = (
                f"{line}\n{lines[i + 1]}",
                int(shown.group(1)) if shown else 0,
            )
    return found


def _carried(line: str) -> str:
    """A published row marked as carried (once)."""
    columns = _columns(line)
    if CARRIED not in columns[1]:
        columns[1] = f"{columns[1].rstrip()}, {CARRIED} "
    return "|" + "|".join(columns) + "|"


def _row(
    experiment: Experiment, store: CellStore, cell: Cell, stale: bool = False, carry: Published | None = None
) -> tuple[str, str]:
    """The cell's table line and what it shows: "measured" (from this store), "carried" (from `carry`,
    the published report, when this store holds no evaluation of it) or "missing"."""
    metrics = store.metrics(cell)
    values = [100 * m["map"] for m in metrics.values()]
    if not values and carry is not None and cell.key in carry.rows:
        return _carried(carry.rows[cell.key]), CARRIED
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
    return line, "measured" if values else "missing"


def _mean_curve(curves: list[list[float]]) -> list[float]:
    return [statistics.mean(points) for points in zip(*curves, strict=True)]


_MEAN_SD = re.compile(r"^\s*([0-9.]+)(?: ± ([0-9.]+))?")


@dataclass
class _Point:
    """One cell of a figure: its metrics per seed from the store, or (carried) only the mean and sd of
    mAP that the published report's row gives."""

    cell: Cell
    metrics: list[dict[str, Any]]
    mean: float
    sd: float
    carried: bool = False


def _figure_points(
    figure: dict[str, Any], experiment: Experiment, store: CellStore, preset: str, carry: Published | None
) -> list[_Point]:
    """The figure's cells that this store has measured and, for line and bar figures (which need only
    a mean and sd), those `carry` shows measured instead."""
    points = []
    for cell in experiment.cells(preset):
        if not fnmatch.fnmatch(cell.key, figure.get("cells", "*")):
            continue
        metrics = list(store.metrics(cell).values())
        if metrics:
            maps = [100 * m["map"] for m in metrics]
            sd = statistics.stdev(maps) if len(maps) > 1 else 0.0
            points.append(_Point(cell, metrics, statistics.mean(maps), sd))
        elif carry is not None and cell.key in carry.rows and figure["kind"] in ("line", "bars"):
            found = _MEAN_SD.match(_columns(carry.rows[cell.key])[1])
            if found:
                mean, sd = float(found.group(1)), float(found.group(2) or 0.0)
                points.append(_Point(cell, [], mean, sd, carried=True))
    return points


def _carried_style(kind: str) -> str:
    return "hollow markers" if kind == "line" else "hatched bars"


def draw_figure(figure: dict[str, Any], points: list[_Point], path: Path) -> None:
    """Draw one of an experiment's figures from its cells (`_figure_points`; carried ones as hollow
    markers or hatched bars) into `path`."""
    from hashcondense.utils.figures import plt, save_figure

    series, x = figure.get("series", "method"), figure.get("x")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    kind = figure["kind"]
    if kind in ("line", "bars"):
        by_series: dict[str, dict[Any, _Point]] = {}
        for point in points:
            by_series.setdefault(str(point.cell.values.get(series)), {})[point.cell.values.get(x)] = point
        groups = sorted({g for by_x in by_series.values() for g in by_x}, key=lambda v: (str(type(v)), v))
        width = 0.8 / max(1, len(by_series))
        for i, (label, by_x) in enumerate(by_series.items()):
            xs = [g for g in groups if g in by_x]
            means, spread = [by_x[g].mean for g in xs], [by_x[g].sd for g in xs]
            hollow = [by_x[g].carried for g in xs]
            if kind == "line":
                drawn = ax.errorbar(xs, means, yerr=spread, marker="o", capsize=3, label=label)
                colour = drawn.lines[0].get_color()
                marked = [(g, m) for g, m, h in zip(xs, means, hollow, strict=True) if h]
                if marked:
                    ax.plot(*zip(*marked, strict=True), "o", mfc="white", mec=colour, zorder=3)
            else:
                where = [groups.index(g) + (i - (len(by_series) - 1) / 2) * width for g in xs]
                bars = ax.bar(where, means, width=width, yerr=spread, capsize=3, label=label)
                for bar, h in zip(bars, hollow, strict=True):
                    if h:
                        bar.set_hatch("//")
                        bar.set_alpha(0.6)
        if kind == "bars":
            ax.set_xticks(range(len(groups)), [str(g) for g in groups])
        if any(point.carried for point in points):
            ax.plot([], [], " ", label=f"{_carried_style(kind)}: {CARRIED} from the published report")
        ax.set(ylabel="mAP (%)")
    else:
        for point in points:
            metrics, label = point.metrics, str(point.cell.values.get(series, point.cell.key))
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
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: hides no data
    save_figure(fig, path)


def _figures(
    experiment: Experiment, store: CellStore, preset: str, out_dir: Path, carry: Published | None = None
) -> list[str]:
    lines = []
    for figure in experiment.figures:
        name = f"{experiment.name}-{preset}-{figure['name']}.png"
        old = carry.figures.get(name) if carry is not None else None
        points = _figure_points(figure, experiment, store, preset, carry)
        here = sum(not point.carried for point in points)
        if old is not None and (old[1] > len(points) or not here) and (out_dir / "figures" / name).is_file():
            # the published figure shows more than this store can (curves need every seed's metrics,
            # which a carried row lacks), or nothing this store measured: kept, not redrawn
            published_lines = old[0].split(f" ({CARRIED}: ")[0]  # marked once, however often carried
            lines.append(
                f"{published_lines} ({CARRIED}: drawn from an earlier store; this store holds {here})"
            )
            continue
        title = figure.get("title", figure["name"])
        if not points:
            lines.append(
                f"*{title}*: not drawn, none of its cells ({figure.get('cells', '*')}) is measured yet."
            )
            continue
        draw_figure(figure, points, out_dir / "figures" / name)
        carried = len(points) - here
        marked = f", {carried} of them {CARRIED}: {_carried_style(figure['kind'])}" if carried else ""
        lines.append(f"![{title}](figures/{name})  \n*{title}* ({len(points)} measured cells{marked})")
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
    carry: Published | None = None,
) -> str | None:
    """The experiment's table under `preset` (and its figures, drawn into `out_dir`/figures), or None
    when the store holds none of its cells and `carry` (what the published report shows, `published`)
    none either. `stale`: the cells to mark (`stale_cells`); None: not checked, said under the table."""
    cells = experiment.cells(preset)
    rows = [_row(experiment, store, cell, cell.key in (stale or ()), carry) for cell in cells]
    if all(shows == "missing" for _, shows in rows):
        return None
    missing = [cell.key for cell, (_, shows) in zip(cells, rows, strict=True) if shows == "missing"]
    carried = [cell.key for cell, (_, shows) in zip(cells, rows, strict=True) if shows == CARRIED]
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
    if carried:
        lines += [
            f"Carried from the published report: {', '.join(carried)}: measured in a store that this one "
            f"does not hold (`hashcondense experiment {experiment.name} --cells KEY` measures one again).",
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
        lines += [*_figures(experiment, store, preset, out_dir, carry), ""]
    return "\n".join(lines)


def write_report(
    store: CellStore,
    out: str | Path,
    experiments: list[str] | None = None,
    check: bool = False,
    root: str | None = None,
    carry: bool = True,
) -> str:
    """Write RESULTS.md for `experiments` (default: every packaged one) and return its text. `check`:
    mark the cells whose sets the code would now make differently (`stale_cells`, data under `root`).
    `carry`: keep what the report already at `out` shows measured and this store does not (`published`)."""
    sections, unmeasured = [], []
    before = published(Path(out)) if carry else {}
    for name in experiments or list_experiments():
        experiment = load_experiment(name)
        found = [
            experiment_section(
                experiment,
                store,
                p,
                Path(out).parent,
                stale_cells(experiment, store, p, root) if check else None,
                before.get((experiment.name, p)),
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
    if any(f"{CARRIED} " in section or f"{CARRIED}:" in section for section in sections):
        head += (
            f"Rows and figures marked *{CARRIED}* are kept from the report published before: this store "
            "holds no evaluation of them (see each table's note).\n\n"
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
