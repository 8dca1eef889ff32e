"""Table of the equal-budget comparison written by bench/cifar_condense.sh.

Reads every bench/out/eval_<spec>_<seconds>[_seed<N>]/: its metrics.json, and from its config.json the
card of the set it evaluated (steps done, the condensation folder), so snapshots and runs of any budget
are counted from their own record. Prints one Markdown row per evaluated set, best first: the mean over
the evaluation seeds found, their spread and each value. Copies each metrics/config file and the
condensation runs' set cards to bench/results/condense/ so that the figures are kept with the repository.

Run: .venv/bin/python bench/summarize_condense.py"""

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
    p.add_argument("--out", default=str(HERE / "out"))
    p.add_argument("--keep", default=str(HERE / "results" / "condense"))
    a = p.parse_args()
    out, keep = Path(a.out), Path(a.keep)
    keep.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, int], dict[int, float]] = {}
    steps_done: dict[tuple[str, int], str] = {}
    for run in sorted(out.glob("eval_*")):
        match = RUN_NAME.fullmatch(run.name)
        if match is None or not (run / "metrics.json").exists():
            continue
        key = (match["spec"], int(match["seconds"]))
        train_set = json.loads((run / "config.json").read_text())["train_set"]
        card = train_set["card"]
        steps_done[key] = "-" if card["method"] == "random" else str(card["steps_done"])
        cond = Path(train_set["path"]).parent  # the condensation run (its set's metadata names no folder)
        if (cond / "card.json").exists():
            shutil.copyfile(cond / "card.json", keep / f"{cond.name}.card.json")
        metrics = json.loads((run / "metrics.json").read_text())
        results.setdefault(key, {})[int(match["seed"] or 0)] = 100 * metrics["map"]
        for name in ("metrics.json", "config.json"):
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
