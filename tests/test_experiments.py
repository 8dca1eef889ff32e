"""Experiment files, the cell store (finished cells skipped, changed ones recomputed, interrupted ones
resumed, busy ones left to their process) and the report, on tiny digits runs."""

import json
import os
import subprocess

import pytest

from hashcondense import cli
from hashcondense.errors import HashCondenseError
from hashcondense.experiments.report import write_report
from hashcondense.experiments.runner import _Datasets, adopt_set, current_settings, plan_cells, run_experiment
from hashcondense.experiments.spec import load_experiment
from hashcondense.experiments.store import CellStore

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    "name": "tiny",
    "title": "digits, a table in miniature",
    "dataset": {"dataset": "digits", "image_size": 16},
    "condense": {
        "arch": "convnet3",
        "arch_kwargs": {"width": 8},
        "batch_real": 8,
        "checkpoint_every": 1,
        "export_images": False,
    },  # fmt: skip
    "evaluate": {"train": {"epochs": 1, "batch_size": 50}},
    "grid": {"method": ["random", "dm"], "ipc": [1], "bits": [16]},
    "extra": [{"name": "whole", "train_set": "random:3", "bits": [16]}],
    "seeds": [0],
    "presets": {"cpu": {"condense": {"outer_loops": 2}, "seeds": [0, 1]}},
    "paper": {"dm/1/16": 20.0, "random/1/16": 15.0},
    "figures": [
        {"name": "pr", "kind": "pr", "cells": "*/1/16", "series": "method"},
        {"name": "by-ipc", "kind": "line", "cells": "*/1/16", "series": "method", "x": "ipc"},
        {"name": "bars", "kind": "bars", "cells": "*/1/16", "series": "method", "x": "bits"},
        {"name": "unmeasured", "kind": "bars", "cells": "nothing/*", "x": "bits"},
    ],
}


def _file(tmp_path, name="tiny.json", **changes):
    path = tmp_path / name
    path.write_text(json.dumps({**TINY, **changes}))
    return str(path)


def test_packaged_table1_loads_and_checks_every_cell():
    cells = load_experiment("table1").cells("cpu")
    keys = [cell.key for cell in cells]
    assert len(keys) == 32 and "iem/10/64" in keys and "whole/64" in keys
    # the preset's "cells" patterns: a smaller budget at 1 per class, two seeds at 10 per class
    for cell in cells:
        ipc = cell.condense["ipc"] if cell.condense else None
        if cell.condense:
            assert cell.condense["time_budget"] == (600 if ipc == 1 else 1800), cell.key
        assert cell.seeds == ((0, 1) if ipc == 10 else (0,)), cell.key


def test_preset_cell_patterns_apply_in_file_order_to_matching_cells_only(tmp_path):
    presets = {
        "cpu": {
            "condense": {"outer_loops": 2},
            "cells": {"dm/*": {"condense": {"outer_loops": 3}, "seeds": [4]}, "*/1/*": {"seeds": [5, 6]}},
        }
    }
    cells = {c.key: c for c in load_experiment(_file(tmp_path, presets=presets)).cells("cpu")}
    assert cells["dm/1/16"].condense["outer_loops"] == 3 and cells["dm/1/16"].seeds == (5, 6)
    assert cells["random/1/16"].condense["outer_loops"] == 2 and cells["random/1/16"].seeds == (5, 6)
    assert cells["whole/16"].seeds == (0,)


def test_experiments_share_a_measurement_with_the_same_set_and_evaluation():
    store = CellStore("/store")
    table1 = {c.key: c for c in load_experiment("table1").cells("cpu")}
    curve = {c.key: c for c in load_experiment("evallength").cells("cpu")}
    budgets = {c.key: c for c in load_experiment("table7").cells("cpu")}
    assert store.cell_folder(budgets["iem/1800"]) == store.cell_folder(table1["iem/10/64"])
    assert store.set_folder(curve["random/2000"]) == store.set_folder(table1["random/10/64"])
    assert store.cell_folder(curve["random/500"]) == store.cell_folder(table1["random/10/64"])
    # evallength studies the IEM set with its model pool (written out), which the cpu preset now leaves off
    assert store.set_folder(curve["iem/500"]) != store.set_folder(table1["iem/10/64"])


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"grid": {"method": ["iemm"], "ipc": [1], "bits": [16]}}, "unknown condensation method 'iemm'"),
        ({"presets": {"cpu": {"condense": {"time_budget": -5}}}}, "time_budget=-5"),
        ({"colour": 1}, "unknown fields ['colour']"),
        ({"grid": {"methods": ["dm"]}}, "unknown grid axes ['methods']"),
        ({"grid": [{"method": ["dm"], "with": {"colour": {}}}]}, "unknown grid axes"),
        ({"figures": [{"name": "f", "kind": "pie"}]}, "a figure needs a name and a kind"),
    ],
)
def test_experiment_mistakes_are_one_line(tmp_path, changes, needle):
    with pytest.raises(HashCondenseError) as error:
        load_experiment(_file(tmp_path, **changes)).cells("cpu")
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_unknown_experiment_and_preset_are_one_line(capsys):
    assert cli.main(["experiment", "table9", "--dry-run"]) == 2
    assert "unknown experiment 'table9'" in capsys.readouterr().err
    assert cli.main(["experiment", "table1", "--preset", "gpu", "--dry-run"]) == 2
    assert "no preset 'gpu'; choose one of: cpu, paper" in capsys.readouterr().err


def _metrics_times(store, experiment):
    return {
        (cell.key, seed): store.seed_folder(cell, seed).joinpath("metrics.json").stat().st_mtime_ns
        for cell in experiment.cells("cpu")
        for seed in cell.seeds
    }


def test_cells_are_cached_recomputed_when_changed_and_reported(tmp_path):
    experiment, store = load_experiment(_file(tmp_path)), CellStore(tmp_path / "store")
    assert [s.status for s in plan_cells(experiment, store, "cpu")] == ["todo", "todo", "todo"]
    outcome = dict(run_experiment(experiment, store, "cpu", quiet=True))
    assert set(outcome.values()) == {"done"}
    assert [s.status for s in plan_cells(experiment, store, "cpu")] == ["done", "done", "done"]
    before = _metrics_times(store, experiment)
    assert set(dict(run_experiment(experiment, store, "cpu", quiet=True)).values()) == {"already done"}
    assert _metrics_times(store, experiment) == before  # nothing recomputed

    longer = {"train": {"epochs": 2, "batch_size": 50}}
    changed = load_experiment(_file(tmp_path, "changed.json", evaluate=longer))
    assert [s.status for s in plan_cells(changed, store, "cpu")] == ["todo", "todo", "todo"]
    # ...but the condensed sets are the same configs: shared, not condensed again
    dm = next(c for c in changed.cells("cpu") if c.key == "dm/1/16")
    assert store.done(store.set_folder(dm))

    text = write_report(store, tmp_path / "RESULTS.md", [experiment.source.as_posix()])
    assert "## tiny (cpu preset)" in text and "| dm/1/16 |" in text and "(n=2)" in text
    row = next(line for line in text.splitlines() if line.startswith("| dm/1/16 |"))
    measured = float(row.split("|")[2].split()[0])
    assert f"{measured - 20.0:+.2f}" in row and "| 2/2 |" in row  # difference to the paper; set steps
    for name in ("pr", "by-ipc", "bars"):  # figures drawn from the store, beside RESULTS.md
        png = tmp_path / "figures" / f"tiny-cpu-{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"](figures/tiny-cpu-{name}.png)" in text
        assert f"tiny-cpu-{name}.png)  \n*" in text  # each with its caption line
    assert "not drawn, none of its cells (nothing/*) is measured yet" in text
    # findings written by hand below the mark survive a regenerated report
    from hashcondense.experiments.report import FINDINGS_MARK

    report = tmp_path / "RESULTS.md"
    report.write_text(text + f"\n{FINDINGS_MARK}\n## Findings\nIEM leads.\n")
    again = write_report(store, report, [experiment.source.as_posix()])
    assert again.endswith(f"{FINDINGS_MARK}\n## Findings\nIEM leads.\n") and again.count(FINDINGS_MARK) == 1
    assert not (tmp_path / "figures" / "tiny-cpu-unmeasured.png").exists()
    # an evaluation run with torch.compile is marked (its config.json says so; not part of the key)
    measured_dm = next(c for c in experiment.cells("cpu") if c.key == "dm/1/16")
    path = store.seed_folder(measured_dm, 0) / "config.json"
    record = json.loads(path.read_text())
    record["config"]["compile"] = True
    path.write_text(json.dumps(record))
    marked = write_report(store, report, [experiment.source.as_posix()])
    rows = [line for line in marked.splitlines() if "(compiled evaluation)" in line]
    assert [row.split("|")[1].strip() for row in rows] == ["dm/1/16"]


def test_a_report_from_another_store_carries_the_published_rows_it_cannot_measure(tmp_path):
    experiment = load_experiment(_file(tmp_path))
    sources, report = [experiment.source.as_posix()], tmp_path / "RESULTS.md"
    run_experiment(experiment, CellStore(tmp_path / "lost"), "cpu", quiet=True)
    first = write_report(CellStore(tmp_path / "lost"), report, sources)
    dm_row = next(line for line in first.splitlines() if line.startswith("| dm/1/16 |"))
    pr = tmp_path / "figures" / "tiny-cpu-pr.png"
    published_pr = pr.read_bytes()

    fresh = CellStore(tmp_path / "fresh")  # the first store is gone; this one measures random only
    run_experiment(experiment, fresh, "cpu", pattern="random/*", quiet=True)
    for _ in range(2):  # carried once, however often the report is written again
        text = cli_report(fresh, report, sources)
        row = next(line for line in text.splitlines() if line.startswith("| dm/1/16 |"))
        assert row == dm_row.replace(" (n=2) |", " (n=2), carried |") and row.count("carried") == 1
        assert "Carried from the published report: dm/1/16, whole/16: measured in a store that this" in text
        assert "All cells measured." in text
        # the curves of both methods are kept, not redrawn with random alone (a curve needs every
        # seed's metrics); line and bar figures draw the carried row's mean and sd
        assert pr.read_bytes() == published_pr
        assert text.count("(carried: drawn from an earlier store; this store holds 1)") == 1
        assert "(2 measured cells, 1 of them carried: hollow markers)" in text
        assert "(2 measured cells, 1 of them carried: hatched bars)" in text
    random_row = next(line for line in text.splitlines() if line.startswith("| random/1/16 |"))
    assert "carried" not in random_row and "(n=2)" in random_row  # measured here

    empty, copy = CellStore(tmp_path / "empty"), tmp_path / "copy"  # a store that measured none of it
    alone_text = write_report(empty, tmp_path / "alone" / "RESULTS.md", sources)
    copy.mkdir()
    (copy / "RESULTS.md").write_text(first)
    (copy / "figures").symlink_to(tmp_path / "figures")
    kept = write_report(empty, copy / "RESULTS.md", sources)
    assert "- tiny: digits, a table in miniature." in alone_text and "(n=2), carried |" in kept
    assert kept.count("(carried: drawn from an earlier store; this store holds 0)") == 3  # none redrawn

    alone = write_report(fresh, report, sources, carry=False)
    assert "carried" not in alone and "| dm/1/16 | - |" in alone
    assert "Not measured: dm/1/16, whole/16 (no finished" in alone and pr.read_bytes() != published_pr


def cli_report(store, report, sources):
    args = ["report", "--store", str(store.root), "--out", str(report)]
    assert cli.main(args + [arg for source in sources for arg in ("--experiment", source)]) == 0
    return report.read_text()


def test_interrupted_cell_resumes_and_busy_cell_is_left_alone(tmp_path, monkeypatch):
    from hashcondense.condense import engine

    experiment, store = load_experiment(_file(tmp_path)), CellStore(tmp_path / "store")
    step = engine.CondenseEngine._step

    def dies_in_the_second_outer_loop(self, outer, inner):
        if outer == 1:
            raise KeyboardInterrupt
        return step(self, outer, inner)

    with monkeypatch.context() as patch:
        patch.setattr(engine.CondenseEngine, "_step", dies_in_the_second_outer_loop)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(experiment, store, "cpu", pattern="dm/*", quiet=True)
    dm = next(c for c in experiment.cells("cpu") if c.key == "dm/1/16")
    folder = store.set_folder(dm)
    assert (folder / "checkpoint.safetensors").exists() and not store.done(folder)

    with store.locked(folder):  # another process at work on this set
        assert dict(run_experiment(experiment, store, "cpu", pattern="dm/*", quiet=True)) == {
            "dm/1/16": "skipped: running elsewhere"
        }
    assert dict(run_experiment(experiment, store, "cpu", pattern="dm/*", quiet=True)) == {"dm/1/16": "done"}
    assert "resuming from outer loop 1" in (folder / "log.txt").read_text()
    assert json.loads((folder / "done.json").read_text())["steps_done"] == 2


def _git(folder, *args):
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, cwd=folder, check=True, capture_output=True, text=True).stdout


def test_a_store_under_version_control_keeps_what_the_report_and_later_cells_need(tmp_path, monkeypatch):
    from hashcondense.condense import engine

    experiment, store = load_experiment(_file(tmp_path)), CellStore(tmp_path / "store")
    run_experiment(experiment, store, "cpu", pattern="random/*", quiet=True)
    step = engine.CondenseEngine._step

    def dies_in_the_second_outer_loop(self, outer, inner):
        if outer == 1:
            raise KeyboardInterrupt
        return step(self, outer, inner)

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):  # dm's set left unfinished
        patch.setattr(engine.CondenseEngine, "_step", dies_in_the_second_outer_loop)
        run_experiment(experiment, store, "cpu", pattern="dm/*", quiet=True)
    _git(store.root, "init", "-q")
    _git(store.root, "add", "-A")
    kept = _git(store.root, "ls-files").split()
    names = {name.rsplit("/", 1)[-1] for name in kept}
    assert {".gitignore", "config.json", "done.json", "metrics.json", "card.json", "set_id.json"} <= names
    assert "synthetic.safetensors" in names  # the condensed set itself: later cells evaluate it
    assert not names & {".lock", "network.safetensors", "checkpoint.safetensors"}
    assert not any(name.endswith(".png") for name in names)

    _git(store.root, "commit", "-q", "-m", "store")
    _git(tmp_path, "clone", "-q", str(store.root), "clone")  # the store on another machine
    clone = CellStore(tmp_path / "clone")
    sources = [experiment.source.as_posix()]
    here = write_report(store, tmp_path / "a" / "RESULTS.md", sources)
    there = write_report(clone, tmp_path / "b" / "RESULTS.md", sources)
    assert there == here.replace(str(store.root), str(clone.root))  # the report needs nothing left out
    # the finished cell is not recomputed; the interrupted one, whose checkpoint stayed behind, starts over
    outcome = dict(run_experiment(experiment, clone, "cpu", quiet=True))
    assert outcome == {"random/1/16": "already done", "dm/1/16": "done", "whole/16": "done"}
    dm = next(c for c in experiment.cells("cpu") if c.key == "dm/1/16")
    assert json.loads((clone.set_folder(dm) / "done.json").read_text())["steps_done"] == 2


def test_dry_run_lists_cells_with_their_cost(tmp_path, capsys):
    assert cli.main(["experiment", _file(tmp_path), "--dry-run", "--out", str(tmp_path / "s")]) == 0
    head, *lines, total = capsys.readouterr().out.strip().splitlines()
    assert head.startswith("this machine: ") and "GFLOP per CPU-second of convolution at 1 thread(s)" in head
    assert len(lines) == 3 and lines[1].startswith("dm/1/16") and "todo" in lines[1]
    assert (
        "1 epochs x 2 seed(s)" in lines[1]
        and "CPU-min left (condense ? (no budget) + evaluation 2 x " in lines[1]
    )
    assert total.startswith("left: ") and "over 3 priced cell(s)" in total
    assert not (tmp_path / "s").exists()  # a dry run writes nothing


def test_cost_model_counts_convnet3_flops_from_its_layers_and_prices_an_evaluation():
    from hashcondense.data import load_dataset
    from hashcondense.experiments.cost import EFFICIENCY, CostModel, forward_gflop

    # ConvNet-3 at 32 px: 3->128 at 32x32, 128->128 at 16x16 and 8x8, 3x3 kernels; 2048 -> 64 head
    macs = 9 * (3 * 128 * 32 * 32 + 128 * 128 * 16 * 16 + 128 * 128 * 8 * 8) + 2048 * 64
    assert forward_gflop("convnet3", 32, 3, 64) == pytest.approx(2 * macs / 1e9)
    data = load_dataset("digits", image_size=16)
    train = {"auto_steps": 10, "batch_size": 50}
    evaluate = {"arch": "convnet3", "bits": 16, "hashing": "dhd", "train": train}
    seconds = CostModel(throughput=100.0).evaluation_seconds(evaluate, data, train_images=100)
    work = (10 * 50 * 2 * 3 + len(data.database) + len(data.query)) * forward_gflop("convnet3", 16, 1, 16)
    assert seconds == pytest.approx(work / (100.0 * EFFICIENCY))


@pytest.mark.parametrize("name", ["table1", "table2", "table3", "table4", "table5", "table7", "evallength"])
def test_every_packaged_experiment_loads_under_its_presets(name):
    experiment = load_experiment(name)
    # the paper's tables have both presets; a study of this machine's budget (evallength) only cpu
    assert experiment.presets() == (["cpu"] if name == "evallength" else ["cpu", "paper"])
    for preset in experiment.presets():
        keys = {cell.key for cell in experiment.cells(preset)}
        assert set(experiment.paper) <= keys, set(experiment.paper) - keys  # every paper value has a cell


def test_the_data_root_does_not_change_where_a_cell_lives(tmp_path):
    experiment, store = load_experiment(_file(tmp_path)), CellStore(tmp_path / "store")
    rooted_cells = experiment.cells("cpu", root="/data/elsewhere")
    for plain, rooted in zip(experiment.cells("cpu"), rooted_cells, strict=True):
        assert store.cell_folder(plain) == store.cell_folder(rooted)
        assert store.set_folder(plain) == store.set_folder(rooted)


def test_a_train_run_of_the_cells_settings_is_adopted_and_another_refused(tmp_path):
    from hashcondense.experiments.runner import adopt_run

    experiment, store = load_experiment(_file(tmp_path)), CellStore(tmp_path / "store")
    whole = next(cell for cell in experiment.cells("cpu") if cell.key == "whole/16")
    # a run's config.json records the resolved config: location fields, eval_epochs and the flip it used
    config = {**whole.evaluate, "seed": 1, "out": "elsewhere", "root": "/data", "resume": True}
    config["train"] = {**whole.evaluate["train"], "eval_epochs": [1], "flip": False, "auto_steps": 7}
    adopt_run(store, whole, 1, config, {"map": 0.5}, "runs/whole16", date="2026-12-05")
    assert store.metrics(whole)[1] == {"map": 0.5}
    text = write_report(store, tmp_path / "R.md", [experiment.source.as_posix()])
    assert "| whole/16 | 50.00 (n=1) |" in text and "2026-12-05 (adopted train run)" in text

    other = {**config, "train": {**config["train"], "epochs": 2}}
    with pytest.raises(HashCondenseError, match=r"differ: \['train', 'train.epochs'\]"):
        adopt_run(store, whole, 1, other, {"map": 0.9}, "runs/other")
    dm = next(cell for cell in experiment.cells("cpu") if cell.key == "dm/1/16")
    with pytest.raises(HashCondenseError, match="did not train on cell dm/1/16's stored set"):
        adopt_run(store, dm, 0, config, {"map": 0.9}, "runs/other")


def test_a_probe_set_and_its_evaluation_of_the_cells_settings_are_adopted(tmp_path):
    from hashcondense.condense import CondenseConfig, condense
    from hashcondense.evaluate import EvalConfig, run_evaluation
    from hashcondense.experiments.runner import adopt_run, adopt_set

    steps = {"train": {"auto_steps": 4, "batch_size": 50}}
    experiment = load_experiment(_file(tmp_path, evaluate=steps))
    store = CellStore(tmp_path / "store")
    dm = next(cell for cell in experiment.cells("cpu") if cell.key == "dm/1/16")
    probe, other = tmp_path / "probe", tmp_path / "other"
    condense(CondenseConfig.from_dict({**dm.condense, "out": str(probe), "show_progress": False}))
    condense(
        CondenseConfig.from_dict({**dm.condense, "out": str(other), "lr_img": 0.5, "show_progress": False})
    )
    with pytest.raises(HashCondenseError, match="not condensed with cell dm/1/16's settings"):
        adopt_set(store, dm, other)
    folder = adopt_set(store, dm, probe)
    assert folder == store.set_folder(dm) and store.done(folder)
    assert store.recorded_digest(folder) == store.recorded_digest(probe)
    with pytest.raises(HashCondenseError, match="already has its set"):
        adopt_set(store, dm, probe)

    def evaluated(epochs: int, name: str) -> tuple[dict, dict]:
        out = tmp_path / name  # 10 images, batch 50: one step an epoch, so 4 steps are 4 epochs
        values = {**dm.evaluate, "train": {"epochs": epochs, "batch_size": 50}, "seed": 0, "out": str(out)}
        run_evaluation(EvalConfig.from_dict({**values, "train_set": str(probe / "synthetic.safetensors")}))
        return json.loads((out / "config.json").read_text()), json.loads((out / "metrics.json").read_text())

    record, metrics = evaluated(3, "e3")
    with pytest.raises(HashCondenseError, match=r"differ: \['train', 'train.epochs'\]"):
        adopt_run(store, dm, 0, record["config"], metrics, "e3", train_set=record["train_set"])
    record, metrics = evaluated(4, "e4")
    adopt_run(store, dm, 0, record["config"], metrics, "e4", train_set=record["train_set"])
    assert store.metrics(dm)[0]["map"] == metrics["map"]
    assert dict(run_experiment(experiment, store, "cpu", pattern="dm/*", quiet=True)) == {"dm/1/16": "done"}
    assert sorted(store.metrics(dm)) == [0, 1] and store.metrics(dm)[0]["map"] == metrics["map"]


def test_a_set_made_with_settings_the_code_no_longer_gives_is_recomputed(tmp_path, monkeypatch):
    """The cell key holds the config as written (the preset's name); a method default or preset value
    changed in the code makes the stored set stale through its recorded resolved digest."""
    from hashcondense.condense.method import get_method

    experiment, store = load_experiment(_file(tmp_path)), CellStore(tmp_path / "store")
    run_experiment(experiment, store, "cpu", pattern="dm/*", quiet=True)
    dm = next(c for c in experiment.cells("cpu") if c.key == "dm/1/16")
    folder, cell_folder = store.set_folder(dm), store.cell_folder(dm)
    old, old_id = store.recorded_digest(folder), store.set_id(folder)
    assert [s.status for s in plan_cells(experiment, store, "cpu", pattern="dm/*")] == ["done"]
    # an evaluation interrupted on the old set (seed 1's finished one set aside by hand)
    (cell_folder / "seed1").rename(cell_folder / "seed1-finished")
    (cell_folder / "seed1").mkdir()
    (cell_folder / "seed1" / "checkpoint.safetensors").write_bytes(b"from the old set")

    cls = get_method("dm")
    defaults = cls.default_settings
    faster = classmethod(lambda c, info: {**defaults(info), "lr_img": 0.5})
    monkeypatch.setattr(cls, "default_settings", faster)
    assert [s.status for s in plan_cells(experiment, store, "cpu", pattern="dm/*")] == ["stale"]
    report = tmp_path / "R.md"
    assert "**stale**" not in write_report(store, report, [experiment.source.as_posix()])
    checked = write_report(store, report, [experiment.source.as_posix()], check=True)
    assert "| dm/1/16 | " in checked and "(n=1), **stale** |" in checked and "Stale: dm/1/16:" in checked
    assert dict(run_experiment(experiment, store, "cpu", pattern="dm/*", quiet=True)) == {"dm/1/16": "done"}

    new = store.recorded_digest(folder)
    assert new not in (None, old) and store.done(folder)
    assert json.loads((folder / "config.json").read_text())["config"]["lr_img"] == 0.5
    kept = folder.with_name(f"{folder.name}.stale-{old[:12]}")
    assert store.done(kept) and store.recorded_digest(kept) == old  # the old set is kept aside...
    assert store.set_id(kept) == old_id != store.set_id(folder)  # ...with its id
    assert store.cell_folder(dm) != cell_folder  # the new set's evaluations are new folders
    assert (cell_folder / "seed0" / "done.json").is_file()  # the old set's stay with it
    assert (cell_folder / "seed1" / "checkpoint.safetensors").read_bytes() == b"from the old set"
    assert not (store.seed_folder(dm, 1) / "checkpoint.safetensors").is_file()  # not resumed
    assert sorted(store.metrics(dm)) == [0, 1]
    for seed in (0, 1):
        assert json.loads((store.seed_folder(dm, seed) / "done.json").read_text())["set_digest"] == new
    assert [s.status for s in plan_cells(experiment, store, "cpu", pattern="dm/*")] == ["done"]
    assert set(dict(run_experiment(experiment, store, "cpu", pattern="dm/*", quiet=True)).values()) == {
        "already done"
    }
    # an evaluation that names another set than the cell's current one does not count
    path = store.seed_folder(dm, 0) / "done.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "set_digest": old}))
    assert sorted(store.metrics(dm)) == [1]


def test_a_set_written_differently_with_the_same_resolved_settings_is_shared(tmp_path):
    experiment, store = load_experiment(_file(tmp_path)), CellStore(tmp_path / "store")
    run_experiment(experiment, store, "cpu", pattern="dm/*", quiet=True)
    dm = next(c for c in experiment.cells("cpu") if c.key == "dm/1/16")
    recorded = json.loads((store.set_folder(dm) / "config.json").read_text())["config"]
    explicit = {**TINY["condense"], "momentum": recorded["momentum"]}  # the default, written out
    other = load_experiment(_file(tmp_path, "explicit.json", condense=explicit))
    twin = next(c for c in other.cells("cpu") if c.key == "dm/1/16")
    assert store.set_folder(twin) != store.set_folder(dm)  # another key...
    (planned,) = plan_cells(other, store, "cpu", pattern="dm/*")
    assert planned.shared == store.set_folder(dm) and "linked when run" in planned.cost
    # the dry run already counts the evaluations made on the set it would link: nothing is left
    assert (planned.status, planned.seeds_done) == ("done", len(dm.seeds))

    def times() -> list[int]:
        return [(store.seed_folder(dm, s) / "metrics.json").stat().st_mtime_ns for s in dm.seeds]

    before = times()
    assert dict(run_experiment(other, store, "cpu", pattern="dm/*", quiet=True)) == {"dm/1/16": "done"}
    assert store.set_folder(twin).is_symlink()  # ...the same set, and the same evaluations
    assert store.set_folder(twin).resolve() == store.set_folder(dm).resolve()
    assert store.cell_folder(twin) == store.cell_folder(dm)
    assert times() == before and sorted(store.metrics(twin)) == [0, 1]  # nothing recomputed


def test_cells_that_differ_only_in_what_the_method_does_not_read_share_its_set(tmp_path):
    # DM reads no hash bits (`unread_settings`): the 32-bit cell evaluates the 16-bit cell's set
    grid = {"method": ["dm"], "ipc": [1], "bits": [16, 32]}
    experiment, store = load_experiment(_file(tmp_path, grid=grid)), CellStore(tmp_path / "store")
    run_experiment(experiment, store, "cpu", pattern="dm/1/16", quiet=True)
    cells = {c.key: c for c in experiment.cells("cpu")}
    (planned,) = plan_cells(experiment, store, "cpu", pattern="dm/1/32")
    assert planned.shared == store.set_folder(cells["dm/1/16"])
    assert dict(run_experiment(experiment, store, "cpu", pattern="dm/1/32", quiet=True)) == {
        "dm/1/32": "done"
    }
    assert store.set_folder(cells["dm/1/32"]).resolve() == store.set_folder(cells["dm/1/16"]).resolve()
    assert store.cell_folder(cells["dm/1/32"]) != store.cell_folder(cells["dm/1/16"])  # evaluated at 32 bits
    metrics = store.metrics(cells["dm/1/32"])
    assert sorted(metrics) == [0, 1] and all(m["bits"] == 32 for m in metrics.values())
    assert [s.status for s in plan_cells(experiment, store, "cpu", pattern="dm/*")] == ["done", "done"]


@pytest.mark.parametrize(
    "changes",
    [
        {"condense": {**TINY["condense"], "time_budget": 3600}},
        {"presets": {"cpu": {"condense": {"outer_loops": 3}, "seeds": [0, 1]}}},
    ],
)
def test_a_set_of_another_budget_is_not_shared(tmp_path, changes):
    # the resolved digest leaves the budget out (a finished run can be extended), so the store compares
    # it on its own: table7's 1-minute IEM set is not its 30-minute one
    experiment, store = load_experiment(_file(tmp_path)), CellStore(tmp_path / "store")
    run_experiment(experiment, store, "cpu", pattern="dm/*", quiet=True)
    dm = next(c for c in experiment.cells("cpu") if c.key == "dm/1/16")
    other = load_experiment(_file(tmp_path, "budget.json", **changes))
    twin = next(c for c in other.cells("cpu") if c.key == "dm/1/16")
    assert current_settings(twin, _Datasets()).digest == store.recorded_content_digest(store.set_folder(dm))
    (planned,) = plan_cells(other, store, "cpu", pattern="dm/*")
    assert planned.shared is None and "linked" not in planned.cost
    run_experiment(other, store, "cpu", pattern="dm/*", quiet=True)
    assert not store.set_folder(twin).is_symlink() and store.done(store.set_folder(twin))
    with pytest.raises(HashCondenseError, match="another budget"):
        adopt_set(CellStore(tmp_path / "fresh"), twin, store.set_folder(dm))


def test_a_stale_set_that_other_keys_link_to_moves_to_them_with_its_evaluations(tmp_path, monkeypatch):
    from hashcondense.condense.method import get_method

    # the set is outdated for its own key only: the keys that link to it (settings written out) keep
    # it and its evaluations, a third key of those settings links to it after the move, and the
    # stale key gets a new set (which a fourth key, written like the new defaults, then shares)
    experiment, store = load_experiment(_file(tmp_path)), CellStore(tmp_path / "store")
    run_experiment(experiment, store, "cpu", pattern="dm/*", quiet=True)
    dm = next(c for c in experiment.cells("cpu") if c.key == "dm/1/16")
    recorded = json.loads((store.set_folder(dm) / "config.json").read_text())["config"]
    twins = []
    written = {**TINY["condense"], "momentum": recorded["momentum"], "lr_img": recorded["lr_img"]}
    for name, extra in (("explicit.json", {}), ("explicit2.json", {"seed": 0})):  # two keys, one set
        other = load_experiment(_file(tmp_path, name, condense={**written, **extra}))
        twins.append((other, next(c for c in other.cells("cpu") if c.key == "dm/1/16")))
    for other, _ in twins:
        run_experiment(other, store, "cpu", pattern="dm/*", quiet=True)
    folder, old_cells = store.set_folder(dm), store.cell_folder(dm)
    assert sorted(store.linkers(folder)) == sorted(store.set_folder(t).name for _, t in twins)
    before = {s: (old_cells / f"seed{s}" / "metrics.json").stat().st_mtime_ns for s in dm.seeds}

    cls = get_method("dm")
    defaults = cls.default_settings
    monkeypatch.setattr(
        cls, "default_settings", classmethod(lambda c, info: {**defaults(info), "lr_img": 0.5})
    )
    assert [s.status for s in plan_cells(experiment, store, "cpu", pattern="dm/*")] == ["stale"]
    assert dict(run_experiment(experiment, store, "cpu", pattern="dm/*", quiet=True)) == {"dm/1/16": "done"}
    assert folder.is_dir() and not folder.is_symlink()
    assert json.loads((folder / "config.json").read_text())["config"]["lr_img"] == 0.5
    homes = [store.set_folder(t) for _, t in twins]
    assert sum(not h.is_symlink() for h in homes) == 1  # moved into the first linking key...
    assert homes[0].resolve() == homes[1].resolve() != folder.resolve()  # ...the other relinked
    for _, twin in twins:
        assert store.cell_folder(twin) == old_cells  # its evaluations, not recomputed
        assert sorted(store.metrics(twin)) == [0, 1]
    assert {s: (old_cells / f"seed{s}" / "metrics.json").stat().st_mtime_ns for s in dm.seeds} == before
    assert store.cell_folder(dm) != old_cells and sorted(store.metrics(dm)) == [0, 1]
    assert not list((tmp_path / "store" / "sets").glob("*.stale-*"))  # nothing set aside

    # a new key of the old settings links to the moved set; one of the new settings to the new set
    third = load_experiment(_file(tmp_path, "third.json", condense={**written, "hashing": "dhd"}))
    (planned,) = plan_cells(third, store, "cpu", pattern="dm/*")
    assert planned.shared is not None and planned.shared.resolve() == homes[0].resolve()
    fourth = load_experiment(_file(tmp_path, "fourth.json", condense={**TINY["condense"], "lr_img": 0.5}))
    (planned,) = plan_cells(fourth, store, "cpu", pattern="dm/*")
    assert planned.shared == folder


def test_a_set_made_before_ids_keeps_its_name_as_id_when_moved(tmp_path):
    # stores filled before set ids were written key evaluations on the folder's name: a move keeps it
    store = CellStore(tmp_path)
    sets = tmp_path / "sets"
    legacy = sets / "aaaa"
    legacy.mkdir(parents=True)
    (sets / "bbbb").symlink_to("aaaa")
    (sets / "cccc").symlink_to("aaaa")
    assert store.set_id(legacy) == "aaaa" == store.set_id(sets / "cccc")
    home = store.move_set(legacy, "0123456789abcdef")
    assert home == sets / "bbbb" and home.is_dir() and not home.is_symlink() and not legacy.exists()
    assert os.readlink(sets / "cccc") == "bbbb" and store.set_id(sets / "cccc") == "aaaa"
    again = store.move_set(home, "fedcba9876543210")  # stale for bbbb too: on to cccc
    assert again == sets / "cccc" and not again.is_symlink() and store.set_id(again) == "aaaa"
    aside = store.move_set(again, "0011223344556677")  # no key links to it now: set aside, same id
    assert aside.name == "cccc.stale-001122334455" and store.set_id(aside) == "aaaa"
    store.new_set(legacy, "0123456789abcdef")
    assert store.set_id(legacy) == "aaaa-0123456789ab"


def test_table5_condenses_with_each_hashing_method_through_the_pool_under_the_cpu_preset():
    # without the pool IEM matches a random network's features: the hashing method would not be seen
    cells = {c.key: c for c in load_experiment("table5").cells("cpu")}
    condensed_with = [c for key, c in cells.items() if key.startswith("condensed-with/")]
    assert {c.condense["hashing"] for c in condensed_with} == {"dhd", "dpn", "orthohash"}
    assert all(c.condense["options"]["use_pool"] is True for c in condensed_with)
    assert all(c.evaluate["hashing"] == c.condense["hashing"] for c in condensed_with)
    assert "use_pool" not in cells["iem/10/dpn"].condense.get("options", {})  # the preset's choice: off


def test_a_stale_cell_whose_new_settings_are_made_under_another_key_is_priced_as_nothing_left(
    tmp_path, monkeypatch
):
    # the code's default moves to what another key wrote out and evaluated: the dry run of the stale
    # cell names that set and prices nothing left (its evaluations count once linked)
    from hashcondense.condense.method import get_method
    from hashcondense.experiments.cost import CostModel

    experiment, store = load_experiment(_file(tmp_path)), CellStore(tmp_path / "store")
    run_experiment(experiment, store, "cpu", pattern="dm/*", quiet=True)
    other = load_experiment(_file(tmp_path, "explicit.json", condense={**TINY["condense"], "lr_img": 0.5}))
    run_experiment(other, store, "cpu", pattern="dm/*", quiet=True)
    cls = get_method("dm")
    defaults = cls.default_settings
    monkeypatch.setattr(
        cls, "default_settings", classmethod(lambda c, info: {**defaults(info), "lr_img": 0.5})
    )
    (planned,) = plan_cells(experiment, store, "cpu", pattern="dm/*", price=CostModel(throughput=100.0))
    twin = next(c for c in other.cells("cpu") if c.key == "dm/1/16")
    assert planned.status == "stale" and planned.shared == store.set_folder(twin)
    assert "with 2 of its evaluations" in planned.cost and planned.minutes == 0.0


def test_the_committed_results_md_is_what_the_report_writes_from_the_committed_store(tmp_path, monkeypatch):
    """RESULTS.md's tables are regenerated, never edited by hand: written again from results/ (with
    the rows it carries), they come out the same."""
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    if not (repo / "results").is_dir() or not (repo / "RESULTS.md").is_file():
        pytest.fail("the repository's results/ store and RESULTS.md belong together; one is missing")
    committed = (repo / "RESULTS.md").read_text()
    copy = tmp_path / "RESULTS.md"
    copy.write_text(committed)
    shutil.copytree(repo / "figures", tmp_path / "figures")
    monkeypatch.chdir(repo)  # the report names its store as given: results
    assert _unchecked(write_report(CellStore("results"), copy)) == _unchecked(committed)


def _unchecked(report: str) -> str:
    """A report less what `--check` adds (it loads the datasets): the stale marks of measured rows and
    the line under each table that says whether it was checked."""
    lines: list[str] = []
    for line in report.splitlines():
        if line.startswith(("Not checked against today's settings", "Stale: ")):
            continue
        if line or (lines and lines[-1]):  # with its blank line: one blank line between paragraphs
            lines.append(line if "carried" in line else line.replace(", **stale**", ""))
    return "\n".join(lines)
