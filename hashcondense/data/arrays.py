"""Bring your own data: `npz:PATH` arrays and `folder:PATH` class-folder image trees.

Also the array and image helpers the other loaders share: a streaming `.npy`-in-`.npz` reader that
fills a preallocated array (one copy of the images in memory), per-channel statistics, and the
resize-shorter-side-then-center-crop used for every resized image (torchvision's `Resize(size)` +
`CenterCrop(size)` arithmetic).

npz layout (`numpy.load(path, allow_pickle=False)` must read it):
- `images`: (N, H, W, C) or (N, H, W), C in {1, 3}; uint8 0..255, or float in [0, 1] (scaled by 255
  and rounded).
- `labels`: (N,) integers. Any values: they are mapped to 0..K-1 in ascending order and the class
  names default to the original values. With `class_names` (K,) strings, labels must be 0..K-1.
- optional `database_idx`, `train_idx`, `query_idx`: a ready-made split (all three or none; query
  must not overlap database). Without them a seeded per-class split is drawn with counts scaled to
  the data (`splits.default_split_counts`: 10 % of the smallest class as query, capped at 100; 10 %
  of the rest as train, capped at 500; database = every non-query image).
mean / std are computed from all the images of the pool (per channel, on the [0, 1] scale), and
mAP is over the whole database by default (topk = -1).
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np

from hashcondense.data.base import RetrievalDataset
from hashcondense.data.registry import register_dataset
from hashcondense.data.splits import check_split, default_split_counts, per_class_split
from hashcondense.errors import HashCondenseError

__all__ = [
    "IMG_EXTENSIONS",
    "NpzReader",
    "channel_stats",
    "list_class_folders",
    "load_folder",
    "load_npz",
    "read_image",
    "read_images",
    "resize_images",
]

log = logging.getLogger(__name__)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_CHUNK = 4 << 20
_NPZ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError)


# ---------------------------------------------------------------------------------------------------
# streaming npz reader
class NpzReader:
    """Read `.npy` members of an `.npz` file without pickle, optionally straight into a given array.

    `np.load` would allocate every member separately; filling one preallocated pool instead keeps a
    single copy of a large image set in memory. Errors become one-line HashCondenseErrors naming the
    file; `hint` is appended as the fix.
    """

    def __init__(self, path: str | os.PathLike[str], hint: str = "re-create or re-download the file") -> None:
        self.path = Path(path)
        self.hint = hint
        try:
            self._zip = zipfile.ZipFile(self.path)
        except _NPZ_ERRORS as exc:
            raise self._error(exc) from None
        self.names = [n[: -len(".npy")] for n in self._zip.namelist() if n.endswith(".npy")]

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def _error(self, exc: BaseException | str) -> HashCondenseError:
        return HashCondenseError(f"npz file {self.path} is unreadable or corrupt ({exc}); {self.hint}")

    def header(self, name: str) -> tuple[tuple[int, ...], np.dtype, bool]:
        """(shape, dtype, fortran_order) of member `name`."""
        try:
            with self._zip.open(name + ".npy") as f:
                return self._read_header(f)
        except HashCondenseError:
            raise
        except _NPZ_ERRORS as exc:
            raise self._error(exc) from None

    def _read_header(self, f: IO[bytes]) -> tuple[tuple[int, ...], np.dtype, bool]:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:  # pragma: no cover - numpy raises first
            raise ValueError(f"unsupported .npy version {version}")
        if dtype.hasobject:
            raise HashCondenseError(
                f"npz file {self.path} stores '{getattr(f, 'name', '?')}' as Python objects, which are "
                "never unpickled; save plain numeric / string arrays"
            )
        return tuple(int(s) for s in shape), dtype, bool(fortran)

    def read(self, name: str, out: np.ndarray | None = None) -> np.ndarray:
        """Member `name` as an array; with `out` (C-contiguous, same shape and dtype) fill it in place."""
        if name not in self.names:
            raise HashCondenseError(f"npz file {self.path} has no '{name}' array; {self.hint}")
        try:
            with self._zip.open(name + ".npy") as f:
                shape, dtype, fortran = self._read_header(f)
                if out is not None and (out.shape != shape or out.dtype != dtype or fortran):
                    raise HashCondenseError(
                        f"npz file {self.path}: '{name}' is {dtype} {shape}, expected {out.dtype} "
                        f"{out.shape}; {self.hint}"
                    )
                target = out if out is not None else np.empty(shape[::-1] if fortran else shape, dtype)
                buf = memoryview(target.reshape(-1).view(np.uint8))
                pos, total = 0, buf.nbytes
                while pos < total:
                    got = f.readinto(buf[pos : pos + _CHUNK])
                    if not got:
                        raise self._error(f"'{name}' is truncated after {pos} of {total} bytes")
                    pos += got
                if f.read(1):  # also makes zipfile check the member's CRC at its end
                    raise self._error(f"'{name}' is longer than its header says")
        except HashCondenseError:
            raise
        except _NPZ_ERRORS as exc:
            raise self._error(exc) from None
        return target.T if fortran else target


# ---------------------------------------------------------------------------------------------------
# array and image helpers
def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 NHWC images on the [0, 1] scale (chunked, float64 sums)."""
    c = images.shape[-1]
    s = np.zeros(c, np.float64)
    ss = np.zeros(c, np.float64)
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].reshape(-1, c).astype(np.float64)
        s += x.sum(0)
        ss += np.square(x).sum(0)
    n = max(1, images.size // c)
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean**2, 0.0))
    std = np.where(std > 0, std, 255.0)  # a constant channel: keep normalisation finite
    return tuple(float(v) for v in mean / 255.0), tuple(float(v) for v in std / 255.0)


def _resized_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """torchvision `Resize(size)`: shorter side -> size, longer side scaled and truncated."""
    if h <= w:
        return size, max(size, int(size * w / h))
    return max(size, int(size * h / w)), size


def _crop_box(h: int, w: int, size: int) -> tuple[int, int]:
    """torchvision `CenterCrop(size)` offsets (top, left)."""
    return int(round((h - size) / 2.0)), int(round((w - size) / 2.0))


def resize_images(images: np.ndarray, size: int, chunk: int = 1024) -> np.ndarray:
    """Resize uint8 NHWC images: shorter side to `size` (bilinear, antialiased), then center crop."""
    import torch
    import torch.nn.functional as F

    n, h, w, c = images.shape
    if h == w == size:
        return images
    rh, rw = _resized_shape(h, w, size)
    top, left = _crop_box(rh, rw, size)
    out = np.empty((n, size, size, c), np.uint8)
    for i in range(0, n, chunk):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + chunk])).permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=rh < h or rw < w)
        y = y[:, :, top : top + size, left : left + size].round_().clamp_(0, 255).to(torch.uint8)
        out[i : i + chunk] = y.permute(0, 2, 3, 1).numpy()
    return out


def read_image(path: str | os.PathLike[str], size: int, mode: str = "RGB") -> np.ndarray:
    """One image file -> uint8 (size, size, C): shorter side to `size` (bilinear), center crop.

    JPEGs are decoded with Pillow's `draft` (DCT-domain downscaling by 1/2, 1/4 or 1/8 while staying
    at least `size` on both sides), which makes ImageNet-sized photos several times cheaper to read.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft(mode, (size, size))
            img = img.convert(mode)
            w, h = img.size
            rh, rw = _resized_shape(h, w, size)
            if (rh, rw) != (h, w):
                img = img.resize((rw, rh), Image.BILINEAR)
            top, left = _crop_box(rh, rw, size)
            img = img.crop((left, top, left + size, top + size))
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise HashCondenseError(f"cannot read image {path}: {exc}; delete or replace the file") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def read_images(
    paths: Sequence[str | os.PathLike[str]],
    size: int,
    mode: str = "RGB",
    workers: int | None = None,
    progress: str | None = None,
) -> np.ndarray:
    """Decode many files into one uint8 (N, size, size, C) array, in threads (Pillow frees the GIL)."""
    from hashcondense.utils.progress import progress as progress_bar

    channels = 1 if mode == "L" else 3
    out = np.empty((len(paths), size, size, channels), np.uint8)
    workers = workers or min(32, os.cpu_count() or 1)

    def work(i: int) -> None:
        out[i] = read_image(paths[i], size, mode)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = pool.map(work, range(len(paths)))
        for _ in progress_bar(jobs, desc=progress or "", disable=not progress, total=len(paths), unit="img"):
            pass
    return out


def list_class_folders(
    root: Path, is_valid: Callable[[str], bool] | None = None
) -> list[tuple[str, list[Path]]]:
    """Sorted (class folder name, sorted image files under it, recursively) for every sub-folder."""
    is_valid = is_valid or (lambda name: name.lower().endswith(IMG_EXTENSIONS))
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    out = []
    for name in classes:
        files = []
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files.extend(
                Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".") and is_valid(f)
            )
        out.append((name, files))
    return out


# ---------------------------------------------------------------------------------------------------
# bring your own data
def _finish(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    split: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    split_seed: int,
    query_per_class: int | None,
    train_per_class: int | None,
    topk: int,
    info: dict,
) -> RetrievalDataset:
    if split is None:
        q_default, t_default = default_split_counts(labels)
        q = q_default if query_per_class is None else query_per_class
        t = t_default if train_per_class is None else train_per_class
        split = per_class_split(
            labels, q, t, split_seed, num_classes=len(class_names), class_names=class_names
        )
        info["protocol"] = (
            f"seeded per-class split: {q} query and {t} train per class, database = all non-query images"
        )
    else:
        info["protocol"] = "split given by the file (database_idx / train_idx / query_idx)"
    database, train, query = split
    mean, std = channel_stats(images)
    info["mean_std"] = "computed from all images of the pool"
    return RetrievalDataset(
        name=name,
        images=images,
        labels=labels,
        class_names=class_names,
        database=database,
        train=train,
        query=query,
        mean=mean,
        std=std,
        topk=int(topk),
        split_seed=int(split_seed),
        info=info,
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def load_npz(
    path: str | os.PathLike[str],
    split_seed: int = 0,
    image_size: int | None = None,
    query_per_class: int | None = None,
    train_per_class: int | None = None,
    topk: int = -1,
) -> RetrievalDataset:
    """A RetrievalDataset from a user's `.npz` (layout in the module docstring)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise HashCondenseError(
            f"npz file {path} not found; use npz:PATH with a .npz holding 'images' and 'labels' arrays"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            for key in ("images", "labels"):
                if key not in keys:
                    raise HashCondenseError(
                        f"npz file {path} has no '{key}' array; it needs 'images' and 'labels' "
                        f"(found: {', '.join(sorted(keys)) or 'nothing'})"
                    )
            images = npz["images"]
            labels = npz["labels"]
            names = npz["class_names"] if "class_names" in keys else None
            split_keys = [k for k in ("database_idx", "train_idx", "query_idx") if k in keys]
            split_arrays = [npz[k] for k in ("database_idx", "train_idx", "query_idx") if k in keys]
    except HashCondenseError:
        raise
    except _NPZ_ERRORS as exc:
        raise HashCondenseError(
            f"npz file {path} is unreadable or corrupt ({exc}); save it with numpy.savez of plain arrays"
        ) from None

    images = _validate_images(images, path)
    n = len(images)
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise HashCondenseError(
            f"npz file {path}: 'labels' has shape {labels.shape}, expected ({n},), one label per image"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise HashCondenseError(
            f"npz file {path}: 'labels' has dtype {labels.dtype}; store integer class labels"
        )
    labels, class_names = _class_labels(labels, names, path)

    split = None
    if split_keys:
        if len(split_keys) != 3:
            raise HashCondenseError(
                f"npz file {path} has only {', '.join(split_keys)}; give all of database_idx, train_idx "
                "and query_idx, or none for a seeded split"
            )
        split = check_split(n, *split_arrays, source=f"npz file {path}")

    if image_size is not None or images.shape[1] != images.shape[2]:
        if image_size is None:
            raise HashCondenseError(
                f"npz file {path} holds {images.shape[1]}x{images.shape[2]} images, not square; pass an "
                "image size to resize (shorter side) and center-crop them"
            )
        images = resize_images(images, image_size)
    info = {"source": str(path), "sha256": _sha256(path)}
    return _finish(
        f"npz:{path}",
        images,
        labels,
        class_names,
        split,
        split_seed,
        query_per_class,
        train_per_class,
        topk,
        info,
    )


def _validate_images(images: np.ndarray, path: Path) -> np.ndarray:
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] == 0:
        raise HashCondenseError(
            f"npz file {path}: 'images' has shape {images.shape}; expected (N, H, W, C) with C = 1 or 3, "
            "or (N, H, W)"
        )
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating):
        lo, hi = float(np.min(images)), float(np.max(images))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-6 or hi > 1 + 1e-6:
            raise HashCondenseError(
                f"npz file {path}: float 'images' span [{lo:g}, {hi:g}]; store floats in [0, 1] or uint8 "
                "0..255"
            )
        return np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise HashCondenseError(
        f"npz file {path}: 'images' has dtype {images.dtype}; store uint8 0..255 or float in [0, 1]"
    )


def _class_labels(labels: np.ndarray, names: np.ndarray | None, path: Path) -> tuple[np.ndarray, list[str]]:
    if names is not None:
        names = np.asarray(names)
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise HashCondenseError(
                f"npz file {path}: 'class_names' must be a 1-D string array, got {names.dtype} {names.shape}"
            )
        class_names = [str(s.decode() if isinstance(s, bytes) else s) for s in names.tolist()]
        if labels.min() < 0 or labels.max() >= len(class_names):
            raise HashCondenseError(
                f"npz file {path}: labels span {labels.min()}..{labels.max()} but there are "
                f"{len(class_names)} class_names; labels must be 0..{len(class_names) - 1}"
            )
        return labels.astype(np.int64), class_names
    values = np.unique(labels)
    return np.searchsorted(values, labels).astype(np.int64), [str(v) for v in values.tolist()]


def load_folder(
    path: str | os.PathLike[str],
    split_seed: int = 0,
    image_size: int | None = None,
    query_per_class: int | None = None,
    train_per_class: int | None = None,
    topk: int = -1,
    workers: int | None = None,
) -> RetrievalDataset:
    """A RetrievalDataset from a class-folder tree: PATH/<class>/**/<image>, classes in sorted order.

    Images are read with Pillow as RGB, shorter side resized to `image_size` (default 32) and center
    cropped; the split is the same scaled per-class split as for npz files.
    """
    path = Path(path).expanduser()
    size = 32 if image_size is None else int(image_size)
    if not path.is_dir():
        raise HashCondenseError(
            f"image folder {path} not found; use folder:PATH with one sub-folder of images per class"
        )
    classes = list_class_folders(path)
    if not classes:
        raise HashCondenseError(
            f"image folder {path} has no class sub-folders; put each class's images in PATH/<class name>/"
        )
    for name, files in classes:
        if not files:
            raise HashCondenseError(
                f"class folder {path / name} holds no images ({', '.join(IMG_EXTENSIONS)}); add images or "
                "remove the folder"
            )
    files = [f for _, fs in classes for f in fs]
    labels = np.concatenate([np.full(len(fs), i, np.int64) for i, (_, fs) in enumerate(classes)])
    images = read_images(files, size, "RGB", workers=workers, progress=f"reading {path.name}")
    info = {"source": str(path), "files": len(files)}
    return _finish(
        f"folder:{path}",
        images,
        labels,
        [name for name, _ in classes],
        None,
        split_seed,
        query_per_class,
        train_per_class,
        topk,
        info,
    )


@register_dataset("npz", "npz:PATH with 'images' and 'labels' arrays", takes_path=True)
def _npz_spec(
    arg: str | None, root: str | None, download: bool, seed: int, size: int | None
) -> RetrievalDataset:
    return load_npz(arg or "", split_seed=seed, image_size=size)


@register_dataset("folder", "folder:PATH, one sub-folder of images per class", takes_path=True)
def _folder_spec(
    arg: str | None, root: str | None, download: bool, seed: int, size: int | None
) -> RetrievalDataset:
    return load_folder(arg or "", split_seed=seed, image_size=size)
