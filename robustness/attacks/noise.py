"""The baseline every attacked number is compared with: uniform random noise of the same budget."""

from __future__ import annotations

from typing import Any

import torch as th

from rllab.agent import Agent
from robustness.attacks.base import Attack
from robustness.threat import ThreatModel


class UniformNoise(Attack):
    """Uniform in the ball (linf: each coordinate in [-eps, eps]; l2: uniform in the l2 ball)."""

    name = "noise"
    kind = "random"

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "distribution": "uniform in the ball"}

    def __call__(self, agent: Agent, obs: th.Tensor, threat: ThreatModel) -> th.Tensor:
        """A uniformly random point of the ball around each observation."""
        return threat.random_point(obs)
