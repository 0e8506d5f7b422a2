"""torchattacks' classifier attacks on discrete-action agents.

torchattacks assumes inputs in [0, 1] with one scalar eps in those units, and APGD and Square
call the model on subsets of the batch, so the map between observations and torchattacks'
inputs must be the same for every observation of a batch. The adapter uses
``u = (x - L) / (H - L)``:

- images: ``L = 0``, ``H = 255``: one eps unit (pixel/255) is exactly one torchattacks unit,
  and torchattacks' clamp to [0, 1] is the pixel range;
- vectors: ``L, H = c -/+ K * std`` around the checkpoint's mean observation ``c``, with ``K``
  large enough that every observation's eps-ball lies inside, so the width of every feature
  is proportional to its std and torchattacks' scalar eps is ``eps / (2K)`` in every feature.

Vector observations are presented as (N, D, 1, 1) images (APGD and Square want four
dimensions). Labels are the agent's clean actions; the model is ``agent.logits`` (Q-values for
DQN). The result is mapped back, projected onto the lab's ball and clipped to the observation
bounds, and checked like every other attack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch as th
import torchattacks
from torch import nn

from rllab.agent import Agent
from rllab.errors import RllabError
from robustness.attacks.base import Attack
from robustness.threat import ThreatModel

TORCHATTACKS = {"FGSM": "linf", "PGD": "linf", "PGDL2": "l2", "APGD": "both", "Square": "both"}


class BoxModel(nn.Module):
    """The agent as torchattacks sees it: a classifier of (N, C, H, W) inputs in [0, 1]."""

    def __init__(self, agent: Agent, low: th.Tensor, width: th.Tensor) -> None:
        super().__init__()
        self.agent, self.low, self.width = agent, low, width
        self.obs_shape = tuple(agent.observation_space.shape)
        # channel-last (H, W, C) image observations are shown to torchattacks as (C, H, W), the layout
        # it assumes (Square's windows are spatial)
        self.hwc = len(self.obs_shape) == 3 and bool(agent.transpose_image)
        self.u_shape = self.obs_shape if len(self.obs_shape) == 3 else (int(low.numel()), 1, 1)

    def to_u(self, x: th.Tensor) -> th.Tensor:
        """Observations -> torchattacks' inputs in [0, 1]."""
        u = (x - self.low) / self.width
        if self.hwc:
            return u.permute(0, 3, 1, 2)
        return u.reshape(x.shape[0], *self.u_shape)

    def to_obs(self, u: th.Tensor) -> th.Tensor:
        """torchattacks' inputs -> observations."""
        if self.hwc:
            u = u.permute(0, 2, 3, 1)
        return u.reshape(u.shape[0], *self.obs_shape) * self.width + self.low

    def forward(self, u: th.Tensor) -> th.Tensor:
        """The agent's action scores of torchattacks' inputs."""
        out = self.agent.logits(self.to_obs(u))
        if u.requires_grad and not out.requires_grad:
            # a vote-smoothed agent has no gradient: give torchattacks a zero one instead of an autograd error
            out = out + 0.0 * u.reshape(u.shape[0], -1).sum(1, keepdim=True)
        return out


def box_for(agent: Agent, obs: th.Tensor, threat: ThreatModel) -> tuple[th.Tensor, th.Tensor, float]:
    """(L, H - L, torchattacks eps) for this batch."""
    if agent.is_image:
        return th.zeros_like(threat.scale), th.full_like(threat.scale, 255.0), threat.eps
    center = th.as_tensor(agent.obs_mean, device=obs.device) if agent.obs_mean is not None else obs.mean(0)
    safe = th.where(threat.scale > 0, threat.scale, th.ones_like(threat.scale))
    k = float(((obs - center).abs() / safe).max()) + threat.eps + 1.0
    return center - k * safe, 2 * k * safe, threat.eps / (2 * k)


class TorchAttack(Attack):
    """``TorchAttack("PGD", steps=10)`` runs ``torchattacks.PGD`` under the lab's threat model."""

    def __init__(
        self,
        attack: str,
        steps: int = 10,
        alpha: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        queries: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if attack not in TORCHATTACKS:
            raise RllabError(f"unknown torchattacks attack {attack!r}; supported: {', '.join(TORCHATTACKS)}")
        self.attack, self.steps, self.alpha, self.random_start = attack, steps, alpha, random_start
        self.restarts, self.n_queries, self.seed = restarts, queries, seed
        self.kind = "score-based black-box" if attack == "Square" else "white-box"

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"torchattacks.{self.attack}"

    @property
    def label(self) -> str:
        return self.name

    def settings(self) -> dict[str, Any]:
        s: dict[str, Any] = {"attack": self.name, "kind": self.kind, "objective": "action (cross-entropy)"}
        if self.attack in ("PGD", "PGDL2", "APGD"):
            s.update(
                steps=self.steps,
                random_start=self.random_start if self.attack != "APGD" else True,
                step_size="2.5*eps/steps" if self.alpha is None else f"{self.alpha}*eps",
            )
        if self.attack in ("APGD", "Square"):
            s.update(restarts=self.restarts)
        if self.attack == "Square":
            s.update(queries_per_observation=self.n_queries, loss="margin", queries_used=self.queries)
        return s

    def _make(self, model: nn.Module, norm: str, eps_u: float) -> Any:
        alpha = (self.alpha if self.alpha is not None else 2.5 / self.steps) * eps_u
        if self.attack == "FGSM":
            return torchattacks.FGSM(model, eps=eps_u)
        if self.attack == "PGD":
            return torchattacks.PGD(model, eps=eps_u, alpha=alpha, steps=self.steps, random_start=self.random_start)
        if self.attack == "PGDL2":
            return torchattacks.PGDL2(model, eps=eps_u, alpha=alpha, steps=self.steps, random_start=self.random_start)
        name = "Linf" if norm == "linf" else "L2"
        if self.attack == "APGD":
            return torchattacks.APGD(
                model, norm=name, eps=eps_u, steps=self.steps, n_restarts=self.restarts, seed=self.seed, loss="ce"
            )
        return torchattacks.Square(
            model,
            norm=name,
            eps=eps_u,
            n_queries=self.n_queries,
            n_restarts=self.restarts,
            seed=self.seed,
            loss="margin",
        )

    def check_victim(self, agent: Agent, norm: str, eps: Sequence[float] = ()) -> None:
        """Whether this torchattacks attack applies to ``agent`` under ``norm``; one-line error if not."""
        if not agent.is_discrete:
            raise RllabError(f"{self.name} needs a discrete-action agent (it attacks a classifier)")
        wanted = TORCHATTACKS[self.attack]
        if wanted not in ("both", norm):
            raise RllabError(f"{self.name} is an {wanted} attack; the threat model is {norm}")
        if self.attack == "Square" and norm == "l2":
            shape = agent.observation_space.shape
            spatial = shape[:2] if agent.transpose_image else shape[-2:]
            if not agent.is_image or min(spatial) < 5:
                raise RllabError("torchattacks' l2 Square attack needs image observations at least 5 pixels on a side")

    def __call__(self, agent: Agent, obs: th.Tensor, threat: ThreatModel) -> th.Tensor:
        self.check_victim(agent, threat.norm)
        obs = obs.detach()
        if threat.eps == 0:
            return obs.clone()
        low, width, eps_u = box_for(agent, obs, threat)
        model = BoxModel(agent, low, width).eval()
        with th.no_grad():
            labels = agent.logits(obs).argmax(-1)
        atk = self._make(model, threat.norm, eps_u)
        atk.set_device(obs.device)
        # APGD and Square seed torch's global generator with their own seed on every call: keep that
        # inside a fork, or every later draw (random defenses, stochastic policies) repeats each step
        devices = [obs.device] if obs.device.type == "cuda" else []
        with th.random.fork_rng(devices=devices):
            u_adv = atk(model.to_u(obs), labels)
        if self.attack == "Square":
            self.queries += self.n_queries * obs.shape[0] * self.restarts
        return threat.project(model.to_obs(u_adv.detach()), obs)
