"""Encoding images with a finished `hashcondense train` run's network, into a `CodesFile`.

The codes name the network that made them (the SHA-256 of its network.safetensors and its settings):
codes of two different networks are not comparable even at the same bit length, and `search` warns
when its network is not the one that encoded the index.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from hashcondense import __version__
from hashcondense.serve.codes_file import CodesFile
from hashcondense.serve.sources import RunInput, folder_files, read_files, read_split

__all__ = ["RunEncoder", "encode_folder", "encode_split", "network_digest"]


def network_digest(run_dir: str | Path) -> str:
    """SHA-256 (hex) of a run's network.safetensors: which trained network made a set of codes."""
    h = hashlib.sha256()
    with open(Path(run_dir) / "network.safetensors", "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class RunEncoder:
    """A finished run's network and what it takes as input: uint8 images in, packed codes out."""

    def __init__(self, run_dir: str | Path, device: Any = "cpu") -> None:
        from hashcondense.evaluate import load_run_network

        self.run_dir = Path(run_dir)
        self.net, self.method, record = load_run_network(run_dir, device=device)
        self.device = device
        self.input = RunInput.from_record(record)
        config = record["config"]
        self.bits = int(config["bits"])
        keys = ("dataset", "split_seed", "image_size", "arch", "hashing", "bits", "seed")
        self.settings = {k: config.get(k) for k in keys}
        self.digest = network_digest(run_dir)

    def codes(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """±1 int8 codes (n, bits) of uint8 (n, H, W, C) images read as the run reads them."""
        from hashcondense.train import encode

        if images.shape[0] == 0:
            return np.empty((0, self.bits), np.int8)
        codes = encode(
            self.net,
            lambda a, b: self.input.normalize(images[a:b]),
            images.shape[0],
            batch_size=batch_size,
            device=self.device,
        )
        return codes.numpy()

    def encode(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Packed codes (n, ceil(bits / 8)) uint8 of uint8 (n, H, W, C) images."""
        from hashcondense.retrieval import pack_codes

        return pack_codes(self.codes(images, batch_size)).reshape(-1, (self.bits + 7) // 8)

    def meta(self) -> dict[str, Any]:
        """The run part of a codes file's metadata."""
        return {
            "run": {
                "dir": str(self.run_dir.resolve()),
                "network_sha256": self.digest,
                "config": self.settings,
            },
            "input": self.input.describe(),
            "library_version": __version__,
        }


def encode_split(
    encoder: RunEncoder, dataset: str | None = None, root: str | None = None, split: str = "database"
) -> CodesFile:
    """Codes of a dataset split (default: the run's dataset); ids are positions in the split."""
    images, labels, source = read_split(encoder.input, dataset, root, split)
    ids = np.arange(images.shape[0], dtype=np.int64)
    return CodesFile(encoder.encode(images), ids, labels, encoder.bits, {**encoder.meta(), "source": source})


def encode_folder(encoder: RunEncoder, folder: str | Path) -> CodesFile:
    """Codes of every image file under `folder`, in sorted relative-path order (the ids); labels -1."""
    root = Path(folder).expanduser().resolve()
    names = folder_files(root)
    images = read_files([root / n for n in names], encoder.input)
    n = len(names)
    source = {"kind": "folder", "folder": str(root), "files": names}
    return CodesFile(
        encoder.encode(images),
        np.arange(n, dtype=np.int64),
        np.full(n, -1, dtype=np.int64),
        encoder.bits,
        {**encoder.meta(), "source": source},
    )
