"""The one condensation engine: data, initialisation, sampler, siamese augmentation, the image
optimiser, the R outer x M inner loop, logging, checkpoints, time budget and resume.

    result = condense(CondenseConfig(dataset="cifar10", root=..., method="iem", ipc=10, out="runs/iem"))

A run directory (see `outputs.py` for the set files) holds config.json, log.txt, history.json and
checkpoint.safetensors (`checkpoint.py`), written atomically every `checkpoint_every` outer loops, when
the time budget is spent, and at the end. `setup.py` resolves the run (data, settings, method) before
anything is optimised; this module is the loop. `resume=True` continues from the checkpoint; the
result equals the uninterrupted run for the same seed and device because every random number comes
from a stream derived from (seed, stream id, outer loop, inner step, class) or (seed, stream id, outer
loop) (`context.Streams`), never from one global sequence: sharding classes over processes draws the
same numbers too.

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

Several processes (torchrun, `--nproc`; README "Several processes"): the engine starts the process
group (`utils.distributed`), every process plans the run and agrees on the outcome, and each owns a
consecutive run of classes (`sharding.Sharding`): it draws only their batches and updates only their
rows of the stored images (every process keeps the full tensor; the rows of other classes are stale
and never read). Per step the processes exchange their per-class losses, so every one sums the same
loss and sees a divergence at the same step; with a time budget rank 0's elapsed seconds decide for
all. Checkpoints and the set are gathered and written by rank 0 alone, atomically; a resume reads the
checkpoint on rank 0 and sends it to the others.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hashcondense import __version__
from hashcondense.condense.checkpoint import CHECKPOINT, LoopState, load_checkpoint, save_checkpoint
from hashcondense.condense.config import CondenseConfig, Settings, set_config
from hashcondense.condense.context import CondenseContext, MatchBatch, Streams
from hashcondense.condense.method import CondenseMethod
from hashcondense.condense.outputs import write_outputs
from hashcondense.condense.setup import RunPlan, plan_run
from hashcondense.condense.sharding import Sharding
from hashcondense.condense.synthetic import SET_FILE, SyntheticSet, decode
from hashcondense.data import RetrievalDataset
from hashcondense.errors import HashCondenseError
from hashcondense.io.atomic import write_json
from hashcondense.runtime import resolve_device, versions
from hashcondense.utils import distributed
from hashcondense.utils.logs import FILE_ONLY, collect_logs, run_log, stage
from hashcondense.utils.progress import progress

__all__ = ["CHECKPOINT", "CondenseEngine", "CondenseResult", "ImageSGD", "condense"]

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
    per-channel `scale` (1, or 1 / std**2 for a pixel-space rate). `rows`: the rows this process owns
    (several processes); the others are left alone (the rule is elementwise: same numbers per row)."""

    def __init__(
        self,
        images: torch.Tensor,
        lr: float,
        momentum: float,
        scale: torch.Tensor,
        rows: slice | None = None,
    ) -> None:
        self.images = images
        self.momentum = float(momentum)
        self.step_size = (float(lr) * scale).to(images.device, images.dtype)
        self.buffer: torch.Tensor | None = None
        self.rows = rows

    @torch.no_grad()
    def step(self) -> None:
        grad = self.images.grad
        if grad is None and self.rows is not None:  # a process that owns no class
            grad = torch.zeros_like(self.images)
        if grad is None:
            raise RuntimeError("the matching losses produced no gradient for the stored images")
        if self.rows is not None:
            own = grad[self.rows]
            if self.buffer is None:
                self.buffer = torch.zeros_like(grad)
                self.buffer[self.rows] = own
            else:
                self.buffer[self.rows].mul_(self.momentum).add_(own)
            self.images[self.rows].sub_(self.step_size * self.buffer[self.rows])
            return
        if self.buffer is None:
            self.buffer = grad.detach().clone()
        else:
            self.buffer.mul_(self.momentum).add_(grad)
        self.images.sub_(self.step_size * self.buffer)


class _Diverged(Exception):
    pass


def condense(
    config: CondenseConfig,
    dataset: RetrievalDataset | None = None,
    method_cls: type[CondenseMethod] | None = None,
) -> CondenseResult:
    """Run one condensation (see the module docstring). `dataset`: an already loaded
    `RetrievalDataset` (else `config.dataset` is loaded); `method_cls`: a method class to use instead
    of the registered `config.method` (tests, experiments)."""
    return CondenseEngine(config, dataset=dataset, method_cls=method_cls).run()


class CondenseEngine:
    """One run: `setup()` resolves it (`setup.plan_run`), `run()` sets up, loops and writes the set."""

    def __init__(
        self,
        config: CondenseConfig,
        dataset: RetrievalDataset | None = None,
        method_cls: type[CondenseMethod] | None = None,
    ) -> None:
        self.config = config
        self.dataset = dataset
        self.method_cls = method_cls
        self.plan: RunPlan | None = None
        self.state: LoopState | None = None  # the stored images and where the loop stands
        self.opt: ImageSGD | None = None
        self.groups: list[list[int]] = []  # this process's classes, grouped for the forward passes
        self.loss_groups: list[list[int]] = []  # one process's grouping of all classes (the loss sum)
        self.shard: Sharding | None = None
        self.last_checkpoint: tuple[int, int] | None = None
        self._loop_start: float | None = None  # _clock() at the start of this invocation's loop

    # ---- what setup resolved ------------------------------------------------------------------------

    def _plan(self) -> RunPlan:
        if self.plan is None:
            raise RuntimeError("call setup() first")
        return self.plan

    @property
    def method(self) -> CondenseMethod:
        return self._plan().method

    @property
    def settings(self) -> Settings:
        return self._plan().settings

    @property
    def context(self) -> CondenseContext:
        return self._plan().context

    @property
    def lr(self) -> float:
        """The image learning rate after IDC's ipc scaling."""
        return self._plan().lr

    @property
    def images(self) -> torch.Tensor:
        """The stored images being optimised (normalised, on the run's device)."""
        assert self.state is not None, "run() sets the stored images"
        return self.state.images

    def setup(self) -> RunPlan:
        self._start_process_group()
        self.plan = plan_run(self.config, self.dataset, self.method_cls)
        return self.plan

    def _start_process_group(self) -> None:
        """Under a launcher, join the run's process group (once per process) before anything is planned:
        the plan depends on this process's rank."""
        distributed.init_from_env(distributed.local_device(resolve_device(self.config.device)))

    def _clock(self) -> float:
        """The time-budget clock: elapsed seconds, or this process's CPU seconds (`budget_clock`; under
        several processes rank 0's clock decides, as for the wall clock)."""
        return time.process_time() if self.config.budget_clock == "cpu" else time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of the loop on the budget's clock, summed over the invocations of a resumed run."""
        before = self.state.elapsed if self.state is not None else 0.0
        running = self._clock() - self._loop_start if self._loop_start is not None else 0.0
        return before + running

    # ---- the run --------------------------------------------------------------------------------------

    def run(self) -> CondenseResult:
        """Set up (unless `setup()` was called), condense and write the set; see the module docstring."""
        wall = time.perf_counter()
        with collect_logs() as earlier:
            self._start_process_group()  # under a launcher: first, so that every check below is agreed
            # a mistake here leaves no run folder behind
            plan = self.plan or distributed.agree(self.setup, "planning the run")
        # rank 0 alone writes the run folder, its log included
        logged = run_log(plan.out, earlier) if distributed.is_main() else contextlib.nullcontext()
        with logged:
            try:
                return self._run(plan, wall)
            except HashCondenseError as exc:
                log.error("%s", exc, extra=FILE_ONLY)  # the caller reports it
                raise
            except (KeyboardInterrupt, distributed.Stopped) as exc:
                kept = self.last_checkpoint
                where = f"checkpoint at outer loop {kept[0]}, step {kept[1]}" if kept else "no checkpoint yet"
                what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped by the launcher"
                log.warning("%s (%s); rerun with --resume to continue", what, where, extra=FILE_ONLY)
                raise
            finally:
                plan.method.finish()

    def _run(self, plan: RunPlan, wall: float) -> CondenseResult:
        self.shard = plan.context.shard
        self._warn_idle_ranks()
        optimizes = plan.method.optimizes
        outer_loops = plan.settings.outer_loops if optimizes else 0
        self._announce(plan, outer_loops)
        resumed = self._start_state(plan)
        setup_seconds = time.perf_counter() - wall
        self._prepare_method(plan, resumed)
        self.groups = self._groups(self.shard.classes)
        self.loss_groups = self._groups(list(range(plan.context.num_classes)))
        total = outer_loops * plan.settings.inner_loops
        stopped = self._loop_to_end(plan, total) if optimizes else "no_optimisation"
        assert self.state is not None
        loop_seconds = self.elapsed()
        done = len(self.state.history) if optimizes else 0  # may exceed R x M if resumed with a smaller R
        if optimizes:
            position = divmod(done, plan.settings.inner_loops)
            if self.last_checkpoint != position:
                self._save_checkpoint(*position)
        self._loop_start = None
        return self._finish(stopped, done, total, loop_seconds, setup_seconds)

    def _announce(self, plan: RunPlan, outer_loops: int) -> None:
        """The run's first log line and its config.json."""
        c, s = plan.config, plan.settings
        log.info(
            "condense %s with %s: ipc %d, factor %d, R=%d x M=%d, lr_img %g (effective %g, %s space), "
            "batch_real %d, device %s -> %s",
            plan.context.info.name,
            plan.method.name,
            c.ipc,
            s.factor,
            outer_loops,
            s.inner_loops,
            s.lr_img,
            plan.lr,
            s.lr_space,
            s.batch_real,
            plan.device,
            plan.out,
        )
        stage(
            "condensing %s with %s, %d per class -> %s",
            plan.context.info.name,
            plan.method.name,
            c.ipc,
            plan.out,
        )
        record = {
            "config": plan.resolved,
            "settings": s.as_dict(),
            "config_digest": plan.digest,
            "dataset": plan.dataset.describe(),
            "versions": versions(),
            "distributed": self._distributed_record(),
        }
        if distributed.is_main():
            write_json(plan.out / "config.json", record)

    def _warn_idle_ranks(self) -> None:
        assert self.shard is not None
        idle = [r for r, classes in enumerate(self.shard.classes_by_rank) if not classes]
        if idle and self.shard.is_main:
            log.warning(
                "%d processes for %d classes: rank(s) %s own no class and only take part in the exchanges "
                "(and IEM's pool); use at most %d processes",
                self.shard.world_size,
                self.context.num_classes,
                ", ".join(map(str, idle)),
                self.context.num_classes,
            )

    def _distributed_record(self) -> dict[str, Any]:
        """World size and what each rank owns (config.json, card.json; docs/formats.md)."""
        assert self.shard is not None
        return self.shard.record(self._plan().method.ownership())

    def _start_state(self, plan: RunPlan) -> bool:
        """The stored images and image optimiser, from the checkpoint (`resume`) or the method's
        initialisation; returns whether the run resumed."""
        method, ctx = plan.method, plan.context
        saved = None
        if plan.config.resume and method.optimizes:
            expect = (
                ctx.num_classes * ctx.ipc,
                ctx.info.in_channels,
                ctx.info.image_size,
                ctx.info.image_size,
            )
            saved = distributed.on_main(  # rank 0 reads it (the run folder may be on its machine only)
                lambda: load_checkpoint(plan.out / CHECKPOINT, expect, plan.digest, plan.hashed),
                "reading the checkpoint",
            )
        if saved is not None:
            method.init_indices = saved.init_indices
            self.last_checkpoint = (saved.outer, saved.inner)
            stage(
                "resuming from outer loop %d, inner step %d (%.1f s done)",
                saved.outer,
                saved.inner,
                saved.elapsed,
            )
            self.state = saved
        else:
            self.state = LoopState(images=distributed.agree(method.initialize, "initialising the set"))
            if distributed.is_active():  # each process drew its own classes' images
                parts = distributed.all_gather_objects(method.init_indices, "gathering the initial images")
                method.init_indices = _merge_per_class(parts)
        state = self.state
        state.images = state.images.to(plan.device, torch.float32).clone().requires_grad_(method.optimizes)
        if method.optimizes:
            rows = self._rows() if distributed.is_active() else None
            self.opt = ImageSGD(state.images, plan.lr, plan.settings.momentum, plan.channel_scale, rows)
            if saved is not None and saved.momentum is not None:
                self.opt.buffer = saved.momentum.to(plan.device, torch.float32).clone()
        return saved is not None

    def _prepare_method(self, plan: RunPlan, resumed: bool) -> None:
        """The method's one-time setup (IEM: its pool); a resumed run also restores the method's state."""
        plan.method.prepare()
        if resumed:
            assert self.state is not None
            if self.state.inner > 0:
                plan.method.begin_outer(self.state.outer)
            plan.method.load_state_dict(dict(self.state.method_state))

    def _rows(self) -> slice:
        """The rows of the stored images this process owns."""
        assert self.shard is not None
        return self.shard.rows(self.context.ipc)

    def _gathered(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        """The stored images (or their momentum) with every class's rows from the process that owns it;
        in one process the tensor itself."""
        if not distributed.is_active():
            return tensor
        assert self.shard is not None
        counts = [len(c) * self.context.ipc for c in self.shard.classes_by_rank]
        return distributed.all_gather_rows(tensor.detach()[self._rows()], what, counts)

    def _groups(self, classes: list[int]) -> list[list[int]]:
        """Classes matched together: one per call for gradient matching, else as many as fit in
        `max_forward` synthetic images."""
        if not self.method.batch_classes:
            return [[c] for c in classes]
        per_class = self.context.ipc * self.settings.factor**2
        if self.settings.batch_syn_max:
            per_class = min(per_class, self.settings.batch_syn_max)
        size = max(1, int(self.config.max_forward) // max(1, per_class))
        return [classes[i : i + size] for i in range(0, len(classes), size)]

    # ---- one step ---------------------------------------------------------------------------------------

    def _batch(self, group: list[int], outer: int, inner: int) -> MatchBatch:
        """The siamese-augmented real and decoded synthetic batches of the classes in `group`."""
        ctx, s, device = self.context, self.settings, self._plan().device
        ipc = ctx.ipc
        real_v, syn_v, draws, real_raw, syn_raw = [], [], [], [], []
        for c in group:
            idx = ctx.sampler.sample(c, s.batch_real, ctx.rng(Streams.REAL, outer, inner, c))
            real = ctx.images[idx].to(device, non_blocking=True)
            draw = ctx.augment.sample(
                1, ctx.rng(Streams.AUGMENT, outer, inner, c), device=device, shared=True
            )
            syn = decode(self.images[c * ipc : (c + 1) * ipc], s.factor, ctx.mean, ctx.std)
            if s.batch_syn_max and syn.shape[0] > s.batch_syn_max:
                keep = torch.randperm(syn.shape[0], generator=ctx.rng(Streams.SYNTHETIC, outer, inner, c))
                syn = syn[keep[: s.batch_syn_max].to(device)]
            with torch.no_grad():
                real_v.append(ctx.augment.apply(real, draw))
            syn_v.append(ctx.augment.apply(syn, draw))
            draws.append(draw)
            real_raw.append(real)
            syn_raw.append(syn)
        return MatchBatch(outer, inner, list(group), real_v, syn_v, draws, real_raw, syn_raw)

    def _step(self, outer: int, inner: int) -> float:
        """One inner step: every group's matching losses, one image update, the method's after-step.
        Returns the loss summed over all classes (of every process)."""
        self.images.grad = None
        own: list[torch.Tensor] = []
        for group in self.groups:
            losses = self.method.match_losses(self._batch(group, outer, inner))
            if losses.shape != (len(group),):
                raise RuntimeError(
                    f"{self.method.name}.match_losses returned shape {tuple(losses.shape)} "
                    f"for {len(group)} classes"
                )
            values = losses.detach()
            own.append(values)
            if not torch.isfinite(values).all():
                break  # diverged: every process learns it from the losses below
            losses.sum().backward()
        assert self.opt is not None
        grad = self.images.grad
        if grad is not None and self.opt.rows is not None:
            grad = grad[self.opt.rows]
        grad_ok = grad is None or bool(torch.isfinite(grad).all())
        values = torch.cat(own) if own else self.images.new_zeros(0)
        values, grad_ok = self._exchange(values, grad_ok)
        total = 0.0
        for group in self.loss_groups:  # one process's sum, in its order: the same float in N processes
            part = values[group[0] : group[-1] + 1].clone()
            if not torch.isfinite(part).all():
                raise _Diverged(float(part.sum()))
            total += float(part.sum())
        if not grad_ok:
            raise _Diverged(float("nan"))
        self.opt.step()
        stored = self.images
        if self.method.after_inner_reads_set and distributed.is_active():  # other ranks own the other rows
            stored = self._gathered(self.images, "gathering the set for the network update")
        self.method.after_inner(outer, inner, stored)
        return total

    def _exchange(self, own: torch.Tensor, grad_ok: bool) -> tuple[torch.Tensor, bool]:
        """Every class's loss of this step (class order) and whether every process's image gradients
        are finite. One process: its own losses (a diverged step may have fewer: padded with NaN)."""
        n = self.context.num_classes
        if not distributed.is_active():
            if own.numel() < n:
                own = torch.cat([own, own.new_full((n - own.numel(),), float("nan"))])
            return own, grad_ok
        assert self.shard is not None
        width = max(len(c) for c in self.shard.classes_by_rank) + 1
        row = torch.full((1, width), float("nan"), dtype=torch.float32)
        row[0, : own.numel()] = own.to("cpu", torch.float32)
        row[0, -1] = 1.0 if grad_ok else 0.0
        rows = distributed.all_gather_rows(row, "exchanging the step's losses", [1] * self.shard.world_size)
        values = torch.cat([r[: len(c)] for r, c in zip(rows, self.shard.classes_by_rank, strict=True)])
        return values.to(own.device), bool((rows[:, -1] == 1.0).all())

    def _begin_outer(self, outer: int) -> None:
        if self.settings.clamp:
            plan = self._plan()
            with torch.no_grad():
                self.images.copy_(torch.maximum(torch.minimum(self.images, plan.pixel_high), plan.pixel_low))
        self.method.begin_outer(outer)

    def _save_checkpoint(self, outer: int, inner: int) -> None:
        """Gather the set (every process takes part) and write the checkpoint (rank 0 alone)."""
        plan, state = self._plan(), self.state
        assert state is not None
        buffer = self.opt.buffer if self.opt is not None else None
        snapshot = LoopState(
            images=self._gathered(state.images, "gathering the checkpoint"),
            outer=outer,
            inner=inner,
            elapsed=self.elapsed(),
            history=state.history,
            momentum=self._gathered(buffer, "gathering the checkpoint") if buffer is not None else None,
            method_state=plan.method.state_dict(),
            init_indices=plan.method.init_indices,
        )
        path = plan.out / CHECKPOINT
        distributed.on_main(
            lambda: save_checkpoint(path, snapshot, plan.method.name, plan.digest, plan.hashed),
            "writing the checkpoint",
        )
        self.last_checkpoint = (outer, inner)

    # ---- the loop ---------------------------------------------------------------------------------------

    def _loop_to_end(self, plan: RunPlan, total: int) -> str:
        """Run the remaining steps; returns how the loop ended (finished | time_budget)."""
        assert self.state is not None
        M = plan.settings.inner_loops
        done = min(self.state.outer * M + self.state.inner, total)
        self._loop_start = self._clock()
        budget = plan.config.time_budget
        if done >= total:
            return "finished"
        if budget is not None and self.state.elapsed >= budget:
            return "time_budget"
        stage("condensing: steps %d-%d of %d", done + 1, total, total)
        bar = progress(
            (divmod(step, M) for step in range(done, total)),
            desc=f"condense {plan.method.name}",
            disable=not plan.config.show_progress or not distributed.is_main(),
            total=total,
            initial=done,
            unit="step",
        )
        outer_losses: list[float] = []
        for outer, inner in bar:
            elapsed = self._loop_step(outer, inner, outer_losses, bar)
            if budget is not None and elapsed >= budget and len(self.state.history) < total:
                stage(
                    "time budget of %.1f s spent after %d of %d steps; saving the set",
                    budget,
                    len(self.state.history),
                    total,
                )
                if hasattr(bar, "close"):
                    bar.close()
                return "time_budget"
        return "finished"

    def _loop_step(self, outer: int, inner: int, outer_losses: list[float], bar: Any) -> float:
        """One step of the loop with its bookkeeping: history, log line and checkpoint at the end of an
        outer loop. Returns the elapsed seconds."""
        s, state = self.settings, self.state
        assert state is not None
        if inner == 0:  # (resumed mid-loop: _prepare_method called begin_outer, without the clamp)
            self._begin_outer(outer)
        try:
            loss = self._step(outer, inner)
        except _Diverged as exc:
            raise self._divergence(exc.args[0], outer, inner) from None
        elapsed = self.elapsed()
        if distributed.is_active() and self._plan().config.time_budget is not None:
            # the budget stops every process at the same step: rank 0's clock decides
            elapsed = distributed.broadcast_float(elapsed, "agreeing on the time budget")
        state.history.append({"outer": outer, "inner": inner, "loss": loss, "seconds": round(elapsed, 4)})
        outer_losses.append(loss)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss:.4g}", t=f"{elapsed:.0f}s", refresh=False)
        if inner == s.inner_loops - 1:
            if (outer + 1) % max(1, 100 // s.inner_loops) == 0 or outer + 1 == s.outer_loops:
                log.info(
                    "outer loop %d/%d: mean loss %.6g over %d steps, %.1f s",
                    outer + 1,
                    s.outer_loops,
                    sum(outer_losses) / len(outer_losses),
                    len(outer_losses),
                    elapsed,
                )
            outer_losses.clear()
            if (outer + 1) % s.checkpoint_every == 0 and outer + 1 < s.outer_loops:
                self._save_checkpoint(outer + 1, 0)
        return elapsed

    def _divergence(self, value: float, outer: int, inner: int) -> HashCondenseError:
        where = (
            f"the last good checkpoint (outer loop {self.last_checkpoint[0]}, inner step "
            f"{self.last_checkpoint[1]}) is kept in {self._plan().out / CHECKPOINT}"
            if self.last_checkpoint
            else "no checkpoint was written yet"
        )
        error = HashCondenseError(
            f"the matching loss became {value} at outer loop {outer}, inner step {inner}: "
            f"the images diverged; {where}; start again with a lower --lr-img (now {self.settings.lr_img})"
        )
        return distributed.replicated(error)  # every process saw the same losses

    # ---- the set ----------------------------------------------------------------------------------------

    def _finish(
        self, stopped: str, done: int, total: int, loop_seconds: float, setup_seconds: float
    ) -> CondenseResult:
        plan = self._plan()
        images = self._gathered(self.images.detach(), "gathering the set")
        synthetic = SyntheticSet(
            images.detach().cpu().float().contiguous(),
            torch.arange(plan.context.num_classes).repeat_interleave(plan.context.ipc),
            factor=plan.settings.factor,
            mean=plan.context.mean,
            std=plan.context.std,
            class_names=plan.context.class_names,
            meta=self._card(stopped, done, total),
        )
        assert self.state is not None
        run = {
            "config": plan.resolved,
            "distillation_seconds": round(loop_seconds, 3),
            "setup_seconds": round(setup_seconds, 3),
            **plan.method.report(),
            "distributed": self._distributed_record(),
        }
        history = self.state.history
        card = distributed.on_main(  # the others get the card rank 0 wrote
            lambda: write_outputs(plan.out, synthetic, history, run=run, tree=self.config.export_images),
            "writing the set",
        )
        stage(
            "wrote %s (%s, %d/%d steps, %.1f s of distillation)",
            plan.out / SET_FILE,
            stopped,
            done,
            total,
            loop_seconds,
        )
        return CondenseResult(
            synthetic=synthetic,
            out=plan.out,
            card=card,
            stopped=stopped,
            steps_done=done,
            steps_total=total,
            seconds=loop_seconds if total else setup_seconds,
        )

    def _card(self, stopped: str, done: int, total: int) -> dict[str, Any]:
        """The set's metadata (docs/formats.md): what the set is, the same for the same seed."""
        plan = self._plan()
        ctx, c = plan.context, plan.context.config
        return {
            "method": plan.method.name,
            "dataset": ctx.info.name,
            "split_seed": int(plan.dataset.split_seed),
            "image_size": ctx.info.image_size,
            "images_per_class": ctx.ipc,
            "hashing": c.hashing,
            "arch": c.arch,
            "arch_kwargs": dict(c.arch_kwargs),
            "bits": int(c.bits),
            "seed": int(c.seed),
            "library_version": __version__,
            "versions": versions(),
            "config": set_config(plan.resolved),
            "config_digest": plan.digest,
            "lr_img_effective": plan.lr,
            "steps_done": done,
            "steps_total": total,
            "outer_done": done // plan.settings.inner_loops if total else 0,
            "stopped": stopped,
            "method_info": plan.method.describe(),
            "init_indices": plan.method.init_indices,
        }


def _merge_per_class(parts: list[list[list[int]]]) -> list[list[int]]:
    """Per class, the list of the process that filled it (the others hold an empty list)."""
    classes = max((len(p) for p in parts), default=0)
    return [next((p[c] for p in parts if c < len(p) and p[c]), []) for c in range(classes)]
