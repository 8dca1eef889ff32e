"""Table of the equal-budget comparison written by bench/cifar_condense.sh.

Reads bench/out/eval_<spec>_<seconds>[_seed<N>]/metrics.json and, for optimised sets, the distillation
steps from bench/out/cond_<spec>_<budget>/history.json (a snapshot at s seconds counts the steps done by
then). Prints one Markdown row per evaluated set, best first: the mean over the evaluation seeds found,
their spread and each value. Copies each metrics/config file and set card to bench/results/condense/ so
that the figures are kept with the repository.

Run: .venv/bin/python bench/summarize_condense.py [--budget 600]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN_NAME = re.compile(r"eval_(?P<spec>.+)_(?P<seconds>\d+)(?:_seed(?P<seed>\d+))?")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=600)
    p.add_argument("--out", default=str(HERE / "out"))
    p.add_argument("--keep", default=str(HERE / "results" / "condense"))
    a = p.parse_args()
    out, keep = Path(a.out), Path(a.keep)
    keep.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, int], dict[int, float]] = {}
    steps_done: dict[tuple[str, int], str] = {}
    for run in sorted(out.glob("eval_*")):
        metrics_file = run / "metrics.json"
        match = RUN_NAME.fullmatch(run.name)
        if not metrics_file.exists() or match is None:
            continue
        spec, seconds = match["spec"], int(match["seconds"])
        cond = out / f"cond_{spec}_{a.budget}"
        history_file = cond / "history.json"
        steps = "-"
        if history_file.exists() and not spec.startswith("random"):
            history = json.loads(history_file.read_text())["steps"]  # export.py's layout
            # the budget is checked between steps: a step runs when the previous one ended in time
            ends = [0.0] + [h["seconds"] for h in history[:-1]]
            steps = str(sum(1 for end in ends if end < seconds))
        card = cond / "card.json"
        if card.exists():
            shutil.copyfile(card, keep / f"cond_{spec}_{a.budget}.card.json")
        metrics = json.loads(metrics_file.read_text())
        results.setdefault((spec, seconds), {})[int(match["seed"] or 0)] = 100 * metrics["map"]
        steps_done[(spec, seconds)] = steps
        for name in ("metrics.json", "config.json"):
            if (run / name).exists():
                shutil.copyfile(run / name, keep / f"{run.name}.{name}")
    print("| set | budget (s) | steps | mAP@5000 % (mean) | sd | each evaluation seed |")
    print("|---|---|---|---|---|---|")
    table = sorted(results.items(), key=lambda item: -statistics.mean(item[1].values()))
    for (spec, seconds), by_seed in table:
        values = list(by_seed.values())
        budget = "0" if spec.startswith("random") else str(seconds)
        spread = f"{statistics.stdev(values):.2f}" if len(values) > 1 else "-"
        each = ", ".join(f"{by_seed[s]:.2f} (seed {s})" for s in sorted(by_seed))
        print(
            f"| {spec} | {budget} | {steps_done[(spec, seconds)]} | {statistics.mean(values):.2f} | "
            f"{spread} | {each} |"
        )

if __name__ == "__main__":
    main()
