"""A condensation step against the machine's own throughput: FLOPs, efficiency and where IEM's time goes.

Prints, in one run (one process, `--threads` torch threads):
1. the machine's fp32 throughput: a 4096 x 4096 matrix product and a ConvNet-3 middle convolution
   (128 -> 128 channels, 16 x 16, batch 400), forward only, GFLOP/s (median of 5 after a warm-up);
2. for each method and images per class: the median step time (one inner step over all classes, after a
   warm-up step), the step's FLOPs counted from the network's layer shapes (forward hooks on every
   convolution and linear layer: 2 x multiply-adds; backward passes counted per layer as one pass for the
   input gradient and one for the weight gradient when the weight is trained), the achieved GFLOP/s and
   the efficiency = achieved / the convolution throughput measured in this run. `--modes eager,compiled`
   times each row uncompiled and with CondenseConfig.compile (embedding matching: the embedding;
   gradient matching: the network updates, as the double backward cannot be compiled). For DSA and IDC the
   count covers forward and first backward passes only (not the double backward of gradient matching,
   nor the network update), so their efficiency is a lower bound; their network update (after each
   step) is timed on its own;
3. the split of one IEM step: real batch (sampling, copy), augmentation, multi-formation decode, real
   forward, synthetic forward + backward, image update.

CIFAR-10 (DESIGN protocol), ConvNet-3, DHD, 64 bits, each method's defaults (outer loop 0: IEM uses one
pool member from --pool-dir, trained first if absent and not timed).

    PYTHONPATH=. .venv/bin/python bench/bench_step_efficiency.py --root ../shared/data/cifar10 \
        [--methods iem,dm,idc,dsa] [--ipc 1,10,50] [--steps 3] [--threads 2]
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent


def _median_seconds(fn: Callable[[], object], runs: int = 5) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_throughput() -> dict[str, float]:
    """GFLOP/s of a 4096^2 matrix product and of ConvNet-3's middle convolution, forward."""
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    matmul = 2 * 4096**3 / _median_seconds(lambda: a @ b) / 1e9
    conv = nn.Conv2d(128, 128, 3, padding=1).requires_grad_(False)
    x = torch.randn(400, 128, 16, 16)
    flops = 2 * 400 * 128 * 16 * 16 * 128 * 9
    with torch.inference_mode():
        conv_rate = flops / _median_seconds(lambda: conv(x)) / 1e9
    return {"matmul_gflops": round(matmul, 1), "conv_gflops": round(conv_rate, 1)}


class FlopCounter:
    """Counts multiply-add FLOPs of convolutions and linear layers while attached (see the docstring)."""

    def __init__(self, net: nn.Module) -> None:
        self.flops = 0
        self.handles = [
            m.register_forward_hook(self._hook)
            for m in net.modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))
        ]

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        else:
            per_output = module.in_features
        forward = 2 * output.numel() * per_output
        passes = 1
        if output.requires_grad:  # a backward pass will follow: input gradient, and weight gradient
            passes += int(inputs[0].requires_grad) + int(module.weight.requires_grad)
        self.flops += forward * passes

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _engine(method: str, ipc: int, root: str, pool_dir: str, out: str, dataset, compile: bool = False):
    from hashcondense.condense import CondenseConfig, CondenseEngine

    options = {"pool_dir": pool_dir} if method == "iem" else {}
    config = CondenseConfig(
        dataset="cifar10", root=root, method=method, ipc=ipc, options=options, out=out,
        show_progress=False, export_images=False, outer_loops=1, inner_loops=100, compile=compile,
    )  # fmt: skip
    engine = CondenseEngine(config, dataset=dataset)
    plan = engine.setup()
    engine.shard = plan.context.shard
    engine._start_state(plan)
    engine._prepare_method(plan, resumed=False)
    engine.groups = engine._groups(engine.shard.classes)
    engine.loss_groups = engine._groups(list(range(plan.context.num_classes)))
    engine._begin_outer(0)
    return engine


def measure_step(
    method: str, ipc: int, steps: int, root: str, pool_dir: str, dataset, conv_rate: float, mode: str
) -> dict:
    """One (method, ipc) row: median step time after a warm-up step, FLOPs of one step, efficiency.
    `compile`: the engine runs with CondenseConfig.compile; its FLOPs are counted on an uncompiled
    step first (hooks do not fire inside compiled code; the FLOPs are the same), then a compiled
    warm-up step compiles (not timed). A mode with "fused" runs the step inside models.fused_blocks.
    """
    from hashcondense.condense.embedding_matching import _embed
    from hashcondense.models.fused import fused_blocks

    compile = "compiled" in mode
    with tempfile.TemporaryDirectory() as tmp:
        engine = _engine(method, ipc, root, pool_dir, tmp, dataset, compile)
        net = getattr(engine.method, "net", None)
        counter = FlopCounter(net) if net is not None else None
        m = engine.method
        embedding = hasattr(m, "_embed_fn")  # embedding matching: the embedding is compiled
        if compile and embedding:
            m.embed(engine.images[:1].detach())  # builds the compiled function
            compiled_fn, m._embed_fn = m._embed_fn, _embed
        elif compile:  # gradient matching: the network updates are compiled
            compiled_fn, m.forward = m.forward, m.net
        engine._step(0, 0)  # warm-up, and the FLOP count of one step
        flops = counter.flops if counter is not None else 0
        if counter is not None:
            counter.close()
        if compile:
            if embedding:
                m._embed_fn = compiled_fn
            else:
                m.forward = compiled_fn
            engine._step(0, 0)  # compiles: not timed
        update = _time_after_inner(m)
        times = []
        with fused_blocks("fused" in mode):  # after the FLOP count: the fused path bypasses conv hooks
            engine._step(0, 0)  # builds the kernel: not timed
            for inner in range(1, steps + 1):
                start = time.perf_counter()
                engine._step(0, inner)
                times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    update_seconds = statistics.median(update) if update else 0.0
    rate = flops / seconds / 1e9
    return {
        "method": method,
        "ipc": ipc,
        "mode": mode,
        "step_seconds": round(seconds, 3),
        "gflop": round(flops / 1e9, 1),
        "gflops": round(rate, 1),
        "efficiency": round(rate / conv_rate, 3),
        "network_update_seconds": round(update_seconds, 3),
    }


def _time_after_inner(method) -> list[float]:
    """Wrap `method.after_inner` (the gradient-matching network update) to time each call."""
    times: list[float] = []
    inner_call = method.after_inner

    def timed(*args: object) -> None:
        start = time.perf_counter()
        inner_call(*args)
        times.append(time.perf_counter() - start)

    method.after_inner = timed
    return times


def _real_batch(ctx, s, inner: int) -> list[torch.Tensor]:
    from hashcondense.condense.context import Streams

    classes = range(ctx.num_classes)
    return [
        ctx.images[ctx.sampler.sample(c, s.batch_real, ctx.rng(Streams.REAL, 0, inner, c))] for c in classes
    ]


def _decode_all(ctx, s, images: torch.Tensor, ipc: int) -> list[torch.Tensor]:
    from hashcondense.condense.synthetic import decode

    out = [
        decode(images[c * ipc : (c + 1) * ipc], s.factor, ctx.mean, ctx.std) for c in range(ctx.num_classes)
    ]
    return [x[: s.batch_syn_max] if s.batch_syn_max else x for x in out]


def _augment(ctx, real: list[torch.Tensor], syn: list[torch.Tensor], draws: list) -> tuple[list, list]:
    with torch.no_grad():
        real_v = [ctx.augment.apply(x, d) for x, d in zip(real, draws, strict=True)]
    return real_v, [ctx.augment.apply(x, d) for x, d in zip(syn, draws, strict=True)]


def _real_forward(method, real_v: list[torch.Tensor]) -> torch.Tensor:
    from hashcondense.condense.embedding_matching import class_means

    with torch.no_grad():
        return class_means(method.embed(torch.cat(real_v)), [t.shape[0] for t in real_v])


def _synthetic_pass(method, syn_v: list[torch.Tensor], real_mean: torch.Tensor) -> None:
    from hashcondense.condense.embedding_matching import class_means

    syn_mean = class_means(method.embed(torch.cat(syn_v)), [t.shape[0] for t in syn_v])
    (real_mean - syn_mean).square().sum(dim=1).sum().backward()


def iem_split(ipc: int, steps: int, root: str, pool_dir: str, dataset, compile: bool) -> dict[str, float]:
    """Median seconds of each part of an IEM step, timed part by part on the engine's own objects
    (the same operations as `CondenseEngine._step` with `EmbeddingMatching.match_losses`)."""
    from hashcondense.condense.context import Streams

    parts: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[..., object], *args: object) -> object:
        start = time.perf_counter()
        value = fn(*args)
        parts.setdefault(name, []).append(time.perf_counter() - start)
        return value

    with tempfile.TemporaryDirectory() as tmp:
        engine = _engine("iem", ipc, root, pool_dir, tmp, dataset, compile)
        ctx, s, method, images = engine.context, engine.settings, engine.method, engine.images
        for inner in range(steps + 1):
            images.grad = None
            real = timed("real batch (sample, copy)", _real_batch, ctx, s, inner)
            draws = [
                ctx.augment.sample(1, ctx.rng(Streams.AUGMENT, 0, inner, c), shared=True) for c in range(10)
            ]
            syn = timed("multi-formation decode", _decode_all, ctx, s, images, ipc)
            real_v, syn_v = timed("augmentation (real and synthetic)", _augment, ctx, real, syn, draws)
            real_mean = timed("real forward", _real_forward, method, real_v)
            timed("synthetic forward + backward", _synthetic_pass, method, syn_v, real_mean)
            timed("image update", engine.opt.step)
    return {name: round(statistics.median(values[1:]), 3) for name, values in parts.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(HERE.parent.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--methods", default="iem,dm")
    p.add_argument("--ipc", default="1,10,50")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--modes",
        default="eager",
        help="comma-separated: eager, compiled, fused (eager with models.fused_blocks), compiled+fused "
        "(each row of a method and ipc timed one after the other)",
    )
    p.add_argument("--split-ipc", type=int, default=10, help="images per class of the IEM time split")
    p.add_argument("--pool-dir", default=str(HERE / "out" / ".pool_cache"))
    a = p.parse_args()

    from hashcondense.data import load_dataset
    from hashcondense.models.fused import fused_blocks
    from hashcondense.runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(a.threads)
    machine = machine_throughput()
    print(f"machine: matmul {machine['matmul_gflops']} GFLOP/s, conv {machine['conv_gflops']} GFLOP/s "
          f"({a.threads} threads)", flush=True)  # fmt: skip
    dataset = load_dataset("cifar10", root=a.root)
    rows = []
    conv_rate = machine["conv_gflops"]
    modes = a.modes.split(",")
    for ipc in [int(x) for x in a.ipc.split(",")]:
        for method in a.methods.split(","):
            for mode in modes:
                row = measure_step(method, ipc, a.steps, a.root, a.pool_dir, dataset, conv_rate, mode)
                rows.append(row)
                line = f"{method:>4} ipc {ipc:>2} {mode:>14}: step {row['step_seconds']:.3f} s, "
                line += f"{row['gflop']} GFLOP, {row['gflops']} GFLOP/s, "
                line += f"efficiency {100 * row['efficiency']:.0f} %"
                if row["network_update_seconds"]:
                    line += f"; network update {row['network_update_seconds']:.3f} s of the step"
                print(line, flush=True)
    splits = {}
    for mode in modes if a.split_ipc > 0 else []:  # --split-ipc 0: no split
        with fused_blocks("fused" in mode):
            split = iem_split(a.split_ipc, a.steps, a.root, a.pool_dir, dataset, "compiled" in mode)
        splits[mode] = split
        total = sum(split.values())
        print(f"IEM step at {a.split_ipc}/class, {mode}, part by part (median, sum {total:.3f} s):")
        for name, seconds in split.items():
            print(f"  {name:<36} {seconds:.3f} s  {100 * seconds / total:4.1f} %")
    print(json.dumps({"machine": machine, "rows": rows, "iem_split": splits, "threads": a.threads}))


if __name__ == "__main__":
    main()
