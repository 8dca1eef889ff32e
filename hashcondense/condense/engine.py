"""The one condensation engine: data, initialisation, sampler, siamese augmentation, the image
optimiser, the R outer x M inner loop, logging, checkpoints, time budget and resume.

    result = condense(CondenseConfig(dataset="cifar10", root=..., method="iem", ipc=10, out="runs/iem"))

A run directory (see `export.py` for the set files) holds config.json, log.txt, history.json and
checkpoint.safetensors (stored images, momentum buffer, position, elapsed seconds, history, method
state, config digest), written atomically every `checkpoint_every` outer loops, when the time budget
is spent, and at the end. `resume=True` continues from it; the result equals the uninterrupted run
for the same seed and device because every random number comes from a stream derived from (seed,
stream id, outer loop, inner step, class) or (seed, stream id, outer loop) (`base.Streams`), never
from one global sequence: sharding classes over processes draws the same numbers too.

One inner step, for each group of classes (all classes in one group for embedding matching, up to
`max_forward` synthetic images):
    T_c = a random batch_real real images of class c      stream (REAL, r, m, c)
    w   = one shared DSA draw                               stream (AUGMENT, r, m, c)
    S_c = decode(stored images of c) [subsampled to batch_syn_max, stream (SYNTHETIC, r, m, c)]
    losses = method.match_losses(a_w(T_c), a_w(S_c), ...)  -> backward (gradients accumulate)
then one SGD-momentum step on all stored images. With lr_space "pixel" the step is taken as if the
images were stored in [0, 1] (IDC's convention): lr / std**2 per channel on the normalised images,
which is exactly the same trajectory; lr_scale_ipc multiplies the rate by ipc / 10 (IDC).

A non-finite loss stops the run with a one-line error; the last good checkpoint is kept.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from hashcondense.augment import DSA
from hashcondense.condense.config import (
    CondenseConfig,
    DatasetInfo,
    check_run_settings,
    config_digest,
    resolve_settings,
)
from hashcondense.condense.context import CondenseContext, MatchBatch, Streams
from hashcondense.condense.method import CondenseMethod, get_method
from hashcondense.condense.pool import data_digest
from hashcondense.condense.sampler import ClassSampler
from hashcondense.condense.synthetic import SyntheticSet, decode
from hashcondense.errors import HashCondenseError
from hashcondense.io.atomic import ensure_writable_dir, write_json
from hashcondense.io.tensors import load_tensors, save_tensors
from hashcondense.runtime import resolve_device, versions
from hashcondense.utils.progress import progress

__all__ = ["CHECKPOINT", "CondenseEngine", "CondenseResult", "ImageSGD", "condense"]

CHECKPOINT = "checkpoint.safetensors"
SET_FILE = "synthetic.safetensors"
CKPT_FORMAT = "hashcondense.condense-checkpoint/1"
log = logging.getLogger("hashcondense.condense")


@dataclass
class CondenseResult:
    """What a run produced: the set, where it was written, its card, and how the run ended."""

    synthetic: SyntheticSet
    out: Path
    card: dict[str, Any]
    stopped: str  # finished | time_budget | no_optimisation
    steps_done: int
    steps_total: int
    seconds: float

    def summary(self) -> str:
        s = self.synthetic
        c = self.card
        how = {"finished": "", "time_budget": " (time budget spent)", "no_optimisation": ""}[self.stopped]
        steps = f", {self.steps_done}/{self.steps_total} steps" if self.stopped != "no_optimisation" else ""
        return (
            f"condensed {c['dataset']} with {c['method']}: {len(c['class_names'] or [])} classes x "
            f"{c['images_per_class']} images (factor {s.factor}, {s.factor**2 * len(s)} decoded) in "
            f"{self.seconds:.1f} s{steps}{how} -> {self.out / SET_FILE}"
        )


class ImageSGD:
    """SGD with momentum on the stored images (torch.optim.SGD's rule, dampening 0, no weight decay):
    buf = momentum * buf + grad (buf = grad at the first step); images -= lr * scale * buf, with a
    per-channel `scale` (1, or 1 / std**2 for a pixel-space rate)."""

    def __init__(self, images: torch.Tensor, lr: float, momentum: float, scale: torch.Tensor) -> None:
        self.images = images
        self.momentum = float(momentum)
        self.step_size = (float(lr) * scale).to(images.device, images.dtype)
        self.buffer: torch.Tensor | None = None

    @torch.no_grad()
    def step(self) -> None:
        grad = self.images.grad
        if grad is None:
            raise RuntimeError("the matching losses produced no gradient for the stored images")
        if self.buffer is None:
            self.buffer = grad.detach().clone()
        else:
            self.buffer.mul_(self.momentum).add_(grad)
        self.images.sub_(self.step_size * self.buffer)


class _Diverged(Exception):
    pass


@contextlib.contextmanager
def _run_log(out: Path) -> Iterator[None]:
    """Log INFO and above of `hashcondense.*` to out/log.txt for the duration of the run."""
    root = logging.getLogger("hashcondense")
    handler = logging.FileHandler(out / "log.txt", mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    old_level = root.level
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def condense(
    config: CondenseConfig,
    dataset: Any = None,
    method_cls: type[CondenseMethod] | None = None,
) -> CondenseResult:
    """Run one condensation (see the module docstring). `dataset`: an already loaded
    `RetrievalDataset` (else `config.dataset` is loaded); `method_cls`: a method class to use instead
    of the registered `config.method` (tests, experiments)."""
    return CondenseEngine(config, dataset=dataset, method_cls=method_cls).run()


class CondenseEngine:
    def __init__(
        self, config: CondenseConfig, dataset: Any = None, method_cls: type[CondenseMethod] | None = None
    ) -> None:
        self.config = config
        self.dataset = dataset
        self.method_cls = method_cls

    # ---- setup --------------------------------------------------------------------------------------

    def _load_data(self) -> Any:
        if self.dataset is not None:
            return self.dataset
        from hashcondense.data import load_dataset

        c = self.config
        return load_dataset(
            c.dataset, root=c.root, download=c.download, split_seed=c.split_seed, image_size=c.image_size
        )

    def _check_out(self, out: Path) -> None:
        c = self.config
        ckpt, existing = out / CHECKPOINT, out / SET_FILE
        if c.overwrite:
            for path in (ckpt, existing):
                path.unlink(missing_ok=True)
        elif not c.resume and (ckpt.exists() or existing.exists()):
            raise HashCondenseError(
                f"{out} already holds a condensed set or checkpoint; pass --resume to continue it, "
                "--overwrite to replace it, or choose another --out"
            )

    def setup(self) -> None:
        c = self.config
        check_run_settings(c)
        self.out = ensure_writable_dir(c.out)
        self._check_out(self.out)
        self.device = resolve_device(c.device)
        ds = self._load_data()
        self.ds = ds
        images, labels = ds.tensor("train")
        num_classes = len(ds.class_names)
        info = DatasetInfo(
            name=str(ds.name),
            num_classes=num_classes,
            in_channels=int(images.shape[1]),
            image_size=int(images.shape[-1]),
            num_train=int(images.shape[0]),
        )
        cls = self.method_cls or get_method(c.method)
        settings = resolve_settings(c, cls.default_settings(info), info.image_size, cls.presets)
        sampler = ClassSampler(labels, num_classes, list(ds.class_names))
        for k in range(num_classes):
            have = sampler.count(k)
            if c.ipc > have:
                raise HashCondenseError(
                    f"--ipc {c.ipc} is more than the {have} training images of class {sampler.name(k)}; "
                    f"use --ipc {have} or less"
                )
        uint8_train, _ = ds.arrays("train")
        data_key = {
            "dataset": str(ds.name),
            "split_seed": int(ds.split_seed),
            "image_size": info.image_size,
            "in_channels": info.in_channels,
            "num_train": info.num_train,
            "data_sha256": data_digest(torch.from_numpy(uint8_train), labels),
        }
        resolved = replace(c, method=cls.name, **settings.as_dict())
        self.context = CondenseContext(
            config=resolved,
            settings=settings,
            info=info,
            images=images,
            labels=labels,
            sampler=sampler,
            mean=tuple(float(v) for v in ds.mean),
            std=tuple(float(v) for v in ds.std),
            class_names=[str(n) for n in ds.class_names],
            device=self.device,
            out=self.out,
            augment=DSA(settings.aug_strategy, None, settings.aug_mode),
            log=log,
            data_key=data_key,
        )
        self.method = cls(self.context, **dict(c.options))
        self.context.config = replace(resolved, options=self.method.resolved_options())
        self.settings = settings
        self.resolved = self.context.config.as_dict()
        self.digest, self.hashed = config_digest(self.resolved)
        std = torch.tensor(self.context.std).view(1, -1, 1, 1)
        mean = torch.tensor(self.context.mean).view(1, -1, 1, 1)
        self.channel_scale = 1.0 / std.square() if settings.lr_space == "pixel" else torch.ones_like(std)
        self.lr = settings.effective_lr(c.ipc)
        self.pixel_low = ((0.0 - mean) / std).to(self.device)
        self.pixel_high = ((1.0 - mean) / std).to(self.device)

    # ---- checkpoints --------------------------------------------------------------------------------

    def _save_checkpoint(self, outer: int, inner: int) -> None:
        tensors: dict[str, torch.Tensor] = {"images": self.images.detach()}
        if self.opt is not None and self.opt.buffer is not None:
            tensors["momentum"] = self.opt.buffer
        plain: dict[str, Any] = {}
        for key, value in self.method.state_dict().items():
            if isinstance(value, torch.Tensor):
                tensors[f"method.{key}"] = value
            else:
                plain[key] = value
        save_tensors(
            self.out / CHECKPOINT,
            tensors,
            {
                "format": CKPT_FORMAT,
                "method": self.method.name,
                "outer": outer,
                "inner": inner,
                "elapsed": self.elapsed(),
                "history": self.history,
                "method_state": plain,
                "init_indices": self.method.init_indices,
                "config_digest": self.digest,
                "config": self.hashed,
            },
        )
        self.last_checkpoint = (outer, inner)
        log.info(
            "checkpoint at outer loop %d, inner step %d (%.1f s) -> %s",
            outer,
            inner,
            self.elapsed(),
            self.out / CHECKPOINT,
        )

    def _load_checkpoint(self) -> dict[str, Any] | None:
        path = self.out / CHECKPOINT
        if not path.exists():
            log.info("no checkpoint in %s; starting a fresh run", self.out)
            return None
        try:
            tensors, meta = load_tensors(path, what="checkpoint")
        except HashCondenseError as exc:
            raise HashCondenseError(f"{exc}; delete it (or pass --overwrite) to start again") from None
        expect = (
            self.context.num_classes * self.context.ipc,
            self.context.info.in_channels,
            self.context.info.image_size,
            self.context.info.image_size,
        )
        images = tensors.get("images")
        ok = (
            meta.get("format") == CKPT_FORMAT
            and images is not None
            and tuple(images.shape) == expect
            and isinstance(meta.get("history"), list)
            and isinstance(meta.get("outer"), int)
            and isinstance(meta.get("inner"), int)
        )
        if not ok:
            raise HashCondenseError(
                f"checkpoint {path} is not a valid condensation checkpoint for this run; "
                "delete it (or pass --overwrite) to start again"
            )
        if meta.get("config_digest") != self.digest:
            old = meta.get("config") or {}
            diffs = _diff(old, self.hashed)
            raise HashCondenseError(
                f"checkpoint {path} was made with other settings ({diffs}); resume with the same settings "
                "(only --outer-loops, --time-budget, --checkpoint-every, --device may change) "
                "or choose another --out"
            )
        if not torch.isfinite(images).all():
            raise HashCondenseError(f"checkpoint {path} holds NaN or inf pixels; delete it to start again")
        meta["tensors"] = tensors
        return meta

    # ---- the loop -----------------------------------------------------------------------------------

    def elapsed(self) -> float:
        running = time.perf_counter() - self._loop_start if self._loop_start is not None else 0.0
        return self._elapsed_before + running

    def _groups(self) -> list[list[int]]:
        classes = list(range(self.context.num_classes))
        if not self.method.batch_classes:
            return [[c] for c in classes]
        per_class = self.context.ipc * self.settings.factor**2
        if self.settings.batch_syn_max:
            per_class = min(per_class, self.settings.batch_syn_max)
        size = max(1, int(self.config.max_forward) // max(1, per_class))
        return [classes[i : i + size] for i in range(0, len(classes), size)]

    def _batch(self, group: list[int], outer: int, inner: int) -> MatchBatch:
        ctx, s = self.context, self.settings
        ipc = ctx.ipc
        real_v, syn_v, draws, real_raw, syn_raw = [], [], [], [], []
        for c in group:
            idx = ctx.sampler.sample(c, s.batch_real, ctx.rng(Streams.REAL, outer, inner, c))
            real = ctx.images[idx].to(self.device, non_blocking=True)
            draw = ctx.augment.sample(
                1, ctx.rng(Streams.AUGMENT, outer, inner, c), device=self.device, shared=True
            )
            syn = decode(self.images[c * ipc : (c + 1) * ipc], s.factor, ctx.mean, ctx.std)
            if s.batch_syn_max and syn.shape[0] > s.batch_syn_max:
                keep = torch.randperm(syn.shape[0], generator=ctx.rng(Streams.SYNTHETIC, outer, inner, c))
                syn = syn[keep[: s.batch_syn_max].to(self.device)]
            with torch.no_grad():
                real_v.append(ctx.augment.apply(real, draw))
            syn_v.append(ctx.augment.apply(syn, draw))
            draws.append(draw)
            real_raw.append(real)
            syn_raw.append(syn)
        return MatchBatch(
            outer=outer,
            inner=inner,
            classes=list(group),
            real=real_v,
            synthetic=syn_v,
            draws=draws,
            real_images=real_raw,
            synthetic_images=syn_raw,
        )

    def _step(self, outer: int, inner: int) -> float:
        self.images.grad = None
        total = 0.0
        for group in self.groups:
            losses = self.method.match_losses(self._batch(group, outer, inner))
            if losses.shape != (len(group),):
                raise RuntimeError(
                    f"{self.method.name}.match_losses returned shape {tuple(losses.shape)} "
                    f"for {len(group)} classes"
                )
            values = losses.detach()
            if not torch.isfinite(values).all():
                raise _Diverged(float(values.sum()))
            losses.sum().backward()
            total += float(values.sum())
        assert self.opt is not None
        if self.images.grad is not None and not torch.isfinite(self.images.grad).all():
            raise _Diverged(float("nan"))
        self.opt.step()
        self.method.after_inner(outer, inner)
        return total

    def _begin_outer(self, outer: int) -> None:
        if self.settings.clamp:
            with torch.no_grad():
                self.images.copy_(torch.maximum(torch.minimum(self.images, self.pixel_high), self.pixel_low))
        self.method.begin_outer(outer)

    def run(self) -> CondenseResult:
        out = ensure_writable_dir(self.config.out)
        with _run_log(out):
            try:
                return self._run()
            except HashCondenseError as exc:
                log.error("%s", exc)
                raise

    def _run(self) -> CondenseResult:
        wall = time.perf_counter()
        self.setup()
        c, s, ctx, method = self.config, self.settings, self.context, self.method
        R, M = s.outer_loops if method.optimizes else 0, s.inner_loops
        log.info(
            "condense %s with %s: ipc %d, factor %d, R=%d x M=%d, lr_img %g (effective %g, %s space), "
            "batch_real %d, device %s -> %s",
            ctx.info.name,
            method.name,
            c.ipc,
            s.factor,
            R,
            M,
            s.lr_img,
            self.lr,
            s.lr_space,
            s.batch_real,
            self.device,
            self.out,
        )
        write_json(
            self.out / "config.json",
            {
                "config": self.resolved,
                "settings": s.as_dict(),
                "config_digest": self.digest,
                "dataset": self.ds.describe(),
                "versions": versions(),
            },
        )
        self.history: list[dict[str, Any]] = []
        self._elapsed_before, self._loop_start = 0.0, None
        self.opt: ImageSGD | None = None
        self.last_checkpoint: tuple[int, int] | None = None
        outer, inner = 0, 0
        state = self._load_checkpoint() if (c.resume and method.optimizes) else None
        if state is not None:
            images = state["tensors"]["images"]
            method.init_indices = state.get("init_indices") or []
            outer, inner = int(state["outer"]), int(state["inner"])
            self.history = list(state["history"])
            self._elapsed_before = float(state["elapsed"])
            self.last_checkpoint = (outer, inner)
            log.info(
                "resuming from outer loop %d, inner step %d (%.1f s done)", outer, inner, self._elapsed_before
            )
        else:
            images = method.initialize()
        self.images = images.to(self.device, torch.float32).clone().requires_grad_(method.optimizes)
        if method.optimizes:
            self.opt = ImageSGD(self.images, self.lr, s.momentum, self.channel_scale)
            if state is not None and "momentum" in state["tensors"]:
                self.opt.buffer = state["tensors"]["momentum"].to(self.device, torch.float32).clone()
        setup_seconds = time.perf_counter() - wall
        method.prepare()
        if state is not None:
            if inner > 0:
                method.begin_outer(outer)
            method_state = dict(state.get("method_state") or {})
            method_state.update(
                {k[len("method.") :]: v for k, v in state["tensors"].items() if k.startswith("method.")}
            )
            method.load_state_dict(method_state)
        self.groups = self._groups()

        stopped = "no_optimisation" if not method.optimizes else "finished"
        total_steps = R * M
        done = min(outer * M + inner, total_steps) if method.optimizes else 0
        budget = c.time_budget
        log_every = max(1, 100 // M)
        self._loop_start = time.perf_counter()
        if method.optimizes and done < total_steps and budget is not None and self._elapsed_before >= budget:
            stopped = "time_budget"
        elif method.optimizes and done < total_steps:
            stopped = self._loop(done, total_steps, M, budget, log_every)
        loop_seconds = self.elapsed()
        done = len(self.history) if method.optimizes else 0  # may exceed R x M if resumed with a smaller R
        if method.optimizes:
            position = divmod(len(self.history), M)
            if self.last_checkpoint != position:
                self._save_checkpoint(*position)
        self._loop_start = None
        return self._finish(stopped, done, total_steps, loop_seconds, setup_seconds)

    def _loop(self, done: int, total: int, M: int, budget: float | None, log_every: int) -> str:
        method, s = self.method, self.settings
        positions = (divmod(step, M) for step in range(done, total))
        bar = progress(
            positions,
            desc=f"condense {method.name}",
            disable=not self.config.show_progress,
            total=total,
            initial=done,
            unit="step",
        )
        outer_losses: list[float] = []
        for outer, inner in bar:
            if inner == 0:  # (a run resumed mid-loop had begin_outer called in _run, without the clamp)
                self._begin_outer(outer)
            try:
                loss = self._step(outer, inner)
            except _Diverged as exc:
                where = (
                    f"the last good checkpoint (outer loop {self.last_checkpoint[0]}, inner step "
                    f"{self.last_checkpoint[1]}) is kept in {self.out / CHECKPOINT}"
                    if self.last_checkpoint
                    else "no checkpoint was written yet"
                )
                raise HashCondenseError(
                    f"the matching loss became {exc.args[0]} at outer loop {outer}, inner step {inner}: "
                    f"the images diverged; {where}; start again with a lower --lr-img (now {s.lr_img})"
                ) from None
            elapsed = self.elapsed()
            self.history.append({"outer": outer, "inner": inner, "loss": loss, "seconds": round(elapsed, 4)})
            outer_losses.append(loss)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss:.4g}", t=f"{elapsed:.0f}s", refresh=False)
            if inner == M - 1:
                if (outer + 1) % log_every == 0 or outer + 1 == s.outer_loops:
                    log.info(
                        "outer loop %d/%d: mean loss %.6g over %d steps, %.1f s",
                        outer + 1,
                        s.outer_loops,
                        sum(outer_losses) / len(outer_losses),
                        len(outer_losses),
                        elapsed,
                    )
                outer_losses = []
                if (outer + 1) % s.checkpoint_every == 0 and outer + 1 < s.outer_loops:
                    self._save_checkpoint(outer + 1, 0)
            if budget is not None and elapsed >= budget and len(self.history) < total:
                log.info(
                    "time budget of %.1f s spent after %d of %d steps; saving the set",
                    budget,
                    len(self.history),
                    total,
                )
                if hasattr(bar, "close"):
                    bar.close()
                return "time_budget"
        return "finished"

    def _finish(
        self, stopped: str, done: int, total: int, loop_seconds: float, setup_seconds: float
    ) -> CondenseResult:
        from hashcondense import __version__
        from hashcondense.condense.outputs import write_outputs

        ctx, c, s = self.context, self.context.config, self.settings
        n = ctx.num_classes
        labels = torch.arange(n).repeat_interleave(ctx.ipc)
        meta = {
            "method": self.method.name,
            "dataset": ctx.info.name,
            "split_seed": int(self.ds.split_seed),
            "image_size": ctx.info.image_size,
            "images_per_class": ctx.ipc,
            "hashing": c.hashing,
            "arch": c.arch,
            "arch_kwargs": dict(c.arch_kwargs),
            "bits": int(c.bits),
            "seed": int(c.seed),
            "library_version": __version__,
            "versions": versions(),
            "config": self.resolved,
            "config_digest": self.digest,
            "lr_img_effective": self.lr,
            "distillation_seconds": round(loop_seconds, 3),
            "setup_seconds": round(setup_seconds, 3),
            "steps_done": done,
            "steps_total": total,
            "outer_done": done // s.inner_loops if total else 0,
            "stopped": stopped,
            "method_info": self.method.describe(),
            "init_indices": self.method.init_indices,
        }
        synthetic = SyntheticSet(
            self.images.detach().cpu().float().contiguous(),
            labels,
            factor=s.factor,
            mean=ctx.mean,
            std=ctx.std,
            class_names=ctx.class_names,
            meta=meta,
        )
        card = write_outputs(self.out, synthetic, self.history, tree=self.config.export_images)
        log.info(
            "wrote %s (%s, %d/%d steps, %.1f s of distillation)",
            self.out / SET_FILE,
            stopped,
            done,
            total,
            loop_seconds,
        )
        return CondenseResult(
            synthetic=synthetic,
            out=self.out,
            card=card,
            stopped=stopped,
            steps_done=done,
            steps_total=total,
            seconds=loop_seconds if total else setup_seconds,
        )


def _diff(old: dict[str, Any], new: dict[str, Any], limit: int = 4) -> str:
    keys = sorted(set(old) | set(new))
    parts = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                sub = _diff(a, b, limit)
                parts.append(f"{k}: {sub}")
            else:
                parts.append(f"{k} {a!r} -> {b!r}")
    if not parts:
        return "unknown difference"
    more = f", and {len(parts) - limit} more" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more
