"""What every attack shares: settings for the result card, white/black-box kind, query counting."""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th

from rllab.agent import Agent
from robustness.threat import ThreatModel


class Attack:
    """An attack is configured in ``__init__`` and does its work in ``__call__`` (torchattacks' shape).

    ``__call__(agent, obs, threat)`` receives a batch of raw observations (float tensor) and
    returns perturbed observations inside ``threat``'s ball. ``queries`` counts the victim
    queries the attack made (black-box attacks), ``settings()`` is what the result card records.
    """

    name: ClassVar[str] = "attack"
    kind: ClassVar[str] = "white-box"
    adaptive: bool = False  # gradients taken through non-differentiable/random defenses (BPDA/EOT)
    # which observations of the last call were attacked (bool per observation); None: all of them.
    # Attacks that leave some steps clean (the strategically-timed attack) set it on every call.
    last_attacked: th.Tensor | None = None

    def __init__(self) -> None:
        self.queries = 0

    @property
    def label(self) -> str:
        return self.name

    def settings(self) -> dict[str, Any]:
        return {"attack": self.name, "kind": self.kind}

    def prepare(self, agent: Agent, seed: int) -> None:
        """Called once before an evaluation (black-box attacks train their surrogate here)."""

    def __call__(self, agent: Agent, obs: th.Tensor, threat: ThreatModel) -> th.Tensor:
        raise NotImplementedError
