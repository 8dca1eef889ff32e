"""The condensation run description: `CondenseConfig` (what the user asks) and `Settings` (resolved).

Every field of `CondenseConfig` that is `None` means "the method's default". A method class declares
its defaults for the shared loop settings (`SETTING_NAMES`: factor, loops, image learning rate, real
batch size, augmentation, ...) in `CondenseMethod.default_settings(info)`, named presets of them in
`CondenseMethod.presets` (e.g. "cpu"), and its own options (IEM: pool size, pool epochs, ...) in
`CondenseMethod.options`. `resolve_settings` merges engine defaults < method defaults < the chosen
preset < user values and validates the result. The resolved config (the dict written to
`config.json` and the set's card) is `CondenseConfig.as_dict()` after the merge.

`config_digest` hashes the settings that decide the numbers of a run; a resume whose digest differs
is refused. Settings that only decide where files go, how long to run or how much memory one forward
pass may use are left out (`RESUME_FREE`): `out`, `preset` (its values are hashed), `resume`,
`overwrite`, `time_budget`,
`outer_loops` (a finished run can be extended), `checkpoint_every`, `device`, `compile`, `root`, `download`,
`show_progress`, `export_images`, `max_forward` and the `pool_dir` option. `set_content_digest` further leaves
out what the method does not read (DM's hash bits): it decides which stored sets are the same.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hashcondense.errors import HashCondenseError
from hashcondense.registries import HASHING, METHODS, MODELS
from hashcondense.registry import declared_dict_keys
from hashcondense.utils.checks import check_count, check_hash_bits, check_number, is_count
from hashcondense.utils.config_types import check_config_types

__all__ = [
    "CondenseConfig",
    "DatasetInfo",
    "ENGINE_DEFAULTS",
    "IDC_FRAMEWORK",
    "RESUME_FREE",
    "SETTING_NAMES",
    "LOCATION_FIELDS",
    "Settings",
    "check_settings",
    "config_digest",
    "resolve_settings",
    "set_config",
    "set_content_digest",
]

# Where the engine's defaults come from: IDC's framework (SGD momentum 0.5 on the images, the
# real images of a class as initialisation, siamese DSA), overridden per method.
ENGINE_DEFAULTS: dict[str, Any] = {
    "factor": 1,
    "outer_loops": 1,
    "inner_loops": 1,
    "lr_img": 1.0,
    "momentum": 0.5,
    "batch_real": 256,
    "batch_syn_max": 0,  # 0 = every decoded synthetic image of the class in every step
    "lr_space": "normalized",  # the space the learning rate is expressed in: normalized | pixel
    "lr_scale_ipc": False,  # IDC's `tune_lr_img`: effective lr = lr_img * ipc / 10
    "clamp": False,  # clamp stored images to the valid pixel range at the start of each outer loop
    "aug_strategy": "color_crop_cutout_flip_scale_rotate",
    "aug_mode": "single",
    "checkpoint_every": 1,
}
SETTING_NAMES: tuple[str, ...] = tuple(ENGINE_DEFAULTS)
# IDC's matching set-up (snu-mllab/Efficient-Dataset-Condensation `condense.py`): image SGD in pixel
# units scaled by ipc / 10 and clamped, real batch 64, at most 128 decoded images per class and step,
# its own order of the color_crop_cutout augmentation. IDC and IEM (built on IDC's code) both use it.
IDC_FRAMEWORK: dict[str, Any] = {
    "momentum": 0.5,
    "batch_real": 64,
    "batch_syn_max": 128,
    "lr_space": "pixel",
    "lr_scale_ipc": True,
    "clamp": True,
    "aug_strategy": "color_crop_cutout",
    "aug_mode": "idc",
    "checkpoint_every": 1,
}
LR_SPACES = ("normalized", "pixel")
BUDGET_CLOCKS = ("wall", "cpu")
RESUME_FREE = frozenset(
    {
        "out",
        "preset",
        "resume",
        "overwrite",
        "time_budget",
        "budget_clock",
        "outer_loops",
        "checkpoint_every",
        "device",
        "compile",
        "root",
        "download",
        "show_progress",
        "export_images",
        "max_forward",
    }
)
RESUME_FREE_OPTIONS = frozenset({"pool_dir"})
# Settings that say where files are and how this invocation is driven, not what the set is: kept out of
# the set file's metadata (it stays byte-identical for the same seed) and recorded in card.json.
LOCATION_FIELDS = frozenset(
    {"out", "root", "download", "resume", "overwrite", "show_progress", "export_images"}
)
LOCATION_OPTIONS = frozenset({"pool_dir"})


def set_config(resolved: dict[str, Any]) -> dict[str, Any]:
    """The resolved config without `LOCATION_FIELDS` (and options without `LOCATION_OPTIONS`)."""
    kept = {k: v for k, v in resolved.items() if k not in LOCATION_FIELDS}
    kept["options"] = {
        k: v for k, v in dict(resolved.get("options", {})).items() if k not in LOCATION_OPTIONS
    }
    return kept


@dataclass
class CondenseConfig:
    """Everything one condensation run needs; serialisable (see `as_dict` / `from_dict`).

    Data: dataset spec, root, download, split_seed, image_size (see `hashcondense.data.load_dataset`).
    Set: method, ipc (stored images per class), factor (multi-formation; None = method default).
    preset: a named group of loop settings the method offers (None = "paper", its defaults; e.g.
    "cpu" for a schedule that fits a CPU); explicit fields still override it.
    Loop: outer_loops (R), inner_loops (M), lr_img, momentum, batch_real, batch_syn_max, lr_space,
    lr_scale_ipc, clamp, aug_strategy, aug_mode (None = method default).
    Networks: hashing method, arch (+ arch_kwargs, e.g. {"width": 32}), bits.
    options: method-specific settings (IEM: use_pool, pool_size, pool_epochs, pool_lr, pool_batch,
    pool_dir, perturb_min, perturb_max); unknown keys are an error naming the valid ones.
    Run: seed, device, compile (torch.compile the networks' passes, with the fused CPU kernel of
    models.fused on first-order ones: faster steps, floats summed in
    another order, so the set agrees with an uncompiled run to rounding, not bit for bit),
    time_budget (seconds of the R x M loop, summed over resumes; set-up and pool
    training are not counted; None = no limit), budget_clock ("wall": elapsed seconds; "cpu": this
    process's CPU seconds over all its threads, so a budget holds on a shared, busy machine and means
    CPU-seconds as the experiment tables state them),
    checkpoint_every (outer loops), resume, overwrite, max_forward (largest number of synthetic
    images in one forward/backward pass; classes are grouped up to it: memory only, not results),
    out, show_progress, export_images.
    """

    dataset: str = "digits"
    root: str | None = None
    download: bool = False
    split_seed: int = 0
    image_size: int | None = None
    method: str = "iem"
    preset: str | None = None
    ipc: int = 10
    factor: int | None = None
    outer_loops: int | None = None
    inner_loops: int | None = None
    lr_img: float | None = None
    momentum: float | None = None
    batch_real: int | None = None
    batch_syn_max: int | None = None
    lr_space: str | None = None
    lr_scale_ipc: bool | None = None
    clamp: bool | None = None
    aug_strategy: str | None = None
    aug_mode: str | None = None
    hashing: str = "dhd"
    arch: str = "convnet3"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    bits: int = 64
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    time_budget: float | None = None
    budget_clock: str = "wall"
    checkpoint_every: int | None = None
    resume: bool = False
    overwrite: bool = False
    max_forward: int = 512
    out: str = "runs/condense"
    show_progress: bool = True
    export_images: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CondenseConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise HashCondenseError(
                f"unknown condense config keys {sorted(unknown)}; valid keys: {sorted(known)}"
            )
        config = cls(**data)
        check_config_types(config)
        return config


@dataclass(frozen=True)
class DatasetInfo:
    """What a method may look at to choose its defaults (e.g. factor 2 at 32 px, 3 on ImageNet)."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    num_train: int


@dataclass(frozen=True)
class Settings:
    """The resolved loop settings (no None left). See `ENGINE_DEFAULTS` for the meaning of each."""

    factor: int
    outer_loops: int
    inner_loops: int
    lr_img: float
    momentum: float
    batch_real: int
    batch_syn_max: int
    lr_space: str
    lr_scale_ipc: bool
    clamp: bool
    aug_strategy: str
    aug_mode: str
    checkpoint_every: int

    def effective_lr(self, ipc: int) -> float:
        """lr_img after IDC's ipc scaling (when lr_scale_ipc), in the `lr_space` units."""
        return self.lr_img * (ipc / 10.0 if self.lr_scale_ipc else 1.0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_settings(
    config: CondenseConfig,
    method_defaults: dict[str, Any],
    image_size: int,
    presets: dict[str, dict[str, Any]] | None = None,
) -> Settings:
    """Merge engine defaults < method defaults < the chosen preset < user values and validate."""
    presets = presets or {}
    for values in (method_defaults, *presets.values()):
        unknown = set(values) - set(SETTING_NAMES)
        if unknown:
            raise ValueError(f"method settings name unknown keys {sorted(unknown)}; valid: {SETTING_NAMES}")
    preset = config.preset or "paper"
    if preset != "paper" and preset not in presets:
        valid = ", ".join(["paper", *sorted(presets)])
        raise HashCondenseError(f"unknown preset '{preset}' for this method; choose one of: {valid}")
    merged = {**ENGINE_DEFAULTS, **method_defaults, **presets.get(preset, {})}
    for name in SETTING_NAMES:
        value = getattr(config, name)
        if value is not None:
            merged[name] = value
    values = check_settings(merged, image_size)
    return Settings(**{name: values[name] for name in SETTING_NAMES})


# how each shared loop setting is checked: whole numbers with their minimum, real numbers with bounds
_COUNTS = {
    "outer_loops": (0, "--outer-loops"),
    "inner_loops": (1, "--inner-loops"),
    "batch_real": (1, "--batch-real"),
    "batch_syn_max": (0, "--batch-syn-max, 0 = all"),
    "checkpoint_every": (1, "--checkpoint-every"),
}
_NUMBERS: dict[str, tuple[str, dict[str, Any]]] = {
    "lr_img": ("--lr-img", {}),
    "momentum": ("--momentum", {"allow_zero": True, "maximum": 1.0}),
}


def check_settings(values: dict[str, Any], image_size: int | None) -> dict[str, Any]:
    """Validate the shared loop settings present in `values` (all of them after the merge, or only the
    user's before the method is known); returns them as int / float / str / bool."""
    out = dict(values)
    if "factor" in values:
        factor = values["factor"]
        if not is_count(factor, 1):
            raise HashCondenseError(
                f"multi-formation factor {factor!r} cannot work; use --factor 1 (off) or more"
            )
        if image_size is not None and int(factor) > 1 and image_size // int(factor) < 4:
            raise HashCondenseError(
                f"multi-formation factor {factor} cuts {image_size} px images into tiles smaller than 4 px; "
                f"use --factor {max(1, image_size // 4)} or less"
            )
        out["factor"] = int(factor)
    if "lr_space" in values and values["lr_space"] not in LR_SPACES:
        raise HashCondenseError(
            f"unknown lr_space '{values['lr_space']}'; choose one of: {', '.join(LR_SPACES)}"
        )
    for name in ("lr_scale_ipc", "clamp"):
        if name in values and not isinstance(values[name], bool):
            raise HashCondenseError(f"{name}={values[name]!r} cannot work; use true or false")
    for name in SETTING_NAMES:
        if name in values and name in _COUNTS:
            out[name] = check_count(name, values[name], *_COUNTS[name])
        elif name in values and name in _NUMBERS:
            flag, bounds = _NUMBERS[name]
            out[name] = check_number(name, values[name], flag, **bounds)
        elif name in values and name in ("lr_space", "aug_strategy", "aug_mode"):
            out[name] = str(values[name])
    return out


def class_label(index: int, names: list[str] | None) -> str:
    """How messages name class `index`: "3 ('cat')", or "3" without names."""
    if names and index < len(names):
        return f"{index} ('{names[index]}')"
    return str(index)


def check_data_fit(config: CondenseConfig, image_size: int, class_counts: dict[str, int]) -> None:
    """What the data decides: a set of `ipc` images per class cannot hold more than a class has, and a
    multi-formation factor the user gave must leave tiles of 4 px or more (`class_counts`: training
    images per class name)."""
    if config.factor is not None:
        check_settings({"factor": config.factor}, image_size)
    for name, have in class_counts.items():
        if config.ipc > have:
            raise HashCondenseError(
                f"--ipc {config.ipc} is more than the {have} training images of class {name}; "
                f"use --ipc {have} or less"
            )


def check_names(config: CondenseConfig) -> None:
    """The method, its preset, the hashing method and the network exist: read from the registries'
    sources, without importing them (so the command line answers a mistyped name before torch loads)."""
    method = METHODS.check(config.method)
    preset = config.preset or "paper"
    # a method that declares no presets has only "paper", as resolve_settings sees it
    presets = declared_dict_keys(METHODS.declared().get(method), "presets") or []
    if preset != "paper" and preset not in presets:
        valid = ", ".join(["paper", *sorted(presets)])
        raise HashCondenseError(f"unknown preset '{preset}' for this method; choose one of: {valid}")
    HASHING.check(config.hashing)
    MODELS.check(config.arch)


def check_run_settings(config: CondenseConfig) -> None:
    """Validate the settings that do not depend on the method's class (`check_names` for names): the
    run's numbers, and the loop settings the user gave."""
    given = {name: getattr(config, name) for name in SETTING_NAMES if getattr(config, name) is not None}
    check_settings(given, config.image_size)
    check_count("ipc", config.ipc, 1, "--ipc")
    check_hash_bits(config.bits)
    check_count("seed", config.seed, 0, "--seed")
    check_count("split_seed", config.split_seed, 0, "--split-seed")
    check_count("max_forward", config.max_forward, 1, "max_forward")
    if config.time_budget is not None:
        check_number("time_budget", config.time_budget, "--time-budget, in seconds")
    if config.budget_clock not in BUDGET_CLOCKS:
        raise HashCondenseError(
            f"unknown budget clock '{config.budget_clock}'; use --budget-clock {' or '.join(BUDGET_CLOCKS)}"
        )
    if not isinstance(config.options, dict) or not isinstance(config.arch_kwargs, dict):
        raise HashCondenseError("options and arch_kwargs must be mappings of names to values")


def config_digest(resolved: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(sha256 hex, the hashed subset) of the settings that decide a run's numbers."""
    subset = {k: v for k, v in resolved.items() if k not in RESUME_FREE}
    subset["options"] = {
        k: v for k, v in dict(resolved.get("options", {})).items() if k not in RESUME_FREE_OPTIONS
    }
    text = json.dumps(subset, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), json.loads(text)


def set_content_digest(resolved: dict[str, Any]) -> str:
    """The digest of the settings that decide the condensed *set*: `config_digest` without what the
    method never reads for them (`CondenseMethod.unread_settings`, e.g. DM's hash bits). Two runs with
    the same `set_content_digest` make the same set, so experiments may share it (32- and 64-bit cells)."""
    method = resolved.get("method")
    # a set of a method this process does not know (a plugin not imported) shares nothing
    unread = METHODS.get(method).unread_settings(resolved) if method in METHODS else set()
    kept = {k: v for k, v in resolved.items() if k not in unread}
    kept["options"] = {
        k: v for k, v in dict(resolved.get("options", {})).items() if f"options.{k}" not in unread
    }
    return config_digest(kept)[0]
