"""Writing a condensed set: the safetensors file and its card, PNG grids and a class-folder tree.

`write_outputs(out, synthetic, history)` writes, in `out`:
    synthetic.safetensors  stored images (before decode, normalised) + labels + the card (metadata)
    card.json              the same card, human-readable
    history.json           the loss of every inner step (sum over classes) with elapsed seconds
    stored.png             the stored images, one row per class (denormalised to [0, 1])
    decoded.png            the decoded (multi-formation) images, one row per class (at most 40 shown)
    images/<class>/<i>.png the stored images as PNG files, one folder per class
`export_images(synthetic, folder)` writes the class-folder tree alone (e.g. for a set loaded from a
file: `export_images(SyntheticSet.load(path), "tree", decoded=True)`).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hashcondense.condense.synthetic import SET_FILE, SyntheticSet
from hashcondense.io.atomic import ensure_writable_dir, write_bytes, write_json

__all__ = ["denormalize", "export_images", "save_grids", "write_outputs"]

MAX_DECODED_PER_ROW = 20  # wider pictures shrink their labels out of sight


def denormalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Normalised (N, C, H, W) -> [0, 1]."""
    m = torch.tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype).view(1, -1, 1, 1)
    return (images.detach().cpu() * s + m).clamp(0, 1)


def _folder_name(name: str, used: set[str]) -> str:
    safe = re.sub(r"[^\w.\- ]+", "_", str(name)).strip(" .") or "class"
    candidate, k = safe, 1
    while candidate in used:
        k += 1
        candidate = f"{safe}_{k}"
    used.add(candidate)
    return candidate


def _png(image: torch.Tensor) -> bytes:
    from PIL import Image

    array = (image.permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    pil = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def _class_names(synthetic: SyntheticSet) -> list[str]:
    n = int(synthetic.labels.max()) + 1 if len(synthetic) else 0
    names = list(synthetic.class_names or [])
    return names + [str(c) for c in range(len(names), n)]


def export_images(synthetic: SyntheticSet, folder: str | Path, decoded: bool = False) -> Path:
    """Write `folder/<class name>/<i>.png` for every stored (or, with `decoded`, decoded) image."""
    root = ensure_writable_dir(folder)
    images, labels = synthetic.decoded() if decoded else (synthetic.images, synthetic.labels)
    pixels = denormalize(images, synthetic.mean, synthetic.std)
    used: set[str] = set()
    names = _class_names(synthetic)
    for c, name in enumerate(names):
        rows = torch.nonzero(labels == c).flatten().tolist()
        if not rows:
            continue
        sub = ensure_writable_dir(root / _folder_name(name, used))
        for i, row in enumerate(rows):
            write_bytes(sub / f"{i}.png", _png(pixels[row]))
    return root


def save_grids(synthetic: SyntheticSet, out: str | Path) -> list[str]:
    """stored.png and decoded.png: one row per class, class names as row titles, a caption saying what
    a cell is."""
    from hashcondense.utils.figures import save_image_grid  # matplotlib loads only to draw grids

    out = Path(out)
    names = _class_names(synthetic)
    written = []
    if not len(synthetic):
        return written
    ipc = int(torch.bincount(synthetic.labels).max())
    f = synthetic.factor
    what = f"{synthetic.meta.get('method', 'synthetic')} set, {ipc} stored image(s) per class"
    order = torch.argsort(synthetic.labels, stable=True)
    stored = denormalize(synthetic.images[order], synthetic.mean, synthetic.std)
    caption = (
        f"{what}: each cell holds {f} x {f} tiles, each decoded into one training image" if f > 1 else what
    )
    save_image_grid(stored, out / "stored.png", nrow=ipc, titles=names, caption=caption, tiles=f)
    written.append("stored.png")
    images, labels = synthetic.decoded()
    per = ipc * f**2
    show = min(per, MAX_DECODED_PER_ROW)
    picks = [torch.nonzero(labels == c).flatten()[:show] for c in range(len(names))]
    caption = f"{what}: the {per} decoded training images per class" + (
        f" (first {show} shown)" if show < per else ""
    )
    save_image_grid(
        denormalize(images[torch.cat(picks)], synthetic.mean, synthetic.std),
        out / "decoded.png",
        nrow=show,
        titles=names,
        caption=caption,
    )
    written.append("decoded.png")
    return written


def write_outputs(
    out: str | Path,
    synthetic: SyntheticSet,
    history: list[dict[str, Any]],
    *,
    run: dict[str, Any] | None = None,
    tree: bool = True,
) -> dict[str, Any]:
    """Write the set, its card, the history, the grids and (with `tree`) the class-folder tree.

    card.json is the set's metadata plus `run`: facts of this invocation (full config with paths,
    timings, caches) that the set file leaves out so that it is byte-identical for the same seed.
    Returns the card."""
    out = ensure_writable_dir(out)
    synthetic.save(out / SET_FILE)
    card = {**synthetic.card(), "run": dict(run or {})}
    write_json(out / "card.json", card)
    write_json(out / "history.json", {"method": card.get("method"), "steps": history})
    save_grids(synthetic, out)
    if tree:
        export_images(synthetic, out / "images")
    return card
