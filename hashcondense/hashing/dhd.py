"""DHD: Deep Hash Distillation (the IEM paper's benchmark hashing method).

Paper: Y. K. Jang, G. Gu, B. Ko, I. Kang, N. I. Cho, "Deep Hash Distillation for Image Retrieval",
ECCV 2022 (arXiv 2112.08816). Reference code: youngkyunJang/Deep-Hash-Distillation (`loss.py`,
`main_DHD.py`); this is our own implementation of DESIGN Section 4.

Head: features (B, d) -> Linear(d, b, bias=False) -> LayerNorm(b) -> tanh = h in (-1, 1)^b.
Learnable hash proxies P (C, b), Xavier-uniform with gain 5/3 (torch's gain for tanh), drawn from
torch's global generator (so seeded by `torch.manual_seed` before the method is built).

Two views of every image: codes[0] = teacher (weak augmentation), codes[1] = student (strong).
- "hp"   L_HP   = -(1/B) sum_n sum_c y~_nc log softmax_c(cos(h_n, p_c) / tau),  y~ = y / ||y||_1,
                  on the teacher view; gradients reach both the codes and the proxies.
- "sdh"  L_SDH  = (1/B) sum_n [1 - cos(h_n^student, stopgrad(h_n^teacher))]; no gradient reaches
                  the teacher view.
- "bceq" L_bceQ = BCE(p+, t) + BCE(p-, 1 - t), each a mean over the B x b elements of the teacher
                  view, p+- = exp(-(h -+ 1)^2 / (2 sigma^2)), t = (sign(h) + 1) / 2 without gradient.
Total = L_HP + 0.1 L_SDH + 0.1 L_bceQ (`loss_weights`).

With a single view (codes of length 1) the student is the teacher and "sdh" is exactly 0.

Gradient matching (IEM appendix B.2): `loss_groups()` = [["sdh", "bceq"], ["hp"]];
`group_parameters(network)` = [network parameters (encoder + hash layer), [proxies]].

Example:
    >>> method = DHD(num_classes=10, hash_bits=64)
    >>> head = method.make_head(2048)            # network = backbone -> head
    >>> h_weak, h_strong = head(f_weak), head(f_strong)          # (B, 64) each
    >>> loss = method.loss([h_weak, h_strong], labels)            # labels: (B,) int64
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hashcondense.errors import HashCondenseError
from hashcondense.hashing.base import HashingMethod, check_feature_dim, check_setting
from hashcondense.hashing.registry import register_hashing

__all__ = ["DHD"]

# log(1 - p) is clamped here (p <= 1 - 1e-20): it only matters where its weight (1 - t or t) is zero.
_LOG_FLOOR = 1e-20


@register_hashing("dhd")
class DHD(HashingMethod):
    """Deep Hash Distillation: hash-proxy loss, self-distillation and BCE quantisation.

    Args:
        num_classes: number of classes C (rows of the proxy matrix).
        hash_bits: code length b.
        temperature: tau of the proxy softmax (paper 0.2), > 0.
        sigma: standard deviation of the Gaussian estimators of the BCE quantisation (paper 0.5), > 0.
        sdh_weight: weight of the self-distillation term (paper lambda1 = 0.1), >= 0.
        bceq_weight: weight of the BCE quantisation term (paper lambda2 = 0.1), >= 0.
        proxy_gain: Xavier-uniform gain of the proxy initialisation (5/3 = gain of tanh), > 0.

    Shapes:
        codes: list of 1 or 2 tensors (B, b): [teacher] or [teacher, student].
        labels: (B,) int64 class indices, or (B, C) float multi-hot (each row normalised to sum 1;
            a row without any positive class contributes 0 to "hp").
        loss_terms: {"hp", "sdh", "bceq"} scalars.
    """

    name = "dhd"
    num_views = 2

    def __init__(
        self,
        num_classes: int,
        hash_bits: int,
        temperature: float = 0.2,
        sigma: float = 0.5,
        sdh_weight: float = 0.1,
        bceq_weight: float = 0.1,
        proxy_gain: float = 5.0 / 3.0,
    ) -> None:
        super().__init__(num_classes, hash_bits)
        self.temperature = check_setting("DHD", "temperature", temperature, "the paper uses 0.2")
        self.sigma = check_setting("DHD", "sigma", sigma, "the paper uses 0.5")
        self.proxy_gain = check_setting("DHD", "proxy_gain", proxy_gain, "tanh's gain 5/3 is the default")
        self.loss_weights = {
            "hp": 1.0,
            "sdh": check_setting(
                "DHD", "sdh_weight", sdh_weight, "the paper uses 0.1; 0 turns it off", allow_zero=True
            ),
            "bceq": check_setting(
                "DHD", "bceq_weight", bceq_weight, "the paper uses 0.1; 0 turns it off", allow_zero=True
            ),
        }
        self.proxies = nn.Parameter(torch.empty(self.num_classes, self.hash_bits))
        nn.init.xavier_uniform_(self.proxies, gain=self.proxy_gain)

    def make_head(self, feature_dim: int) -> nn.Module:
        """Linear(d, b, bias=False) -> LayerNorm(b) -> tanh: features (B, d) -> h (B, b) in (-1, 1)."""
        d, b = check_feature_dim(feature_dim), self.hash_bits
        return nn.Sequential(nn.Linear(d, b, bias=False), nn.LayerNorm(b), nn.Tanh())

    def loss_terms(self, codes: list[torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        views = self._views(codes, max_views=2)
        teacher = views[0]
        if self.proxies.device != teacher.device:
            raise HashCondenseError(
                f"DHD proxies are on {self.proxies.device} but the codes are on {teacher.device}; "
                "move the method with method.to(device) (and give method.parameters() to the optimiser)"
            )
        targets = self._targets(labels, teacher)
        return {
            "hp": self.proxy_loss(teacher, targets),
            "sdh": self.distill_loss(views[1], teacher) if len(views) == 2 else teacher.sum() * 0.0,
            "bceq": self.quantization_loss(teacher),
        }

    def proxy_loss(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """L_HP: h (B, b), targets (B, C) one-/multi-hot -> scalar."""
        proxies = self.proxies.to(h.dtype)
        logits = F.normalize(h, dim=1) @ F.normalize(proxies, dim=1).t() / self.temperature  # (B, C)
        weights = targets / targets.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return -(weights * F.log_softmax(logits, dim=1)).sum(dim=1).mean()

    @staticmethod
    def distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """L_SDH: student, teacher (B, b) -> scalar; the teacher is detached."""
        return (1.0 - F.cosine_similarity(student, teacher.detach(), dim=1)).mean()

    def quantization_loss(self, h: torch.Tensor) -> torch.Tensor:
        """L_bceQ: h (B, b) -> scalar.

        Written in log space, algebraically equal to BCE(p+, t) + BCE(p-, 1 - t) with
        log p+- = -(h -+ 1)^2 / (2 sigma^2) exact (no clamping of p near 1, no NaN at |h| = 1) and
        log(1 - p) floored at log(1e-20); autocast-safe (no F.binary_cross_entropy).
        """
        t = ((torch.sign(h) + 1.0) / 2.0).detach()
        a_pos = (h - 1.0).pow(2) / (2.0 * self.sigma**2)  # -log p+
        a_neg = (h + 1.0).pow(2) / (2.0 * self.sigma**2)  # -log p-
        bce_pos = t * a_pos - (1.0 - t) * _log1mexp(a_pos)  # BCE(p+, t)
        bce_neg = (1.0 - t) * a_neg - t * _log1mexp(a_neg)  # BCE(p-, 1 - t)
        return bce_pos.mean() + bce_neg.mean()

    def loss_groups(self) -> list[list[str]]:
        """D1 = L_SDH + L_bceQ (matched on encoder + hash layer), D2 = L_HP (matched on the proxies)."""
        return [["sdh", "bceq"], ["hp"]]

    def proxy_parameters(self) -> list[nn.Parameter]:
        """The parameters group D2 ("hp") is matched on: [proxies (C, b)]."""
        return [self.proxies]

    def group_parameters(self, network: nn.Module) -> list[list[nn.Parameter]]:
        """[network parameters (encoder + hash layer)] for D1, [proxies] for D2."""
        return [list(network.parameters()), self.proxy_parameters()]

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, temperature={self.temperature}, sigma={self.sigma}, "
            f"weights={self.loss_weights}"
        )


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-a)) for a >= 0, floored at log(1e-20) (zero gradient below the floor)."""
    return torch.log((-torch.expm1(-a)).clamp_min(_LOG_FLOOR))
