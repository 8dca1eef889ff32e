"""Gradient matching, shared by DSA and IDC (IEM appendix B.2, Algorithm 2).

Per class c and inner step, with the run's hashing method (any registered one):
    for each loss group g of `hashing.loss_groups()` (DHD: D1 = ["sdh", "bceq"], D2 = ["hp"]),
    on the parameters `hashing.group_parameters(net)[g]` (DHD: encoder + hash layer, proxies):
        G_T = grad of L_g(a_w(T_c))     (real batch, detached)
        G_S = grad of L_g(a_w(f(S_c)))  (synthetic batch, create_graph=True)
    loss_c = sum_g distance(G_T, G_S)
L_g = sum of the group's terms weighted by `hashing.loss_weights` (the gradients the network's own
training follows; for DHD both D1 terms weigh 0.1, so the direction is that of L_SDH + L_bce-Q).

Views. The engine's siamese draw a_w gives `batch.real` / `batch.synthetic`. A method that wants two
views (DHD: teacher = weak, student = strong) gets teacher = a second siamese draw of the weak
augmentation (the crop and flip groups of the run's strategy, stream (TEACHER, outer, inner, c)) on the
un-augmented pair, student = the engine's view; real and synthetic thus see identical transforms in
both views. One-view methods use the engine's view.

Distance (`gradient_distance`), summed over the matched tensors:
- "cos": DC/DSA's 'ours' (VICO-UoE/DatasetCondensation `utils.distance_wb`): per output channel
  1 - <g_T, g_S> / (|g_T| |g_S| + 1e-6), 4-D conv weights as (out, in*kh*kw), 3-D as (C, h*w), 2-D
  as they are (out, in), 1-D (biases, norm parameters) contribute 0, so they are left out of the
  gradient computation altogether.
- "mse" / "l1": IDC's `dist` (snu-mllab/Efficient-Dataset-Condensation `condense.py`): sum of squared /
  absolute differences over every element.
Matched parameters: `match_params` "all" (DC/DSA) or "conv" (IDC's bias=False, fc=False: only network
tensors of 3 or more dimensions, i.e. conv weights). Parameters that are not the network's (DHD's
proxies, group D2) are always matched: Algorithm 2 matches D2 on theta_P.

The network. Each outer loop r builds a fresh network (`context.new_network(NETWORK, r)`) and a fresh
hashing method (DHD proxies drawn with (seed, HASHING, r)); matching runs in eval mode. Networks with
batch norm get DC's treatment: running statistics are set from an un-augmented real batch of
`norm_batch` images per class whenever the network changes, and frozen while matching (a class batch
of 1-4 synthetic images has no usable batch statistics). Between inner steps (`after_inner`, not after
the last step of an outer loop, whose network is discarded) the network and the hashing method's
parameters take SGD steps (`net_lr`, `net_momentum`, `net_weight_decay`) on
- net_data "real" (IDC, Algorithm 2): random batches of `net_batch` real train images until
  `net_images` images are seen (IDC's n_data), or
- net_data "synthetic" (DC/DSA's code): epochs over the current decoded synthetic set, or
- net_data "none": no update,
with the method's loss on per-image augmented views (the run's strategy; without cutout when CutMix
is on, as IDC) and CutMix with probability `cutmix_prob` (IDC: 0.5, beta 1) applied with one box to
all views. `early_epochs` epochs on the real split first train every fresh network (IDC's `early`).
Random numbers: streams (TRAIN, r, m), (NORM, r, m), (EARLY, r), all >= Streams.METHOD.

Checkpoints. The engine checkpoints at outer-loop boundaries, and mid-loop when the time budget
stops a run; `state_dict` then holds the network, the hashing method and the SGD momentum buffers, so
a resumed run equals an uninterrupted one. At a boundary the state is empty (the next outer loop starts
from a fresh network).

Stored images for net_data "synthetic": the engine hands the updated stored images to `after_inner`,
which decodes them, as DC trains on the updated set.

Several processes (torchrun, `--nproc`; README "Several processes"): the engine shards the classes, so
each process matches its own classes on a network that every process holds alike: every process builds
the same fresh network, sets the same batch-norm statistics, and trains it data-parallel
(`train.data_parallel`, DistributedDataParallel): every process draws the same global batch, views and
CutMix from the streams above and takes the gradients of its share of the rows; DDP sums the shares, so
every process takes one process's SGD step up to float rounding. With net_data "synthetic" the engine
gathers the stored images of every class first. The set therefore equals one process's to float
rounding of the network updates, not bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from hashcondense.augment import DSA, cutmix
from hashcondense.condense.context import CondenseContext, MatchBatch, Streams, derive_seed
from hashcondense.condense.method import CondenseMethod
from hashcondense.condense.synthetic import decode
from hashcondense.errors import HashCondenseError
from hashcondense.io.tensors import strip_prefix
from hashcondense.models.fused import accelerated
from hashcondense.train import NonFiniteLoss, load_network_state, network_state, shuffled_batches, train_step
from hashcondense.train.data_parallel import DataParallel
from hashcondense.utils import distributed
from hashcondense.utils.checks import is_count, is_number

if TYPE_CHECKING:
    from hashcondense.hashing import HashingMethod

__all__ = ["METRICS", "GradientMatching", "gradient_distance"]

METRICS: tuple[str, ...] = ("cos", "mse", "l1")
MATCH_PARAMS: tuple[str, ...] = ("all", "conv")
NET_DATA: tuple[str, ...] = ("real", "synthetic", "none")
_EPS = 1e-6  # DC's distance_wb


class _Streams:
    """Random streams of gradient matching (offsets from `Streams.METHOD`)."""

    HASHING = Streams.METHOD  # (HASHING, outer): the hashing method's own parameters (DHD proxies)
    TEACHER = Streams.METHOD + 1  # (TEACHER, outer, inner, class): siamese draw of the weak view
    TRAIN = Streams.METHOD + 2  # (TRAIN, outer, inner): network update (order, augmentation, CutMix)
    NORM = Streams.METHOD + 3  # (NORM, outer, inner): real batch for batch-norm statistics
    EARLY = Streams.METHOD + 4  # (EARLY, outer): early training of a fresh network


def _cos_distance(real: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
    if real.dim() == 1:
        return syn.new_zeros(())
    if real.dim() != 2:
        real, syn = real.reshape(real.shape[0], -1), syn.reshape(syn.shape[0], -1)
    dot = (real * syn).sum(dim=-1)
    return (1.0 - dot / (real.norm(dim=-1) * syn.norm(dim=-1) + _EPS)).sum()


def gradient_distance(
    real: Sequence[torch.Tensor], syn: Sequence[torch.Tensor], metric: str = "cos"
) -> torch.Tensor:
    """Distance between two lists of gradient tensors (same shapes, paired), summed over tensors.

    metric "cos": per output channel 1 - cosine (rows of the tensor reshaped to (shape[0], -1)),
    1-D tensors count 0 (DC's `distance_wb`); "mse": sum of squared differences; "l1": sum of absolute
    differences (IDC's `dist`). Returns a scalar, differentiable with respect to `syn`.

    Example::

        >>> gradient_distance([torch.ones(2, 3)], [torch.ones(2, 3)])   # identical: 0 (up to 1e-6)
    """
    if metric not in METRICS:
        raise HashCondenseError(f"unknown gradient distance '{metric}'; choose one of: {', '.join(METRICS)}")
    if len(real) != len(syn):
        raise ValueError(f"{len(real)} real gradients but {len(syn)} synthetic ones")
    total: torch.Tensor | None = None
    for r, s in zip(real, syn, strict=True):
        if r.shape != s.shape:
            raise ValueError(f"gradient shapes differ: {tuple(r.shape)} vs {tuple(s.shape)}")
        if metric == "cos":
            d = _cos_distance(r, s)
        elif metric == "mse":
            d = (s - r).square().sum()
        else:
            d = (s - r).abs().sum()
        total = d if total is None else total + d
    if total is None:
        return torch.zeros(())
    return total


class GradientMatching(CondenseMethod):
    """Base of gradient-matching methods (DSA, IDC); see the module docstring.

    Options (subclasses set their defaults; None = chosen in `fill_options`):
        metric: "cos" | "mse" | "l1". match_params: "all" | "conv".
        net_data: "real" | "synthetic" | "none". net_images: images per network update (>= 1).
        net_batch: batch size of the update (None = batch_real). net_lr, net_momentum,
        net_weight_decay: its SGD. cutmix_prob, cutmix_beta: CutMix of the update (0 = off).
        early_epochs: epochs on the real split that train each fresh network first.
        norm_batch: real images per class that set batch-norm statistics.
    """

    batch_classes = False
    distributed = True  # classes sharded; the network trained data-parallel (module docstring)
    options: ClassVar[dict[str, Any]] = {
        "metric": "cos",
        "match_params": "all",
        "net_data": "real",
        "net_images": None,
        "net_batch": None,
        "net_lr": 0.01,
        "net_momentum": 0.0,
        "net_weight_decay": 0.0,
        "cutmix_prob": 0.0,
        "cutmix_beta": 1.0,
        "early_epochs": 0,
        "norm_batch": 16,
    }

    def __init__(self, context: CondenseContext, **options: Any) -> None:
        super().__init__(context, **options)
        self.fill_options()
        self._check_options()
        aug = context.augment
        weak = [g for g in aug.groups if g in ("crop", "flip")]
        self.weak = DSA("_".join(weak) or "none", aug.params, mode="all")
        train_groups = [g for g in aug.groups if not (g == "cutout" and self.opts["cutmix_prob"] > 0)]
        self.train_aug = DSA("_".join(train_groups) or "none", aug.params, mode=aug.mode)
        self.net: nn.Module | None = None
        self.forward: nn.Module | None = None  # `net`, or `net` compiled, for the network updates
        self.hashing: HashingMethod | None = None
        self.optimizer: torch.optim.SGD | None = None
        self.groups: list[list[str]] = []
        self.matched: list[list[nn.Parameter]] = []
        self.outer = -1
        self.position = (-1, 0)  # (outer, inner steps done) of the network's state
        self.parallel: DataParallel | None = None  # several processes: the network's data-parallel updates
        self.after_inner_reads_set = self.opts["net_data"] == "synthetic"

    # ---- options ------------------------------------------------------------------------------------

    def fill_options(self) -> None:
        """Fill options left None (may depend on the dataset, ipc and preset). Default: net_batch."""
        if self.opts["net_batch"] is None:
            self.opts["net_batch"] = int(self.context.settings.batch_real)

    def _check_options(self) -> None:
        o, name = self.opts, self.name

        def bad(key: str, fix: str) -> HashCondenseError:
            return HashCondenseError(f"{name} option {key}={o[key]!r} cannot work; {fix}")

        for key, valid in (("metric", METRICS), ("match_params", MATCH_PARAMS), ("net_data", NET_DATA)):
            if o[key] not in valid:
                raise bad(key, f"choose one of: {', '.join(valid)}")
        for key, minimum in (("net_images", 1), ("net_batch", 1), ("early_epochs", 0), ("norm_batch", 1)):
            if not is_count(o[key], minimum):
                raise bad(key, f"use a whole number >= {minimum}")
        if not is_number(o["net_lr"], minimum=0.0, strict=True):
            raise bad("net_lr", "use a positive learning rate")
        if not is_number(o["net_momentum"], minimum=0.0, maximum=1.0):
            raise bad("net_momentum", "use a number in [0, 1)")
        if not is_number(o["net_weight_decay"], minimum=0.0):
            raise bad("net_weight_decay", "use a number >= 0")
        if not (is_number(o["cutmix_prob"], minimum=0.0) and float(o["cutmix_prob"]) <= 1):
            raise bad("cutmix_prob", "use a probability in [0, 1] (0 = no CutMix)")
        if not is_number(o["cutmix_beta"], minimum=0.0, strict=True):
            raise bad("cutmix_beta", "use a positive number (IDC: 1)")

    def preset(self) -> str:
        return self.context.config.preset or "paper"

    # ---- the network of an outer loop ---------------------------------------------------------------

    def begin_outer(self, outer: int) -> None:
        ctx, o = self.context, self.opts
        self.net = ctx.new_network(Streams.NETWORK, outer).requires_grad_(True)
        # the network updates may run compiled; the matching's double backward stays eager (torch.compile
        # does not differentiate twice). A fresh network of the same architecture reuses the compiled code.
        self.forward = accelerated(self.net, bool(ctx.config.compile))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(ctx.seed, _Streams.HASHING, outer))
            hashing = ctx.new_hashing()
        self.hashing = hashing.to(ctx.device).requires_grad_(True)
        self.groups = [list(g) for g in hashing.loss_groups()]
        params = hashing.group_parameters(self.net)
        if len(params) != len(self.groups):
            raise RuntimeError(
                f"{hashing.name}: {len(self.groups)} loss groups but {len(params)} parameter lists"
            )
        own = {id(p) for p in self.net.parameters()}
        self.matched = [[p for p in group if self._matches(p, id(p) in own)] for group in params]
        if not any(self.matched):
            raise HashCondenseError(
                f"{self.name}: no parameter of {ctx.config.arch} is matched with match_params="
                f"'{o['match_params']}' and metric '{o['metric']}'; use match_params='all'"
            )
        trainable = [p for p in [*self.net.parameters(), *self.hashing.parameters()] if p.requires_grad]
        self.optimizer = torch.optim.SGD(
            trainable,
            lr=float(o["net_lr"]),
            momentum=float(o["net_momentum"]),
            weight_decay=float(o["net_weight_decay"]),
        )
        if self.parallel is not None:
            self.parallel.close()  # the last outer loop's network
            self.parallel = None
        if distributed.is_active() and o["net_data"] != "none":
            self.parallel = DataParallel(self.forward, self.hashing, ctx.device)
        self.outer = outer
        if o["early_epochs"]:
            n = ctx.images.shape[0]
            self._train(ctx.images, ctx.labels, int(o["early_epochs"]) * n, ctx.rng(_Streams.EARLY, outer))
        self._set_norm_statistics(outer, 0)
        self.position = (outer, 0)

    def _matches(self, p: nn.Parameter, in_network: bool) -> bool:
        if self.opts["metric"] == "cos" and p.dim() == 1:
            return False  # distance 0 by definition (DC); skip its gradient
        if in_network and self.opts["match_params"] == "conv":
            return p.dim() >= 3  # IDC: no bias / norm (1-D), no fully connected (2-D) weights
        return True

    def _set_norm_statistics(self, outer: int, inner: int) -> None:
        """DC: set batch-norm running statistics from a real batch, then use them frozen (eval mode)."""
        assert self.net is not None
        norms = [m for m in self.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        ctx = self.context
        g = ctx.rng(_Streams.NORM, outer, inner)
        per = int(self.opts["norm_batch"])
        idx = torch.cat([ctx.sampler.sample(c, per, g) for c in range(ctx.num_classes)])
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch sets the statistics exactly
        self.net.train()
        with torch.no_grad():
            self.net(ctx.images[idx].to(ctx.device))
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        self.net.eval()

    # ---- matching -----------------------------------------------------------------------------------

    def _views(self, student: torch.Tensor, raw: torch.Tensor, draw: Any) -> list[torch.Tensor]:
        assert self.hashing is not None
        if self.hashing.num_views == 1:
            return [student]
        return [self.weak.apply(raw, draw), student]

    def group_gradients(
        self, views: list[torch.Tensor], label: int, create_graph: bool
    ) -> list[list[torch.Tensor | None]]:
        """Per loss group, the gradients of the group's loss on a one-class batch (views of it)."""
        assert self.net is not None and self.hashing is not None
        n = views[0].shape[0]
        codes = list(self.net(torch.cat(views)).split(n))
        labels = torch.full((n,), label, dtype=torch.long, device=codes[0].device)
        terms = self.hashing.loss_terms(codes, labels)
        weights = self.hashing.loss_weights
        out: list[list[torch.Tensor | None]] = []
        active = [k for k, params in enumerate(self.matched) if params]
        for k in range(len(self.groups)):
            if k not in active:
                out.append([])
                continue
            loss = self._group_loss(self.groups[k], terms, weights, codes, labels)
            grads = torch.autograd.grad(
                loss,
                self.matched[k],
                create_graph=create_graph,
                retain_graph=create_graph or k != active[-1],
                allow_unused=True,
            )
            out.append([g if create_graph or g is None else g.detach() for g in grads])
        return out

    def _group_loss(
        self,
        group: list[str],
        terms: dict[str, torch.Tensor],
        weights: dict[str, float],
        codes: list[torch.Tensor],
        labels: torch.Tensor,
    ) -> torch.Tensor:
        assert self.hashing is not None
        if group == ["loss"] and "loss" not in terms:
            return self.hashing.loss(codes, labels)
        missing = [k for k in group if k not in terms]
        if missing:
            raise RuntimeError(f"{self.hashing.name} loss group names unknown terms {missing}")
        loss = weights.get(group[0], 1.0) * terms[group[0]]
        for k in group[1:]:
            loss = loss + weights.get(k, 1.0) * terms[k]
        return loss

    def match_losses(self, batch: MatchBatch) -> torch.Tensor:
        if len(batch.classes) != 1:
            raise RuntimeError(f"{self.name} matches one class per call, got {len(batch.classes)}")
        assert self.net is not None
        c = batch.classes[0]
        self.net.eval()
        draw = None
        assert self.hashing is not None
        if self.hashing.num_views > 1:
            draw = self.weak.sample(
                1, self.context.rng(_Streams.TEACHER, batch.outer, batch.inner, c), shared=True
            )
        with torch.no_grad():
            real_views = self._views(batch.real[0], batch.real_images[0], draw)
        real = self.group_gradients(real_views, c, create_graph=False)
        syn = self.group_gradients(self._views(batch.synthetic[0], batch.synthetic_images[0], draw), c, True)
        total: torch.Tensor | None = None
        for g_real, g_syn in zip(real, syn, strict=True):
            pairs = [(r, s) for r, s in zip(g_real, g_syn, strict=True) if r is not None and s is not None]
            if not pairs:
                continue
            d = gradient_distance([r for r, _ in pairs], [s for _, s in pairs], self.opts["metric"])
            total = d if total is None else total + d
        if total is None:
            raise RuntimeError(f"{self.name}: no matched parameter received a gradient")
        return total.reshape(1)

    # ---- network update between inner steps -----------------------------------------------------------

    def after_inner(self, outer: int, inner: int, stored: torch.Tensor) -> None:
        ctx, o = self.context, self.opts
        if inner + 1 < ctx.settings.inner_loops and o["net_data"] != "none":
            g = ctx.rng(_Streams.TRAIN, outer, inner)
            if o["net_data"] == "real":
                self._train(ctx.images, ctx.labels, int(o["net_images"]), g)
            else:
                self._train(*self._synthetic_set(stored), int(o["net_images"]), g)
            self._set_norm_statistics(outer, inner + 1)
        self.position = (outer, inner + 1)

    def _synthetic_set(self, stored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoded synthetic set (class-major) of the stored images, and its labels."""
        ctx = self.context
        images = decode(stored.detach(), ctx.factor, ctx.mean, ctx.std)
        labels = torch.arange(ctx.num_classes).repeat_interleave(ctx.ipc * ctx.factor**2)
        return images, labels

    def _train(self, images: torch.Tensor, labels: torch.Tensor, count: int, g: torch.Generator) -> None:
        """SGD steps on batches of shuffled `images` (N, C, H, W) until `count` images are seen."""
        assert self.net is not None and self.hashing is not None and self.optimizer is not None
        ctx = self.context
        n = images.shape[0]
        batch = min(int(self.opts["net_batch"]), n)
        seen = 0
        self.net.train()
        self.hashing.train()
        while seen < count:
            for idx in shuffled_batches(n, batch, g):
                x = images[idx.to(images.device)].to(ctx.device)
                y = labels[idx.to(labels.device)].to(ctx.device)
                self._train_step(x, y, g)
                seen += idx.numel()
                if seen >= count:
                    break
        self.net.eval()
        self.hashing.eval()

    def _train_step(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> None:
        assert self.forward is not None and self.hashing is not None and self.optimizer is not None
        o, hashing = self.opts, self.hashing
        with torch.no_grad():
            views = [self.weak(x, g)] if hashing.num_views > 1 else []
            views.append(self.train_aug(x, g))
        y_b, lam = y, 1.0
        if float(o["cutmix_prob"]) > 0:  # one box for every view: mix them stacked along channels
            beta, prob = float(o["cutmix_beta"]), float(o["cutmix_prob"])
            mixed, y, y_b, lam = cutmix(torch.cat(views, dim=1), y, g, beta, prob)
            views = list(mixed.split(x.shape[1], dim=1))
        try:  # IDC's update mixes the two weighted totals: criterion(a) * lam + criterion(b) * (1 - lam)
            if self.parallel is None:
                net, opt = self.forward, self.optimizer
                train_step(net, hashing, views, y, opt, mixed_labels=y_b, lam=lam, mix_terms=False)
            else:  # the views and CutMix above are the whole batch's: this process trains on its rows
                rows, count = self.parallel.rows(x.shape[0])
                self.parallel.step(
                    [v[rows] for v in views],
                    y[rows],
                    self.optimizer,
                    count=count,
                    size=x.shape[0],
                    mixed_labels=y_b[rows],
                    lam=lam,
                    mix_terms=False,
                )
        except NonFiniteLoss as exc:
            error = HashCondenseError(
                f"{self.name}: training the matching network diverged (loss {exc.value}); "
                f"lower net_lr (now {o['net_lr']})"
            )
            # several processes: every one saw the same global loss
            raise (error if self.parallel is None else distributed.replicated(error)) from None

    def finish(self) -> None:
        if self.parallel is not None:
            self.parallel.close()
            self.parallel = None

    # ---- checkpoints ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        outer, inner = self.position
        if self.net is None or inner == 0 or inner >= self.context.settings.inner_loops:
            return {}  # at an outer-loop boundary: the next loop starts from a fresh network
        assert self.hashing is not None and self.optimizer is not None
        state: dict[str, Any] = {"gradient_position": [outer, inner]}
        state.update(network_state(self.net, self.hashing, method_prefix="hashing."))
        params = self.optimizer.param_groups[0]["params"]
        for i, p in enumerate(params):
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                state[f"opt.{i}"] = buf
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        position = state.get("gradient_position")
        if not position or self.net is None:
            return
        if int(position[0]) != self.outer:
            self.context.log.warning(
                "checkpointed matching network is from outer loop %s, not %d; starting a fresh one",
                position[0],
                self.outer,
            )
            return
        assert self.hashing is not None and self.optimizer is not None
        device = self.context.device
        load_network_state(self.net, self.hashing, state, method_prefix="hashing.", device=device)
        params = self.optimizer.param_groups[0]["params"]
        for key, buf in strip_prefix(state, "opt.").items():
            self.optimizer.state[params[int(key)]]["momentum_buffer"] = buf.to(device).clone()
        self.position = (int(position[0]), int(position[1]))

    def describe(self) -> dict[str, Any]:
        return {
            "loss_groups": self.groups,
            "matched_tensors": [len(p) for p in self.matched],
            "metric": self.opts["metric"],
            "net_data": self.opts["net_data"],
        }
