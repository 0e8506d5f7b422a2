"""The one attack protocol: settings bound at construction, ``attack(agent, obs, threat) -> perturbed obs``.

Every attack of the lab (gradient, black-box, planning, learned, timed, noise) is an :class:`Attack`.
``robustness.evaluate`` knows no attack class: it calls the hooks below, which an attack overrides
where it needs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch as th

from rllab.agent import Agent
from rllab.errors import RllabError
from robustness.threat import ThreatModel


@dataclass
class PlayedEpisodes:
    """What an attack that plays whole episodes itself (``Attack.play``) measured over them."""

    returns: list[float]
    action_changes: int  # steps whose action differed from the clean observation's
    sizes: list[float] = field(default_factory=list)  # every step's perturbation size, eps units


class Attack:
    """An attack is configured in ``__init__`` and does its work in ``__call__`` (torchattacks' shape).

    ``__call__(agent, obs, threat)`` receives a batch of raw observations (float tensor) and
    returns perturbed observations inside ``threat``'s ball. ``queries`` counts the victim
    queries the attack made (black-box attacks), ``settings()`` is what the result card records.

    Hooks, in the order an evaluation calls them: ``check_victim`` (before any episode),
    ``prepare`` (once), then per row (one budget) ``row_start``, ``play`` or per-step calls,
    and ``row_extras``.
    """

    name: ClassVar[str] = "attack"
    kind: ClassVar[str] = "white-box"
    discrete_only: ClassVar[bool] = False  # attacks of classifiers: refused on continuous actions
    adaptive: bool = False  # gradients taken through non-differentiable/random defenses (BPDA/EOT)
    # which observations of the last call were attacked (bool per observation); None: all of them.
    # Attacks that leave some steps clean (the strategically-timed attack) set it on every call.
    last_attacked: th.Tensor | None = None

    def __init__(self) -> None:
        self.queries = 0

    @property
    def label(self) -> str:
        """The attack's row name in the card."""
        return self.name

    def settings(self) -> dict[str, Any]:
        """What the result card records about this attack."""
        return {"attack": self.name, "kind": self.kind}

    def supports(self, agent: Agent) -> bool:
        """Whether this attack applies to ``agent``'s actions (classifier attacks need discrete ones)."""
        return agent.is_discrete or not self.discrete_only

    def check_victim(self, agent: Agent, norm: str, eps: Sequence[float]) -> None:
        """Before any episode: a one-line error where this attack cannot attack ``agent`` under this threat."""
        if not self.supports(agent):
            raise RllabError(f"{self.label} needs a discrete-action agent")

    def prepare(self, agent: Agent, seed: int) -> None:
        """Called once before an evaluation (black-box attacks train their surrogate here)."""

    def row_start(self) -> None:
        """Called before each row of the card (one budget): attacks that count steps start afresh."""

    def play(self, agent: Agent, threat: ThreatModel, episodes: int, seed: int) -> PlayedEpisodes | None:
        """Attacks that play whole episodes themselves (planning) do it here; None: attack step by step."""
        return None

    def row_extras(self, row: dict[str, Any]) -> dict[str, Any]:
        """What this attack adds to a finished row of the card (fraction attacked, transfer rate)."""
        return {}

    def __call__(self, agent: Agent, obs: th.Tensor, threat: ThreatModel) -> th.Tensor:
        raise NotImplementedError
