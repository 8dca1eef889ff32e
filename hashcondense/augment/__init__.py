"""DSA (differentiable Siamese augmentation), CutMix and DHD's jitter views, on an explicit generator."""

from hashcondense.augment.cutmix import cutmix, cutmix_loss
from hashcondense.augment.jitter import JitterAugment
from hashcondense.augment.siamese import (
    AUG_MODES,
    DSA,
    DSA_STRATEGY,
    GROUPS,
    DSADraw,
    DSAParams,
    create_augment,
    strong_augment,
    weak_augment,
)

__all__ = [
    "AUG_MODES",
    "DSA",
    "DSADraw",
    "DSAParams",
    "DSA_STRATEGY",
    "GROUPS",
    "JitterAugment",
    "create_augment",
    "cutmix",
    "cutmix_loss",
    "strong_augment",
    "weak_augment",
]
