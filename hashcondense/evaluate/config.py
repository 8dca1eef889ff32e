"""`EvalConfig`: the full, serialisable description of one evaluation run (torch-free, so the command
line can check it before loading anything heavy)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hashcondense.errors import HashCondenseError
from hashcondense.registries import HASHING, MODELS
from hashcondense.train.config import TrainConfig
from hashcondense.utils.checks import check_count, check_hash_bits
from hashcondense.utils.config_types import check_config_types

__all__ = ["EvalConfig"]


@dataclass
class EvalConfig:
    dataset: str = "digits"
    root: str | None = None
    download: bool = False
    split_seed: int = 0
    image_size: int | None = None
    train_set: str = "whole"
    hashing: str = "dhd"
    arch: str = "convnet3"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"width": 32}, as CondenseConfig's
    bits: int = 64
    seed: int = 0
    device: str = "auto"
    compile: bool = False  # torch.compile training and encoding (faster; rounding-level differences)
    topk: int | None = None  # None = the dataset protocol's K
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = "runs/train"
    save_network: bool = True
    show_progress: bool = True
    resume: bool = False
    checkpoint_seconds: float | None = 60.0  # at most this often and after the last epoch; None: never

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        """Refuse what cannot work before anything is loaded or written: the recipe, the names of the
        hashing method and network (read from the registries' sources, without torch), the seed and
        the training-set spec."""
        self.train.check()
        HASHING.check(self.hashing)
        MODELS.check(self.arch)
        if not isinstance(self.arch_kwargs, dict):
            raise HashCondenseError('arch_kwargs must be a mapping of names to values, e.g. {"width": 32}')
        check_hash_bits(self.bits)
        check_count("seed", self.seed, 0, "--seed")
        spec = str(self.train_set)
        if spec != "whole" and not spec.startswith("random:") and not Path(spec).is_file():
            raise HashCondenseError(
                f"--train-set '{spec}' is neither whole, random:N nor an existing file; check the path"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalConfig:
        data = dict(data)
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise HashCondenseError(f"unknown config keys {sorted(unknown)}; valid keys: {sorted(known)}")
        train = data.pop("train", {})
        if not isinstance(train, dict):
            raise HashCondenseError(
                f"config key train = {train!r} should be an object; correct it in the config file"
            )
        known_train = set(TrainConfig.__dataclass_fields__)
        unknown_train = set(train) - known_train
        if unknown_train:
            raise HashCondenseError(
                f"unknown config keys {sorted('train.' + k for k in unknown_train)}; "
                f"valid train keys: {sorted(known_train)}"
            )
        config = cls(train=TrainConfig(**train), **data)
        check_config_types(config)
        return config
