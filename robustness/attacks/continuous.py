"""The continuous-control attacks of SA-PPO (Zhang et al. 2020), by the paper's names.

- **Random**: uniform noise in the linf ball (the lab's ``noise`` row, ``UniformNoise``).
- **Critic** (Pattanaik et al. 2018): PGD minimising the agent's own critic ``V(s')``.
- **MAD** (maximal action difference): PGD maximising ``KL(pi(.|s) || pi(.|s'))``. For a Gaussian
  policy with a state-independent std this is SA-PPO's ``sum(((mu(s') - mu(s)) / sigma)^2) / 2``.
- **RS** (Robust Sarsa): learn a robust ``Q^pi(s, a)`` of the fixed policy
  (``robustness.attacks.sarsa``), then PGD minimising ``Q(s, mu(s'))``: the value, at the true
  state, of the action the perturbed observation makes the agent take.
- **RS+MAD**: PGD minimising ``(1 - ratio) * Q(s, mu(s')) - ratio * mean(((mu(s') - mu(s)) / sigma~)^2)``
  with ``sigma~ = sigma / mean(sigma)`` (SA-PPO's ``sarsa+action`` attack, ``--attack-sarsa-action-ratio``).

All are the lab's PGD (``robustness.attacks.pgd``: signed steps of ``2.5 * eps / steps`` from a
random start in the ball, projected each step); SA-PPO's own code uses steps of ``eps / steps``
from a start within one step of the clean observation (10 steps). RS learns its Q in ``prepare``
(once per evaluation, cached per victim), so every eps of a card reuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch as th

from rllab.agent import Agent
from rllab.errors import RllabError
from robustness.attacks.pgd import PGD
from robustness.attacks.sarsa import RobustQ, SarsaSettings, check_gaussian, robust_q
from robustness.threat import ThreatModel


class Critic(PGD):
    """SA-PPO's critic attack: PGD minimising the agent's critic ``V(s')`` (the ``value`` objective)."""

    name = "critic"

    def __init__(self, steps: int = 10, restarts: int = 1, alpha: float | None = None) -> None:
        super().__init__("value", steps=steps, alpha=alpha, restarts=restarts)

    @property
    def label(self) -> str:
        return self.name

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "paper": "Critic (Pattanaik et al. 2018; SA-PPO's critic attack)"}


class MAD(PGD):
    """SA-PPO's maximal action difference attack: PGD maximising ``KL(pi(.|s) || pi(.|s'))`` (the ``kl`` objective)."""

    name = "mad"

    def __init__(self, steps: int = 10, restarts: int = 1, alpha: float | None = None) -> None:
        super().__init__("kl", steps=steps, alpha=alpha, restarts=restarts)

    @property
    def label(self) -> str:
        return self.name

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "paper": "MAD (Zhang et al. 2020)"}


class RobustSarsaObjective:
    """The RS(+MAD) loss PGD maximises: ``-(1 - ratio) Q(s, mu(s')) + ratio mean(((mu(s') - mu(s)) / sigma~)^2)``."""

    objective = "rs"  # not one of the hand-differentiated objectives: autograd computes its gradient

    def __init__(self, agent: Agent, q: RobustQ, obs: th.Tensor, ratio: float) -> None:
        self.agent, self.q, self.ratio = agent, q.q.to(obs.device), ratio
        self.obs = obs.detach()
        with th.no_grad():
            dist = agent.action_dist(self.obs)
            self.mean = agent.logits(self.obs)
            std = dist.stddev.reshape(self.mean.shape)
            self.std = std / std.mean(-1, keepdim=True)

    def __call__(self, x: th.Tensor) -> th.Tensor:
        mu = self.agent.logits(x)
        out = -(1.0 - self.ratio) * self.q(self.obs, mu)
        if self.ratio > 0:
            out = out + self.ratio * ((mu - self.mean) / self.std).pow(2).mean(-1)
        return out


class RobustSarsa(PGD):
    """SA-PPO's Robust Sarsa attack (``ratio=0``) and RS+MAD (``ratio > 0``); see the module docstring.

    ``rs`` is how the robust Q-function is learned (``SarsaSettings``: rollout steps, epochs, the
    robustness term's action radius and weight); ``seed`` defaults to the evaluation's.
    """

    name = "rs"
    kind = "white-box (learned robust Q of the policy)"

    def __init__(
        self,
        steps: int = 10,
        restarts: int = 1,
        alpha: float | None = None,
        ratio: float = 0.0,
        rs: SarsaSettings | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__("kl", steps=steps, alpha=alpha, restarts=restarts)
        if not 0 <= ratio <= 1:
            raise RllabError(f"the RS+MAD ratio is a weight in [0, 1], got {ratio:g}")
        self.objective = "rs+mad" if ratio > 0 else "rs"
        self.ratio, self.rs = float(ratio), rs or SarsaSettings()
        self.rs.check()
        self.seed = seed  # None: the evaluation's seed
        self.used_seed: int | None = None
        self.robust: RobustQ | None = None
        self._victim: Agent | None = None

    @property
    def label(self) -> str:
        return "rs+mad" if self.ratio > 0 else "rs"

    def settings(self) -> dict[str, Any]:
        out = {
            **super().settings(),
            "objective": "min Q(s, mu(s'))" + (f" + {self.ratio:g} x action change (MAD)" if self.ratio else ""),
            "mad_ratio": self.ratio,
            "paper": "RS+MAD (Zhang et al. 2020)" if self.ratio else "Robust Sarsa (Zhang et al. 2020)",
            "robust_sarsa": {**self.rs.__dict__, "seed": self.used_seed},
        }
        if self.robust is not None:
            out["robust_sarsa"].update(self.robust.info)
            h = self.robust.history
            out["robust_sarsa"]["td_loss_first_last"] = [h[0]["td_loss"], h[-1]["td_loss"]]
        return out

    def supports(self, agent: Agent) -> bool:
        """Gaussian (continuous-action) policies only."""
        try:
            check_gaussian(agent, "rs")
        except RllabError:
            return False
        return True

    def check_victim(self, agent: Agent, norm: str, eps: Sequence[float]) -> None:
        """A one-line error unless ``agent`` has a Gaussian policy."""
        check_gaussian(agent, self.label)

    def prepare(self, agent: Agent, seed: int) -> None:
        """Learns (or loads) the victim's robust Q-function: once per evaluation, whatever the number of eps."""
        self.used_seed = seed if self.seed is None else self.seed
        self.robust, self._victim = robust_q(agent, self.rs, self.used_seed), agent

    def loss(self, agent: Agent, obs: th.Tensor, target: int | th.Tensor | None) -> RobustSarsaObjective:
        """The RS(+MAD) objective around the clean ``obs``."""
        if self.robust is None or self._victim is not agent:
            self.prepare(agent, 0 if self.seed is None else self.seed)
        assert self.robust is not None
        return RobustSarsaObjective(agent, self.robust, obs, self.ratio)

    def __call__(self, agent: Agent, obs: th.Tensor, threat: ThreatModel) -> th.Tensor:
        """The perturbed observations: PGD on the RS(+MAD) objective."""
        check_gaussian(agent, self.label)
        return self._run(agent, obs, threat, None)
