"""The training recipe of a hashing network (`TrainConfig`), validated before anything runs."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from hashcondense.errors import HashCondenseError
from hashcondense.utils.checks import is_number

__all__ = ["OPTIMIZERS", "SCHEDULES", "TrainConfig", "VIEWS"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "step", "constant")
VIEWS = ("dsa", "jitter")


@dataclass
class TrainConfig:
    """Evaluation-training recipe. `epochs=0` means auto: enough epochs for `auto_steps` steps."""

    epochs: int = 0
    auto_steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    # the backbone trains at lr x this, the hash head and the method's parameters (DHD's proxies) at lr;
    # DHD's code uses 0.05 for its pretrained encoders
    backbone_lr_scale: float = 1.0
    weight_decay: float = 6e-6
    optimizer: str = "adam"  # adam (L2 weight decay, IEM) | adamw (decoupled decay) | sgd (momentum, IDC)
    momentum: float = 0.9  # SGD only
    schedule: str = "cosine"  # cosine | step (x0.2 at 2/3 and 5/6, IDC) | constant
    warmup_steps: int = 0
    augment: bool = True
    # the two DHD views: "dsa" (weak = translation + flip, strong = the full DSA strategy) or "jitter"
    # (DHD's code: resized crop, flip, colour jitter, grayscale, blur; teacher at half strength)
    views: str = "dsa"
    # CutMix on the batch before its views (IDC's evaluation: beta 1, p 0.5); 0 = off
    cutmix_prob: float = 0.0
    cutmix_beta: float = 1.0
    flip: bool | None = None  # None: the dataset's default (False for digits, True otherwise)
    eval_epochs: list[int] = field(default_factory=list)

    def resolved_epochs(self, num_images: int) -> int:
        if self.epochs > 0:
            return int(self.epochs)
        steps_per_epoch = math.ceil(num_images / min(self.batch_size, num_images))
        return max(1, math.ceil(self.auto_steps / steps_per_epoch))

    def check(self) -> None:
        """Refuse a recipe that cannot work, with the flag that fixes it."""
        problems = (
            (self.batch_size < 1, f"batch size {self.batch_size} cannot work; use a positive --batch-size"),
            (self.epochs < 0, f"--epochs {self.epochs} cannot work; use a positive number (0 = auto)"),
            (
                not is_number(self.lr, minimum=0.0, strict=True),
                f"learning rate {self.lr} cannot work; use a positive --lr",
            ),
            (
                not is_number(self.backbone_lr_scale, minimum=0.0, strict=True),
                f"backbone lr scale {self.backbone_lr_scale} cannot work; use a positive --backbone-lr-scale",
            ),
            (
                self.optimizer not in OPTIMIZERS,
                f"unknown optimizer '{self.optimizer}'; choose {', '.join(OPTIMIZERS)}",
            ),
            (
                not is_number(self.weight_decay, minimum=0.0),
                f"weight decay {self.weight_decay} cannot work; use a --weight-decay >= 0",
            ),
            (
                not 0 <= self.momentum < 1,
                f"momentum {self.momentum} cannot work; use a --momentum in [0, 1)",
            ),
            (
                not 0 <= self.cutmix_prob <= 1,
                f"CutMix probability {self.cutmix_prob} cannot work; use a --cutmix-prob in [0, 1]",
            ),
            (
                not is_number(self.cutmix_beta, minimum=0.0, strict=True),
                f"CutMix beta {self.cutmix_beta} cannot work; use a positive --cutmix-beta",
            ),
            (self.views not in VIEWS, f"unknown views '{self.views}'; choose {', '.join(VIEWS)}"),
            (
                self.schedule not in SCHEDULES,
                f"unknown schedule '{self.schedule}'; choose cosine, step or constant",
            ),
        )
        for failed, message in problems:
            if failed:
                raise HashCondenseError(message)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
