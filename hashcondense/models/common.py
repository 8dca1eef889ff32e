"""Mechanics the pooled families share: the global-average head, the four-stage body, the weight init.

`PooledBackbone` ends in a global average pool (ResNet, ResNetAP, DenseNet); `FourStageBackbone` adds the
stem -> layer1 .. layer4 body of the two ResNets; `init_weights` is the torchvision-style init loop, with
each family passing its own convolution init.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hashcondense.models.base import Backbone

__all__ = ["FourStageBackbone", "PooledBackbone", "init_weights"]


def init_weights(model: nn.Module, conv_init: Callable[[nn.Conv2d], object]) -> None:
    """`conv_init` on every Conv2d and norms at identity (weight 1, bias 0), in `model.modules()` order.

    The order fixes which random numbers each convolution draws, so a seeded build is reproducible.
    Convolution biases keep PyTorch's default init.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            conv_init(m)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class PooledBackbone(Backbone):
    """A backbone whose feature is the global average of its last feature map (`forward_features`)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map -> global average -> (B, feature_dim)."""
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class FourStageBackbone(PooledBackbone):
    """stem -> layer1 -> layer2 -> layer3 -> layer4 -> global average pool; subclasses build the five."""

    stem: nn.Module
    layer1: nn.Module
    layer2: nn.Module
    layer3: nn.Module
    layer4: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> last feature map (B, feature_dim, h, w)."""
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)
