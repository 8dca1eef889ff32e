"""ResNetAP: a ResNet whose down-sampling is average pooling instead of strided convolution.

Origin: IDC (Kim et al., "Dataset Condensation via Efficient Synthetic-Data Parameterization", ICML 2022;
snu-mllab/Efficient-Dataset-Condensation, `models/resnet_ap.py`), itself a modified torchvision ResNet.
Every convolution has stride 1. In a block that halves the resolution, a 2x2 average pool follows
conv1-norm-ReLU, and the shortcut is 1x1 conv (stride 1) -> avg-pool 2 -> norm. Instance norm
(GroupNorm(C, C), affine) by default. Convolutions carry a bias only when there is no normalisation.

Stem by image size, as IDC decides it: <= 64 px 'small' (3x3 conv, norm, ReLU), 65-128 px 'mid' (the
same, then avg-pool 2), > 128 px 'large' (7x7 conv stride 1, norm, ReLU, avg-pool 4).
The feature is the global average of the last stage: 8 x base width (512).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hashcondense.errors import HashCondenseError
from hashcondense.models.common import FourStageBackbone, init_weights
from hashcondense.models.convnet import check_norm, norm2d
from hashcondense.models.registry import register_model

__all__ = ["STEMS", "BasicBlockAP", "ResNetAP", "resnetap10", "stem_for_size"]

STEMS = ("small", "mid", "large")


def stem_for_size(image_size: int, stem: str = "auto") -> str:
    """IDC's stem choice: 'small' up to 64 px, 'mid' up to 128 px, 'large' above; or `stem` if given."""
    if stem == "auto":
        return "small" if image_size <= 64 else "mid" if image_size <= 128 else "large"
    if stem not in STEMS:
        valid = ", ".join(("auto", *STEMS))
        raise HashCondenseError(f"unknown value '{stem}' for argument stem; valid values are: {valid}")
    return stem


def conv_s1(in_ch: int, out_ch: int, kernel_size: int, norm: str) -> nn.Conv2d:
    """Stride-1 'same' convolution, with a bias only when no normalisation follows."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=1, padding=kernel_size // 2, bias=norm == "none")


def _normal_fan_out(m: nn.Conv2d) -> None:
    # As IDC (and torchvision): conv ~ N(0, 2 / (k*k*out)).
    n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
    nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))


class BasicBlockAP(nn.Module):
    """conv3x3-norm-ReLU [-> avg-pool] -> conv3x3-norm, plus shortcut, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, norm: str = "instance") -> None:
        super().__init__()
        self.conv1 = conv_s1(in_ch, out_ch, 3, norm)
        self.bn1 = norm2d(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AvgPool2d(stride, stride) if stride != 1 else nn.Identity()
        self.conv2 = conv_s1(out_ch, out_ch, 3, norm)
        self.bn2 = norm2d(norm, out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            layers: list[nn.Module] = [conv_s1(in_ch, out_ch, 1, norm)]
            if stride != 1:
                layers.append(nn.AvgPool2d(stride, stride))
            layers.append(norm2d(norm, out_ch))
            self.downsample = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.pool(self.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class ResNetAP(FourStageBackbone):
    """Stem -> 4 stages of BasicBlockAP (widths w, 2w, 4w, 8w) -> global average pool: (B, 8w)."""

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (1, 1, 1, 1),
        in_channels: int = 3,
        image_size: int = 32,
        norm: str = "instance",
        width: int = 64,
        stem: str = "auto",
    ) -> None:
        super().__init__()
        check_norm(norm)
        self.stem_kind = stem_for_size(image_size, stem)
        reduction = {"small": 8, "mid": 16, "large": 32}[self.stem_kind]
        if image_size < reduction:
            raise HashCondenseError(
                f"ResNetAP with the '{self.stem_kind}' stem needs image_size >= {reduction}, got {image_size}"
            )
        kernel = 7 if self.stem_kind == "large" else 3
        stem_layers: list[nn.Module] = [
            conv_s1(in_channels, width, kernel, norm),
            norm2d(norm, width),
            nn.ReLU(inplace=True),
        ]
        if self.stem_kind != "small":
            pool = 4 if self.stem_kind == "large" else 2
            stem_layers.append(nn.AvgPool2d(pool, pool))
        self.stem = nn.Sequential(*stem_layers)

        stages: list[nn.Module] = []
        in_ch = width
        for i, n_blocks in enumerate(layers):
            out_ch = width * 2**i
            blocks = [BasicBlockAP(in_ch, out_ch, stride=1 if i == 0 else 2, norm=norm)]
            blocks += [BasicBlockAP(out_ch, out_ch, norm=norm) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_dim = in_ch
        init_weights(self, _normal_fan_out)


@register_model("resnetap10")
def resnetap10(
    in_channels: int = 3, image_size: int = 32, norm: str = "instance", width: int = 64, stem: str = "auto"
) -> ResNetAP:
    """ResNetAP-10 (IDC): one block per stage, instance norm; feature_dim 512."""
    return ResNetAP((1, 1, 1, 1), in_channels, image_size, norm, width, stem)
