"""The condensation-method contract: one small class per method, behind a registry.

The engine (`engine.py`, with `setup.py` and `checkpoint.py`) owns everything methods share: the real
train split as normalised tensors, the per-class sampler, the stored images and their multi-formation
decode, the siamese augmentation, the image optimiser (SGD with momentum), the R outer x M inner loop,
logging, checkpoints, the time budget and resume. A method only says how to initialise the set, what
network to use, and how to score a matched pair of batches. Adding a method = adding a file with one
registered class.

How the engine drives a method (one run)::

    method = MethodClass(context, **options)    # options: the method's own settings, validated
    images = method.initialize()                # fresh runs only: stored images (N, C, H, W)
    method.prepare()                            # one-time setup, fresh and resumed runs (IEM: pool)
    [resume: method.begin_outer(r) if stopped mid-loop; method.load_state_dict(saved)]
    for r in outer loops:                       # skipped when `optimizes` is False (random)
        method.begin_outer(r)                   # e.g. draw + perturb a pool network, or a fresh one
        for m in inner loops:
            for each group of classes:          # all classes at once when `batch_classes`
                losses = method.match_losses(batch)   # (k,) one loss per class of the group
                losses.sum().backward()               # image gradients accumulate
            optimiser step on the stored images       # one step for all classes (see below)
            method.after_inner(r, m, images)    # gradient-matching methods train their network here
    state = method.state_dict()                 # saved in every checkpoint

`MatchBatch` holds, for each class c of the group: `real[i]`, the augmented real batch T_c (no
gradient), and `synthetic[i]`, the augmented decoded synthetic batch f(S_c) (differentiable with
respect to the stored images); both were augmented with the SAME draw `draws[i]` (siamese, shared
across the batch). The un-augmented tensors (`real_images`, `synthetic_images`) and the draws are
there too, for methods that need more views of the same pair (draw them from
`context.rng(stream, ...)` with a stream id >= 100 so they stay independent of the engine's).

Why one optimiser step per inner iteration is right: class losses are independent (each depends on
its own stored images only) and SGD-momentum is elementwise, so stepping once on the summed loss is
the same as stepping class by class. (IDC steps per class on the whole tensor, which also moves the
other classes along their momentum; the total displacement of every gradient is the same, only its
timing within an iteration differs.)

Random numbers: methods never touch the global generator; they use `context.rng(*streams)`, which
derives an independent `torch.Generator` from (seed, *streams) (see `Streams` for the ids in use).
Anything drawn per outer loop must depend on (seed, stream, outer) only, so that a resumed or
class-sharded run reproduces a single uninterrupted run.

Several processes (torchrun, `--nproc`): a method with `distributed = True` has its classes sharded
over the processes (`sharding.py`): `initialize` and `match_losses` see only this process's classes
(`context.shard.classes`), every process runs `prepare`, `begin_outer` and `after_inner` and must hold
the same network after each of them. A network trained between steps must therefore be trained alike
everywhere: gradient matching trains it data-parallel (`train.data_parallel`, every process the same
global batches); a method whose `after_inner` reads the stored images of every class sets
`after_inner_reads_set` and gets the gathered set. Methods that cannot promise that keep the default
`distributed = False` and are refused in several processes.
`ownership()` names what else each rank owns (IEM: its pool members) for the run's records.

Defaults: `default_settings(info)` returns the method's values of the shared loop settings
(`config.SETTING_NAMES`, e.g. factor, outer/inner loops, lr_img, batch_real); `presets` names other
groups of them (e.g. "cpu"); `options` lists the method's own settings with their defaults. User
values override all of them; see `config.resolve_settings`.

A new method is one file in `condense/methods/` (found by the registry), e.g. gradient matching
(`methods/idc.py`, on top of `gradient_matching.py`)::

    @register_method("idc")
    class IDC(CondenseMethod):
        batch_classes = False                  # match_losses gets one class at a time
        options = {"net_lr": 0.01}

        @classmethod
        def default_settings(cls, info):
            return {"factor": 2, "outer_loops": 2000, "inner_loops": 100, "lr_img": 5e-3,
                    "lr_space": "pixel", "lr_scale_ipc": True, "batch_real": 64, "clamp": True}

        def begin_outer(self, outer):          # networks from context.new_network are frozen
            self.net = self.context.new_network(Streams.NETWORK, outer).requires_grad_(True)

        def match_losses(self, batch):         # gradient distance of batch.real[0] vs batch.synthetic[0]
            ...
            return distance.reshape(1)

        def after_inner(self, outer, inner, stored):   # train self.net on real data; random numbers from
            g = self.context.rng(Streams.METHOD, outer, inner)    # streams >= Streams.METHOD
            ...

        def state_dict(self):                  # the network changes within an outer loop: save it
            return {f"net.{k}": v for k, v in self.net.state_dict().items()}
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from hashcondense.condense.config import CondenseConfig, DatasetInfo, Settings, resolve_settings
from hashcondense.condense.context import CondenseContext, MatchBatch
from hashcondense.errors import HashCondenseError
from hashcondense.registries import METHODS

__all__ = ["CondenseMethod", "METHODS", "get_method", "list_methods", "register_method"]


class CondenseMethod:
    """Base class of the condensation methods; see the module docstring for the life cycle.

    Class attributes a method sets:
        name: registry name. optimizes: False for methods without a loop (random).
        batch_classes: True when `match_losses` can take several classes at once (embedding matching:
            one forward pass for all); False gives it one class per call (gradient matching).
        distributed: True when the classes can be sharded over several processes (see above).
        after_inner_reads_set: True when `after_inner` reads the stored images of every class (in
            several processes the engine then gathers them first).
        options: the method's own settings and their defaults (None = choose in `__init__`).
        presets: named groups of shared loop settings (`CondenseConfig.preset`, e.g. "cpu"); "paper"
            (the defaults) always exists.
    Class methods a method may override:
        unread_settings(resolved): the resolved settings that cannot change its set (see there).
        preset_settings(options): `presets` as they apply with these options (see there).
    """

    name: ClassVar[str] = "base"
    optimizes: ClassVar[bool] = True
    batch_classes: ClassVar[bool] = False
    distributed: ClassVar[bool] = False
    after_inner_reads_set: bool = False
    options: ClassVar[dict[str, Any]] = {}
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, context: CondenseContext, **options: Any) -> None:
        unknown = set(options) - set(self.options)
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            raise HashCondenseError(
                f"condensation method '{self.name}' has no option {', '.join(sorted(unknown))}; "
                f"valid options: {valid}"
            )
        self.context = context
        self.opts: dict[str, Any] = {**self.options, **options}
        self.init_indices: list[list[int]] = []

    @classmethod
    def default_settings(cls, info: DatasetInfo) -> dict[str, Any]:
        """The method's values of the shared loop settings (may depend on the dataset)."""
        return {}

    @classmethod
    def unread_settings(cls, resolved: dict[str, Any]) -> set[str]:
        """Names of resolved settings (top level, or "options.NAME") that this method never reads for
        `resolved`, so that two runs differing only in them make the same set (DM reads no hashing
        method: its set at 32 bits is its set at 64). `config.set_content_digest` leaves them out, and the
        experiment store shares one set between such cells. Default: every setting counts. A claim
        here must hold bit for bit (tests/test_condense_engine.py checks each one)."""
        return set()

    @classmethod
    def preset_settings(cls, options: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The presets as they apply to a run with the method options `options` (as given, before
        defaults): what `config.resolve_settings` lays over the defaults. Default: `presets`."""
        return cls.presets

    @classmethod
    def resolve(cls, config: CondenseConfig, info: DatasetInfo) -> Settings:
        """The shared loop settings a run of `config` on data `info` gets: its defaults, the presets as
        they apply with its options, and its own values (`config.resolve_settings`)."""
        presets = cls.preset_settings(dict(config.options or {}))
        return resolve_settings(config, cls.default_settings(info), info.image_size, presets)

    def resolved_options(self) -> dict[str, Any]:
        """The options as used (after `__init__` filled dataset-dependent ones); saved in the config."""
        return dict(self.opts)

    def initialize(self) -> torch.Tensor:
        """Initial stored images (num_classes * ipc, C, H, W), class-major. Default: real images of the
        class (seeded), factor**2 tiled per stored image when factor > 1."""
        images, self.init_indices = self.context.real_init()
        return images

    def prepare(self) -> None:
        """One-time setup before the loop (fresh and resumed runs), e.g. building a model pool."""

    def begin_outer(self, outer: int) -> None:
        """Start outer loop `outer` (e.g. draw the network for it)."""

    def match_losses(self, batch: MatchBatch) -> torch.Tensor:
        """Per-class matching losses, shape (len(batch.classes),), differentiable w.r.t. the images."""
        raise NotImplementedError

    def after_inner(self, outer: int, inner: int, stored: torch.Tensor) -> None:
        """After the image update of inner step `inner` (e.g. train the network on real or synthetic
        data); `stored` are the updated stored images (N, C, H, W), normalised, not to be modified."""

    def finish(self) -> None:
        """After the loop (also when it failed): release what it held (gradient matching: its
        data-parallel wrapper, which holds the process group)."""

    def state_dict(self) -> dict[str, Any]:
        """State that must survive a resume: tensors and JSON-able values (flat dict, str keys)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`; called after `prepare()` (and `begin_outer` when resuming mid-loop)."""

    def describe(self) -> dict[str, Any]:
        """Facts about the set for its metadata (e.g. the pool members' digests); the same for the same
        seed, so that the set file is byte-identical."""
        return {}

    def ownership(self) -> dict[str, list[list[int]]]:
        """Per rank, what else it owns besides its classes (e.g. {"pool_members_by_rank": [[0, 2], [1]]}),
        for config.json and card.json; empty by default."""
        return {}

    def report(self) -> dict[str, Any]:
        """Facts about this invocation (timings, caches used) for card.json, not for the set file."""
        return {}


def register_method(name: str):
    """Class decorator: `@register_method("iem")` sets `cls.name` and records the class."""

    def decorator(cls: type[CondenseMethod]) -> type[CondenseMethod]:
        cls.name = name
        METHODS.register(name)(cls)
        return cls

    return decorator


def list_methods(pattern: str = "*") -> list[str]:
    return METHODS.names(pattern)


def get_method(name: str) -> type[CondenseMethod]:
    return METHODS.get(name)
