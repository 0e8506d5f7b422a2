"""The strategically-timed attack (Lin et al. 2017, "Tactics of Adversarial Attack on Deep RL Agents").

Attack only at steps where the agent strongly prefers one action:
``c(s) = max_a pi(a|s) - min_a pi(a|s) > threshold`` (eq. 1 of the paper, on the policy's
softmax), and never on more than ``max_fraction`` of the steps seen so far. Elsewhere the
observation is left clean. The card reports the fraction of steps actually attacked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch as th

from rllab.agent import Agent
from rllab.errors import RllabError
from robustness.attacks.base import Attack
from robustness.threat import ThreatModel


class StrategicallyTimed(Attack):
    """Attacks with ``base`` only where the agent strongly prefers one action, on at most a fraction of steps."""

    name = "timed"
    discrete_only = True

    def __init__(self, base: Attack, threshold: float = 0.5, max_fraction: float = 0.25) -> None:
        super().__init__()
        if not 0 <= max_fraction <= 1:
            raise RllabError(f"the timed attack's max fraction must be in [0, 1], got {max_fraction}")
        if not 0 <= threshold < 1:
            raise RllabError(f"the timed attack's threshold must be in [0, 1), got {threshold}")
        self.base, self.threshold, self.max_fraction = base, threshold, max_fraction
        self.kind = base.kind
        self.steps_seen = 0
        self.steps_attacked = 0

    @property
    def label(self) -> str:
        return f"timed({self.base.label})"

    @property
    def fraction_attacked(self) -> float:
        """The fraction of the steps seen so far (this row) that were attacked."""
        return self.steps_attacked / self.steps_seen if self.steps_seen else 0.0

    def settings(self) -> dict[str, Any]:
        return {
            "attack": self.name,
            "kind": self.kind,
            "base": self.base.settings(),
            "threshold": self.threshold,
            "max_fraction": self.max_fraction,
            # the fraction of steps attacked depends on the budget: it is in each result row, not here
        }

    def check_victim(self, agent: Agent, norm: str, eps: Sequence[float]) -> None:
        """A discrete-action agent, and one the base attack applies to."""
        super().check_victim(agent, norm, eps)
        self.base.check_victim(agent, norm, eps)

    def prepare(self, agent: Agent, seed: int) -> None:
        self.steps_seen = self.steps_attacked = 0
        self.base.prepare(agent, seed)

    def row_start(self) -> None:
        self.steps_seen = self.steps_attacked = 0
        self.base.row_start()

    def row_extras(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"fraction_attacked": self.fraction_attacked}

    def __call__(self, agent: Agent, obs: th.Tensor, threat: ThreatModel) -> th.Tensor:
        if not agent.is_discrete:
            raise RllabError("the strategically-timed attack needs a discrete-action agent")
        with th.no_grad():
            p = th.softmax(agent.logits(obs), -1)
            gap = p.max(-1).values - p.min(-1).values
        order = th.argsort(gap, descending=True)
        self.steps_seen += obs.shape[0]
        room = int(self.max_fraction * self.steps_seen) - self.steps_attacked
        chosen = order[gap[order] > self.threshold][: max(room, 0)]
        out = obs.clone()
        self.last_attacked = th.zeros(obs.shape[0], dtype=th.bool, device=obs.device)
        self.last_attacked[chosen] = True
        if len(chosen):
            out[chosen] = self.base(agent, obs[chosen], threat)
            self.steps_attacked += len(chosen)
        return out
