"""Differentiable Siamese Augmentation (DSA) with an explicit random generator.

Zhao & Bilen, "Dataset Condensation with Differentiable Siamese Augmentation" (ICML 2021). The
transforms and their parameters follow `ParamDiffAug` / `DiffAugment` in VICO-UoE/DatasetCondensation
`utils.py` (the code DM and DSA run) and `DiffAug` in snu-mllab/Efficient-Dataset-Condensation
`augment.py` (IDC); this is our own implementation. With ``u ~ U[0, 1)`` drawn per image (or once,
when shared):

- flip: mirror the width axis when ``u < flip`` (0.5).
- scale: ``sx, sy = u * (scale - 1/scale) + 1/scale`` (independent, in [1/1.2, 1.2]); the affine
  matrix ``diag(sx, sy)`` maps output to input coordinates, so ``s > 1`` zooms out.
- rotate: angle ``(u - 0.5) * 2 * rotate`` degrees (in [-15, 15]), matrix ``[[cos, -sin], [sin, cos]]``.
- crop: integer translation by ``t`` in ``[-shift, shift]``, ``shift = int(size * crop_pad + 0.5)``
  (4 px at 32 px), per axis; pixels shifted in from outside are 0 (DSA pads one zero pixel and clamps).
- cutout: a ``k x k`` box, ``k = int(size * cutout + 0.5)`` (16 at 32 px), centred at
  ``randint(0, size + 1 - k % 2)``, rows ``[centre - k // 2, centre - k // 2 + k)`` clipped to the image,
  set to 0.
- color = brightness, then saturation, then contrast:
  brightness ``x + (u - 0.5) * brightness`` (shift in [-0.5, 0.5]);
  saturation ``(x - m_c) * (u * saturation) + m_c`` with ``m_c`` the per-pixel mean over channels
  (factor in [0, 2]; the identity for 1-channel images);
  contrast ``(x - m) * (u + contrast) + m`` with ``m`` the per-image mean over C, H, W (factor in
  [0.5, 1.5]).
- The geometric transforms sample with ``F.grid_sample`` (bilinear, zero padding,
  ``align_corners=False``, the defaults DSA's code runs with).

Modes. DSA's `ParamDiffAug` sets ``aug_mode = 'S'`` and DM/DSA never change it: each call picks ONE
group of the strategy at random for the whole batch (``mode="single"``). ``'M'`` applies every group
in strategy order (``mode="all"``). IDC's `DiffAug` (``single=False``, its default) always applies flip,
then color, then one randomly chosen group of the rest (crop, scale, rotate), then cutout
(``mode="idc"``).

Siamese draws. `DSA.sample` returns a `DSADraw` holding every random number; ``shared=True`` draws one
parameter set that `DSA.apply` broadcasts over any batch, which gives the real and the synthetic batch
of a class the same transform (what DM gets by re-seeding the global generator with the same seed
before both calls). Random numbers come only from the `torch.Generator` passed in; a CPU generator is
recommended (the draws are then the same on every machine) and the parameters are moved to the images'
device in `apply`. Every call of `sample` consumes the same amount of the generator's stream whatever
group it picks.

Speed. Consecutive geometric transforms are composed into one affine matrix and sampled once (one
``grid_sample`` per call in every mode for the default strategy). Crop and flip are exact pixel moves:
folding them into the matrix, with the crop's zero border and any cutout moved in front as masks,
gives exactly DSA's result (a chain of only crop and flip samples with ``mode="nearest"``). The one
approximation: scale followed by rotate (mode "all") is sampled once instead of twice, which is
slightly sharper than DSA's two bilinear passes and keeps corners that DSA's first pass cuts off.
The color group is one fused expression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from hashcondense.errors import HashCondenseError

__all__ = [
    "AUG_MODES",
    "DSA",
    "DSADraw",
    "DSAParams",
    "DSA_STRATEGY",
    "GROUPS",
    "create_augment",
    "strong_augment",
    "weak_augment",
]

GROUPS: tuple[str, ...] = ("color", "crop", "cutout", "flip", "scale", "rotate")
AUG_MODES: tuple[str, ...] = ("single", "all", "idc")
DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"
_GEOMETRIC = frozenset({"crop", "flip", "scale", "rotate"})
# Column layout of DSADraw.uniforms: every sample() draws all of them, whatever group it picks.
_COLUMNS: tuple[str, ...] = (
    "flip",
    "scale_x",
    "scale_y",
    "rotate",
    "crop_row",
    "crop_col",
    "cutout_row",
    "cutout_col",
    "brightness",
    "saturation",
    "contrast",
)
_COL = {name: i for i, name in enumerate(_COLUMNS)}


@dataclass(frozen=True)
class DSAParams:
    """Strengths of the DSA transforms (defaults: `ParamDiffAug` of DSA/DM, also IDC's).

    flip: probability of a horizontal flip. scale: maximum scale ratio (factors in [1/scale, scale]).
    rotate: maximum rotation in degrees. crop_pad: maximum translation as a fraction of the size.
    cutout: side of the cutout box as a fraction of the size. brightness: range of the additive
    shift (centred on 0). saturation: maximum saturation factor (factors in [0, saturation]).
    contrast: lowest contrast factor (factors in [contrast, contrast + 1]).
    """

    flip: float = 0.5
    scale: float = 1.2
    rotate: float = 15.0
    crop_pad: float = 0.125
    cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5

    def __post_init__(self) -> None:
        checks = {
            "flip": 0.0 <= self.flip <= 1.0,
            "scale": self.scale >= 1.0,
            "rotate": self.rotate >= 0.0,
            "crop_pad": 0.0 <= self.crop_pad < 1.0,
            "cutout": 0.0 <= self.cutout <= 1.0,
            "brightness": self.brightness >= 0.0,
            "saturation": self.saturation >= 0.0,
            "contrast": self.contrast >= 0.0,
        }
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(float(value)) or not checks[f.name]:
                raise HashCondenseError(
                    f"DSAParams.{f.name} = {value} is out of range; use flip in [0, 1], scale >= 1, "
                    "crop_pad in [0, 1), cutout in [0, 1] and non-negative rotate, brightness, "
                    "saturation and contrast"
                )


@dataclass(frozen=True)
class DSADraw:
    """All random parameters of one augmentation call (from `DSA.sample`).

    groups: the groups to apply, in order (after the mode's random choice); empty = identity.
    shared: one parameter set for any batch (Siamese) instead of one per image.
    batch_size: the number of images a per-image draw is for (None when shared).
    uniforms: ``(n, 11)`` U[0, 1) numbers, ``n = 1`` when shared else batch_size; columns
        flip, scale_x, scale_y, rotate, crop_row, crop_col, cutout_row, cutout_col, brightness,
        saturation, contrast. The properties below turn them into transform parameters; crop shifts
        and cutout boxes depend on the image size, so they are resolved by `crop_shifts(h, w)` and
        `cutout_boxes(h, w)`.
    params: the strengths the draw was made with.
    """

    groups: tuple[str, ...]
    shared: bool
    batch_size: int | None
    uniforms: Tensor
    params: DSAParams = field(default_factory=DSAParams)

    @property
    def num(self) -> int:
        """Rows of parameters: 1 when shared, else batch_size."""
        return int(self.uniforms.shape[0])

    def _u(self, name: str) -> Tensor:
        return self.uniforms[:, _COL[name]]

    @property
    def flip(self) -> Tensor:
        """Bool mask, shape (n,): mirror the width axis."""
        return self._u("flip") < self.params.flip

    @property
    def scale(self) -> Tensor:
        """Scale factors (sx for width, sy for height), shape (n, 2), in [1/scale, scale]."""
        r = self.params.scale
        return self.uniforms[:, [_COL["scale_x"], _COL["scale_y"]]] * (r - 1.0 / r) + 1.0 / r

    @property
    def angle(self) -> Tensor:
        """Rotation angles in degrees, shape (n,), in [-rotate, rotate]."""
        return (self._u("rotate") - 0.5) * 2.0 * self.params.rotate

    @property
    def brightness(self) -> Tensor:
        """Additive brightness shifts, shape (n,)."""
        return (self._u("brightness") - 0.5) * self.params.brightness

    @property
    def saturation(self) -> Tensor:
        """Saturation factors, shape (n,)."""
        return self._u("saturation") * self.params.saturation

    @property
    def contrast(self) -> Tensor:
        """Contrast factors, shape (n,)."""
        return self._u("contrast") + self.params.contrast

    def crop_shifts(self, h: int, w: int) -> Tensor:
        """Integer translations (rows, cols), shape (n, 2): output pixel (i, j) = input (i + dr, j + dc)."""
        out = []
        for col, size in (("crop_row", h), ("crop_col", w)):
            shift = int(size * self.params.crop_pad + 0.5)
            out.append(torch.floor(self._u(col) * (2 * shift + 1)).long() - shift)
        return torch.stack(out, dim=1)

    def cutout_boxes(self, h: int, w: int) -> Tensor:
        """Cutout boxes (row0, row1, col0, col1), half-open, may extend past the image; shape (n, 4)."""
        out = []
        for col, size in (("cutout_row", h), ("cutout_col", w)):
            k = int(size * self.params.cutout + 0.5)
            centre = torch.floor(self._u(col) * (size + 1 - k % 2)).long()
            start = centre - k // 2
            out += [start, start + k]
        return torch.stack(out, dim=1)

    def to(self, device: torch.device | str) -> DSADraw:
        """The same draw with its parameters on `device`."""
        return replace(self, uniforms=self.uniforms.to(device))

    def rows(self, rows: slice) -> DSADraw:
        """The part of a per-image draw for the images `rows` of its batch (a process's share of a
        batch: each image keeps the parameters the whole batch's draw gave it)."""
        if self.shared:
            return self
        uniforms = self.uniforms[rows]
        return replace(self, uniforms=uniforms, batch_size=int(uniforms.shape[0]))


class DSA:
    """Differentiable Siamese Augmentation.

    Args:
        strategy: groups joined by '_', from color, crop, cutout, flip, scale, rotate
            (default: DSA's full strategy); "" or "none" = identity.
        params: strengths of the transforms.
        mode: "single" (DSA/DM default: one random group per call), "all" (every group in strategy
            order) or "idc" (IDC: flip, color, one random group of the rest, cutout).

    Shape: images (B, C, H, W), any C; the output has the same shape, dtype and device, and is
    differentiable with respect to the images.

    Example::

        dsa = DSA()
        g = hashcondense.runtime.generator(seed, class_index, step)
        draw = dsa.sample(1, g, shared=True)            # Siamese: one draw for both batches
        real_aug, syn_aug = dsa.apply(real, draw), dsa.apply(syn, draw)
        views = dsa(images, g)                           # per-image draws
    """

    def __init__(
        self, strategy: str = DSA_STRATEGY, params: DSAParams | None = None, mode: str = "single"
    ) -> None:
        self.params = params if params is not None else DSAParams()
        if not isinstance(self.params, DSAParams):
            raise HashCondenseError(f"params must be a DSAParams, not {type(self.params).__name__}")
        if mode not in AUG_MODES:
            raise HashCondenseError(f"unknown DSA mode '{mode}'; choose one of: {', '.join(AUG_MODES)}")
        self.mode = mode
        text = (strategy or "").strip().lower()
        groups = () if text in ("", "none") else tuple(text.split("_"))
        unknown = [g for g in groups if g not in GROUPS]
        if unknown:
            raise HashCondenseError(
                f"unknown DSA group '{unknown[0]}' in strategy '{strategy}'; use groups from "
                f"{', '.join(GROUPS)} joined by '_' (e.g. '{DSA_STRATEGY}'), or 'none'"
            )
        if len(set(groups)) != len(groups):
            raise HashCondenseError(f"DSA strategy '{strategy}' repeats a group; list each group once")
        self.groups = groups
        self.strategy = "_".join(groups) if groups else "none"
        if mode == "idc":
            self._always_before = tuple(g for g in ("flip", "color") if g in groups)
            self._choices = tuple(g for g in groups if g not in ("flip", "color", "cutout"))
            self._always_after = ("cutout",) if "cutout" in groups else ()
        else:
            self._always_before, self._always_after = (), ()
            self._choices = groups

    def __repr__(self) -> str:
        return f"DSA(strategy='{self.strategy}', mode='{self.mode}', params={self.params})"

    @property
    def is_identity(self) -> bool:
        return not self.groups

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator,
        device: torch.device | str | None = None,
        shared: bool = False,
    ) -> DSADraw:
        """Draw the random parameters of one call from `generator` only.

        shared=True draws one parameter set that `apply` broadcasts over a batch of any size;
        shared=False draws one set per image for exactly `batch_size` images. The draws are made on
        the generator's device and then moved to `device` (default: left there).
        """
        if not isinstance(generator, torch.Generator):
            raise HashCondenseError("DSA.sample needs a torch.Generator (see hashcondense.runtime.generator)")
        if not shared and (int(batch_size) != batch_size or batch_size < 1):
            raise HashCondenseError(f"batch_size must be a positive integer, got {batch_size}")
        n = 1 if shared else int(batch_size)
        gdev = generator.device
        pick = torch.rand(1, generator=generator, device=gdev)
        uniforms = torch.rand(n, len(_COLUMNS), generator=generator, device=gdev)
        if self.mode == "all":
            groups = self.groups
        else:
            chosen: tuple[str, ...] = ()
            if self._choices:
                index = min(int(float(pick) * len(self._choices)), len(self._choices) - 1)
                chosen = (self._choices[index],)
            groups = self._always_before + chosen + self._always_after
        if device is not None:
            uniforms = uniforms.to(device)
        return DSADraw(
            groups=groups,
            shared=bool(shared),
            batch_size=None if shared else n,
            uniforms=uniforms,
            params=self.params,
        )

    def apply(self, x: Tensor, draw: DSADraw) -> Tensor:
        """Apply a draw to images (B, C, H, W); differentiable with respect to `x`."""
        if x.dim() != 4 or not x.is_floating_point():
            raise HashCondenseError(
                f"DSA expects a float image batch (B, C, H, W), got shape {tuple(x.shape)} dtype {x.dtype}"
            )
        if not draw.groups:
            return x
        if not draw.shared and draw.batch_size != x.shape[0]:
            raise HashCondenseError(
                f"this DSA draw is per-image for {draw.batch_size} images but the batch has "
                f"{x.shape[0]}; sample with shared=True to reuse one draw across batches"
            )
        return _execute(x, draw.to(x.device))

    def __call__(self, x: Tensor, generator: torch.Generator, shared: bool = False) -> Tensor:
        """`sample` + `apply` in one call."""
        if not self.groups:
            return x
        return self.apply(x, self.sample(x.shape[0], generator, shared=shared))


# --------------------------------------------------------------------------------------------------
# Execution: geometric groups are composed into one 3x3 matrix per image that maps output to input
# coordinates in grid_sample's normalised frame (x along width, y along height, pixel centres at
# (2j + 1) / W - 1). Transforms applied in sequence A1, A2, ... compose as A1 @ A2 @ ...
#
# Exactness: while the pending chain holds only crops and flips it maps pixels to pixels, so a box in
# its output frame maps to a box in its input frame. Cutout boxes and the frame a crop keeps (the
# pixels it does not fill with zeros) are moved back to the chain's input that way and applied there
# as masks; sampling the masked input once through the composed matrix then equals DSA's sequence
# exactly (a later scale/rotate/crop sees the crop's zero border just as in DSA). A crop that follows
# scale/rotate, or color/cutout that follows them, first samples the pending chain.


class _Chain:
    def __init__(self, x: Tensor, draw: DSADraw) -> None:
        self.x, self.draw = x, draw
        _, _, self.h, self.w = x.shape
        self.mdtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        self.m: Tensor | None = None  # (n, 3, 3) composed matrix not yet sampled
        self.smooth = False  # holds scale/rotate (bilinear) rather than only crop/flip
        self.moved = False  # holds a crop (not only flips)
        self.kept: list[Tensor] = []  # boxes kept by crops, in the chain's input frame, not yet applied
        self.mask: Tensor | None = None  # (n, 1, H, W) product of masks not yet multiplied into x

    def geometric(self, group: str) -> None:
        if group == "crop" and self.smooth:
            self.flush()
        if group != "flip" and self.kept:  # a later move could bring a crop's zero border into view
            for box in self.kept:
                self._multiply(_box_mask(box, self.h, self.w, inside=True, dtype=self.x.dtype))
            self.kept = []
        mat = _matrix(group, self.draw, self.h, self.w, self.mdtype)
        self.m = mat if self.m is None else self.m @ mat
        self.smooth = self.smooth or group in ("scale", "rotate")
        self.moved = self.moved or group == "crop"
        if group == "crop":  # the input pixels that land inside the crop's output frame
            frame = torch.tensor([[0, self.h, 0, self.w]], device=mat.device).expand(mat.shape[0], 4)
            self.kept.append(self._pull_back(frame))

    def color(self) -> None:
        # Color commutes with pure flips (a pixel permutation), not with zero-filled moves.
        if self.m is not None and (self.smooth or self.moved):
            self.flush()
        self._apply_mask()
        self.x = _color(self.x, self.draw)

    def cutout(self) -> None:
        if self.smooth:
            self.flush()
        box = self._pull_back(self.draw.cutout_boxes(self.h, self.w))
        self._multiply(_box_mask(box, self.h, self.w, inside=False, dtype=self.x.dtype))

    def _multiply(self, mask: Tensor) -> None:
        self.mask = mask if self.mask is None else self.mask * mask

    def _apply_mask(self) -> None:
        if self.mask is not None:
            self.x, self.mask = self.x * self.mask, None

    def _pull_back(self, boxes: Tensor) -> Tensor:
        """Boxes (r0, r1, c0, c1) in the pending crop/flip chain's output frame -> its input frame."""
        if self.m is None:
            return boxes
        m, h, w = self.m, self.h, self.w
        # input row = output row + dr; input col = sgn * output col + off
        dr = torch.round(m[:, 1, 2] * h / 2).long()
        sgn = torch.where(m[:, 0, 0] < 0, -1, 1)
        off = torch.round((1 - sgn) * (w - 1) / 2 + m[:, 0, 2] * w / 2).long()
        r0, r1, c0, c1 = boxes.unbind(1)
        lo = torch.where(sgn > 0, c0 + off, off - c1 + 1)
        return torch.stack([r0 + dr, r1 + dr, lo, lo + (c1 - c0)], dim=1)

    def flush(self) -> Tensor:
        self._apply_mask()
        if self.m is not None:
            self.x = _warp(self.x, self.m, self.smooth, self.moved)
        self.m, self.smooth, self.moved, self.kept = None, False, False, []
        return self.x


def _execute(x: Tensor, draw: DSADraw) -> Tensor:
    chain = _Chain(x, draw)
    for group in draw.groups:
        if group in _GEOMETRIC:
            chain.geometric(group)
        elif group == "color":
            chain.color()
        else:
            chain.cutout()
    return chain.flush()


def _matrix(group: str, draw: DSADraw, h: int, w: int, dtype: torch.dtype) -> Tensor:
    n, dev = draw.num, draw.uniforms.device
    m = torch.eye(3, dtype=dtype, device=dev).repeat(n, 1, 1)
    if group == "flip":
        m[:, 0, 0] = 1.0 - 2.0 * draw.flip.to(dtype)
    elif group == "crop":
        shifts = draw.crop_shifts(h, w).to(dtype)
        m[:, 0, 2] = 2.0 * shifts[:, 1] / w
        m[:, 1, 2] = 2.0 * shifts[:, 0] / h
    elif group == "scale":
        s = draw.scale.to(dtype)
        m[:, 0, 0], m[:, 1, 1] = s[:, 0], s[:, 1]
    else:  # rotate
        a = torch.deg2rad(draw.angle.to(dtype))
        c, s = torch.cos(a), torch.sin(a)
        m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def _warp(x: Tensor, m: Tensor, smooth: bool, moved: bool) -> Tensor:
    b, _, h, w = x.shape
    if not smooth and not moved:  # flips only: an exact index operation
        flip = m[:, 0, 0] < 0
        if flip.numel() == 1:
            return x.flip(3) if bool(flip) else x
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    dt = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    ys = (torch.arange(h, device=x.device, dtype=dt) * 2 + 1) / h - 1  # pixel centres
    xs = (torch.arange(w, device=x.device, dtype=dt) * 2 + 1) / w - 1
    t = m[:, :2, :, None, None].to(dt)  # (n, 2, 3, 1, 1)
    # grid[n, i, j] = t[n] @ (xs[j], ys[i], 1), built as (n, 2, H, W) broadcast sums and viewed as
    # (n, H, W, 2): much faster on CPU than affine_grid's batched matmul with inner size 3
    grid = (t[:, :, 0] * xs + (t[:, :, 1] * ys[:, None] + t[:, :, 2])).permute(0, 2, 3, 1)
    if grid.shape[0] != b:
        grid = grid.expand(b, h, w, 2)
    mode = "bilinear" if smooth else "nearest"  # a crop/flip chain lands on pixel centres: exact
    return F.grid_sample(x, grid.to(x.dtype), mode=mode, padding_mode="zeros", align_corners=False)


def _color(x: Tensor, draw: DSADraw) -> Tensor:
    """Brightness, saturation, contrast in one expression.

    With b = brightness shift, s = saturation, k = contrast, m_c = channel mean per pixel and
    m = image mean, DSA's sequence gives k*s*x + (k - k*s)*m_c + (1 - k)*m + b.
    """
    shape = (-1, 1, 1, 1)
    b = draw.brightness.to(x.dtype).view(shape)
    s = draw.saturation.to(x.dtype).view(shape)
    k = draw.contrast.to(x.dtype).view(shape)
    m_c = x.mean(dim=1, keepdim=True)
    m = m_c.mean(dim=(2, 3), keepdim=True)
    ks = k * s
    return x * ks + (m_c * (k - ks) + ((1.0 - k) * m + b))


def _box_mask(boxes: Tensor, h: int, w: int, inside: bool, dtype: torch.dtype) -> Tensor:
    """(n, 1, H, W) mask of half-open boxes (r0, r1, c0, c1): 1 inside if `inside`, else 0 inside."""
    r0, r1, c0, c1 = boxes.unbind(1)
    rows = torch.arange(h, device=boxes.device)
    cols = torch.arange(w, device=boxes.device)
    in_r = (rows >= r0[:, None]) & (rows < r1[:, None])
    in_c = (cols >= c0[:, None]) & (cols < c1[:, None])
    box = in_r[:, :, None] & in_c[:, None, :]
    return (box if inside else ~box).to(dtype).unsqueeze(1)


# --------------------------------------------------------------------------------------------------
# Presets


def weak_augment(params: DSAParams | None = None) -> DSA:
    """DHD's teacher view on 32x32 data: random translation by up to crop_pad (0.125) and a flip."""
    return DSA("crop_flip", params, mode="all")


def strong_augment(params: DSAParams | None = None, mode: str = "all") -> DSA:
    """DHD's student view: the full DSA strategy.

    mode="all" applies every group so the strong view always includes the weak one's transforms
    (DSA's own "single" mode would sometimes give only a flip, a weaker view than the teacher's).
    """
    return DSA(DSA_STRATEGY, params, mode=mode)


_PRESETS = {
    "none": lambda p: DSA("none", p),
    "weak": weak_augment,
    "strong": strong_augment,
    "dsa": lambda p: DSA(DSA_STRATEGY, p, mode="single"),
    "idc": lambda p: DSA(DSA_STRATEGY, p, mode="idc"),
}


def create_augment(name: str, params: DSAParams | None = None) -> DSA:
    """A preset by name: none, weak, strong (all groups), dsa (DSA/DM single mode), idc (IDC's order)."""
    key = str(name).lower()
    if key not in _PRESETS:
        valid = ", ".join(sorted(_PRESETS))
        raise HashCondenseError(f"unknown augmentation '{name}'; choose one of: {valid}")
    return _PRESETS[key](params)
