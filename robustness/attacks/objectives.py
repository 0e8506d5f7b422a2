"""The objectives an observation attack maximises, from the RL attack literature (see ``robustness.attacks.pgd``).

``action`` (Huang et al. 2017), ``kl`` (SA-PPO's MAD, Zhang et al. 2020), ``value`` (Pattanaik et
al. 2018), ``targeted`` (towards the least-preferred or a fixed action) and ``margin`` (Carlini-Wagner).
"""

from __future__ import annotations

import torch as th
import torch.nn.functional as F
from torch.distributions import kl_divergence

from rllab.agent import Agent
from rllab.errors import RllabError

OBJECTIVES = ("action", "kl", "value", "targeted", "margin")


def check_objective(agent: Agent, objective: str, target: int | None = None) -> None:
    """A one-line error unless ``objective`` (and a fixed ``target`` action) applies to ``agent``."""
    if objective not in OBJECTIVES:
        raise RllabError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
    if objective in ("action", "targeted", "margin") and not agent.is_discrete:
        raise RllabError(f"objective {objective!r} needs discrete actions; use kl for continuous actions")
    if objective == "value" and not (agent.has_critic or agent.has_q):
        raise RllabError(f"objective 'value' needs a critic or Q-function; this {agent.algo} agent has neither")
    if target is not None:
        n = agent.action_space.n
        if not 0 <= target < n:
            raise RllabError(f"target action {target} is not one of this agent's actions 0..{n - 1}")


class Objective:
    """Per-observation loss to maximise, with what it needs from the clean observation."""

    def __init__(self, agent: Agent, objective: str, obs: th.Tensor, target: int | th.Tensor | None = None) -> None:
        self.agent, self.objective = agent, objective
        with th.no_grad():
            scores = agent.logits(obs)
            self.action = scores.argmax(-1) if agent.is_discrete else None
            if objective == "kl":
                self.clean = agent.action_dist(obs)
            if objective == "targeted":
                if target is None:
                    self.target = scores.argmin(-1)
                elif isinstance(target, th.Tensor):  # one target per observation (the planning attack)
                    self.target = target.to(self.action)
                else:
                    self.target = th.full_like(self.action, target)
            if objective == "value" and agent.has_q and not agent.has_critic:
                self.action = scores.argmax(-1)

    def __call__(self, x: th.Tensor) -> th.Tensor:
        agent = self.agent
        if self.objective == "action":
            return F.cross_entropy(agent.logits(x), self.action, reduction="none")
        if self.objective == "targeted":
            return -F.cross_entropy(agent.logits(x), self.target, reduction="none")
        if self.objective == "margin":
            scores = agent.logits(x)
            own = scores.gather(1, self.action.unsqueeze(1)).squeeze(1)
            others = scores.scatter(1, self.action.unsqueeze(1), -th.inf)
            return others.max(-1).values - own
        if self.objective == "kl":
            return kl_divergence(self.clean, agent.action_dist(x))
        if agent.has_critic:
            return -agent.value(x)
        return -agent.q_values(x).gather(1, self.action.unsqueeze(1)).squeeze(1)
