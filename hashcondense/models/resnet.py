"""ResNet-10/18/50 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016).

Origin: torchvision `models/resnet.py` (ResNet v1.5: the stride sits on the 3x3 conv of a bottleneck),
with the stems of IDC's `models/resnet.py` (snu-mllab/Efficient-Dataset-Condensation): <= 64 px 'small'
(3x3 conv stride 1, norm, ReLU, no pooling: the CIFAR stem), 65-128 px 'mid' (the same, then max-pool
3/2), > 128 px 'large' (7x7 conv stride 2, norm, ReLU, max-pool 3/2). Batch norm by default.
The feature is the global average of the last stage: 512 (basic blocks) or 2,048 (bottlenecks).

IDC's CIFAR-specific ResNet-10 (widths 32/64/128/256, feature 256) is `create_model('resnet10', width=32)`.
"""

from __future__ import annotations

import torch
from torch import nn

from hashcondense.models.common import FourStageBackbone, init_weights
from hashcondense.models.convnet import check_norm, norm2d
from hashcondense.models.registry import register_model
from hashcondense.models.resnet_ap import stem_for_size

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet10", "resnet18", "resnet50"]


def conv(in_ch: int, out_ch: int, kernel_size: int, stride: int, norm: str) -> nn.Conv2d:
    """'Same'-padded convolution, with a bias only when no normalisation follows."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2, bias=norm == "none")


def shortcut(in_ch: int, out_ch: int, stride: int, norm: str) -> nn.Module | None:
    """1x1 conv (stride) + norm when the shape changes, else None (identity)."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(conv(in_ch, out_ch, 1, stride, norm), norm2d(norm, out_ch))


def _kaiming_fan_out(m: nn.Conv2d) -> None:
    # As torchvision and IDC: kaiming normal (fan_out) convs.
    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class BasicBlock(nn.Module):
    """conv3x3(stride)-norm-ReLU -> conv3x3-norm, plus shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, norm: str = "batch") -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = conv(in_ch, planes, 3, stride, norm)
        self.bn1 = norm2d(norm, planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv(planes, out_ch, 3, 1, norm)
        self.bn2 = norm2d(norm, out_ch)
        self.downsample = shortcut(in_ch, out_ch, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """conv1x1-norm-ReLU -> conv3x3(stride)-norm-ReLU -> conv1x1 (x4)-norm, plus shortcut, then ReLU."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, norm: str = "batch") -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = conv(in_ch, planes, 1, 1, norm)
        self.bn1 = norm2d(norm, planes)
        self.conv2 = conv(planes, planes, 3, stride, norm)
        self.bn2 = norm2d(norm, planes)
        self.conv3 = conv(planes, out_ch, 1, 1, norm)
        self.bn3 = norm2d(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(in_ch, out_ch, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(FourStageBackbone):
    """Stem -> 4 stages (widths w, 2w, 4w, 8w, times the block expansion) -> global average pool."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        in_channels: int = 3,
        image_size: int = 32,
        norm: str = "batch",
        width: int = 64,
        stem: str = "auto",
    ) -> None:
        super().__init__()
        check_norm(norm)
        self.stem_kind = stem_for_size(image_size, stem)
        large = self.stem_kind == "large"
        stem_layers: list[nn.Module] = [
            conv(in_channels, width, 7 if large else 3, 2 if large else 1, norm),
            norm2d(norm, width),
            nn.ReLU(inplace=True),
        ]
        if self.stem_kind != "small":
            stem_layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem_layers)

        stages: list[nn.Module] = []
        in_ch = width
        for i, n_blocks in enumerate(layers):
            planes = width * 2**i
            blocks: list[nn.Module] = []
            for j in range(n_blocks):
                blocks.append(block(in_ch, planes, stride=2 if i > 0 and j == 0 else 1, norm=norm))
                in_ch = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_dim = in_ch
        init_weights(self, _kaiming_fan_out)


@register_model("resnet10")
def resnet10(
    in_channels: int = 3, image_size: int = 32, norm: str = "batch", width: int = 64, stem: str = "auto"
) -> ResNet:
    """ResNet-10: basic blocks [1, 1, 1, 1]; feature_dim 512."""
    return ResNet(BasicBlock, (1, 1, 1, 1), in_channels, image_size, norm, width, stem)


@register_model("resnet18")
def resnet18(
    in_channels: int = 3, image_size: int = 32, norm: str = "batch", width: int = 64, stem: str = "auto"
) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2]; feature_dim 512."""
    return ResNet(BasicBlock, (2, 2, 2, 2), in_channels, image_size, norm, width, stem)


@register_model("resnet50")
def resnet50(
    in_channels: int = 3, image_size: int = 32, norm: str = "batch", width: int = 64, stem: str = "auto"
) -> ResNet:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3]; feature_dim 2,048."""
    return ResNet(Bottleneck, (3, 4, 6, 3), in_channels, image_size, norm, width, stem)
