"""The ``Explainer`` base class: what every attribution method shares (target, batching, the ``attribute`` verb).

``Method(agent, target="action" | "value", **options).attribute(obs_batch, actions=None)`` returns a tensor of
the observation batch's shape (``(N, *obs_shape)``): how much each raw input (pixel in 0..255, or vector
feature) drives the explained output.

* ``target="action"``: the score (logit; Q-value for DQN) of the action the agent takes (``actions``
  overrides it). Continuous agents: the sum of the Gaussian means.
* ``target="value"``: the critic's V(s); agents without a critic raise ``RllabError``.

Gradients are taken with respect to the raw observation (the agent's preprocessing, including the /255 for
images, is inside ``agent.logits``). Every method is batched: an episode's states go through a few
forward/backward calls, in chunks of ``batch_size`` states.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch as th

from explain.methods.validate import as_index_tensor, int_option
from rllab.agent import Agent
from rllab.errors import RllabError

TARGETS = ("action", "value")


def check_target(agent: Agent, target: str) -> None:
    """Refuse an unknown target, and ``value`` for an agent without a state-value critic."""
    if target not in TARGETS:
        raise RllabError(f"unknown target {target!r}; use action or value")
    if target == "value" and not agent.has_critic:
        raise RllabError(
            f"--target value needs a state-value critic, and this {agent.algo} agent has none; use --target action"
        )


def input_bounds(agent: Agent) -> tuple[th.Tensor, th.Tensor]:
    """Finite per-input bounds: the Box's bounds, or mean +- 4 std of the agent's own rollouts."""
    space = agent.observation_space
    shape = space.shape
    low = np.broadcast_to(np.asarray(space.low, dtype=np.float64), shape).copy()
    high = np.broadcast_to(np.asarray(space.high, dtype=np.float64), shape).copy()
    mean, std = agent.obs_mean, agent.obs_std
    if mean is None:
        mean, std = np.zeros(shape), np.ones(shape)
    low = np.where(np.isfinite(low), low, mean - 4 * std - 1e-3)
    high = np.where(np.isfinite(high), high, mean + 4 * std + 1e-3)
    return th.as_tensor(low, dtype=th.float32), th.as_tensor(high, dtype=th.float32)


def baseline_for(agent: Agent, kind: str | float | th.Tensor) -> th.Tensor:
    """A reference input of the observation's shape.

    ``zeros`` (black frame; zero vector), ``mean`` (the mean observation of the agent's
    own rollouts, stored in the checkpoint), a number, or a tensor.
    """
    shape = agent.observation_space.shape
    if isinstance(kind, th.Tensor):
        return kind.float().reshape(shape)
    if isinstance(kind, (int, float)):
        return th.full(shape, float(kind))
    if kind == "zeros":
        return th.zeros(shape)
    if kind == "mean":
        if agent.obs_mean is None:
            raise RllabError("this checkpoint stores no observation statistics; use baseline 'zeros'")
        return th.as_tensor(agent.obs_mean, dtype=th.float32)
    raise RllabError(f"unknown baseline {kind!r}; use zeros, mean or a number")


def space_kind(agent: Agent) -> str:
    """``image`` or ``vector`` (what the logging code draws)."""
    space = agent.observation_space
    if agent.is_image:
        return "image"
    if isinstance(space, gym.spaces.Box):
        return "vector"
    raise RllabError(f"cannot explain observations of type {type(space).__name__}")


class Explainer:
    """Base class: target handling, batching and the common ``attribute`` signature."""

    name: ClassVar[str] = "explainer"
    #: methods that need gradients of the agent (all but perturbation methods)
    gradient_based: ClassVar[bool] = True

    def __init__(self, agent: Agent, target: str = "action", batch_size: int = 256) -> None:
        check_target(agent, target)
        batch_size = int_option(self.name, "batch_size", batch_size)
        self.agent = agent
        self.target = target
        self.batch_size = batch_size

    # ------------------------------------------------------------ outputs
    def forward(self, obs: th.Tensor) -> th.Tensor:
        """The explained output: (N, n_actions) scores for ``action``; (N,) values for ``value``."""
        if self.target == "value":
            return self.agent.value(obs)
        scores = self.agent.logits(obs)
        if not self.agent.is_discrete:
            return scores.reshape(scores.shape[0], -1).sum(-1)
        return scores

    def captum_target(self, actions: th.Tensor | None) -> th.Tensor | None:
        """captum's ``target`` (the output index per state): the actions, or None for a scalar output."""
        if self.target == "value" or not self.agent.is_discrete:
            return None
        return actions

    def scalar_output(self, obs: th.Tensor, actions: th.Tensor | None) -> th.Tensor:
        """The explained scalar per state (N,)."""
        out = self.forward(obs)
        if out.dim() == 1:
            return out
        assert actions is not None
        return out.gather(1, actions.view(-1, 1)).squeeze(1)

    def default_actions(self, obs: th.Tensor) -> th.Tensor | None:
        """The actions the agent takes (its greedy choice), or None where the output is a scalar."""
        if self.target == "value" or not self.agent.is_discrete:
            return None
        with th.no_grad():
            return self.agent.logits(obs).argmax(-1)

    # ------------------------------------------------------------ public verb
    def attribute(self, obs: Any, actions: Any = None) -> th.Tensor:
        """Attributions of ``obs`` (a batch of raw observations), same shape as ``obs``."""
        x = self.agent.as_tensor(obs).detach()
        if tuple(x.shape[1:]) != tuple(self.agent.observation_space.shape):
            raise RllabError(
                f"observations of shape {tuple(x.shape[1:])} do not match the agent's "
                f"{self.agent.observation_space.shape}"
            )
        if actions is None:
            acts = self.default_actions(x)
        else:
            acts = as_index_tensor(actions, x.device)
            if acts.shape[0] != x.shape[0]:
                raise RllabError(f"got {acts.shape[0]} actions for {x.shape[0]} observations")
        chunks = []
        for start in range(0, x.shape[0], self.batch_size):
            stop = start + self.batch_size
            chunk = x[start:stop]
            if self.gradient_based:
                chunk = chunk.clone().requires_grad_(True)
            chunks.append(self._attribute(chunk, None if acts is None else acts[start:stop]).detach())
        return th.cat(chunks, 0)

    def _attribute(self, x: th.Tensor, actions: th.Tensor | None) -> th.Tensor:
        raise NotImplementedError

    def for_agent(self, agent: Agent) -> Explainer:
        """The same method and settings on another agent (e.g. a copy with randomised weights)."""
        new = copy.copy(self)
        new.agent = agent
        new._bind()
        return new

    def _bind(self) -> None:
        """Recompute what depends on the agent's modules (overridden where a method holds a layer)."""

    def describe(self) -> dict[str, Any]:
        """Method, target and parameters (logged as the text entry next to the maps)."""
        return {"method": self.name, "target": self.target, **self.params()}

    def params(self) -> dict[str, Any]:
        """The method's settings, as ``describe`` reports them."""
        return {}
