"""The fused instance-norm -> ReLU -> 2x2 average-pool CPU kernel (models.fused) that `--compile` uses:
PyTorch's numbers to rounding, forward and backward, the same for any thread count, never differentiated
twice, and ConvNet's output unchanged inside `fused_blocks()`."""

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hashcondense import runtime
from hashcondense.errors import HashCondenseError
from hashcondense.models import create_model
from hashcondense.models.fused import accelerated, fused_blocks, norm_relu_pool


def _reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.relu(F.group_norm(x, x.shape[1], weight, bias, eps=1e-5)), 2)


def _inputs(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 2 + 0.5
    weight = torch.rand(shape[1], generator=g) + 0.5
    bias = torch.rand(shape[1], generator=g) - 0.5
    grad = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2, generator=g)
    return x, weight, bias, grad


def _forward_backward(fn, x, weight, bias, grad) -> list[torch.Tensor]:
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, weight, bias)]
    out = fn(*leaves)
    out.backward(grad)
    return [out.detach(), *(t.grad for t in leaves)]


@pytest.mark.parametrize("shape", [(6, 5, 8, 8), (3, 4, 7, 9), (2, 16, 32, 32)])
def test_kernel_matches_pytorch_forward_and_backward(shape):
    x, weight, bias, grad = _inputs(shape)
    ours = _forward_backward(norm_relu_pool, x, weight, bias, grad)
    theirs = _forward_backward(_reference, x, weight, bias, grad)
    for name, a, b in zip(("output", "grad x", "grad weight", "grad bias"), ours, theirs, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (name, (a - b).abs().max().item())


def test_kernel_is_the_same_for_any_thread_count():
    x, weight, bias, grad = _inputs((8, 12, 16, 16), seed=1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _forward_backward(norm_relu_pool, x, weight, bias, grad)
        torch.set_num_threads(2)
        two = _forward_backward(norm_relu_pool, x, weight, bias, grad)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))


def test_kernel_refuses_a_double_backward():
    x, weight, bias, _ = _inputs((2, 3, 4, 4))
    x.requires_grad_(True)
    (first,) = torch.autograd.grad(norm_relu_pool(x, weight, bias).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):  # refused: the kernel's backward has no derivative
        first.sum().backward()


def test_convnet_inside_fused_blocks_agrees_and_accelerated_keeps_parameters():
    torch.manual_seed(0)
    net = create_model("convnet3", in_channels=3, image_size=32, width=16)
    images = torch.randn(4, 3, 32, 32, requires_grad=True)
    plain = net(images)
    (plain_grad,) = torch.autograd.grad(plain.square().sum(), images)
    with fused_blocks():
        fused = net(images)
        (fused_grad,) = torch.autograd.grad(fused.square().sum(), images)
    assert torch.allclose(fused, plain, rtol=1e-4, atol=1e-5)
    assert torch.allclose(fused_grad, plain_grad, rtol=1e-3, atol=1e-5)
    # training: every parameter's gradient, the image convolution's (fused.image_conv) included
    grads = []
    for context in (contextlib.nullcontext(), fused_blocks()):
        net.zero_grad()
        with context:
            net(images.detach()).square().sum().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for (name, _), a, b in zip(net.named_parameters(), *grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), name
    # a batch-norm ConvNet is not the kernel's case: the plain path, bit for bit
    other = create_model("convnet3", in_channels=3, image_size=32, width=16, norm="batch").eval()
    with fused_blocks():
        assert torch.equal(other(images), other.eval()(images))
    fast = accelerated(net, True)
    assert isinstance(fast, nn.Module) and {id(p) for p in fast.parameters()} == {
        id(p) for p in net.parameters()
    }
    assert accelerated(net, False) is net


def test_compile_without_ninja_is_a_one_line_error(monkeypatch):
    real = runtime.shutil.which
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None if name == "ninja" else real(name))
    with pytest.raises(HashCondenseError, match=r"--compile needs ninja on a CPU \(pip install ninja\)"):
        runtime.check_compile(torch.device("cpu"))


def test_fused_blocks_builds_nothing_where_no_kernel_runs(monkeypatch):
    """A CUDA run (never fused) enters fused_blocks through --compile: it must not need the CPU build."""
    from hashcondense.models import fused

    def no_build():
        raise AssertionError("the CPU extension was built")

    monkeypatch.setattr(fused, "_extension", no_build)
    other = create_model("convnet3", in_channels=3, image_size=32, width=8, norm="batch").eval()
    with fused_blocks():
        other(torch.randn(2, 3, 32, 32))


def test_ninja_of_the_python_package_is_put_on_the_path(monkeypatch, tmp_path):
    """A venv that is not activated has ninja only inside the `ninja` package (a dev dependency)."""
    import ninja  # the dev extra installs it

    monkeypatch.setenv("PATH", str(tmp_path))  # no ninja binary anywhere on it
    assert runtime.ninja_on_path()
    assert runtime.os.environ["PATH"].split(runtime.os.pathsep)[0] == ninja.BIN_DIR
