"""CIFAR-10 under the DHD retrieval protocol (DESIGN Section 2), torchvision-style.

Sources, tried in this order in `root`:
1. `cifar10.npz` (train_images / train_labels / test_images / test_labels / class_names, see
   /work/shared/data/README.md), read with pickle disabled and checked against a `SHA256SUMS` file
   beside it when there is one;
2. `cifar-10-batches-bin/`, the official binary release: data_batch_1..5.bin and test_batch.bin,
   10,000 records each of 1 label byte + 3,072 pixel bytes (R, G, B planes of 32x32, row-major);
3. `cifar-10-batches-py/`, the official Python release: pickled dicts read by `RestrictedUnpickler`,
   which can build nothing but numpy arrays, and checked against their official MD5s.
`download=True` fetches the binary release (no pickle involved) and checks its MD5.

Pool = the 50,000 train images (official order) then the 10,000 test images. Split (DHD): per class,
with `numpy.random.default_rng(split_seed)`, 100 query images, then 500 train images drawn from the
non-query ones; database = all 59,000 non-query images (it contains the train split). mAP@5000.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np

from hashcondense.data.arrays import NpzReader, resize_images
from hashcondense.data.base import RetrievalDataset
from hashcondense.data.download import default_root, download_and_extract_archive, file_digest
from hashcondense.data.registry import register_dataset
from hashcondense.data.splits import per_class_split
from hashcondense.errors import HashCondenseError

__all__ = ["CIFAR10", "RestrictedUnpickler", "load_cifar10", "restricted_load"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# restricted unpickling for the official Python release
def _numpy_reconstruct() -> Any:
    try:  # numpy >= 2 keeps it in numpy._core; importing numpy.core there only warns
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only build numpy arrays (and the str / bytes / list / dict around them).

    The CIFAR-10 batches reference exactly three globals: `numpy.core.multiarray._reconstruct`,
    `numpy.ndarray` and `numpy.dtype`; every other global (os.system, builtins.eval, ...) is refused,
    so a tampered file cannot run code.
    """

    ALLOWED: dict[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),  # same object, numpy >= 2 name
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global '{module}.{name}'") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id")


def restricted_load(path: str | os.PathLike[str]) -> Any:
    """Unpickle a Python-2-era CIFAR batch file with `RestrictedUnpickler` (latin1, as numpy advises)."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, encoding="latin1").load()


# ---------------------------------------------------------------------------------------------------
class CIFAR10:
    """CIFAR-10 loaded into memory: `data` uint8 (60000, 32, 32, 3), `targets` int64, `classes`.

    Declared by data like torchvision's: a variant or a test overrides the class attributes. The
    split counts are constructor arguments (protocol values by default) so small test archives work.
    """

    name = "cifar10"
    npz_filename = "cifar10.npz"
    checksum_filename = "SHA256SUMS"

    bin_folder = "cifar-10-batches-bin"
    bin_train_files = (
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
    )
    bin_test_files = ("test_batch.bin",)
    bin_meta_file = "batches.meta.txt"  # one class name per line

    py_folder = "cifar-10-batches-py"
    py_train_list: tuple[tuple[str, str | None], ...] = (
        ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
        ("data_batch_4", "634d18415352ddfa80567beed471001a"),
        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    )
    py_test_list: tuple[tuple[str, str | None], ...] = (("test_batch", "40351d587109b95175f43aff81a1287e"),)
    py_meta: tuple[str, str | None] = ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888")

    # download = the binary release (reading it needs no unpickling)
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    filename = "cifar-10-binary.tar.gz"
    tgz_md5 = "c32a1d4ab5d03f1284b67883e8d87530"
    # the Python release, for reference (read from disk if the user has it, never downloaded)
    python_url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    python_tgz_md5 = "c58f30108f718f92721af3b95e74349a"

    records_per_file: int | None = 10_000  # None: any whole number of records (test archives)
    height, width, channels = 32, 32, 3
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    query_per_class_default = 100
    train_per_class_default = 500
    topk = 5000

    def __init__(
        self,
        root: str | os.PathLike[str],
        download: bool = False,
        split_seed: int = 0,
        query_per_class: int | None = None,
        train_per_class: int | None = None,
        url: str | None = None,
        md5: str | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.split_seed = int(split_seed)
        self.query_per_class = self.query_per_class_default if query_per_class is None else query_per_class
        self.train_per_class = self.train_per_class_default if train_per_class is None else train_per_class
        if url is not None:
            self.url = url
        if md5 is not None:
            self.tgz_md5 = md5
        if download:
            self.download()
        start = time.perf_counter()
        source = self._find_source()
        if source is None:
            raise HashCondenseError(
                f"CIFAR-10 not found in {self.root}; pass --download or put {self.npz_filename} / "
                f"{self.bin_folder} there"
            )
        self.info: dict[str, Any] = {"source": str(source)}
        kind = source.name
        if kind == self.npz_filename:
            self.data, self.targets, self.num_train = self._load_npz(source)
        elif kind == self.bin_folder:
            self.data, self.targets, self.num_train = self._load_bin(source)
        else:
            self.data, self.targets, self.num_train = self._load_py(source)
        self.classes = tuple(self.classes)
        bad = (self.targets < 0) | (self.targets >= len(self.classes))
        if bad.any():
            raise HashCondenseError(
                f"CIFAR-10 in {source} has labels outside 0..{len(self.classes) - 1} (first at pool index "
                f"{int(np.flatnonzero(bad)[0])}); the file is corrupt, re-download it"
            )
        log.info(
            "loaded CIFAR-10 from %s: %d images in %.2f s",
            source,
            len(self.data),
            time.perf_counter() - start,
        )

    # -- sources --------------------------------------------------------------------------------
    def _find_source(self) -> Path | None:
        for candidate in (
            self.root / self.npz_filename,
            self.root / self.bin_folder,
            self.root / self.py_folder,
        ):
            if candidate.exists():
                return candidate
        return None

    def download(self) -> None:
        """Fetch and unpack the binary release unless some CIFAR-10 source is already in `root`."""
        existing = self._find_source()
        if existing is not None and self._complete(existing):
            log.info("CIFAR-10 already present at %s; not downloading", existing)
            return
        download_and_extract_archive(self.url, self.root, filename=self.filename, md5=self.tgz_md5)
        if not (self.root / self.bin_folder).is_dir():
            raise HashCondenseError(
                f"{self.filename} from {self.url} did not contain {self.bin_folder}/; it is not the CIFAR-10 "
                "binary release, check the URL"
            )

    def _complete(self, source: Path) -> bool:
        """Whether `source` looks whole (npz: exists; folders: every batch there at a valid size)."""
        if source.name == self.bin_folder:
            return all(
                self._bin_problem(source / f) is None for f in (*self.bin_train_files, *self.bin_test_files)
            )
        if source.name == self.py_folder:
            return all((source / f).is_file() for f, _ in (*self.py_train_list, *self.py_test_list))
        return True

    def _bin_problem(self, path: Path) -> str | None:
        """Why a binary batch file is unusable (missing, wrong size), or None."""
        if not path.is_file():
            return "is missing"
        record = 1 + self.height * self.width * self.channels
        size = path.stat().st_size
        expected = None if self.records_per_file is None else self.records_per_file * record
        if size == 0 or size % record or (expected is not None and size != expected):
            want = expected if expected is not None else f"a multiple of {record}"
            return f"is truncated or corrupt ({size} bytes, expected {want})"
        return None

    def _verify_sha256sums(self, path: Path) -> str | None:
        sums = path.parent / self.checksum_filename
        if not sums.is_file():
            return None
        expected = None
        for line in sums.read_text(errors="replace").splitlines():
            parts = line.strip().split(maxsplit=1)
            if len(parts) == 2 and parts[1].lstrip("*").strip() == path.name:
                expected = parts[0].lower()
        if expected is None:
            log.warning("%s does not list %s; its checksum is not verified", sums, path.name)
            return None
        actual = file_digest(path, "sha256")
        if actual != expected:
            raise HashCondenseError(
                f"{path} fails its {self.checksum_filename} check: SHA256 {actual}, expected {expected}; "
                "the file is corrupt, copy it again"
            )
        return actual

    def _load_npz(self, path: Path) -> tuple[np.ndarray, np.ndarray, int]:
        sha = self._verify_sha256sums(path)
        if sha is not None:
            self.info["sha256"] = sha
        hint = "copy the file again, or use the official release (--download)"
        with NpzReader(path, hint=hint) as npz:
            for key in ("train_images", "train_labels", "test_images", "test_labels"):
                if key not in npz:
                    raise HashCondenseError(f"npz file {path} has no '{key}' array; {hint}")
            shapes = {}
            for key in ("train_images", "test_images"):
                shape, dtype, _ = npz.header(key)
                if (
                    dtype != np.uint8
                    or len(shape) != 4
                    or shape[1:] != (self.height, self.width, self.channels)
                ):
                    raise HashCondenseError(
                        f"npz file {path}: '{key}' is {dtype} {shape}, expected uint8 (N, 32, 32, 3); {hint}"
                    )
                shapes[key] = shape
            n_train, n_test = shapes["train_images"][0], shapes["test_images"][0]
            pool = np.empty((n_train + n_test, self.height, self.width, self.channels), np.uint8)
            npz.read("train_images", out=pool[:n_train])
            npz.read("test_images", out=pool[n_train:])
            labels = []
            for key, n in (("train_labels", n_train), ("test_labels", n_test)):
                lab = npz.read(key)
                if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer):
                    raise HashCondenseError(
                        f"npz file {path}: '{key}' is {lab.dtype} {lab.shape}, expected integers "
                        f"({n},); {hint}"
                    )
                labels.append(lab.astype(np.int64))
            if "class_names" in npz:
                names = npz.read("class_names")
                if names.shape == (len(self.classes),) and names.dtype.kind in "US":
                    self.classes = tuple(str(s) for s in names.tolist())
        return pool, np.concatenate(labels), n_train

    def _load_bin(self, folder: Path) -> tuple[np.ndarray, np.ndarray, int]:
        record = 1 + self.height * self.width * self.channels
        files = [folder / f for f in (*self.bin_train_files, *self.bin_test_files)]
        counts = []
        for f in files:
            problem = self._bin_problem(f)
            if problem is not None:
                raise HashCondenseError(
                    f"CIFAR-10 binary batch {f} {problem}; pass --download to fetch and extract "
                    f"{self.filename} again"
                )
            counts.append(f.stat().st_size // record)
        pool = np.empty((sum(counts), self.height, self.width, self.channels), np.uint8)
        labels = np.empty(sum(counts), np.int64)
        pos = 0
        for f, n in zip(files, counts, strict=True):
            raw = np.fromfile(f, dtype=np.uint8).reshape(n, record)
            labels[pos : pos + n] = raw[:, 0]
            pool[pos : pos + n] = (
                raw[:, 1:].reshape(n, self.channels, self.height, self.width).transpose(0, 2, 3, 1)
            )
            pos += n
        meta = folder / self.bin_meta_file
        if meta.is_file():
            names = [s.strip() for s in meta.read_text(errors="replace").splitlines() if s.strip()]
            if len(names) == len(self.classes):
                self.classes = tuple(names)
        n_train = sum(counts[: len(self.bin_train_files)])
        return pool, labels, n_train

    def _load_py(self, folder: Path) -> tuple[np.ndarray, np.ndarray, int]:
        batches = []
        for fname, md5 in (*self.py_train_list, *self.py_test_list):
            batches.append(self._read_py_batch(folder / fname, md5))
        meta_name, meta_md5 = self.py_meta
        if (folder / meta_name).is_file():
            meta = self._read_pickle(folder / meta_name, meta_md5)
            names = meta.get("label_names") if isinstance(meta, dict) else None
            if isinstance(names, list) and len(names) == len(self.classes):
                self.classes = tuple(str(n) for n in names)
        n = sum(len(b[1]) for b in batches)
        pool = np.empty((n, self.height, self.width, self.channels), np.uint8)
        pos = 0
        for data, _ in batches:
            pool[pos : pos + len(data)] = data.reshape(-1, self.channels, self.height, self.width).transpose(
                0, 2, 3, 1
            )
            pos += len(data)
        labels = np.concatenate([b[1] for b in batches])
        n_train = sum(len(b[1]) for b in batches[: len(self.py_train_list)])
        return pool, labels, n_train

    def _read_pickle(self, path: Path, md5: str | None) -> Any:
        if not path.is_file():
            raise HashCondenseError(
                f"CIFAR-10 batch {path} is missing; extract cifar-10-python.tar.gz again or pass --download"
            )
        if md5 is not None:
            actual = file_digest(path, "md5")
            if actual != md5:
                raise HashCondenseError(
                    f"CIFAR-10 batch {path} fails its MD5 check: {actual}, expected {md5}; the file is "
                    "corrupt or not from the official release, extract the archive again"
                )
        try:
            return restricted_load(path)
        except pickle.UnpicklingError as exc:
            raise HashCondenseError(
                f"CIFAR-10 batch {path} was not loaded: {exc}; only the official batches are read, use the "
                "binary release (--download) or cifar10.npz"
            ) from None
        except Exception as exc:  # a damaged pickle can fail in many ways; report each as corrupt
            raise HashCondenseError(
                f"CIFAR-10 batch {path} is corrupt ({type(exc).__name__}: {exc}); extract the archive again"
            ) from None

    def _read_py_batch(self, path: Path, md5: str | None) -> tuple[np.ndarray, np.ndarray]:
        batch = self._read_pickle(path, md5)
        if isinstance(batch, dict):
            batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
        data = batch.get("data") if isinstance(batch, dict) else None
        labels = batch.get("labels") if isinstance(batch, dict) else None
        pixels = self.height * self.width * self.channels
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != pixels
            or labels is None
            or len(labels) != len(data)
        ):
            raise HashCondenseError(
                f"CIFAR-10 batch {path} is not a CIFAR-10 batch (needs 'data' uint8 (N, {pixels}) and N "
                "'labels'); extract the archive again"
            )
        return data, np.asarray(labels, dtype=np.int64)

    # -- the retrieval dataset ------------------------------------------------------------------
    def retrieval(self) -> RetrievalDataset:
        """The pool with its seeded DHD split (one copy of the images: `data` is shared)."""
        database, train, query = per_class_split(
            self.targets,
            self.query_per_class,
            self.train_per_class,
            self.split_seed,
            num_classes=len(self.classes),
            class_names=list(self.classes),
        )
        info = dict(self.info)
        info.update(
            pool=f"{self.num_train} train then {len(self.data) - self.num_train} test images, official order",
            num_train_images=int(self.num_train),
            protocol=(
                f"DHD: per class {self.query_per_class} query, {self.train_per_class} train drawn from the "
                "non-query images; database = all non-query images"
            ),
        )
        return RetrievalDataset(
            name=self.name,
            images=self.data,
            labels=self.targets,
            class_names=list(self.classes),
            database=database,
            train=train,
            query=query,
            mean=tuple(self.mean),
            std=tuple(self.std),
            topk=self.topk,
            split_seed=self.split_seed,
            info=info,
        )


def load_cifar10(
    root: str | os.PathLike[str],
    download: bool = False,
    split_seed: int = 0,
    query_per_class: int | None = None,
    train_per_class: int | None = None,
    url: str | None = None,
    md5: str | None = None,
) -> RetrievalDataset:
    """CIFAR-10 as a RetrievalDataset (DHD protocol by default)."""
    return CIFAR10(root, download, split_seed, query_per_class, train_per_class, url, md5).retrieval()


@register_dataset("cifar10", "CIFAR-10, DHD protocol (59,000 / 5,000 / 1,000), mAP@5000")
def _cifar10_spec(
    arg: str | None, root: str | None, download: bool, seed: int, size: int | None
) -> RetrievalDataset:
    ds = load_cifar10(
        root if root is not None else default_root("cifar10"), download=download, split_seed=seed
    )
    if size is not None and size != ds.image_size:
        ds.images = resize_images(ds.images, size)
        ds.info["resize"] = f"32 -> {size} (bilinear, antialiased)"
    return ds
