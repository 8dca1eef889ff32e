"""OrthoHash: one cosine-similarity loss for deep hashing.

Paper: J. T. Hoe, K. W. Ng, T. Zhang, C. S. Chan, Y.-Z. Song, T. Xiang, "One Loss for All: Deep
Hashing with a Single Cosine Similarity based Learning Objective", NeurIPS 2021. Code: kamwoh/orthohash
(`functions/loss/orthohash.py`, `scripts/train_hashing.py`); this is our own implementation of DESIGN
Section 4.

Head: features (B, d) -> Linear(d, b, bias=False) -> BatchNorm1d(b) = v; retrieval codes are sign(v).
Codebook O (C, b) of fixed ±1 class codes, a persistent buffer drawn from a generator seeded by
`codebook_seed` (independent of torch's global RNG), as kamwoh/orthohash's `get_codebook`: Bernoulli(0.5)
codes accepted greedily while their normalised Hamming distance to every accepted code is >= 0.61;
after every 10,000 rejected draws the threshold drops by 0.01 (never below 0.2), then the rows are
shuffled. The threshold finally met is `codebook_min_distance`. (kamwoh/orthohash's README trains
CIFAR-10 with plain Bernoulli codes, `--codebook-method B`; the distance-constrained codebook follows
DESIGN.)

- "ce"    cross-entropy over logits s (cos(v, o_c) - m 1[c = y]), s = 8, m = 0.2. kamwoh/orthohash's
          README uses m = 0.3 for CIFAR-10 (`margin=0.3`). Multi-hot labels: the margin is subtracted
          at every positive class and the targets are the labels normalised to sum 1 (the code's
          label-smoothing branch).
- "quan"  optional quantisation, mean_n [1 - cos(v_n, stopgrad(sign(v_n)))] (the code's "cs" type);
          off by default (`quan_weight=0`): then it is neither computed nor returned.

Example:
    >>> method = OrthoHash(num_classes=10, hash_bits=64, margin=0.3)
    >>> v = method.make_head(2048)(features)          # (B, 64)
    >>> loss = method.loss([v], labels)                # labels: (B,) int64
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hashcondense.errors import HashCondenseError
from hashcondense.hashing.base import HashingMethod, check_feature_dim, check_seed, check_setting
from hashcondense.hashing.registry import register_hashing

__all__ = ["OrthoHash", "greedy_codebook"]


@register_hashing("orthohash")
class OrthoHash(HashingMethod):
    """OrthoHash: margin cross-entropy on the cosine between codes and fixed class codes.

    Args:
        num_classes: number of classes C.
        hash_bits: code length b.
        scale: s, the logit scale (paper 8), > 0.
        margin: m, the additive cosine margin (paper 0.2; README 0.3 for CIFAR-10), >= 0 and < 2.
        quan_weight: weight of the optional quantisation term (default 0 = off), >= 0.
        codebook_seed: seed of the codebook (default 0), an int >= 0.

    Shapes:
        codes: [v] with v (B, b), the BatchNorm output.
        labels: (B,) int64 class indices, or (B, C) float multi-hot.
        loss_terms: {"ce"} or {"ce", "quan"} scalars.
    """

    name = "orthohash"
    num_views = 1

    def __init__(
        self,
        num_classes: int,
        hash_bits: int,
        scale: float = 8.0,
        margin: float = 0.2,
        quan_weight: float = 0.0,
        codebook_seed: int = 0,
    ) -> None:
        super().__init__(num_classes, hash_bits)
        self.scale = check_setting("OrthoHash", "scale", scale, "the paper uses 8")
        self.margin = check_setting(
            "OrthoHash",
            "margin",
            margin,
            "the paper uses 0.2, its README 0.3 for CIFAR-10",
            allow_zero=True,
            maximum=2.0,
        )
        quan = check_setting("OrthoHash", "quan_weight", quan_weight, "0 turns it off", allow_zero=True)
        self.codebook_seed = check_seed("OrthoHash", codebook_seed)
        self.loss_weights = {"ce": 1.0, **({"quan": quan} if quan > 0 else {})}
        gen = torch.Generator().manual_seed(self.codebook_seed)
        book, dist = greedy_codebook(self.num_classes, self.hash_bits, gen)
        self.register_buffer("codebook", book)
        self.codebook_min_distance = dist

    def make_head(self, feature_dim: int) -> nn.Module:
        """Linear(d, b, bias=False) -> BatchNorm1d(b): features (B, d) -> v (B, b)."""
        d, b = check_feature_dim(feature_dim), self.hash_bits
        return nn.Sequential(nn.Linear(d, b, bias=False), nn.BatchNorm1d(b))

    def loss_terms(self, codes: list[torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        (v,) = self._views(codes, max_views=1)
        targets = self._targets(labels, v)  # (B, C)
        book = self.codebook.to(device=v.device, dtype=v.dtype)
        cos = F.normalize(v, dim=1) @ F.normalize(book, dim=1).t()  # (B, C)
        logits = self.scale * (cos - self.margin * targets)
        weights = targets / targets.sum(dim=1, keepdim=True).clamp_min(1e-12)
        terms = {"ce": -(weights * F.log_softmax(logits, dim=1)).sum(dim=1).mean()}
        if "quan" in self.loss_weights:
            terms["quan"] = (1.0 - F.cosine_similarity(v, torch.sign(v).detach(), dim=1)).mean()
        return terms

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, scale={self.scale}, margin={self.margin}, "
            f"codebook_seed={self.codebook_seed}, codebook_min_distance={self.codebook_min_distance:.2f}"
        )


def greedy_codebook(
    num_codes: int,
    bits: int,
    generator: torch.Generator,
    init_distance: float = 0.61,
    min_distance: float = 0.2,
    step: float = 0.01,
    max_tries: int = 10_000,
) -> tuple[torch.Tensor, float]:
    """Greedy Bernoulli codebook of OrthoHash: returns (codes (num_codes, bits) float32 ±1, threshold met).

    A Bernoulli(0.5) draw is accepted if its normalised Hamming distance to every accepted code is
    >= the current threshold; after `max_tries` rejections (counted since the last relaxation) the
    threshold drops by `step`, starting at `init_distance`. Below `min_distance` it gives up with a
    `HashCondenseError`. Finally the rows are shuffled. Uses `generator` only.
    """
    codes = torch.empty(0, bits)
    level, rejected, chunk = 0, 0, 256
    threshold = init_distance
    while codes.shape[0] < num_codes:
        n = min(chunk, max_tries - rejected)  # draws are evaluated in chunks, in order
        draws = torch.randint(0, 2, (n, bits), generator=generator).float() * 2.0 - 1.0
        if codes.shape[0]:
            hamming = (bits - draws @ codes.t()) / (2.0 * bits)  # (n, accepted)
            ok = (hamming >= threshold - 1e-9).all(dim=1)
        else:
            ok = torch.ones(n, dtype=torch.bool)
        hits = ok.nonzero().flatten()
        if hits.numel():
            first = int(hits[0])
            rejected += first
            codes = torch.cat([codes, draws[first : first + 1]])
            chunk = 256
        else:
            rejected += n
            chunk = min(2 * chunk, 16_384)
        if rejected >= max_tries:
            level, rejected = level + 1, 0
            threshold = init_distance - level * step
            if threshold < min_distance - 1e-9:
                raise HashCondenseError(
                    f"OrthoHash: cannot find {num_codes} codes of {bits} bits at normalised Hamming distance "
                    f">= {min_distance}; use more hash_bits"
                )
    perm = torch.randperm(num_codes, generator=generator)
    return codes[perm].contiguous(), round(threshold, 6)
