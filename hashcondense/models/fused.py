"""ConvNet's instance norm -> ReLU -> 2x2 average pool as one hand-written CPU kernel
(`kernels/norm_relu_pool.cpp`), for first-order work: IEM's and DM's embeddings, training, encoding.

Why: on a CPU these three cheap operations took a quarter or more of a ConvNet-3 step, eager or
compiled (each is a separate pass with fresh outputs, and GroupNorm's backward is slow): 480 ms
against a convolution's 650 ms for 400 maps of 128 x 32 x 32, forward and backward; the kernel takes
7.5 ms forward and 14 ms backward there (BENCHMARKS.md, issue 26). The math is PyTorch's
GroupNorm(C, C) (eps 1e-5, biased variance), ReLU and AvgPool2d(2); floats are summed in another
order, so results agree with PyTorch to rounding, not bit for bit, and are the same for any thread
count.

It is used only inside `fused_blocks()` and only where it applies (CPU, float32, instance norm);
`accelerated(net, enabled)` is what the library calls with `--compile`: the network (or a function of
it) compiled with torch.compile and called inside `fused_blocks()`. The kernel's backward is not
differentiable again: gradient matching (DSA, IDC) accelerates only its network updates, never the
matching, which differentiates the network's gradients; a double backward through the kernel is
refused by autograd rather than computed wrong. The extension is compiled on first use (about 25 s,
cached by PyTorch under ~/.cache/torch_extensions) and needs a C++ compiler and ninja
(`runtime.check_compile` says so).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import platform
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from hashcondense.runtime import check_compile, compiled

__all__ = ["accelerated", "fused_blocks", "fused_enabled", "image_conv", "norm_relu_pool"]

T = TypeVar("T")
_STATE = threading.local()
_EXTENSION: Any = None
EPS = 1e-5  # GroupNorm's default, which ConvNet's instance norm uses


def _extension() -> Any:
    global _EXTENSION
    if _EXTENSION is None:
        check_compile(torch.device("cpu"))  # a compiler and ninja, else one line with the fix
        from torch.utils.cpp_extension import load

        source = Path(__file__).parent / "kernels" / "norm_relu_pool.cpp"
        flags = ["-O3", "-fopenmp", "-march=native"]  # native: 1.3-2x faster than the x86-64 baseline
        name = f"hashcondense_norm_relu_pool_{_cpu_tag()}"
        _EXTENSION = load(name, [str(source)], extra_cflags=flags, verbose=False)
    return _EXTENSION


def _cpu_tag() -> str:
    """A build for this CPU's instruction set (-march=native) is named after it, so that a home folder
    shared by machines of different CPUs (a cluster) never loads another machine's build."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = [platform.processor(), platform.machine()]
    facts = [line for line in lines if line.startswith(("model name", "flags"))][:2]
    return hashlib.sha256("\n".join(facts).encode()).hexdigest()[:12]


# registered as PyTorch operators, so that torch.compile keeps them in its graph (opaque calls) instead
# of breaking the graph around an unknown C++ function
@torch.library.custom_op("hashcondense::norm_relu_pool", mutates_args=())
def _forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out, stats = _extension().forward(x, weight, bias, EPS)
    return out, stats


@_forward.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, c, h, w = x.shape
    return x.new_empty(n, c, h // 2, w // 2), x.new_empty(2, n * c)


@torch.library.custom_op("hashcondense::norm_relu_pool_backward", mutates_args=())
def _backward(
    grad: torch.Tensor, x: torch.Tensor, stats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    grad_x, grad_weight, grad_bias = _extension().backward(
        grad, x, stats, weight, bias
    )  # makes it contiguous
    return grad_x, grad_weight, grad_bias


@_backward.register_fake
def _(
    grad: torch.Tensor, x: torch.Tensor, stats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.empty_like(x), torch.empty_like(weight), torch.empty_like(bias)


def _save(ctx: Any, inputs: tuple[torch.Tensor, ...], output: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, weight, bias = inputs
    ctx.save_for_backward(x, output[1], weight, bias)


def _differentiate(
    ctx: Any, grad: torch.Tensor, _grad_stats: torch.Tensor | None
) -> tuple[torch.Tensor, ...]:
    # the backward operator has no derivative of its own: a double backward is refused by autograd
    x, stats, weight, bias = ctx.saved_tensors
    return _backward(grad, x, stats, weight, bias)


_forward.register_autograd(_differentiate, setup_context=_save)


def norm_relu_pool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """avg_pool2d(relu(group_norm(x, C groups, weight, bias)), 2) in one kernel; x: (N, C, H, W)."""
    return _forward(x.contiguous(), weight.contiguous(), bias.contiguous())[0]


class _ImageConv(torch.autograd.Function):
    """ConvNet's first convolution (3 x 3, padding 1) of images with few channels, whose input gradient
    is one matrix product and a fold: oneDNN's backward-data runs at about 30 GFLOP/s for 3 input
    channels, this at about twice that (BENCHMARKS.md, issue 26). First order, like the kernel."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, bias, padding=1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            columns = torch.matmul(weight.flatten(1).t(), grad.reshape(grad.shape[0], grad.shape[1], -1))
            grad_x = F.fold(columns, tuple(x.shape[-2:]), 3, padding=1)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.nn.grad.conv2d_weight(x, weight.shape, grad, padding=1)
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias


def image_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """conv2d(x, weight, bias, padding=1) for a 3 x 3 kernel, with the faster input gradient above."""
    return _ImageConv.apply(x, weight, bias)


def fused_enabled() -> bool:
    """Inside `fused_blocks()` on this thread."""
    return getattr(_STATE, "enabled", False)


@contextlib.contextmanager
def fused_blocks(enabled: bool = True) -> Iterator[None]:
    """ConvNets called inside the block use the fused kernel where it applies (see the module)."""
    # the extension is built on the kernel's first call, so a CUDA run (never fused) does not build it
    previous = fused_enabled()
    _STATE.enabled = enabled
    try:
        yield
    finally:
        _STATE.enabled = previous


class _Fused(nn.Module):
    """A network whose calls run inside `fused_blocks()` (parameters shared, not copied)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with fused_blocks():
            return self.inner(*args, **kwargs)


def accelerated(module: T, enabled: bool) -> T:
    """What `--compile` runs: `module` (a network, or a function of one) compiled with torch.compile
    (`runtime.compiled`) and called inside `fused_blocks()` on a CPU; `module` itself when not
    `enabled`. Only for first-order use (see the module docstring)."""
    if not enabled:
        return module
    fast = compiled(module, True)
    if isinstance(module, nn.Module):
        return _Fused(fast)  # type: ignore[return-value]  # same call signature

    @functools.wraps(module)  # type: ignore[arg-type]
    def in_fused_blocks(*args: Any, **kwargs: Any) -> Any:
        with fused_blocks():
            return fast(*args, **kwargs)

    return in_fused_blocks  # type: ignore[return-value]
