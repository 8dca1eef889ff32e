"""DenseNet-121 (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017).

Origin: torchvision `models/densenet.py` (DenseNet-BC: pre-activation bottleneck layers norm-ReLU-conv1x1
(bn_size x growth) -> norm-ReLU-conv3x3 (growth), concatenated; transitions norm-ReLU-conv1x1 (compression
0.5) -> avg-pool 2), with the CIFAR stem of kuangliu/pytorch-cifar as used by IDC
(`models/densenet_cifar.py`): a bare 3x3 conv to 2 x growth channels and no pooling, for <= 64 px.
Larger images get the ImageNet stem (7x7 conv stride 2, norm, ReLU, max-pool 3/2). After the last block:
norm, ReLU, global average pool; DenseNet-121 ends with 1,024 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hashcondense.errors import HashCondenseError
from hashcondense.models.common import PooledBackbone, init_weights
from hashcondense.models.convnet import check_norm, norm2d
from hashcondense.models.registry import register_model

__all__ = ["DenseLayer", "DenseNet", "Transition", "densenet121"]


class DenseLayer(nn.Module):
    """x -> cat([x, conv3x3(relu(norm(conv1x1(relu(norm(x))))))]): adds `growth_rate` channels."""

    def __init__(self, in_ch: int, growth_rate: int, bn_size: int, norm: str) -> None:
        super().__init__()
        mid = bn_size * growth_rate
        bias = norm == "none"
        self.norm1 = norm2d(norm, in_ch)
        self.conv1 = nn.Conv2d(in_ch, mid, kernel_size=1, bias=bias)
        self.norm2 = norm2d(norm, mid)
        self.conv2 = nn.Conv2d(mid, growth_rate, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x), inplace=True))
        out = self.conv2(F.relu(self.norm2(out), inplace=True))
        return torch.cat([x, out], 1)


class Transition(nn.Sequential):
    """norm -> ReLU -> conv1x1 -> avg-pool 2."""

    def __init__(self, in_ch: int, out_ch: int, norm: str) -> None:
        super().__init__(
            norm2d(norm, in_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=norm == "none"),
            nn.AvgPool2d(kernel_size=2, stride=2),
        )


class DenseNet(PooledBackbone):
    """Stem -> dense blocks joined by transitions -> norm, ReLU, global average pool: (B, feature_dim)."""

    def __init__(
        self,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        growth_rate: int = 32,
        bn_size: int = 4,
        compression: float = 0.5,
        in_channels: int = 3,
        image_size: int = 32,
        norm: str = "batch",
        stem: str = "auto",
    ) -> None:
        super().__init__()
        check_norm(norm)
        if stem == "auto":
            stem = "small" if image_size <= 64 else "large"
        if stem not in ("small", "large"):
            raise HashCondenseError(
                f"unknown value '{stem}' for argument stem; valid values are: auto, small, large"
            )
        self.stem_kind = stem
        channels = 2 * growth_rate
        if stem == "small":
            self.stem: nn.Module = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, channels, 7, stride=2, padding=3, bias=False),
                norm2d(norm, channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        stages: list[nn.Module] = []
        for i, n_layers in enumerate(block_config):
            for _ in range(n_layers):
                stages.append(DenseLayer(channels, growth_rate, bn_size, norm))
                channels += growth_rate
            if i < len(block_config) - 1:
                out_ch = int(channels * compression)
                stages.append(Transition(channels, out_ch, norm))
                channels = out_ch
        self.blocks = nn.Sequential(*stages)
        self.final_norm = norm2d(norm, channels)
        self.feature_dim = channels
        # As torchvision: kaiming normal (fan_in) convs.
        init_weights(self, lambda m: nn.init.kaiming_normal_(m.weight))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> last feature map after the final norm and ReLU (B, feature_dim, h, w)."""
        return F.relu(self.final_norm(self.blocks(self.stem(x))), inplace=True)


@register_model("densenet121")
def densenet121(
    in_channels: int = 3, image_size: int = 32, norm: str = "batch", growth_rate: int = 32, stem: str = "auto"
) -> DenseNet:
    """DenseNet-121: growth 32, blocks [6, 12, 24, 16], bn_size 4, compression 0.5; feature_dim 1,024."""
    return DenseNet((6, 12, 24, 16), growth_rate, 4, 0.5, in_channels, image_size, norm, stem)
