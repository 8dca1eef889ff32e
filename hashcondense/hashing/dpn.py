"""DPN: Deep Polarized Network.

Paper: L. Fan, K. W. Ng, C. Ju, T. Zhang, C. S. Chan, "Deep Polarized Network for Supervised Learning
of Accurate Binary Hashing Codes", IJCAI 2020. Re-implementation: kamwoh/DPN
(`scripts/train_hashing.py`); this is our own implementation of DESIGN Section 4.

Head: features (B, d) -> Linear(d, b) (with bias) = v, unbounded; retrieval codes are sign(v).
Each class c has a fixed target code t_c in {-1, +1}^b, drawn once from a generator seeded by
`codebook_seed` (independent of torch's global RNG); every target code is balanced (b // 2 bits are
+1) and the codes are distinct. They are a persistent buffer `codebook` (C, b), so a saved method keeps
its targets.

- "polarization"  L = (1/B) sum_n sum_k max(0, m - v_nk t_{y_n, k}),  m = 1.
  With multi-hot labels the inner sum also runs over every positive class of the sample (as in
  kamwoh/DPN's multi-label branch).

Example:
    >>> method = DPN(num_classes=10, hash_bits=64)
    >>> v = method.make_head(2048)(features)          # (B, 64)
    >>> loss = method.loss([v], labels)                # labels: (B,) int64
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hashcondense.errors import HashCondenseError
from hashcondense.hashing.base import HashingMethod, check_feature_dim, check_seed, check_setting
from hashcondense.hashing.registry import register_hashing

__all__ = ["DPN", "balanced_codes"]


@register_hashing("dpn")
class DPN(HashingMethod):
    """Deep Polarized Network: a hinge ("polarization") loss towards fixed balanced class codes.

    Args:
        num_classes: number of classes C.
        hash_bits: code length b; there must be at least C distinct balanced codes of b bits.
        margin: m of the hinge (paper 1.0), > 0.
        codebook_seed: seed of the target codes (default 0), an int >= 0.

    Shapes:
        codes: [v] with v (B, b), the raw hash-layer output.
        labels: (B,) int64 class indices, or (B, C) float multi-hot.
        loss_terms: {"polarization"} scalar.
    """

    name = "dpn"
    num_views = 1

    def __init__(self, num_classes: int, hash_bits: int, margin: float = 1.0, codebook_seed: int = 0) -> None:
        super().__init__(num_classes, hash_bits)
        self.margin = check_setting("DPN", "margin", margin, "the paper uses 1.0")
        self.codebook_seed = check_seed("DPN", codebook_seed)
        self.loss_weights = {"polarization": 1.0}
        gen = torch.Generator().manual_seed(self.codebook_seed)
        self.register_buffer("codebook", balanced_codes(self.num_classes, self.hash_bits, gen, "DPN"))

    def make_head(self, feature_dim: int) -> nn.Module:
        """Linear(d, b) with bias: features (B, d) -> v (B, b)."""
        return nn.Linear(check_feature_dim(feature_dim), self.hash_bits)

    def loss_terms(self, codes: list[torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        (v,) = self._views(codes, max_views=1)
        targets = self._targets(labels, v)  # (B, C), validates labels
        book = self.codebook.to(device=v.device, dtype=v.dtype)  # (C, b)
        labels = torch.as_tensor(labels, device=v.device)
        if labels.dim() == 1:
            hinge = F.relu(self.margin - v * book[labels.long()]).sum(dim=1)  # (B,)
        else:
            per_class = F.relu(self.margin - v.unsqueeze(1) * book.unsqueeze(0)).sum(dim=2)  # (B, C)
            hinge = (per_class * targets).sum(dim=1)
        return {"polarization": hinge.mean()}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin}, codebook_seed={self.codebook_seed}"


def balanced_codes(
    num_codes: int, bits: int, generator: torch.Generator, method: str = "DPN"
) -> torch.Tensor:
    """`num_codes` distinct random ±1 codes (num_codes, bits), float32, each with bits // 2 entries +1.

    Draws with `generator` only (never the global RNG); a code equal to an earlier one is redrawn.
    Raises `HashCondenseError` if `bits` is too short to hold that many distinct balanced codes.
    """
    if num_codes == 0:
        return torch.empty(0, bits)
    if math.comb(bits, bits // 2) < num_codes:
        need = next(k for k in range(bits, 4097) if math.comb(k, k // 2) >= num_codes)
        raise HashCondenseError(
            f"{method}: {bits} bits hold only {math.comb(bits, bits // 2)} distinct balanced codes, "
            f"fewer than the {num_codes} classes; use hash_bits >= {need}"
        )
    codes = torch.empty(num_codes, bits)
    seen: set[bytes] = set()
    i = 0
    for _ in range(1000 * num_codes + 1000):
        code = -torch.ones(bits)
        code[torch.randperm(bits, generator=generator)[: bits // 2]] = 1.0
        key = (code > 0).numpy().tobytes()
        if key in seen:
            continue
        seen.add(key)
        codes[i] = code
        i += 1
        if i == num_codes:
            return codes
    raise HashCondenseError(
        f"{method}: could not draw {num_codes} distinct balanced codes of {bits} bits; use more hash_bits"
    )
