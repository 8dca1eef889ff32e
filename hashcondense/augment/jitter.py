"""DHD's own training views: random resized crop, flip, colour jitter, grayscale and Gaussian blur.

The official DHD code (youngkyunJang/Deep-Hash-Distillation, `models.py` `Augmentation`, kornia)
draws both of its views from one chain, with every probability multiplied by a strength `w`:

- random resized crop to the input size, area fraction in [0.08, 1], aspect ratio in [3/4, 4/3],
  with probability w;
- horizontal flip with probability 0.5 w;
- colour jitter (brightness 0.4, contrast 0.8, saturation 0.8, hue 0.2) with probability 0.8 w;
- grayscale with probability 0.2 w;
- Gaussian blur, kernel int(0.1 x size) made odd (3 at 32 px), sigma in [0.1, 2], with probability 0.5 w.

The student view uses w = 1 and the teacher view w = 0.5 (DHD's `transformation_scale` for every encoder
but AlexNet). This is our implementation with torchvision's conventions for the jitter factors
(brightness and contrast and saturation multiply or blend in [1 - a, 1 + a], hue shifts by up to
0.2 of the colour circle, each followed by clamping to [0, 1]; the four run in one random order per
call). One difference from kornia, minor: a crop that does not fit is shrunk to fit instead of
redrawn. Blur pads by reflection (by replication on images smaller than the kernel). The chain works
on pixel values in [0, 1], so the images are de-normalised with the dataset's mean and std first and
normalised again at the end.
Not differentiable with respect to its random draws (it is for evaluation training, not matching);
all randomness comes from the generator passed in, and every draw stays on the generator's device;
only the per-image factors and masks that touch pixels move to the images' device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from hashcondense.errors import HashCondenseError

__all__ = ["JitterAugment", "rgb_to_hsv", "hsv_to_rgb"]


class JitterAugment:
    """Callable view `aug(x, generator)` on normalised images (B, C, H, W), C = 1 or 3."""

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        strength: float = 1.0,
        *,
        flip: bool = True,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        jitter: tuple[float, float, float, float] = (0.4, 0.8, 0.8, 0.2),
        blur_sigma: tuple[float, float] = (0.1, 2.0),
    ) -> None:
        if not 0.0 <= strength <= 1.0:
            raise HashCondenseError(f"augmentation strength {strength} cannot work; use a value in [0, 1]")
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise HashCondenseError(
                "augmentation needs one positive std per mean; check the dataset statistics"
            )
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.strength = float(strength)
        self.flip = flip
        self.crop_scale = crop_scale
        self.crop_ratio = crop_ratio
        self.jitter = jitter
        self.blur_sigma = blur_sigma

    def __repr__(self) -> str:
        return f"JitterAugment(strength={self.strength}, flip={self.flip})"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b, c, h, w = x.shape
        if c not in (1, 3):
            raise HashCondenseError(f"jitter augmentation takes 1- or 3-channel images, not {c}")
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        s = self.strength

        def coin(p: float) -> Tensor:
            return _uniform(generator, b) < p

        def factor(a: float) -> Tensor:  # in [max(0, 1 - a), 1 + a]
            lo = max(0.0, 1.0 - a)
            return (lo + _uniform(generator, b) * (1.0 + a - lo)).to(x.device, x.dtype)

        # every draw is made whatever the outcome, so the stream consumed does not depend on the data
        crop_on, flip_on = coin(1.0 * s), coin(0.5 * s if self.flip else 0.0)
        area = self.crop_scale[0] + _uniform(generator, b) * (self.crop_scale[1] - self.crop_scale[0])
        log_lo, log_hi = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
        ratio = torch.exp(log_lo + _uniform(generator, b) * (log_hi - log_lo))
        u_x, u_y = _uniform(generator, b), _uniform(generator, b)
        jitter_on = coin(0.8 * s)
        factors = [factor(self.jitter[0]), factor(self.jitter[1]), factor(self.jitter[2])]
        hue = ((_uniform(generator, b) * 2 - 1) * self.jitter[3]).to(x.device, x.dtype)
        order = torch.randperm(4, generator=generator).tolist()
        gray_on, blur_on = coin(0.2 * s), coin(0.5 * s)
        sigma = self.blur_sigma[0] + _uniform(generator, b) * (self.blur_sigma[1] - self.blur_sigma[0])

        out = (x * std + mean).clamp(0, 1)
        out = _resized_crop_flip(out, crop_on, area, ratio, u_x, u_y, flip_on)
        if c == 3:
            jittered = _jitter(out, factors, hue, order)
            out = torch.where(_mask(jitter_on, out), jittered, out)
            out = torch.where(_mask(gray_on, out), _gray(out).expand_as(out), out)
        else:  # saturation, hue and grayscale do nothing to one channel
            jittered = _jitter(out, factors, hue, [o for o in order if o in (0, 1)])
            out = torch.where(_mask(jitter_on, out), jittered, out)
        if bool(blur_on.any()):
            kernel = _odd(int(0.1 * min(h, w)))
            blurred = _gaussian_blur(out, kernel, sigma.to(x.device, x.dtype))
            out = torch.where(_mask(blur_on, out), blurred, out)
        return ((out - mean) / std).contiguous()


def _uniform(generator: torch.Generator, n: int) -> Tensor:
    return torch.rand(n, generator=generator, device=generator.device)


def _mask(on: Tensor, x: Tensor) -> Tensor:
    """A per-image boolean draw as a (B, 1, 1, 1) mask on `x`'s device."""
    return on.to(x.device).view(-1, 1, 1, 1)


def _odd(k: int) -> int:
    return max(1, k + 1 if k % 2 == 0 else k)


def _resized_crop_flip(
    x: Tensor, crop_on: Tensor, area: Tensor, ratio: Tensor, u_x: Tensor, u_y: Tensor, flip_on: Tensor
) -> Tensor:
    """Crop a box of `area` x image area and aspect `ratio` at a uniform position, resize it back to the
    image size (bilinear), and mirror; one `grid_sample` for both. Images with neither keep their pixels."""
    if not bool((crop_on | flip_on).any()):
        return x
    # box sides as fractions of the image sides, shrunk to fit; all on the draws' device
    width = torch.where(crop_on, torch.sqrt(area * ratio).clamp(max=1.0), 1.0)
    height = torch.where(crop_on, torch.sqrt(area / ratio).clamp(max=1.0), 1.0)
    # centre in normalised coordinates [-1, 1]: the box stays inside the image
    cx = (2 * u_x - 1) * (1 - width)
    cy = (2 * u_y - 1) * (1 - height)
    sign = torch.where(flip_on, -1.0, 1.0)
    theta = torch.zeros(x.shape[0], 2, 3, device=width.device)
    theta[:, 0, 0] = width * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = height
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _gray(x: Tensor) -> Tensor:
    """ITU-R 601 luma (torchvision's grayscale), (B, 1, H, W)."""
    if x.shape[1] == 1:
        return x
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _jitter(x: Tensor, factors: list[Tensor], hue: Tensor, order: list[int]) -> Tensor:
    brightness, contrast, saturation = (f.view(-1, 1, 1, 1) for f in factors)
    for op in order:
        if op == 0:
            x = (x * brightness).clamp(0, 1)
        elif op == 1:
            m = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
            x = (contrast * x + (1 - contrast) * m).clamp(0, 1)
        elif op == 2:
            x = (saturation * x + (1 - saturation) * _gray(x)).clamp(0, 1)
        else:
            hsv = rgb_to_hsv(x)
            hsv = torch.cat([(hsv[:, :1] + hue.view(-1, 1, 1, 1)) % 1.0, hsv[:, 1:]], dim=1)
            x = hsv_to_rgb(hsv)
    return x


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB in [0, 1] (B, 3, H, W) -> HSV with hue in [0, 1) (hue 0 where the pixel is gray)."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(
        maxc == r, ((g - b) / safe) % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    hue = torch.where(delta > 0, hue / 6.0, torch.zeros_like(hue)) % 1.0
    positive = maxc > 0
    sat = torch.where(positive, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    return torch.stack([hue, sat, maxc], dim=1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """Inverse of `rgb_to_hsv`."""
    h, s, v = x[:, 0], x[:, 1], x[:, 2]
    # the standard formulation: channel n = v - v s max(0, min(k, 4 - k, 1)), k = (n + 6 h) mod 6
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + h * 6.0) % 6.0
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, dim=1)


def _gaussian_blur(x: Tensor, kernel: int, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with one sigma per image, reflection padding."""
    if kernel <= 1:
        return x
    b, c, h, w = x.shape
    half = kernel // 2
    pos = torch.arange(kernel, device=x.device, dtype=x.dtype) - half
    weights = torch.exp(-(pos.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    weights = weights / weights.sum(dim=1, keepdim=True)  # (B, k)
    weights = weights.repeat_interleave(c, dim=0)  # one kernel per (image, channel) group
    flat = x.reshape(1, b * c, h, w)
    mode = "reflect" if half < min(h, w) else "replicate"
    flat = F.pad(flat, (half, half, 0, 0), mode=mode)
    flat = F.conv2d(flat, weights.view(b * c, 1, 1, kernel), groups=b * c)
    flat = F.pad(flat, (0, 0, half, half), mode=mode)
    flat = F.conv2d(flat, weights.view(b * c, 1, kernel, 1), groups=b * c)
    return flat.view(b, c, h, w)
