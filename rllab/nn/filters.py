"""Input filters placed in front of an agent (the "filter the input" defenses).

A filtered agent is an ordinary checkpoint: ``agent.json`` lists the filters under
``preprocessing.filters`` as ``{"name": ..., "params": {...}}`` and
``rllab.load`` rebuilds them, so it evaluates, attacks and explains like any
other agent. Filters work on raw observations (the units the environment emits)
and keep their shape and bounds.

Gradients: ``GaussianBlur`` is differentiable; ``MedianFilter`` and ``BitDepth``
have zero or undefined gradients almost everywhere, which masks gradients from a
naive attacker. ``Agent.straight_through()`` switches those to the identity on
the backward pass (BPDA, Athalye et al. 2018, section 4.1) so that an adaptive
attacker can still follow the agent's gradient. ``GaussianNoise`` is random: an
attacker averages gradients over its randomness (EOT, Athalye et al. 2018, 4.2).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
import torch.nn.functional as F
from torch import nn

from rllab.errors import RllabError


def gaussian_kernel(sigma: float, size: int) -> th.Tensor:
    """A normalised 1-D Gaussian of ``size`` (odd) taps with standard deviation ``sigma``."""
    r = th.arange(size, dtype=th.float32) - size // 2
    k = th.exp(-(r**2) / (2 * sigma**2))
    return k / k.sum()


def separable_blur(img: th.Tensor, kernel: th.Tensor, padding: str = "replicate") -> th.Tensor:
    """Each channel of (N, C, H, W) images convolved with ``kernel`` along both spatial axes (same size out)."""
    c = img.shape[1]
    pad = kernel.numel() // 2
    k = kernel.to(img)
    y = F.pad(img, (pad, pad, pad, pad), mode=padding)
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class InputFilter(nn.Module):
    """A preprocessing filter in front of the policy, on observations in the environment's own layout and range."""

    name: ClassVar[str]
    differentiable: ClassVar[bool] = True
    random: ClassVar[bool] = False

    def __init__(self, layout: str, low: float, high: float) -> None:
        super().__init__()
        if layout not in ("chw", "hwc", "vector"):
            raise RllabError(f"unknown observation layout {layout!r}")
        self.layout, self.low, self.high = layout, float(low), float(high)

    def params(self) -> dict[str, Any]:
        """The filter's settings as ``agent.json`` stores them."""
        raise NotImplementedError

    def _spatial(self, x: th.Tensor) -> tuple[th.Tensor, bool]:
        """(B, C, H, W) view of an image batch."""
        return (x.permute(0, 3, 1, 2), True) if self.layout == "hwc" else (x, False)

    @staticmethod
    def _unspatial(y: th.Tensor, transposed: bool) -> th.Tensor:
        return y.permute(0, 2, 3, 1) if transposed else y


class ImageFilter(InputFilter):
    """A filter over the two spatial axes of image observations."""

    def __init__(self, layout: str, low: float, high: float) -> None:
        super().__init__(layout, low, high)
        if layout == "vector":
            raise RllabError(f"the {self.name} filter needs image observations")


class GaussianBlur(ImageFilter):
    """Per-channel Gaussian blur with standard deviation ``sigma`` pixels."""

    name = "gaussian_blur"

    def __init__(self, layout: str, low: float, high: float, sigma: float = 1.0, size: int | None = None) -> None:
        super().__init__(layout, low, high)
        if sigma <= 0:
            raise RllabError(f"gaussian_blur needs sigma > 0, got {sigma}")
        self.sigma = float(sigma)
        self.size = int(size) if size else 2 * int(round(3 * sigma)) + 1
        if self.size % 2 == 0:
            raise RllabError(f"gaussian_blur needs an odd size, got {self.size}")
        self.register_buffer("kernel", gaussian_kernel(self.sigma, self.size), persistent=False)

    def params(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "size": self.size}

    def forward(self, x: th.Tensor) -> th.Tensor:
        img, t = self._spatial(x)
        return self._unspatial(separable_blur(img, self.kernel), t)


class MedianFilter(ImageFilter):
    """Per-channel ``size`` x ``size`` median filter (replicate padding)."""

    name = "median"
    differentiable = False

    def __init__(self, layout: str, low: float, high: float, size: int = 3) -> None:
        super().__init__(layout, low, high)
        if size < 1 or size % 2 == 0:
            raise RllabError(f"median needs an odd size >= 1, got {size}")
        self.size = int(size)

    def params(self) -> dict[str, Any]:
        return {"size": self.size}

    def forward(self, x: th.Tensor) -> th.Tensor:
        img, t = self._spatial(x)
        pad = self.size // 2
        y = F.pad(img, (pad, pad, pad, pad), mode="replicate")
        patches = y.unfold(2, self.size, 1).unfold(3, self.size, 1)
        y = patches.reshape(*patches.shape[:4], -1).median(dim=-1).values
        return self._unspatial(y, t)


class BitDepth(InputFilter):
    """Quantise each value to ``2**bits`` levels over the observation's range (Xu et al. 2018, feature squeezing)."""

    name = "bit_depth"
    differentiable = False

    def __init__(self, layout: str, low: float, high: float, bits: int = 4) -> None:
        super().__init__(layout, low, high)
        if not 1 <= bits <= 16:
            raise RllabError(f"bit_depth needs 1 <= bits <= 16, got {bits}")
        if not (th.isfinite(th.tensor(self.low)) and th.isfinite(th.tensor(self.high))):
            raise RllabError("bit_depth needs finite observation bounds")
        self.bits = int(bits)

    def params(self) -> dict[str, Any]:
        return {"bits": self.bits}

    def forward(self, x: th.Tensor) -> th.Tensor:
        levels = 2**self.bits - 1
        unit = (x.clamp(self.low, self.high) - self.low) / (self.high - self.low)
        return th.round(unit * levels) / levels * (self.high - self.low) + self.low


class GaussianNoise(InputFilter):
    """Adds N(0, sigma^2) noise in raw units (per feature: ``sigma`` may be a list), clipped to the bounds."""

    name = "gaussian_noise"
    random = True

    def __init__(self, layout: str, low: float, high: float, sigma: float | list[float] = 0.1) -> None:
        super().__init__(layout, low, high)
        self.sigma_param = sigma
        self.register_buffer("sigma", th.as_tensor(sigma, dtype=th.float32), persistent=False)
        if bool((self.sigma < 0).any()):
            raise RllabError("gaussian_noise needs sigma >= 0")

    def params(self) -> dict[str, Any]:
        return {"sigma": self.sigma_param}

    def forward(self, x: th.Tensor) -> th.Tensor:
        return (x + th.randn_like(x) * self.sigma.to(x)).clamp(self.low, self.high)


FILTERS: dict[str, type[InputFilter]] = {cls.name: cls for cls in (GaussianBlur, MedianFilter, BitDepth, GaussianNoise)}


def build_filter(entry: dict[str, Any], layout: str, low: float, high: float) -> InputFilter:
    """The input filter a checkpoint's ``preprocessing.filters`` entry describes."""
    name = entry.get("name")
    if name not in FILTERS:
        raise RllabError(f"unknown input filter {name!r}; known: {', '.join(FILTERS)}")
    try:
        return FILTERS[name](layout, low, high, **entry.get("params", {}))
    except (TypeError, ValueError) as exc:
        raise RllabError(f"bad parameters for filter {name}: {exc}") from None


def straight_through(f: InputFilter, x: th.Tensor) -> th.Tensor:
    """f(x) on the forward pass, the identity on the backward pass (BPDA)."""
    return x + (f(x) - x).detach()
