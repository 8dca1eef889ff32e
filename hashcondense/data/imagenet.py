"""ImageNet-10 and ImageNet-20 from a user's ILSVRC-2012 folder (DESIGN Section 2; no download).

Expected layout: `root/train/<wnid>/*.JPEG` and `root/val/<wnid>/*.JPEG` (validation images sorted
into class sub-folders, as torchvision's ImageFolder wants them).

Class lists: the IDC code base (snu-mllab/Efficient-Dataset-Condensation) selects ImageNet subsets as
the first `nclass` lines of its `class100.txt` (`ImageFolder.find_subclasses`, seed 0), a copy of
the ImageNet-100 list of CMC (HobbitLong/CMC `imagenet100.txt`). IDC's own class100.txt could not be
read here; the list below is the CMC list as found in the copy of that file shipped by RDED
(`imagenet_subset/class100.txt`) and in other code; a third-party comment labels its first ten
"imagenet-10". ImageNet-10 = its first 10 classes. IDC publishes no 20-class list, so ImageNet-20 =
its first 20 classes, which is what IDC's own code selects with `--nclass 20`.

Split (our reading of IEM Table 6, which does not spell it out): database = all train images of the
classes (~1,300 per class), train = 130 per class drawn from the database with
`numpy.random.default_rng(split_seed)`, query = the 50 validation images per class. mAP@1000.
Images: shorter side resized to `image_size` (default 64, to keep 26,000 images at ~320 MB; the
ResNetAP-10 stems handle 32..224) with Pillow (bilinear, JPEG draft decoding), then center crop.
Resized arrays are cached in `root` (or `cache_dir`) as `hashcondense-<name>-<size>px.npz`, written
atomically and keyed by the class list, size and file list.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hashcondense.data.arrays import IMG_EXTENSIONS, read_images
from hashcondense.data.base import RetrievalDataset
from hashcondense.data.registry import register_dataset
from hashcondense.data.splits import sample_per_class
from hashcondense.errors import HashCondenseError
from hashcondense.io.atomic import atomic_write

__all__ = [
    "IMAGENET100_CLASSES",
    "IMAGENET10_CLASSES",
    "IMAGENET20_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WNID_NAMES",
    "load_imagenet_subset",
]

log = logging.getLogger(__name__)

# IDC class100.txt order (== CMC imagenet100.txt); see the module docstring for provenance.
# fmt: off
IMAGENET100_CLASSES: tuple[str, ...] = (
    "n02869837", "n01749939", "n02488291", "n02107142", "n13037406",
    "n02091831", "n04517823", "n04589890", "n03062245", "n01773797",
    "n01735189", "n07831146", "n07753275", "n03085013", "n04485082",
    "n02105505", "n01983481", "n02788148", "n03530642", "n04435653",
    "n02086910", "n02859443", "n13040303", "n03594734", "n02085620",
    "n02099849", "n01558993", "n04493381", "n02109047", "n04111531",
    "n02877765", "n04429376", "n02009229", "n01978455", "n02106550",
    "n01820546", "n01692333", "n07714571", "n02974003", "n02114855",
    "n03785016", "n03764736", "n03775546", "n02087046", "n07836838",
    "n04099969", "n04592741", "n03891251", "n02701002", "n03379051",
    "n02259212", "n07715103", "n03947888", "n04026417", "n02326432",
    "n03637318", "n01980166", "n02113799", "n02086240", "n03903868",
    "n02483362", "n04127249", "n02089973", "n03017168", "n02093428",
    "n02804414", "n02396427", "n04418357", "n02172182", "n01729322",
    "n02113978", "n03787032", "n02089867", "n02119022", "n03777754",
    "n04238763", "n02231487", "n03032252", "n02138441", "n02104029",
    "n03837869", "n03494278", "n04136333", "n03794056", "n03492542",
    "n02018207", "n04067472", "n03930630", "n03584829", "n02123045",
    "n04229816", "n02100583", "n03642806", "n04336792", "n03259280",
    "n02116738", "n02108089", "n03424325", "n01855672", "n02090622",
)
# fmt: on
IMAGENET10_CLASSES = IMAGENET100_CLASSES[:10]
IMAGENET20_CLASSES = IMAGENET100_CLASSES[:20]

# Readable names of the ImageNet-20 classes (ILSVRC-2012 synset words).
WNID_NAMES: dict[str, str] = {
    "n02869837": "bonnet",
    "n01749939": "green_mamba",
    "n02488291": "langur",
    "n02107142": "Doberman",
    "n13037406": "gyromitra",
    "n02091831": "Saluki",
    "n04517823": "vacuum",
    "n04589890": "window_screen",
    "n03062245": "cocktail_shaker",
    "n01773797": "garden_spider",
    "n01735189": "garter_snake",
    "n07831146": "carbonara",
    "n07753275": "pineapple",
    "n03085013": "computer_keyboard",
    "n04485082": "tripod",
    "n02105505": "komondor",
    "n01983481": "American_lobster",
    "n02788148": "bannister",
    "n03530642": "honeycomb",
    "n04435653": "tile_roof",
}

SUBSETS: dict[str, tuple[str, ...]] = {"imagenet10": IMAGENET10_CLASSES, "imagenet20": IMAGENET20_CLASSES}
TITLES = {"imagenet10": "ImageNet-10", "imagenet20": "ImageNet-20"}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_IMAGE_SIZE = 64
TRAIN_PER_CLASS = 130
TOPK = 1000
_CACHE_VERSION = 1  # bump when the resize pipeline changes


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _class_files(folder: Path, title: str, part: str, root: Path) -> list[Path]:
    if not folder.is_dir():
        raise HashCondenseError(
            f"{title} class folder {folder} not found; {root} needs train/<wnid>/ and val/<wnid>/ folders "
            f"of the ILSVRC-2012 classes (missing wnid {folder.name} in {part}/)"
        )
    files = sorted(Path(e.path) for e in os.scandir(folder) if e.is_file() and _is_image(e.name))
    if not files:
        raise HashCondenseError(f"{title} class folder {folder} holds no images; copy its JPEGs there")
    return files


def _check_root(root: Path, title: str) -> None:
    if not root.is_dir():
        raise HashCondenseError(
            f"{title} needs an ImageNet folder with train/ and val/ class sub-folders; {root} does not exist "
            "(ImageNet cannot be downloaded automatically)"
        )
    for part in ("train", "val"):
        if not (root / part).is_dir():
            raise HashCondenseError(
                f"{title}: {root / part} not found; the ImageNet folder needs train/<wnid>/ and val/<wnid>/"
            )
    val = root / "val"
    if not any(e.is_dir() for e in os.scandir(val)) and any(_is_image(e.name) for e in os.scandir(val)):
        raise HashCondenseError(
            f"{title}: {val} holds images directly; sort the validation images into val/<wnid>/ class "
            "folders (e.g. with the ILSVRC valprep.sh script)"
        )


def _cache_key(classes: Sequence[str], size: int, files: list[Path], root: Path) -> str:
    payload = {
        "version": _CACHE_VERSION,
        "classes": list(classes),
        "size": size,
        "files": [str(f.relative_to(root)) for f in files],
    }
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def _read_cache(path: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                log.info("cache %s is for other files or settings; rebuilding it", path)
                return None
            return npz["images"], npz["labels"].astype(np.int64)
    except Exception as exc:  # a damaged cache is only a cache: rebuild it
        log.warning("ignoring unreadable cache %s (%s)", path, exc)
        return None


def _write_cache(path: Path, key: str, images: np.ndarray, labels: np.ndarray) -> None:
    try:
        with atomic_write(path, "wb") as fh:
            np.savez(fh, images=images, labels=labels, key=np.array(key))
        log.info("cached resized images in %s", path)
    except (OSError, HashCondenseError) as exc:  # a read-only ImageNet copy is normal: just skip the cache
        log.warning("could not write cache %s (%s); pass cache_dir= to a writable folder", path, exc)


def load_imagenet_subset(
    root: str | os.PathLike[str] | None,
    name: str = "imagenet10",
    classes: Sequence[str] | None = None,
    image_size: int | None = None,
    split_seed: int = 0,
    train_per_class: int = TRAIN_PER_CLASS,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
) -> RetrievalDataset:
    """ImageNet-10 / ImageNet-20 (by `name`) or any wnid list (`classes=`) as a RetrievalDataset."""
    if classes is None:
        if name not in SUBSETS:
            raise HashCondenseError(f"unknown ImageNet subset '{name}'; choose one of: {', '.join(SUBSETS)}")
        classes = SUBSETS[name]
    classes = tuple(classes)
    if not classes or len(set(classes)) != len(classes):
        raise HashCondenseError("classes= must be a non-empty list of distinct wnid folder names")
    title = TITLES.get(name, name)
    if root is None:
        raise HashCondenseError(
            f"{title} needs root: an ImageNet folder with train/<wnid>/ and val/<wnid>/ class folders "
            "(it cannot be downloaded automatically)"
        )
    root = Path(root).expanduser()
    size = DEFAULT_IMAGE_SIZE if image_size is None else int(image_size)
    if size < 1:
        raise HashCondenseError(f"image size must be positive, got {size}")
    _check_root(root, title)

    start = time.perf_counter()
    train_files = [_class_files(root / "train" / w, title, "train", root) for w in classes]
    val_files = [_class_files(root / "val" / w, title, "val", root) for w in classes]
    files = [f for fs in train_files for f in fs] + [f for fs in val_files for f in fs]
    labels = np.concatenate(
        [np.full(len(fs), i, np.int64) for i, fs in enumerate(train_files)]
        + [np.full(len(fs), i, np.int64) for i, fs in enumerate(val_files)]
    )
    n_train = sum(len(fs) for fs in train_files)

    key = _cache_key(classes, size, files, root)
    cache_path = Path(cache_dir or root).expanduser() / f"hashcondense-{name}-{size}px.npz"
    cached = _read_cache(cache_path, key) if cache else None
    if cached is not None and len(cached[0]) == len(files):
        images, labels = cached
        log.info("loaded %s from cache %s", title, cache_path)
    else:
        images = read_images(files, size, "RGB", workers=workers, progress=f"reading {title}")
        if cache:
            _write_cache(cache_path, key, images, labels)
    log.info("%s: %d images at %dpx in %.1f s", title, len(images), size, time.perf_counter() - start)

    database = np.arange(n_train, dtype=np.int64)
    query = np.arange(n_train, len(files), dtype=np.int64)
    class_names = [WNID_NAMES.get(w, w) for w in classes]
    train = sample_per_class(labels, database, train_per_class, split_seed, class_names=class_names)
    info = {
        "source": str(root),
        "wnids": list(classes),
        "class_list": "IDC class100.txt (CMC ImageNet-100 order), first N"
        if classes == SUBSETS.get(name)
        else "user-given",
        "pool": f"{n_train} train-folder images then {len(files) - n_train} val-folder images",
        "protocol": (
            f"database = all train-folder images, train = {train_per_class} per class drawn from the "
            "database, query = all val-folder images (our reading of IEM Table 6)"
        ),
        "resize": f"shorter side to {size} (Pillow bilinear, JPEG draft), center crop",
    }
    return RetrievalDataset(
        name=name,
        images=images,
        labels=labels,
        class_names=class_names,
        database=database,
        train=train,
        query=query,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        topk=TOPK,
        split_seed=int(split_seed),
        info=info,
    )


@register_dataset("imagenet10", "ImageNet-10 (IDC classes) from an ImageNet folder, mAP@1000")
def _imagenet10_spec(
    arg: str | None, root: str | None, download: bool, seed: int, size: int | None
) -> RetrievalDataset:
    return load_imagenet_subset(root, name="imagenet10", image_size=size, split_seed=seed)


@register_dataset("imagenet20", "ImageNet-20 (IDC classes) from an ImageNet folder, mAP@1000")
def _imagenet20_spec(
    arg: str | None, root: str | None, download: bool, seed: int, size: int | None
) -> RetrievalDataset:
    return load_imagenet_subset(root, name="imagenet20", image_size=size, split_seed=seed)
