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
from typing import Any

import torch as th
import torch.nn.functional as F
from stable_baselines3.common.distributions import CategoricalDistribution
from torch import nn
from torch.distributions import kl_divergence

from rllab.agent import _FAST_ACTIVATIONS as _FAST_ACTS
from rllab.agent import Agent
from rllab.errors import RllabError
from robustness.attacks.base import Attack
from robustness.attacks.conv_grad import fast_input_grads
from robustness.threat import ThreatModel

OBJECTIVES = ("action", "kl", "value", "targeted", "margin")


def check_objective(agent: Agent, objective: str, target: int | None = None) -> None:
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


class _Objective:
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


_ACTIVATION_GRADS = {
    nn.Tanh: lambda g, out: g * (1 - out * out),
    nn.ReLU: lambda g, out: g * (out > 0),
}


class _MLPInputGradient:
    """The objective's gradient with respect to the observation, by hand, for plain MLP actors.

    Attacks on small vector agents spend most of their time in the autograd engine, not in
    arithmetic. For an actor that is a chain of ``nn.Linear`` and tanh/ReLU layers
    (``Agent._mlp_actor``) with discrete actions, no input defenses and at most observation
    normalisation in front, the gradient of the ``action``, ``targeted``, ``margin`` and ``kl``
    objectives is one forward pass that keeps the activations and one backward sweep of matrix
    products: ``dL/dz`` (``softmax(z) - onehot(a)``, its negative towards the target,
    ``onehot(b*) - onehot(a)``, ``softmax(z) - p_clean``), then ``g @ W`` and the activation's
    derivative layer by layer, then the normalisation's ``1/std`` where it did not clip. A test
    checks it against autograd for every objective. Anything else returns ``None`` (autograd).
    """

    def __init__(self, agent: Agent, loss_fn: _Objective, layers: tuple[nn.Module, ...]) -> None:
        self.agent, self.loss_fn, self.layers = agent, loss_fn, layers
        if loss_fn.objective == "kl":
            self.p_clean = loss_fn.clean.probs

    @classmethod
    def build(cls, agent: Agent, loss_fn: _Objective) -> _MLPInputGradient | None:
        if not isinstance(agent, Agent):  # e.g. the surrogate model of a transfer attack
            return None
        if loss_fn.objective not in ("action", "targeted", "margin", "kl") or not agent.is_discrete:
            return None
        if agent.is_image or agent.transpose_image or agent.defenses:
            return None
        layers = agent._mlp_actor()
        if layers is None or not isinstance(agent.policy.action_dist, CategoricalDistribution):
            return None
        return cls(agent, loss_fn, layers)

    def __call__(self, x: th.Tensor) -> th.Tensor:
        agent, obj = self.agent, self.loss_fn
        with th.no_grad():
            # float64 (or other) observations: compute in float32 as SB3's preprocess_obs does on the module path
            h = x.reshape(x.shape[0], -1).float()
            keep = None
            if agent.normalize_obs:
                inv = 1.0 / th.sqrt(agent.norm_var + agent.obs_eps).reshape(1, -1)
                h = (h - agent.norm_mean.reshape(1, -1)) * inv
                keep = (h.abs() < agent.obs_clip) * inv  # d(normalised)/dx: 1/std inside, 0 where clipped
                h = h.clamp(-agent.obs_clip, agent.obs_clip)
            outs = []
            for m in self.layers:
                h = F.linear(h, m.weight, m.bias) if type(m) is nn.Linear else _FAST_ACTS[type(m)](h)
                outs.append(h)
            z = h
            if obj.objective == "margin":
                others = z.scatter(1, obj.action.unsqueeze(1), -th.inf)
                g = F.one_hot(others.argmax(-1), z.shape[-1]).to(z) - F.one_hot(obj.action, z.shape[-1]).to(z)
            elif obj.objective == "kl":
                g = th.softmax(z, -1) - self.p_clean
            else:
                target = obj.action if obj.objective == "action" else obj.target
                g = th.softmax(z, -1) - F.one_hot(target, z.shape[-1]).to(z)
                if obj.objective == "targeted":
                    g = -g
            for m, out in zip(reversed(self.layers), reversed(outs), strict=True):
                g = g @ m.weight if type(m) is nn.Linear else _ACTIVATION_GRADS[type(m)](g, out)
            if keep is not None:
                g = g * keep
            return g.reshape(x.shape).to(x.dtype)


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
        self.by_hand = True  # MLP actors: input gradients without autograd (same numbers, see _MLPInputGradient)
        self.fast_conv = True  # strided convolutions: input gradients by space-to-depth (see conv_grad)
        self._by_hand: _MLPInputGradient | None = None
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

    def _grad(self, loss_fn: _Objective, x: th.Tensor) -> th.Tensor:
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

    def agent_mode(self):
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
            loss_fn = _Objective(agent, self.objective, obs, target)
        plain = self.eot == 1 and not (self.amp or self.bpda or self.unaware)
        self._by_hand = _MLPInputGradient.build(agent, loss_fn) if plain and self.by_hand else None
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
