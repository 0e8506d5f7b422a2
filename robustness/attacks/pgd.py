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
- ``targeted``: minus the cross-entropy towards the agent's least-preferred clean action, or
  towards one fixed action (``target=k``, the classifier literature's targeted attack). With
  two actions the first is a plain flip, which a balancing controller shrugs off; pushing one
  way at every step is what topples it (CartPole: ``targeted=1`` is the strongest attack of the
  suite on the lab's default agent);
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
from collections.abc import Sequence
from typing import Any

import torch as th

from rllab.agent import Agent
from rllab.errors import RllabError
from robustness.attacks.base import Attack
from robustness.attacks.gradients import MLPInputGradient, fast_input_grads
from robustness.attacks.objectives import OBJECTIVES, Objective, check_objective
from robustness.threat import ThreatModel

__all__ = ["FGSM", "OBJECTIVES", "PGD", "check_objective"]


class PGD(Attack):
    """Projected gradient ascent of an objective inside the threat model's ball (see the module docstring)."""

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
        target: int | None = None,
    ) -> None:
        super().__init__()
        self.amp = amp  # bf16 autocast of the forward/backward passes (CUDA); the ascent itself stays fp32
        if steps < 1 or restarts < 1 or eot < 1:
            raise RllabError("PGD needs steps >= 1, restarts >= 1 and eot >= 1")
        if unaware and (bpda or eot > 1):
            raise RllabError("a defense-unaware attack ignores the defenses: it cannot also use BPDA or EOT")
        if objective not in OBJECTIVES:
            raise RllabError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
        if target is not None and objective != "targeted":
            raise RllabError(f"a fixed target action goes with the targeted objective, not {objective!r}")
        if target is not None and (int(target) != target or target < 0):
            raise RllabError(f"a target action is an action index >= 0, got {target!r}")
        self.target = None if target is None else int(target)
        self.objective, self.steps, self.alpha, self.restarts = objective, steps, alpha, restarts
        self.random_start, self.bpda, self.eot, self.unaware = random_start, bpda, eot, unaware
        self.by_hand = True  # MLP actors: input gradients without autograd (same numbers, see gradients.py)
        self.fast_conv = True  # strided convolutions: input gradients by space-to-depth (see gradients.py)
        self._by_hand: MLPInputGradient | None = None
        self.adaptive = bpda or eot > 1
        # R+FGSM: the gradient is taken at the (random) start, the step is taken from the clean observation
        self.step_from_clean = False

    @property
    def label(self) -> str:
        extra = f"={self.target}" if self.target is not None else ""
        extra += "+bpda" if self.bpda else ""
        extra += f"+eot{self.eot}" if self.eot > 1 else ""
        extra += "+unaware" if self.unaware else ""
        return (
            f"{self.name}-{self.steps}:{self.objective}{extra}"
            if self.name == "pgd"
            else f"{self.name}:{self.objective}{extra}"
        )

    def step_size(self, eps: float) -> float:
        """The step in eps units."""
        # Madry et al.'s rule of thumb: 2.5 * eps / steps reaches the boundary from any start
        return self.alpha * eps if self.alpha is not None else 2.5 * eps / self.steps

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "objective": self.objective,
            "target_action": self.target,
            "steps": self.steps,
            "step_size": "2.5*eps/steps" if self.alpha is None else f"{self.alpha}*eps",
            "restarts": self.restarts,
            "random_start": self.random_start,
            "amp": self.amp,
            "bpda": self.bpda,
            "eot": self.eot,
            "defense_aware": not self.unaware,
        }

    def check_victim(self, agent: Agent, norm: str, eps: Sequence[float]) -> None:
        """The objective (and a fixed target action) must apply to ``agent``."""
        check_objective(agent, self.objective, self.target)

    def _grad(self, loss_fn: Objective, x: th.Tensor) -> th.Tensor:
        if self._by_hand is not None:
            return self._by_hand(x)
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

    def loss(self, agent: Agent, obs: th.Tensor, target: int | th.Tensor | None) -> Objective:
        """The per-observation loss PGD maximises around the clean ``obs`` (attacks with their own loss override it)."""
        return Objective(agent, self.objective, obs, target)

    def agent_mode(self):
        """The agent as this attack differentiates it: bare (unaware), straight-through (BPDA) or as it is."""
        if self.unaware:
            return self._agent.unaware()
        return self._agent.straight_through() if self.bpda else contextlib.nullcontext()

    def __call__(self, agent: Agent, obs: th.Tensor, threat: ThreatModel) -> th.Tensor:
        check_objective(agent, self.objective, self.target)
        return self._run(agent, obs, threat, self.target)

    def towards(self, agent: Agent, obs: th.Tensor, threat: ThreatModel, actions: th.Tensor) -> th.Tensor:
        """Pushes each observation towards its own target action (``actions[i]`` for ``obs[i]``).

        The fixed-target attack with one target per observation: what a planning attacker uses to
        force the actions of its plan, all environments in one batch.
        """
        if self.objective != "targeted":
            raise RllabError(f"pushing towards given actions needs the targeted objective, not {self.objective!r}")
        check_objective(agent, self.objective)
        actions = th.as_tensor(actions, device=obs.device).long().reshape(-1)
        if actions.shape[0] != obs.shape[0]:
            raise RllabError(f"{actions.shape[0]} target actions for {obs.shape[0]} observations")
        n = agent.action_space.n
        if actions.numel() and not (0 <= int(actions.min()) and int(actions.max()) < n):
            raise RllabError(f"target actions must be among this agent's actions 0..{n - 1}")
        return self._run(agent, obs, threat, actions)

    def _run(self, agent: Agent, obs: th.Tensor, threat: ThreatModel, target: int | th.Tensor | None) -> th.Tensor:
        if self.fast_conv and isinstance(agent, Agent) and agent.is_image:
            with fast_input_grads(agent.policy):
                return self._attack(agent, obs, threat, target)
        return self._attack(agent, obs, threat, target)

    def _attack(self, agent: Agent, obs: th.Tensor, threat: ThreatModel, target: int | th.Tensor | None) -> th.Tensor:
        self._agent = agent
        obs = obs.detach()
        with self.agent_mode() if self.unaware else contextlib.nullcontext():
            loss_fn = self.loss(agent, obs, target)
        plain = self.eot == 1 and not (self.amp or self.bpda or self.unaware)
        self._by_hand = MLPInputGradient.build(agent, loss_fn) if plain and self.by_hand else None
        alpha = self.step_size(threat.eps)
        best, best_loss = obs.clone(), th.full((obs.shape[0],), -th.inf, device=obs.device)
        box = threat.linf_box(obs) if threat.norm == "linf" else None
        step = alpha * threat.scale
        for _ in range(self.restarts):
            x = threat.random_point(obs) if self.random_start else obs.clone()
            for _ in range(self.steps):
                grad = self._grad(loss_fn, x)
                origin = obs if self.step_from_clean else x
                if box is not None:  # x + step * sign(grad) (exact: sign is 0 or +-1), then the box, in two passes
                    x = th.clamp(th.addcmul(origin, step, grad.sign()), *box)
                else:
                    x = threat.project(threat.step(origin, grad, alpha), obs)
            if self.restarts == 1:
                return x.detach()
            with th.no_grad(), self.agent_mode() if self.unaware else contextlib.nullcontext():
                loss = loss_fn(x)
            better = loss > best_loss
            best[better], best_loss[better] = x[better], loss[better]
        return best


# objectives whose gradient is zero at the clean observation: KL(pi(.|s) || pi(.|s')) has its minimum at s' = s
VANISHING_AT_CLEAN = ("kl",)


class FGSM(PGD):
    """One signed-gradient step of size eps from the clean observation (Goodfellow et al. 2015).

    For objectives whose gradient vanishes at the clean observation (``kl``: the divergence is at
    its minimum there, so the plain FGSM step is zero and the attack does nothing), this is R+FGSM
    (Tramer et al. 2018): the gradient is taken at a uniformly random point of the ball, and the
    step of size eps is taken from the clean observation in that gradient's direction
    (``random_start: true`` in the settings).
    """

    name = "fgsm"

    def __init__(
        self,
        objective: str = "action",
        bpda: bool = False,
        eot: int = 1,
        unaware: bool = False,
        target: int | None = None,
    ) -> None:
        super().__init__(
            objective,
            steps=1,
            alpha=1.0,
            restarts=1,
            random_start=objective in VANISHING_AT_CLEAN,
            bpda=bpda,
            eot=eot,
            unaware=unaware,
            target=target,
        )
        self.step_from_clean = True

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        if self.random_start:
            out["gradient_at"] = "a uniformly random point of the ball (R+FGSM, Tramer et al. 2018)"
        return out
