"""Seeded, composable camera-like transformations of ``[0, 1]`` image batches.

Every transform is a small class with explicit, validated parameters (settings
at construction) applied to a batch at call time: ``t(x, generator=g)``. A
parameter is either a number (applied to every image) or a ``(low, high)``
range, from which one value per image is drawn uniformly with the given
``torch.Generator`` (same seed, same output; the global RNG is never touched
when a generator is passed).

Every transform is usable inside an attack: the continuous ones are ordinary
differentiable torch operations; 8-bit quantization and JPEG compression are
not differentiable, and use the straight-through / BPDA approximation (the
forward value is exact, the backward pass treats the step as the identity),
as Athalye, Carlini & Wagner (2018) do for non-differentiable preprocessing.

The transformations follow Kurakin, Goodfellow & Bengio (2016), section 4:
change of brightness (``x + a``) and contrast (``x * b``), Gaussian blur,
Gaussian noise and JPEG compression, plus the small rotation, scale and
translation that printing and photographing introduce.

References:
    Kurakin, Goodfellow & Bengio, "Adversarial examples in the physical
    world", arXiv:1607.02533, 2016.
    Athalye, Engstrom, Ilyas & Kwok, "Synthesizing Robust Adversarial
    Examples", ICML 2018. Athalye, Carlini & Wagner, "Obfuscated Gradients
    Give a False Sense of Security", ICML 2018 (BPDA).
"""

from __future__ import annotations

import io
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "Transform", "Identity", "Quantize", "BrightnessContrast", "GaussianBlur", "GaussianNoise",
    "JPEG", "Affine", "Compose", "print_and_photograph", "TRANSFORMS", "create_transform",
    "standard_transforms",
]

Param = float | tuple[float, float]


def _check_param(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> Param:
    """Validate a number or a ``(low, high)`` range inside ``[lo, hi]``."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}")
        a, b = (_check_param(name, v, lo, hi, lo_open=lo_open) for v in value)
        assert isinstance(a, float) and isinstance(b, float)
        if a > b:
            raise ValueError(f"{name} range must satisfy low <= high, got {value!r}")
        return (a, b)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number or a (low, high) pair, got {type(value).__name__}")
    v = float(value)
    bad_lo = v <= lo if lo_open else v < lo
    if not math.isfinite(v) or bad_lo or v > hi:
        bracket = "(" if lo_open else "["
        raise ValueError(f"{name} must lie in {bracket}{lo:g}, {hi:g}], got {value!r}")
    return v


def _sample(p: Param, n: int, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """One value per image: the constant, or uniform draws from the range."""
    if isinstance(p, tuple):
        u = torch.rand(n, generator=generator, device=like.device, dtype=like.dtype)
        return p[0] + (p[1] - p[0]) * u
    return torch.full((n,), p, device=like.device, dtype=like.dtype)


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"images must be floating point in [0, 1], got {x.dtype} "
                        "(convert uint8 images with x.float() / 255)")
    if x.ndim != 4:
        raise ValueError(f"images must be a batch of shape (N, C, H, W), got {tuple(x.shape)}")


def _straight_through(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Forward value ``y``, gradient of the identity (BPDA)."""
    return x + (y - x).detach()


class Transform(ABC):
    """A random camera-like transformation of ``[0, 1]`` image batches ``(N, C, H, W)``.

    Call it as ``t(x, generator=g)``; the input is never modified in place and
    the output lies in ``[0, 1]``.
    """

    #: whether the backward pass is exact (``False``: straight-through approximation)
    exact_gradient: bool = True

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_images(x)
        if x.shape[0] == 0:
            return x.clone()
        return self._apply(x, generator)

    @abstractmethod
    def _apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Transform a validated, non-empty batch."""

    def settings(self) -> dict[str, Any]:
        """The constructor parameters, for JSON results."""
        return {"transform": type(self).__name__,
                **{k: v for k, v in vars(self).items() if not k.startswith("_")}}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Identity(Transform):
    """No change (the digital baseline)."""

    def _apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return x.clone()


class Quantize(Transform):
    """Round to ``2**bits`` grey levels (an 8-bit image file by default).

    Args:
        bits: bits per channel, an integer in ``[1, 16]``.

    The gradient is the identity (straight-through estimator).
    """

    exact_gradient = False

    def __init__(self, bits: int = 8) -> None:
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
            raise ValueError(f"bits must be an integer in [1, 16], got {bits!r}")
        self.bits = bits

    def _apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        levels = 2 ** self.bits - 1
        y = torch.round(x.clamp(0, 1) * levels) / levels
        return _straight_through(x, y)


class BrightnessContrast(Transform):
    """Brightness and contrast change of Kurakin et al. (2016): ``clip(x * contrast + brightness)``.

    Args:
        brightness: additive shift ``a`` in ``[-1, 1]``, or a range.
        contrast: multiplicative factor ``b`` in ``(0, 10]``, or a range.
    """

    def __init__(self, brightness: Param = 0.0, contrast: Param = 1.0) -> None:
        self.brightness = _check_param("brightness", brightness, -1.0, 1.0)
        self.contrast = _check_param("contrast", contrast, 0.0, 10.0, lo_open=True)

    def _apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n = x.shape[0]
        b = _sample(self.contrast, n, generator, x).view(n, 1, 1, 1)
        a = _sample(self.brightness, n, generator, x).view(n, 1, 1, 1)
        return (x * b + a).clamp(0, 1)


class GaussianBlur(Transform):
    """Gaussian blur with standard deviation ``sigma`` pixels (replicate padding).

    Args:
        sigma: standard deviation in pixels, in ``[0, 10]``, or a range; ``0`` is
            the identity.
        radius: kernel half-width in pixels; default ``ceil(3 * max sigma)``.
    """

    def __init__(self, sigma: Param = 1.0, radius: int | None = None) -> None:
        self.sigma = _check_param("sigma", sigma, 0.0, 10.0)
        if radius is not None and (isinstance(radius, bool) or not isinstance(radius, int)
                                   or radius < 0):
            raise ValueError(f"radius must be a non-negative integer or None, got {radius!r}")
        self.radius = radius

    def _apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, c, h, w = x.shape
        sig = _sample(self.sigma, n, generator, x)
        smax = max(self.sigma) if isinstance(self.sigma, tuple) else self.sigma
        r = self.radius if self.radius is not None else int(math.ceil(3 * smax))
        if r == 0 or smax == 0:
            return x.clone()
        t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-0.5 * (t[None] / sig.clamp_min(1e-6)[:, None]) ** 2)
        k = torch.where(sig[:, None] > 0, k, (t[None] == 0).to(x.dtype))  # sigma 0: identity
        k = k / k.sum(dim=1, keepdim=True)  # (n, 2r+1)
        kern = k.repeat_interleave(c, dim=0)  # one 1-D kernel per (image, channel)
        y = x.reshape(1, n * c, h, w)
        y = F.pad(y, (r, r, 0, 0), mode="replicate")
        y = F.conv2d(y, kern.view(n * c, 1, 1, 2 * r + 1), groups=n * c)
        y = F.pad(y, (0, 0, r, r), mode="replicate")
        y = F.conv2d(y, kern.view(n * c, 1, 2 * r + 1, 1), groups=n * c)
        return y.reshape(n, c, h, w)


class GaussianNoise(Transform):
    """Additive Gaussian noise with standard deviation ``std``, clipped to ``[0, 1]``.

    Args:
        std: noise standard deviation in ``[0, 1]``, or a range.
        straight_through_clip: let the gradient pass the clip to ``[0, 1]`` unchanged.
            ``False`` (default) is the exact gradient: a copy whose pixel was clipped
            contributes nothing for that pixel, so on a black MNIST background only
            copies with positive noise count. ``True`` takes the gradient at each noisy,
            clipped copy and hands it to the input as is, the SmoothGrad estimate
            (Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise",
            arXiv:1706.03825) of the smoothed model's gradient; it made FGSM on a
            smoothed substitute transfer better (docs/transfer.md).
    """

    def __init__(self, std: Param = 0.05, straight_through_clip: bool = False) -> None:
        self.std = _check_param("std", std, 0.0, 1.0)
        if not isinstance(straight_through_clip, bool):
            raise TypeError(f"straight_through_clip must be a bool, got {straight_through_clip!r}")
        self.straight_through_clip = straight_through_clip

    @property
    def exact_gradient(self) -> bool:  # type: ignore[override]
        return not self.straight_through_clip

    def _apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n = x.shape[0]
        s = _sample(self.std, n, generator, x).view(n, 1, 1, 1)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        y = x + s * noise
        if self.straight_through_clip:
            return _straight_through(y, y.clamp(0, 1))
        return y.clamp(0, 1)


class JPEG(Transform):
    """JPEG compression and decompression with Pillow at ``quality`` (1-95).

    Args:
        quality: JPEG quality in ``[1, 95]`` (integer), or a range (rounded per image).

    The gradient is the identity (straight-through / BPDA approximation of
    Athalye, Carlini & Wagner 2018): JPEG is not differentiable. Images with 1
    or 3 channels are encoded as greyscale or RGB; other channel counts channel
    by channel.
    """

    exact_gradient = False

    def __init__(self, quality: Param = 75) -> None:
        self.quality = _check_param("quality", quality, 1.0, 95.0)

    def _apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        from PIL import Image

        n, c = x.shape[:2]
        q = _sample(self.quality, n, generator, x).round().to(torch.int64).tolist()
        arr = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        out = np.empty_like(arr)
        for i in range(n):
            planes = [arr[i]] if c in (1, 3) else [arr[i, j:j + 1] for j in range(c)]
            decoded = []
            for p in planes:
                mode = "RGB" if p.shape[0] == 3 else "L"
                img = Image.fromarray(np.ascontiguousarray(p.transpose(1, 2, 0) if mode == "RGB"
                                                           else p[0]), mode=mode)
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=int(q[i]))
                buf.seek(0)
                d = np.asarray(Image.open(buf).convert(mode))
                decoded.append(d.transpose(2, 0, 1) if mode == "RGB" else d[None])
            out[i] = np.concatenate(decoded, axis=0)
        y = torch.from_numpy(out).to(device=x.device, dtype=x.dtype) / 255
        return _straight_through(x, y)


class Affine(Transform):
    """Small rotation, scale and translation (bilinear ``affine_grid``/``grid_sample``).

    Args:
        rotation: angle in degrees in ``[-180, 180]``, or a range.
        scale: zoom factor in ``(0, 10]`` (``> 1`` enlarges), or a range.
        translate: shift as a fraction of the image size in ``[-1, 1]``, or a
            range (drawn separately for x and y).
        padding: ``"border"`` (repeat edge pixels, like a photographed page),
            ``"zeros"`` or ``"reflection"``.
    """

    def __init__(self, rotation: Param = 0.0, scale: Param = 1.0, translate: Param = 0.0,
                 padding: str = "border") -> None:
        self.rotation = _check_param("rotation", rotation, -180.0, 180.0)
        self.scale = _check_param("scale", scale, 0.0, 10.0, lo_open=True)
        self.translate = _check_param("translate", translate, -1.0, 1.0)
        if padding not in ("border", "zeros", "reflection"):
            raise ValueError(f"padding must be 'border', 'zeros' or 'reflection', got {padding!r}")
        self.padding = padding

    def _apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n = x.shape[0]
        ang = _sample(self.rotation, n, generator, x) * (math.pi / 180)
        s = _sample(self.scale, n, generator, x)
        tx = _sample(self.translate, n, generator, x) * 2  # grid coordinates span [-1, 1]
        ty = _sample(self.translate, n, generator, x) * 2
        cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
        # output pixel p samples the input at A p + t: the inverse of "rotate, scale, shift"
        theta = torch.stack([torch.stack([cos, -sin, -tx], 1), torch.stack([sin, cos, -ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        y = F.grid_sample(x, grid, mode="bilinear", padding_mode=self.padding, align_corners=False)
        return y.clamp(0, 1)


class Compose(Transform):
    """Apply ``transforms`` in order (each draws its own random parameters)."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        ts = list(transforms)
        for t in ts:
            if not isinstance(t, Transform):
                raise TypeError(f"Compose takes Transform objects, got {type(t).__name__}")
        self.transforms = ts

    @property
    def exact_gradient(self) -> bool:  # type: ignore[override]
        return all(t.exact_gradient for t in self.transforms)

    def _apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, generator)
        return x

    def settings(self) -> dict[str, Any]:
        return {"transform": "Compose", "transforms": [t.settings() for t in self.transforms]}


def print_and_photograph(strength: float = 1.0) -> Compose:
    """A "print and photograph" simulation: geometry, optics, lighting, sensor, file.

    A small random rotation (up to 6 degrees), zoom (+-6%) and shift (+-4%), a
    blur of 0.3-1.0 px, brightness +-0.1 and contrast 0.8-1.15, sensor noise
    of std 0.01-0.04, JPEG at quality 50-90 and 8-bit quantization, every
    random parameter drawn per image. ``strength`` scales every deviation from
    the identity (``0`` gives a pure 8-bit quantization).

    Args:
        strength: in ``[0, 2]``.

    Returns:
        the composed transform.
    """
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not (
            0 <= strength <= 2):
        raise ValueError(f"strength must be a number in [0, 2], got {strength!r}")
    k = float(strength)

    def rng(a: float, b: float, center: float = 0.0) -> tuple[float, float]:
        return (center + k * (a - center), center + k * (b - center))

    steps: list[Transform] = [
        Affine(rotation=rng(-6, 6), scale=rng(0.94, 1.06, 1.0), translate=rng(-0.04, 0.04)),
        GaussianBlur(sigma=rng(0.3, 1.0)),
        BrightnessContrast(brightness=rng(-0.1, 0.1), contrast=rng(0.8, 1.15, 1.0)),
        GaussianNoise(std=rng(0.01, 0.04)),
    ]
    if k > 0:
        steps.append(JPEG(quality=(max(1.0, 95 - k * 45), max(1.0, 95 - k * 5))))
    steps.append(Quantize(8))
    return Compose(steps)


#: the named transforms of the destruction-rate table, built with their default strength
TRANSFORMS: dict[str, Any] = {
    "quantize": lambda: Quantize(8),
    "brightness": lambda: BrightnessContrast(brightness=(-0.15, 0.15)),
    "contrast": lambda: BrightnessContrast(contrast=(0.7, 1.3)),
    "blur": lambda: GaussianBlur(sigma=1.0),
    "noise": lambda: GaussianNoise(std=0.05),
    "jpeg": lambda: JPEG(quality=50),
    "affine": lambda: Affine(rotation=(-6, 6), scale=(0.94, 1.06), translate=(-0.04, 0.04)),
    "photo": lambda: print_and_photograph(),
}


def create_transform(name: str) -> Transform:
    """A named transform of :data:`TRANSFORMS` (``quantize``, ``blur``, ``jpeg``, ``photo``, ...)."""
    key = str(name).lower()
    if key not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; use one of {sorted(TRANSFORMS)}")
    t: Transform = TRANSFORMS[key]()
    return t


def standard_transforms() -> dict[str, Transform]:
    """Every named transform, in table order."""
    return {k: create_transform(k) for k in TRANSFORMS}
