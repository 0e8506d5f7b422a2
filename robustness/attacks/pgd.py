"""FGSM and PGD on an agent's observations, with the objectives of the RL attack literature.

PGD (Madry et al. 2018): ``x_{k+1} = Proj_B(x_k + alpha * sign(grad L(x_k)))`` (linf; the
l2 step is the normalised gradient), from a uniformly random start in the ball, keeping the
best of ``restarts`` runs per observation. FGSM (Goodfellow et al. 2015) is one step of size
eps from the clean observation. Objectives ``L`` (maximised):

- ``action``: cross-entropy against the agent's clean action (Huang et al. 2017);
- ``kl``: ``KL(pi(.|s) || pi(.|s'))`` (the MAD attack of SA-PPO, Zhang et al. 2020; works for
  continuous actions too);
- ``value``: minus the critic's ``V(s')``, or for DQN minus ``Q(s', a_clean)`` (Pattanaik et
  al. 2018);
- ``targeted``: minus the cross-entropy towards the agent's least-preferred clean action;
- ``margin``: the best other action's score minus the clean action's, on raw scores (the
  Carlini-Wagner margin, as in AutoAttack's DLR family). Unlike the cross-entropy it does not
  saturate: on a very confident agent, float32 softmax probabilities of exactly 1 make the
  cross-entropy's gradient exactly zero and signed-gradient PGD stands still.

Gradients go through the whole agent (preprocessing included). ``bpda=True`` passes them
through non-differentiable input defenses as the identity, ``eot=k`` averages them over ``k``
draws of a random defense (Athalye et al. 2018). ``unaware=True`` is the defense-unaware
("oblivious") attacker: it differentiates the bare network, without the agent's input
defenses, and the defended agent then sees its perturbation, the setting in which input
filters are usually reported robust and the one an adaptive attack must be compared with.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch as th
import torch.nn.functional as F
from torch.distributions import kl_divergence

from rllab.agent import Agent
from rllab.errors import RllabError
from robustness.attacks.base import Attack
from robustness.threat import ThreatModel

OBJECTIVES = ("action", "kl", "value", "targeted", "margin")


def check_objective(agent: Agent, objective: str) -> None:
    if objective not in OBJECTIVES:
        raise RllabError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
    if objective in ("action", "targeted", "margin") and not agent.is_discrete:
        raise RllabError(f"objective {objective!r} needs discrete actions; use kl for continuous actions")
    if objective == "value" and not (agent.has_critic or agent.has_q):
        raise RllabError(f"objective 'value' needs a critic or Q-function; this {agent.algo} agent has neither")


class _Objective:
    """Per-observation loss to maximise, with what it needs from the clean observation."""

    def __init__(self, agent: Agent, objective: str, obs: th.Tensor) -> None:
        self.agent, self.objective = agent, objective
        with th.no_grad():
            scores = agent.logits(obs)
            self.action = scores.argmax(-1) if agent.is_discrete else None
            if objective == "kl":
                self.clean = agent.action_dist(obs)
            if objective == "targeted":
                self.target = scores.argmin(-1)
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


class PGD(Attack):
    name = "pgd"

    def __init__(
        self,
        objective: str = "action",
        steps: int = 10,
        alpha: float | None = None,
        restarts: int = 1,
        random_start: bool = True,
        bpda: bool = False,
        eot: int = 1,
        amp: bool = False,
        unaware: bool = False,
    ) -> None:
        super().__init__()
        self.amp = amp  # bf16 autocast of the forward/backward passes (CUDA); the ascent itself stays fp32
        if steps < 1 or restarts < 1 or eot < 1:
            raise RllabError("PGD needs steps >= 1, restarts >= 1 and eot >= 1")
        if unaware and (bpda or eot > 1):
            raise RllabError("a defense-unaware attack ignores the defenses: it cannot also use BPDA or EOT")
        if objective not in OBJECTIVES:
            raise RllabError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
        self.objective, self.steps, self.alpha, self.restarts = objective, steps, alpha, restarts
        self.random_start, self.bpda, self.eot, self.unaware = random_start, bpda, eot, unaware
        self.adaptive = bpda or eot > 1

    @property
    def label(self) -> str:
        extra = "+bpda" if self.bpda else ""
        extra += f"+eot{self.eot}" if self.eot > 1 else ""
        extra += "+unaware" if self.unaware else ""
        return (
            f"{self.name}-{self.steps}:{self.objective}{extra}"
            if self.name == "pgd"
            else f"{self.name}:{self.objective}{extra}"
        )

    def step_size(self, eps: float) -> float:
        # Madry et al.'s rule of thumb: 2.5 * eps / steps reaches the boundary from any start
        return self.alpha * eps if self.alpha is not None else 2.5 * eps / self.steps

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "objective": self.objective,
            "steps": self.steps,
            "step_size": "2.5*eps/steps" if self.alpha is None else f"{self.alpha}*eps",
            "restarts": self.restarts,
            "random_start": self.random_start,
            "amp": self.amp,
            "bpda": self.bpda,
            "eot": self.eot,
            "defense_aware": not self.unaware,
        }

    def _grad(self, loss_fn: _Objective, x: th.Tensor) -> th.Tensor:
        if self.eot == 1 and not self.amp and not self.bpda and not self.unaware:
            # the common case, without the context managers (they cost as much as a tiny MLP's forward)
            x = x.detach().requires_grad_(True)
            loss = loss_fn(x).sum()
            if not loss.requires_grad:  # a vote-smoothed agent has no gradient at all: masked, not an error
                return th.zeros_like(x)
            (g,) = th.autograd.grad(loss, x, allow_unused=True)
            return g if g is not None else th.zeros_like(x)
        grad = th.zeros_like(x)
        for _ in range(self.eot):
            x = x.detach().requires_grad_(True)
            with self.agent_mode(), th.autocast(x.device.type, dtype=th.bfloat16, enabled=self.amp):
                loss = loss_fn(x).float().sum()
            if loss.requires_grad:
                (g,) = th.autograd.grad(loss, x, allow_unused=True)
                grad += g if g is not None else 0.0
        return grad / self.eot

    def agent_mode(self):
        if self.unaware:
            return self._agent.unaware()
        return self._agent.straight_through() if self.bpda else contextlib.nullcontext()

    def __call__(self, agent: Agent, obs: th.Tensor, threat: ThreatModel) -> th.Tensor:
        check_objective(agent, self.objective)
        self._agent = agent
        obs = obs.detach()
        with self.agent_mode() if self.unaware else contextlib.nullcontext():
            loss_fn = _Objective(agent, self.objective, obs)
        alpha = self.step_size(threat.eps)
        best, best_loss = obs.clone(), th.full((obs.shape[0],), -th.inf, device=obs.device)
        box = threat.linf_box(obs) if threat.norm == "linf" else None
        step = alpha * threat.scale
        for _ in range(self.restarts):
            x = threat.random_point(obs) if self.random_start else obs.clone()
            for _ in range(self.steps):
                grad = self._grad(loss_fn, x)
                if box is not None:
                    x = th.clamp(x + step * grad.sign(), *box)
                else:
                    x = threat.project(threat.step(x, grad, alpha), obs)
            if self.restarts == 1:
                return x.detach()
            with th.no_grad(), self.agent_mode() if self.unaware else contextlib.nullcontext():
                loss = loss_fn(x)
            better = loss > best_loss
            best[better], best_loss[better] = x[better], loss[better]
        return best


class FGSM(PGD):
    """One signed-gradient step of size eps from the clean observation (Goodfellow et al. 2015)."""

    name = "fgsm"

    def __init__(self, objective: str = "action", bpda: bool = False, eot: int = 1, unaware: bool = False) -> None:
        super().__init__(
            objective, steps=1, alpha=1.0, restarts=1, random_start=False, bpda=bpda, eot=eot, unaware=unaware
        )
