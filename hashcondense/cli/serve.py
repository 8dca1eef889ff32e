"""The serving sub-commands: encode images with a trained run, index the codes, search the index.

    hashcondense encode --run RUN (--images FOLDER | --dataset D [--root DIR] [--split S]) --out CODES
    hashcondense index build --codes CODES --out INDEX [--kind flat|ivf] [--nlist N] [--nprobe P]
    hashcondense search --index INDEX --run RUN (--image FILE | --images FOLDER | --queries SPLIT) [--k K]

The library behind them is `hashcondense.serve`; the file formats are in docs/formats.md. Flags that
alone decide a mistake (a split's name, --k, --threads, flags that do not go together) are checked
before torch and faiss load.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from hashcondense.cli import common
from hashcondense.errors import HashCondenseError
from hashcondense.serve.sources import check_split

__all__ = ["add_encode_parser", "add_index_parser", "add_search_parser"]

log = logging.getLogger("hashcondense")

# Queries drawn in --grid (a split has hundreds; a picture of all of them is unreadable).
GRID_QUERIES = 10


def _add_compute_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    g.add_argument("--threads", type=int, help="CPU threads for torch and faiss")


def _check_run_dir(run: str) -> None:
    """A missing run folder is answered before torch loads."""
    if not (Path(run) / "config.json").is_file():
        raise HashCondenseError(f"{run} holds no config.json; pass the folder of a `hashcondense train` run")


def _start(args: argparse.Namespace) -> None:
    """torch (and faiss) threads as asked, after every cheap check.

    Idle OpenMP threads sleep instead of spinning (unless OMP_WAIT_POLICY says otherwise): with the
    spinning default, faiss on 2 threads ran 9-65x slower while another job held the second core of
    our 2-core machine (BENCHMARKS.md). Set before torch and faiss load their OpenMP runtimes."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    common.start_compute(args)
    if args.threads:
        from hashcondense.serve.index_file import import_faiss

        import_faiss().omp_set_num_threads(int(args.threads))


def _encoder(args: argparse.Namespace) -> Any:
    from hashcondense.runtime import resolve_device
    from hashcondense.serve import RunEncoder

    return RunEncoder(args.run, device=resolve_device(args.device))


# ------------------------------------------------------------------------------------------ encode
def add_encode_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`hashcondense encode`."""
    p = common.add_command(
        subparsers,
        "encode",
        run_encode_command,
        "encode images into hash codes with a trained run's network",
        "Encode a dataset split or a folder of images with the network of a finished `hashcondense "
        "train` run (images read at the run's size and normalised with its dataset's statistics); "
        "writes packed codes, ids, labels and their provenance to one .safetensors file.",
    )
    p.add_argument("--run", required=True, help="folder of a finished `hashcondense train` run")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--images", help="a folder of image files (ids: sorted relative-path order; labels -1)"
    )
    source.add_argument("--dataset", help="{datasets}: encode one split of it (ids: positions in the split)")
    p.add_argument("--root", help="dataset root folder (default: the run's, for the run's dataset)")
    p.add_argument("--split", help="database | query | train (default database)")
    p.add_argument("--out", required=True, help="codes file to write (.safetensors)")
    _add_compute_options(p)
    return p


def run_encode_command(args: argparse.Namespace) -> int:
    """Handler of `hashcondense encode`."""
    common.check_threads(args)
    if args.images and (args.split or args.root):
        raise HashCondenseError("--split and --root go with --dataset; a folder's images are all encoded")
    split = check_split(args.split or "database")
    _check_run_dir(args.run)
    _start(args)
    from hashcondense.serve import encode_folder, encode_split, save_codes

    encoder = _encoder(args)
    if args.images:
        codes = encode_folder(encoder, args.images)
    else:
        codes = encode_split(encoder, args.dataset, args.root, split)
    save_codes(args.out, codes)
    print(f"{len(codes):,} codes of {codes.bits} bits -> {args.out}")
    return 0


# ------------------------------------------------------------------------------------------- index
def add_index_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`hashcondense index` and its `build` sub-command."""
    p = common.add_command(
        subparsers,
        "index",
        _run_index_help,
        "build a faiss binary index of hash codes (index build)",
        "Index commands; `hashcondense index build --help` for the one there is.",
    )
    sub = p.add_subparsers(dest="index_command", parser_class=common.Parser)
    b = common.add_command(
        sub,
        "build",
        run_index_build_command,
        "build an index from a codes file",
        "Build a faiss binary index (flat: exact, in the library's (distance, index) order; ivf: "
        "approximate and faster on large databases) of a codes file from `hashcondense encode`; writes "
        "the index, its id and label map and bit length to one .safetensors file.",
    )
    b.add_argument("--codes", required=True, help="codes file from `hashcondense encode`")
    b.add_argument("--out", required=True, help="index file to write (.safetensors)")
    b.add_argument("--kind", choices=["flat", "ivf"], default="flat", help="flat (exact, default) or ivf")
    b.add_argument("--nlist", type=int, help="ivf: inverted lists (default about sqrt(n))")
    b.add_argument("--nprobe", type=int, help="ivf: lists a search visits (default nlist / 8)")
    b.add_argument("--threads", type=int, help="CPU threads for faiss")
    return b


def _run_index_help(args: argparse.Namespace) -> int:
    raise HashCondenseError("`hashcondense index` needs a sub-command: index build --codes CODES --out INDEX")


def run_index_build_command(args: argparse.Namespace) -> int:
    """Handler of `hashcondense index build`."""
    common.check_threads(args)
    if args.kind == "flat" and (args.nlist is not None or args.nprobe is not None):
        raise HashCondenseError("--nlist and --nprobe apply to --kind ivf; drop them for a flat index")
    _start(args)
    from hashcondense.serve import build_index, load_codes, save_index

    codes = load_codes(args.codes)
    served = build_index(codes, args.kind, nlist=args.nlist, nprobe=args.nprobe)
    size = save_index(args.out, served)
    extra = f", nlist {served.meta['nlist']}, nprobe {served.meta['nprobe']}" if args.kind == "ivf" else ""
    print(
        f"{args.kind} index of {len(served):,} codes of {served.bits} bits ({size / len(served):.1f} "
        f"bytes per code{extra}) -> {args.out}"
    )
    return 0


# ------------------------------------------------------------------------------------------ search
def add_search_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`hashcondense search`."""
    p = common.add_command(
        subparsers,
        "search",
        run_search_command,
        "search an index with query images; prints JSON",
        "Encode query images with a run's network and search an index from `hashcondense index "
        "build`; prints JSON: for each query its name, label and the ids, Hamming distances and labels "
        "of its k nearest database codes.",
    )
    p.add_argument("--index", required=True, help="index file from `hashcondense index build`")
    p.add_argument("--run", required=True, help="the `hashcondense train` run that encoded the index")
    queries = p.add_mutually_exclusive_group(required=True)
    queries.add_argument("--image", help="one query image file")
    queries.add_argument("--images", help="a folder of query images (sorted relative-path order)")
    queries.add_argument("--queries", metavar="SPLIT", help="a dataset split: database | query | train")
    p.add_argument("--dataset", help="--queries' dataset: {datasets} (default: the index's, else the run's)")
    p.add_argument("--root", help="its root folder (default: the index's, else the run's)")
    p.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--nprobe", type=int, help="ivf: lists to visit (default: the index's)")
    p.add_argument("--grid", help=f"write a PNG of the first {GRID_QUERIES} queries beside their answers")
    _add_compute_options(p)
    return p


def run_search_command(args: argparse.Namespace) -> int:
    """Handler of `hashcondense search`."""
    common.check_threads(args)
    if args.k < 1:
        raise HashCondenseError(f"--k {args.k} cannot work; ask for k >= 1 neighbours")
    if args.queries:
        check_split(args.queries)
    elif args.dataset or args.root:
        raise HashCondenseError("--dataset and --root go with --queries SPLIT")
    _check_run_dir(args.run)
    _start(args)
    from hashcondense.serve import load_index, search_index

    served = load_index(args.index)
    encoder = _encoder(args)
    _check_same_network(served, encoder, args)
    images, names, labels = _query_images(args, encoder, served)
    result = search_index(served, encoder.codes(images), args.k, args.nprobe)
    record = {"index": args.index, "kind": served.kind, "bits": served.bits, "k": result.ids.shape[1]}
    print(json.dumps({**record, "results": result.to_json(names, labels)}))
    if args.grid:
        _save_grid(args.grid, served, encoder, images, names, labels, result)
    return 0


def _check_same_network(served: Any, encoder: Any, args: argparse.Namespace) -> None:
    """Codes of another bit length cannot be compared (an error); of another network of the same
    length, they can but mean nothing (a warning)."""
    if encoder.bits != served.bits:
        raise HashCondenseError(
            f"the network of {args.run} makes {encoder.bits}-bit codes but {args.index} holds "
            f"{served.bits}-bit codes; search with the run that encoded the index, or re-encode and "
            "rebuild the index with this run"
        )
    made_by = served.meta.get("codes", {}).get("run", {}).get("network_sha256")
    if made_by and made_by != encoder.digest:
        log.warning(
            "%s was encoded by another network than %s's: its codes and the queries' do not match; "
            "search with the run that encoded it",
            args.index,
            args.run,
        )


def _query_images(args: argparse.Namespace, encoder: Any, served: Any) -> tuple[Any, list[Any], Any]:
    """(uint8 images, names, labels) of the queries: a file, a folder, or a dataset split (default
    dataset: the one the index was encoded from, else the run's)."""
    import numpy as np

    from hashcondense.serve.sources import folder_files, read_files, read_split

    if args.queries:
        source = served.meta.get("codes", {}).get("source", {})
        from_index = source.get("kind") == "dataset" and not args.dataset
        dataset = source.get("dataset") if from_index else args.dataset
        root = source.get("root") if from_index and args.root is None else args.root
        images, labels, _ = read_split(encoder.input, dataset, root, args.queries)
        return images, list(range(images.shape[0])), labels
    if args.image:
        names = [args.image]
        images = read_files([Path(args.image)], encoder.input)
    else:
        names = folder_files(args.images)
        images = read_files([Path(args.images).expanduser() / n for n in names], encoder.input)
    return images, names, np.full(len(names), -1, dtype=np.int64)


def _save_grid(
    path: str, served: Any, encoder: Any, images: Any, names: list[Any], labels: Any, result: Any
) -> None:
    """The first GRID_QUERIES queries beside their answers, read back from the index's source."""
    import numpy as np

    from hashcondense.serve import save_search_grid
    from hashcondense.serve.sources import source_images

    rows = min(GRID_QUERIES, len(names))
    found = result.positions[:rows] >= 0
    ids = result.ids[:rows]
    unique = np.unique(ids[found])
    pictures = source_images(served.meta["codes"]["source"], encoder.input, unique)
    answers = np.zeros((*found.shape, *images.shape[1:]), dtype=np.uint8)
    answers[found] = pictures[np.searchsorted(unique, ids[found])]
    titles = [
        (Path(n).name[-14:] if isinstance(n, str) else f"#{n}") + (f" ({c})" if c >= 0 else "")
        for n, c in zip(names[:rows], labels[:rows].tolist(), strict=True)
    ]
    caption = (
        f"query, then its {found.shape[1]} nearest of {len(served):,} "
        f"({served.kind} index, {served.bits} bits)"
    )
    save_search_grid(path, images[:rows], answers, found, titles, caption)
