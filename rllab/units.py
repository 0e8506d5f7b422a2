"""The threat unit: what one unit of a budget (``eps``, a noise ``sigma``) is in raw observation units.

- ``pixel/255``: image observations (uint8); one unit is the whole pixel range, so ``eps = 1/255`` is one
  grey level and budgets are typed and printed as ``k/255``.
- ``obs std``: vector observations; one unit is the per-feature standard deviation of the agent's own
  observations, stored in the checkpoint (SA-PPO's normalised-state unit, where ``eps = 0.075``).
- ``absolute [0, 1]``: bounded non-pixel observations whose every feature lies in [0, 1] (MinAtar's binary
  channels, where most features have zero std): one unit is the whole range, so ``eps = 0.1`` moves a
  feature by a tenth of its range.

Each unit has its default budgets (``DEFAULT_EPS``): 1/255-style grey levels for pixels, never 0.1 = 25.5/255.

Every place that reads, scales, checks or prints a budget goes through :class:`ThreatUnit`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from rllab.errors import RllabError
from rllab.spaces import is_unit_box

PIXEL = "pixel/255"
STD = "obs std"
RUNNING_STD = "running obs std"  # adversarial training's vector unit: the std of the observations seen in training
MAX_STD_BUDGET = 1e6  # a budget or noise scale of a million standard deviations is no longer a perturbation
ABSOLUTE = "absolute [0, 1]"

# default budgets per unit: (one budget, as ``rllab attack --eps`` takes it; a sweep, as ``rllab certify``)
DEFAULT_EPS: dict[str, tuple[str, str]] = {
    PIXEL: ("2/255", "1/255,2/255,4/255"),
    STD: ("0.1", "0.05,0.1,0.2"),
    ABSOLUTE: ("0.1", "0.05,0.1,0.2"),
}


def default_eps(unit: str, sweep: bool = False) -> str:
    """The default budget (``sweep``: budgets, comma-separated) of a unit, as a command line would give it."""
    return DEFAULT_EPS.get(unit, DEFAULT_EPS[STD])[1 if sweep else 0]


class _HasObservations(Protocol):
    """What a unit needs to know of an agent (``rllab.Agent`` has it)."""

    observation_space: Any
    is_image: bool
    obs_std: np.ndarray | None


@dataclass(frozen=True)
class ThreatUnit:
    """A budget unit: its ``name`` and the raw observation units per budget unit, per feature (``scale``)."""

    name: str
    scale: np.ndarray = field(repr=False)  # float32, observation-shaped

    @classmethod
    def pixel(cls, shape: tuple[int, ...]) -> ThreatUnit:
        """Pixel budgets: 255 raw units per unit, for every feature."""
        return cls(PIXEL, np.full(shape, 255.0, dtype=np.float32))

    @classmethod
    def std(cls, std: Any, shape: tuple[int, ...] | None = None, name: str = STD) -> ThreatUnit:
        """Budgets in multiples of a per-feature standard deviation (refused if non-finite or all zero)."""
        arr = np.asarray(std, dtype=np.float64)
        if shape is not None:
            if arr.size != int(np.prod(shape)):
                raise RllabError(f"observation statistics have {arr.size} values for an observation of shape {shape}")
            arr = arr.reshape(shape)
        if not np.all(np.isfinite(arr)) or bool((arr < 0).any()):
            raise RllabError(
                "the observation statistics (obs_stats.std) are not finite and >= 0: budgets in std "
                "units cannot be scaled by them"
            )
        if arr.size and not bool((arr > 0).any()):
            raise RllabError("every feature's observation std is 0: a budget in std units would perturb nothing")
        return cls(name, arr.astype(np.float32))

    @classmethod
    def absolute(cls, shape: tuple[int, ...]) -> ThreatUnit:
        """Budgets in the observation's own [0, 1] range: one raw unit per unit, for every feature."""
        return cls(ABSOLUTE, np.ones(shape, dtype=np.float32))

    @classmethod
    def for_agent(cls, agent: _HasObservations) -> ThreatUnit:
        """The unit of an agent's budgets: pixels for image observations, absolute for observations bounded in
        [0, 1] (MinAtar), its stored std for other vectors."""
        shape = tuple(agent.observation_space.shape)
        if agent.is_image:
            return cls.pixel(shape)
        if is_unit_box(agent.observation_space):
            return cls.absolute(shape)
        if agent.obs_std is None:
            raise RllabError("the checkpoint has no observation statistics (obs_stats) to scale vector budgets")
        return cls.std(agent.obs_std, shape)

    @property
    def is_pixel(self) -> bool:
        """Whether budgets are pixel/255 (typed and printed as ``k/255``)."""
        return self.name == PIXEL

    def raw(self, value: float) -> np.ndarray:
        """A budget in this unit -> per-feature raw observation units."""
        return (float(value) * self.scale).astype(np.float32)

    def format(self, value: float | str) -> str:
        """A budget as tables print it: ``k/255`` for whole grey levels, else ``%g``."""
        return format_budget(value, self.name)

    def check(self, value: float, option: str, fix: str = "{v}") -> float:
        """Refuse a budget that is non-finite, negative, or (pixels, absolute) above the whole range; return it."""
        check_budget(value, self.is_pixel, option, fix)
        if self.name == ABSOLUTE and value > 1:
            raise RllabError(f"{option} {value:g} is in absolute [0, 1] units: above 1 it exceeds the whole range")
        return value

    def describe(self) -> dict[str, Any]:
        """The unit for a report: its name, and the per-feature scale of std units."""
        out: dict[str, Any] = {"unit": self.name}
        if self.name == STD:
            out["scale_per_feature"] = self.scale.reshape(-1).tolist()
        return out


def unit_name(is_image: bool, observation_space: Any = None) -> str:
    """The unit name of an agent's budgets without building its scale (``observation_space``: to tell the
    absolute unit of [0, 1]-bounded observations from std)."""
    if is_image:
        return PIXEL
    return ABSOLUTE if observation_space is not None and is_unit_box(observation_space) else STD


def format_budget(value: float | str, unit: str | None) -> str:
    """An eps as tables show it: ``k/255`` for pixel budgets that are whole grey levels, else ``%g``."""
    if unit == PIXEL:
        v = float(value) * 255
        if abs(v - round(v)) < 1e-3:
            return f"{round(v)}/255"
    return value if isinstance(value, str) else f"{float(value):g}"


def check_budget(value: float, is_pixel: bool, option: str, fix: str = "{v}") -> None:
    """A budget or noise scale in threat units: finite and >= 0, and for pixel units at most the whole pixel
    range, where ``8`` meant ``8/255`` is the usual slip. ``fix`` spells the correction with ``{v}`` for the
    value, e.g. ``"--eps {v}"`` or ``"sigma={v}"``."""
    if not math.isfinite(value) or value < 0:
        raise RllabError(f"{option} must be a finite number >= 0, got {value:g}")
    if not is_pixel and value > MAX_STD_BUDGET:  # eps x std would overflow float32 long before this matters
        raise RllabError(f"{option} {value:g} is in observation std units; at most {MAX_STD_BUDGET:g} is meaningful")
    if is_pixel and value > 1:
        raise RllabError(
            f"{option} {value:g} is in pixel/255 units for image observations, {value:g}x the whole pixel range; "
            f"did you mean {fix.format(v=f'{value:g}/255')}?"
        )
