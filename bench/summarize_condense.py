"""Table of the equal-budget comparison written by bench/cifar_condense.sh.

Reads bench/out/eval_<spec>_<seconds>/metrics.json and, for optimised sets, the distillation steps
from bench/out/cond_<spec>_<budget>/history.json (a snapshot at s seconds counts the steps done by
then). Prints one Markdown row per evaluated set, best first, and copies each metrics/config file and set
card to bench/results/condense/ so that the figures are kept with the repository.

Run: .venv/bin/python bench/summarize_condense.py [--budget 600]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=600)
    p.add_argument("--out", default=str(HERE / "out"))
    p.add_argument("--keep", default=str(HERE / "results" / "condense"))
    a = p.parse_args()
    out, keep = Path(a.out), Path(a.keep)
    keep.mkdir(parents=True, exist_ok=True)
    rows = []
    for run in sorted(out.glob("eval_*")):
        metrics_file = run / "metrics.json"
        if not metrics_file.exists():
            continue
        spec, seconds = run.name[len("eval_") :].rsplit("_", 1)
        cond = out / f"cond_{spec}_{a.budget}"
        history_file = cond / "history.json"
        steps = "-"
        if history_file.exists() and not spec.startswith("random"):
            history = json.loads(history_file.read_text())["steps"]  # export.py's layout
            # the budget is checked between steps: a step runs when the previous one ended in time
            ends = [0.0] + [h["seconds"] for h in history[:-1]]
            steps = str(sum(1 for end in ends if end < float(seconds)))
        card = cond / "card.json"
        if card.exists():
            shutil.copyfile(card, keep / f"cond_{spec}_{a.budget}.card.json")
        metrics = json.loads(metrics_file.read_text())
        rows.append((spec, int(seconds), steps, 100 * metrics["map"]))
        for name in ("metrics.json", "config.json"):
            if (run / name).exists():
                shutil.copyfile(run / name, keep / f"{run.name}.{name}")
    print("| set | distillation budget (s) | steps done | mAP@5000 (%) |")
    print("|---|---|---|---|")
    for spec, seconds, steps, value in sorted(rows, key=lambda r: -r[3]):
        budget = "0" if spec.startswith("random") else str(seconds)
        print(f"| {spec} | {budget} | {steps} | {value:.2f} |")


if __name__ == "__main__":
    main()
