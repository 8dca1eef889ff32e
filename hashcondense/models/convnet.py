"""ConvNet-D, the small network of the dataset-condensation literature.

Origin: Gidaris & Komodakis' few-shot ConvNet as used by DC/DSA/DM and IDC
(snu-mllab/Efficient-Dataset-Condensation, `models/convnet.py`): D x [conv3x3 (bias), norm, ReLU,
avg-pool 2x2], then flatten. Width 128 and instance norm (GroupNorm with one group per channel) by
default. ConvNet-3 is the 32 px workhorse, ConvNet-4 the 64 px one.

Differences from IDC: no classifier (the hash head plays that part), and no special padding of 3 for
one-channel inputs (IDC's trick to turn 28 px MNIST into 32 px); feature maps are floor-halved per stage.

This file also holds `norm2d`, the normalisation factory shared by every family.
"""

from __future__ import annotations

import torch
from torch import nn

from hashcondense.errors import HashCondenseError
from hashcondense.models.base import Backbone
from hashcondense.models.fused import fused_enabled, image_conv, norm_relu_pool
from hashcondense.models.registry import register_model

__all__ = ["NORMS", "ConvNet", "convnet3", "convnet4", "norm2d"]

NORMS = ("batch", "instance", "none")


def check_norm(norm: str) -> str:
    """Return `norm` if it is a known normalisation, else raise a `HashCondenseError`."""
    if norm not in NORMS:
        valid = ", ".join(NORMS)
        raise HashCondenseError(f"unknown value '{norm}' for argument norm; valid values are: {valid}")
    return norm


def norm2d(norm: str, channels: int) -> nn.Module:
    """2-d normalisation layer: 'batch' (BatchNorm2d), 'instance' (GroupNorm(C, C), affine), 'none'."""
    check_norm(norm)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.GroupNorm(channels, channels, affine=True)
    return nn.Identity()


class ConvNet(Backbone):
    """D x [conv3x3 -> norm -> ReLU -> avg-pool 2], flattened: (B, C, S, S) -> (B, width * (S >> D)^2)."""

    def __init__(
        self,
        depth: int = 3,
        in_channels: int = 3,
        image_size: int = 32,
        norm: str = "instance",
        width: int = 128,
    ) -> None:
        super().__init__()
        check_norm(norm)
        spatial = image_size >> depth
        if depth < 1 or spatial < 1:
            raise HashCondenseError(
                f"ConvNet of depth {depth} needs image_size >= {2**depth}, got {image_size}; "
                "use a larger image or a shallower network"
            )
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(depth):
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1),
                norm2d(norm, width),
                nn.ReLU(inplace=True),
                nn.AvgPool2d(kernel_size=2, stride=2),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.depth = depth
        self.width = width
        self.feature_dim = width * spatial * spatial

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, S, S) -> last feature map (B, width, S >> D, S >> D)."""
        if fused_enabled() and self._fusable(x):
            return _fused_features(self.features, x)
        return self.features(x)

    def _fusable(self, x: torch.Tensor) -> bool:
        """The fused kernel's case: instance norm, float32 on a CPU (models.fused)."""
        return (
            x.device.type == "cpu" and x.dtype == torch.float32 and isinstance(self.features[1], nn.GroupNorm)
        )

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map -> flat feature (B, feature_dim)."""
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@torch.compiler.disable  # eager with the fused kernel beats Inductor's code around it (BENCHMARKS.md)
def _fused_features(features: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """`features` (conv, norm, ReLU, pool per stage) with each stage's last three as one kernel."""
    for conv, norm in zip(features[0::4], features[1::4], strict=True):
        narrow = conv.in_channels <= 4 and conv.bias is not None  # the images: see fused.image_conv
        x = image_conv(x, conv.weight, conv.bias) if narrow else conv(x)
        x = norm_relu_pool(x, norm.weight, norm.bias)
    return x


@register_model("convnet3")
def convnet3(in_channels: int = 3, image_size: int = 32, norm: str = "instance", width: int = 128) -> ConvNet:
    """ConvNet-3 (IDC/DC): feature_dim 2,048 at 32 px."""
    return ConvNet(3, in_channels=in_channels, image_size=image_size, norm=norm, width=width)


@register_model("convnet4")
def convnet4(in_channels: int = 3, image_size: int = 32, norm: str = "instance", width: int = 128) -> ConvNet:
    """ConvNet-4 (for 64 px): feature_dim 2,048 at 64 px."""
    return ConvNet(4, in_channels=in_channels, image_size=image_size, norm=norm, width=width)
