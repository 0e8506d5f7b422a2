"""The threat model: an observation-space ball with an explicit unit.

The adversary perturbs the observation the agent sees, within ``||delta / scale|| <= eps``
(``linf`` or ``l2``), where ``scale`` says what one unit of ``eps`` is in raw observation
units: 255 for image observations (so ``eps = 1/255`` is one grey level) and, for vector
observations, the per-feature standard deviation of the agent's own observations stored in
the checkpoint (SA-PPO's convention). Perturbed observations are clipped to the observation
space's finite bounds; clipping never increases either norm, because the clean observation
lies inside the bounds.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th

from rllab.agent import Agent
from rllab.errors import RllabError
from rllab.parsing import parse_number
from rllab.units import STD, ThreatUnit, unit_name

NORMS = ("linf", "l2")


class BudgetViolation(RllabError):
    """An attack returned a perturbation outside its budget: a bug, never a result."""


def parse_eps(text: str) -> list[float]:
    """``"0.05,0.1"`` or ``"1/255,4/255"`` -> floats (>= 0)."""
    out = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            value = parse_number(item, "eps")  # the lab's one reading of 0.1 / 4/255
        except RllabError:
            raise RllabError(f"bad eps {item!r}; use numbers like 0.1 or 4/255") from None
        if value < 0:
            raise RllabError(f"eps must be a finite number >= 0, got {item}")
        out.append(value)
    if not out:
        raise RllabError("no eps given")
    return out


def warn_fraction_on_vectors(text: str, agent: Agent, option: str = "--eps") -> None:
    """One warning line when a budget typed as a fraction (``4/255``) is used on a vector agent.

    The fraction form is meant for pixel budgets; for vectors eps is in per-feature observation std,
    so ``4/255`` is a budget of 0.0157 std (the budget is still used as typed).
    """
    if agent.is_image:
        return
    fractions = [item.strip() for item in str(text).split(",") if "/" in item]
    if fractions:
        values = ", ".join(f"{parse_eps(f)[0]:.3g}" for f in fractions)
        unit = "std" if unit_name(False, agent.observation_space) == STD else "of the [0, 1] range"
        kind = "observation std" if unit == "std" else "absolute [0, 1] units"
        print(
            f"warning: {option} {', '.join(fractions)}: the k/255 form is meant for pixel budgets; this agent's "
            f"observations are vectors, so eps is in {kind}: {values} {unit}",
            file=sys.stderr,
        )


@dataclass
class ThreatModel:
    """A ball of radius ``eps`` (``norm``) around each observation, in the budget unit named ``unit``."""

    eps: float
    norm: str
    unit: str  # the ThreatUnit's name (rllab.units.PIXEL or STD)
    scale: th.Tensor  # raw units per eps unit, observation-shaped
    low: th.Tensor
    high: th.Tensor

    @classmethod
    def for_agent(cls, agent: Agent, eps: float, norm: str = "linf") -> ThreatModel:
        """The threat model of ``agent``'s observations at budget ``eps`` in its unit (``ThreatUnit.for_agent``)."""
        if norm not in NORMS:
            raise RllabError(f"unknown norm {norm!r}; use linf or l2")
        if eps < 0:
            raise RllabError(f"eps must be >= 0, got {eps}")
        unit = ThreatUnit.for_agent(agent)
        shape = agent.observation_space.shape
        space = agent.observation_space
        low = np.broadcast_to(np.asarray(space.low, dtype=np.float32), shape)
        high = np.broadcast_to(np.asarray(space.high, dtype=np.float32), shape)
        dev = agent.device
        return cls(
            eps,
            norm,
            unit.name,
            th.as_tensor(unit.scale, device=dev),
            th.as_tensor(low.copy(), device=dev),
            th.as_tensor(high.copy(), device=dev),
        )

    def __post_init__(self) -> None:
        self.safe_scale = th.where(self.scale > 0, self.scale, th.ones_like(self.scale))
        self.free = self.scale > 0  # features whose budget is not zero

    # -- geometry (in eps units: z = delta / scale) ----------------------------------
    def _flat_norm(self, z: th.Tensor) -> th.Tensor:
        flat = z.reshape(z.shape[0], -1)
        return flat.abs().amax(1) if self.norm == "linf" else flat.norm(dim=1)

    def project(self, x_adv: th.Tensor, x: th.Tensor) -> th.Tensor:
        """Nearest point of the ball around ``x`` (then clipped to the observation bounds)."""
        z = (x_adv - x) / self.safe_scale * self.free
        if self.norm == "linf":
            z = z.clamp(-self.eps, self.eps)
        else:
            n = z.reshape(z.shape[0], -1).norm(dim=1).clamp_min(1e-12)
            factor = th.clamp(self.eps / n, max=1.0).view(-1, *[1] * (z.dim() - 1))
            z = z * factor
        return th.maximum(th.minimum(x + z * self.scale, self.high), self.low)

    def linf_box(self, x: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """The linf ball around ``x`` intersected with the observation bounds, as (low, high) tensors.

        ``clamp(x_adv, *linf_box(x))`` equals ``project(x_adv, x)`` for the linf norm (x inside the
        bounds): one op per PGD step instead of the general projection's eight.
        """
        radius = self.eps * self.scale
        return th.maximum(x - radius, self.low), th.minimum(x + radius, self.high)

    def step(self, x_adv: th.Tensor, grad: th.Tensor, alpha: float) -> th.Tensor:
        """One ascent step of size ``alpha`` (eps units): signed for linf, normalised for l2."""
        g = grad * self.scale  # the gradient with respect to z
        if self.norm == "linf":
            return x_adv + alpha * g.sign() * self.scale
        n = g.reshape(g.shape[0], -1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (g.dim() - 1))
        return x_adv + alpha * g / n * self.scale

    def random_point(self, x: th.Tensor, generator: th.Generator | None = None) -> th.Tensor:
        """Uniform in the ball (linf: per coordinate; l2: uniform direction and radius eps * U^(1/d)).

        Only features with a non-zero budget move: for l2 the direction is drawn over those ``d``
        free features and the radius uses that ``d``, so the point is uniform in the free ball.
        """
        shape = x.shape
        if self.norm == "linf":
            z = (th.rand(shape, generator=generator, device=x.device) * 2 - 1) * self.eps
        else:
            d = max(int(self.free.sum()), 1)
            v = th.randn(shape, generator=generator, device=x.device) * self.free.to(x.device)
            v = v / v.reshape(shape[0], -1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (len(shape) - 1))
            r = th.rand(shape[0], generator=generator, device=x.device) ** (1.0 / d) * self.eps
            z = v * r.view(-1, *[1] * (len(shape) - 1))
        return self.project(x + z * self.scale, x)

    def size(self, x_adv: th.Tensor, x: th.Tensor) -> th.Tensor:
        """Per-observation perturbation norm in eps units."""
        return self._flat_norm((x_adv - x) / self.safe_scale * self.free)

    def check(self, x_adv: th.Tensor, x: th.Tensor, attack: str) -> th.Tensor:
        """Raises ``BudgetViolation`` unless every perturbation is within eps (+1e-6) and the bounds."""
        sizes = self.size(x_adv, x)
        worst = float(sizes.max()) if sizes.numel() else 0.0
        if worst > self.eps + 1e-6:
            raise BudgetViolation(
                f"{attack} produced a perturbation of size {worst:.6g} > eps {self.eps:.6g} "
                f"({self.norm}, {self.unit}): refusing to report it"
            )
        if bool(((x_adv < self.low - 1e-4) | (x_adv > self.high + 1e-4)).any()):
            raise BudgetViolation(f"{attack} left the observation space's bounds")
        leaked = (self.scale == 0) & (x_adv != x)
        if bool(leaked.any()):
            raise BudgetViolation(f"{attack} perturbed a feature whose budget is zero")
        return sizes

    def describe(self) -> dict[str, Any]:
        """The budget as the card records it (std units also give the raw budget per feature)."""
        out: dict[str, Any] = {"eps": self.eps, "norm": self.norm, "unit": self.unit}
        if self.unit == STD:
            out["raw_budget_per_feature"] = (self.eps * self.scale).reshape(-1).tolist()
        return out
