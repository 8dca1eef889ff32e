"""Serving: `encode` -> `index build` -> `search` on a tiny digits run; the index answers as the metrics
rank; mistakes are one line with status 2.

One 16-bit ConvNet-3 trained for 2 epochs on 5 digits per class at 16 px (a few seconds). `hashcondense
train` has no width option, so the network has the default width (128); at 16 px it is still cheap.
"""

import json

import numpy as np
import pytest
from PIL import Image

from hashcondense.cli import main
from hashcondense.retrieval import mean_average_precision, unpack_codes

faiss = pytest.importorskip("faiss")

pytestmark = pytest.mark.usefixtures("one_thread")


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(capsys, needle, *argv):
    code, _, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert needle in lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The run, its database codes, a flat and an IVF index."""
    tmp = tmp_path_factory.mktemp("serve")
    run = tmp / "run"
    argv = [
        "train", "--dataset", "digits", "--image-size", "16", "--train-set", "random:5", "--hash", "dhd",
        "--arch", "convnet3", "--bits", "16", "--epochs", "2", "--batch-size", "128", "--quiet",
        "--out", str(run),
    ]  # fmt: skip
    assert main(argv) == 0
    codes, flat, ivf = tmp / "codes.safetensors", tmp / "flat.safetensors", tmp / "ivf.safetensors"
    assert main(["encode", "--run", str(run), "--dataset", "digits", "--out", str(codes)]) == 0
    assert main(["index", "build", "--codes", str(codes), "--out", str(flat)]) == 0
    assert main(["index", "build", "--codes", str(codes), "--out", str(ivf), "--kind", "ivf"]) == 0
    return {"tmp": tmp, "run": run, "codes": codes, "flat": flat, "ivf": ivf}


def search_json(capsys, served, *argv, index="flat"):
    code, out, err = run_cli(capsys, "search", "--index", served[index], "--run", served["run"], *argv)
    assert code == 0, err
    return json.loads(out)


def split_codes(served, split):
    """Codes, ids and labels of a split, through `hashcondense encode`."""
    from hashcondense.serve import load_codes

    path = served["tmp"] / f"{split}.safetensors"
    if not path.exists():
        argv = ["encode", "--run", served["run"], "--dataset", "digits", "--split", split, "--out", path]
        assert main([str(a) for a in argv]) == 0
    return load_codes(path)


def test_codes_file_records_the_run_and_the_split(served):
    from hashcondense.data import load_dataset

    codes = split_codes(served, "database")
    meta = codes.meta
    assert meta["format"] == "hashcondense.codes/1" and meta["bits"] == 16 == codes.bits
    assert meta["source"] == {
        "kind": "dataset", "dataset": "digits", "root": None, "split": "database", "split_seed": 0,
    }  # fmt: skip
    assert len(meta["run"]["network_sha256"]) == 64 and meta["run"]["config"]["arch"] == "convnet3"
    assert meta["input"]["image_size"] == 16 and meta["input"]["in_channels"] == 1
    digits = load_dataset("digits", image_size=16)
    assert codes.packed.shape == (len(digits.database), 2) and codes.packed.dtype == np.uint8
    assert np.array_equal(codes.ids, np.arange(len(digits.database)))
    assert np.array_equal(codes.labels, digits.labels[digits.database])


def test_round_trip_answers_in_distance_then_id_order(served, capsys):
    record = search_json(capsys, served, "--queries", "query", "--k", "10")
    database = split_codes(served, "database")
    query = split_codes(served, "query")
    assert record["kind"] == "flat" and record["bits"] == 16 and record["k"] == 10
    assert len(record["results"]) == len(query)
    q, d = unpack_codes(query.packed, 16), unpack_codes(database.packed, 16)
    for row, result in enumerate(record["results"]):
        assert result["query"] == row and result["label"] == query.labels[row]
        ids, dist = np.array(result["ids"]), np.array(result["distances"])
        assert len(ids) == 10 and np.array_equal(result["labels"], database.labels[ids])
        assert np.array_equal(dist, (16 - d[ids].astype(int) @ q[row].astype(int)) // 2)
        assert np.all(np.diff(dist * 10_000 + ids) > 0)  # (distance, id) ascending


@pytest.mark.parametrize("k", [100, 1497])
def test_map_from_index_answers_equals_the_library_map(served, capsys, k):
    database, query = split_codes(served, "database"), split_codes(served, "query")
    record = search_json(capsys, served, "--queries", "query", "--k", k)
    aps = []
    for result in record["results"]:
        relevant = np.array(result["labels"]) == result["label"]
        hits = np.cumsum(relevant)
        ranks = np.arange(1, len(relevant) + 1)
        aps.append(float((hits / ranks)[relevant].sum() / hits[-1]) if hits[-1] else 0.0)
    q, d = unpack_codes(query.packed, 16), unpack_codes(database.packed, 16)
    want = mean_average_precision(q, query.labels, d, database.labels, topk=k)
    assert np.mean(aps) == pytest.approx(want, abs=1e-12)
    if k == len(database):  # the run's own number: encode reads the images as the run did
        metrics = json.loads((served["run"] / "metrics.json").read_text())
        assert want == pytest.approx(metrics["map"], abs=1e-12)


def test_ivf_visiting_every_list_answers_as_flat(served, capsys):
    from hashcondense.serve import load_index

    ivf = load_index(served["ivf"])
    assert ivf.kind == "ivf" and ivf.meta["nlist"] == 1497 // 39 and ivf.meta["nprobe"] >= 1
    flat = search_json(capsys, served, "--queries", "query", "--k", "20")
    every = search_json(
        capsys, served, "--queries", "query", "--k", "20", "--nprobe", ivf.meta["nlist"], index="ivf"
    )
    assert every["results"] == flat["results"]
    default = search_json(capsys, served, "--queries", "query", "--k", "20", index="ivf")
    for result in default["results"]:  # approximate, but in the same order among what it saw
        ids, dist = np.array(result["ids"]), np.array(result["distances"])
        assert np.all(np.diff(dist * 10_000 + ids) > 0)


def _write_pngs(folder, images):
    for i, image in enumerate(images):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[:, :, 0]).resize((24, 24)).save(sub / f"{i:02d}.png")


def test_folder_round_trip_and_grid(served, capsys):
    from hashcondense.data import load_dataset
    from hashcondense.serve import load_codes

    digits = load_dataset("digits", image_size=16)
    folder, tmp = served["tmp"] / "pictures", served["tmp"]
    _write_pngs(folder, digits.images[:12])
    codes, index, grid = tmp / "f.safetensors", tmp / "f_index.safetensors", tmp / "grid.png"
    assert run_cli(capsys, "encode", "--run", served["run"], "--images", folder, "--out", codes)[0] == 0
    loaded = load_codes(codes)
    names = loaded.meta["source"]["files"]
    assert names == sorted(names) and len(names) == 12 and names[0] == "a/01.png"
    assert np.all(loaded.labels == -1) and np.array_equal(loaded.ids, np.arange(12))
    assert run_cli(capsys, "index", "build", "--codes", codes, "--out", index)[0] == 0
    argv = ["search", "--index", index, "--run", served["run"], "--images", folder, "--k", "3"]
    code, out, err = run_cli(capsys, *argv, "--grid", grid)
    assert code == 0, err
    results = json.loads(out)["results"]
    assert [r["query"] for r in results] == names
    for row, result in enumerate(results):  # every image is at distance 0 from itself
        assert result["distances"][0] == 0
        assert row in result["ids"] or result["distances"][-1] == 0  # else tied with lower ids
        assert result["label"] == -1 and result["labels"] == [-1] * 3
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one = search_json(capsys, {**served, "flat": index}, "--image", folder / names[0], "--k", "1")
    assert one["results"][0]["distances"] == [0]


def test_grid_of_split_queries_is_a_png(served, capsys):
    grid = served["tmp"] / "split_grid.png"
    search_json(capsys, served, "--queries", "query", "--k", "5", "--grid", grid)
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and grid.stat().st_size > 5_000


def test_network_and_index_of_different_bit_lengths(served, capsys):
    from hashcondense.serve import CodesFile, build_index, save_index

    rng = np.random.default_rng(0)
    codes = CodesFile(rng.integers(0, 256, (50, 1), dtype=np.uint8), np.arange(50), np.zeros(50, np.int64), 8)
    path = served["tmp"] / "eight.safetensors"
    save_index(path, build_index(codes))
    line = one_line_error(
        capsys,
        "makes 16-bit codes but",
        "search",
        "--index",
        path,
        "--run",
        served["run"],
        "--queries",
        "query",
    )
    assert "8-bit" in line and "re-encode" in line


def test_index_of_another_network_is_searched_with_a_warning(served, capsys):
    from hashcondense.serve import build_index, load_codes, save_codes, save_index

    codes = load_codes(served["codes"])
    codes.meta["run"]["network_sha256"] = "0" * 64
    other = served["tmp"] / "other.safetensors"
    save_codes(served["tmp"] / "other_codes.safetensors", codes)
    save_index(other, build_index(codes))
    argv = ["search", "--index", other, "--run", served["run"], "--queries", "query", "--k", "2"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0 and "another network" in err and json.loads(out)["k"] == 2


def _damage(source, target, how):
    """A copy of a safetensors file cut in half, or with bytes flipped in the middle of its first
    tensor's data (the packed codes, or the serialised faiss index): safetensors and faiss still
    parse that, only the checksum tells."""
    raw = bytearray(source.read_bytes())
    if how == "truncated":
        raw = raw[: len(raw) // 2]
    else:
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len])
        name = "index" if "index" in header else "codes"
        start, stop = header[name]["data_offsets"]
        middle = 8 + header_len + (start + stop) // 2
        raw[middle : middle + 2] = bytes(b ^ 0xFF for b in raw[middle : middle + 2])
    target.write_bytes(bytes(raw))
    return target


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_damaged_index_and_codes_files(served, capsys, tmp_path, how):
    index = _damage(served["flat"], tmp_path / "index.safetensors", how)
    line = one_line_error(
        capsys, "index file", "search", "--index", index, "--run", served["run"], "--queries", "query"
    )
    assert how in line and "hashcondense index build" in line
    codes = _damage(served["codes"], tmp_path / "codes.safetensors", how)
    line = one_line_error(capsys, "codes file", "index", "build", "--codes", codes, "--out", tmp_path / "i")
    assert how in line and "hashcondense encode" in line
    assert not (tmp_path / "i").exists()


def test_foreign_files_are_refused(served, capsys, tmp_path):
    one_line_error(
        capsys, "is not a codes file", "index", "build", "--codes", served["flat"], "--out", tmp_path / "i"
    )
    argv = ["search", "--index", served["codes"], "--run", served["run"], "--queries", "query"]
    one_line_error(capsys, "is not an index file", *argv)


def test_unreadable_image(served, capsys, tmp_path):
    bad = tmp_path / "folder" / "bad.png"
    bad.parent.mkdir()
    bad.write_bytes(b"not a picture")
    argv = ["search", "--index", served["flat"], "--run", served["run"], "--image", bad]
    assert "cannot read image" in one_line_error(capsys, str(bad), *argv)
    out = tmp_path / "codes.safetensors"
    one_line_error(
        capsys, "cannot read image", "encode", "--run", served["run"], "--images", bad.parent, "--out", out
    )
    assert not out.exists()
    argv = ["search", "--index", served["flat"], "--run", served["run"], "--image", tmp_path / "missing.png"]
    one_line_error(capsys, "does not exist", *argv)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (
            ["encode", "--run", "{run}", "--dataset", "digits", "--split", "test", "--out", "{tmp}/c"],
            "unknown split",
        ),
        (["search", "--index", "{flat}", "--run", "{run}", "--queries", "val"], "unknown split"),
        (["search", "--index", "{flat}", "--run", "{run}", "--queries", "query", "--k", "0"], "--k 0"),
        (
            ["search", "--index", "{flat}", "--run", "{run}", "--image", "x.png", "--root", "r"],
            "go with --queries",
        ),
        (["search", "--index", "{flat}", "--run", "{tmp}", "--queries", "query"], "config.json"),
        (
            ["search", "--index", "{flat}", "--run", "{run}", "--queries", "query", "--nprobe", "2"],
            "--nprobe",
        ),
        (["index", "build", "--codes", "{codes}", "--out", "{tmp}/i", "--nlist", "4"], "--kind ivf"),
        (
            ["index", "build", "--codes", "{codes}", "--out", "{tmp}/i", "--kind", "ivf", "--nlist", "0"],
            "--nlist 0",
        ),
        (["index", "build", "--codes", "{tmp}/none", "--out", "{tmp}/i"], "does not exist"),
        (["index"], "needs a sub-command"),
        (
            ["encode", "--run", "{run}", "--images", "{tmp}", "--split", "query", "--out", "{tmp}/c"],
            "--split",
        ),
    ],
)
def test_mistakes_are_one_line_and_status_2(served, capsys, argv, needle):
    paths = {k: str(v) for k, v in served.items()}
    one_line_error(capsys, needle, *[a.format(**paths) for a in argv])
