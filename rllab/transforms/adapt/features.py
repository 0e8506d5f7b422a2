"""The representation adaptation works on: where the domains are aligned, the domain classifier, the gap
between domains, and the losses that keep the source agent's behaviour."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import torch.nn as nn
import torch.nn.functional as F
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import FlattenExtractor

from rllab.agent import Agent
from rllab.errors import RllabError
from rllab.nn.policies import ACTIVATIONS
from rllab.transforms.distill import distillation_loss, student_output

ALIGN = ("auto", "first", "extractor", "latent")


class _ReverseGradient(th.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: th.Tensor, scale: float) -> th.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: th.Tensor) -> tuple[th.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(x: th.Tensor, scale: float = 1.0) -> th.Tensor:
    """Identity forward; the gradient is multiplied by ``-scale`` on the way back (Ganin et al. 2016)."""
    return _ReverseGradient.apply(x, scale)


def ganin_schedule(progress: float, coef: float) -> float:
    """``coef * (2 / (1 + exp(-10 p)) - 1)``: 0 at the start, ``coef`` by the end (Ganin et al. 2016, §5.2.2)."""
    return coef * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)


def _extractor(agent: Agent) -> nn.Module:
    policy = agent.policy
    if isinstance(policy, ActorCriticPolicy):
        return policy.features_extractor if policy.share_features_extractor else policy.pi_features_extractor
    return policy.q_net.features_extractor  # DQN


def _first_layer(agent: Agent) -> nn.Sequential | None:
    """The network's first layer and its activation (on SB3-preprocessed input), or None if it has no such layer."""
    policy, extractor = agent.policy, _extractor(agent)
    if isinstance(extractor, FlattenExtractor):
        net = policy.mlp_extractor.policy_net if isinstance(policy, ActorCriticPolicy) else policy.q_net.q_net
        prefix: list[nn.Module] = [nn.Flatten()]
    else:
        net, prefix = getattr(extractor, "cnn", None), []
    if not isinstance(net, nn.Sequential):
        return None
    activations = tuple(ACTIVATIONS.values()) + (nn.Sigmoid,)
    for i, m in enumerate(net):
        if isinstance(m, activations):
            return nn.Sequential(*prefix, *net[: i + 1])
    return None


def align_point(agent: Agent, align: str = "auto") -> str:
    """Where the domains are aligned: ``first`` (the first hidden layer) unless asked otherwise.

    An observation shift is a low-level change, and the first layer can undo it on its own (a
    pixel offset, by thresholding); every layer after it then sees the same input in both
    domains. Aligning deeper asks later layers to forget the shift while keeping the actions: on
    three shifted Catch domains, aligning the CNN's output instead brought the mean target catch
    rate to 0.73 / 0.94 / 0.76 against 1.00 / 1.00 / 0.91 with domain confusion, and the last
    hidden layer made an agent worse in an early trial (0.37 -> 0.16).
    """
    if align not in ALIGN:
        raise RllabError(f"unknown --align {align!r}; use one of {', '.join(ALIGN)}")
    has_weights = any(True for _ in _extractor(agent).parameters())
    if align == "auto":
        return "first" if _first_layer(agent) is not None else "extractor" if has_weights else "latent"
    if align == "first" and _first_layer(agent) is None:
        raise RllabError("cannot find this agent's first layer and activation; use --align extractor or latent")
    if align == "extractor" and not has_weights:
        raise RllabError("this agent's feature extractor has no weights (flatten); use --align first or latent")
    return align


def domain_features(agent: Agent, obs: th.Tensor, where: str) -> th.Tensor:
    """The representation the domain classifier sees (``where`` from ``align_point``)."""
    if where == "latent":
        return agent.features(obs)
    policy = agent.policy
    x = agent.preprocess(obs)
    if where == "first":
        layer = _first_layer(agent)
        assert layer is not None
        return layer(preprocess_obs(x, policy.observation_space, policy.normalize_images)).flatten(1)
    if isinstance(policy, ActorCriticPolicy):
        return policy.extract_features(x, _extractor(agent))
    return policy.q_net.extract_features(x, _extractor(agent))


def domain_classifier(features: int, hidden: int = 64) -> nn.Sequential:
    """A small MLP scoring features as target (positive) or source (negative)."""
    return nn.Sequential(
        nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
    )


def task_loss(student: Agent, teacher: Agent, obs: th.Tensor, teacher_obs: th.Tensor | None = None) -> th.Tensor:
    """How far the student on ``obs`` is from the frozen source agent on ``teacher_obs`` (default: the same states).

    Actions by KL (as in distillation); Q-values and the critic by relative squared error. With
    ``teacher_obs`` the paired source states of target states ``obs``, this is the consistency loss.
    """
    teacher_obs = obs if teacher_obs is None else teacher_obs
    if student.has_q:
        with th.no_grad():
            q_t = teacher.q_values(teacher_obs)
        return F.mse_loss(student.q_values(obs), q_t) / (q_t.pow(2).mean() + 1e-6)
    with th.no_grad():
        target = student_output(teacher, teacher_obs)
    loss = distillation_loss(student_output(student, obs), target)
    if student.has_critic:
        with th.no_grad():
            v_t = teacher.value(teacher_obs)
        loss = loss + F.mse_loss(student.value(obs), v_t) / (v_t.pow(2).mean() + 1e-6)
    return loss


def prediction_entropy(agent: Agent, obs: th.Tensor) -> th.Tensor:
    """Mean entropy of the agent's action distribution (softmax of the Q-values for Q agents) on ``obs``."""
    if not agent.is_discrete:
        raise RllabError("--method entropy needs discrete actions; use --method consistency or dann")
    logits = agent.q_values(obs) if agent.has_q else agent.logits(obs)
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1).mean()


def domain_gap(
    agent: Agent,
    source: np.ndarray,
    target: np.ndarray,
    where: str,
    steps: int = 300,
    seed: int = 0,
) -> dict[str, float]:
    """Held-out accuracy of a fresh classifier telling the domains apart from the agent's frozen features.

    The first 80% of each array trains it, the rest tests it. ``proxy_a_distance`` is
    ``2 (1 - 2 err)`` with the held-out error ``err`` capped at 1/2 (Ben-David et al. 2010):
    2 when the domains are perfectly separable, 0 when they cannot be told apart.
    """
    gen = th.Generator().manual_seed(seed)
    with th.no_grad():  # in chunks: 10k Atari-size frames as float would take gigabytes at once
        fs, ft = (
            th.cat([domain_features(agent, agent.as_tensor(x[i : i + 1024]), where) for i in range(0, len(x), 1024)])
            for x in (source, target)
        )
    ns, nt = int(0.8 * len(fs)), int(0.8 * len(ft))
    x_train, y_train = th.cat([fs[:ns], ft[:nt]]), th.cat([th.zeros(ns), th.ones(nt)])
    x_test, y_test = th.cat([fs[ns:], ft[nt:]]), th.cat([th.zeros(len(fs) - ns), th.ones(len(ft) - nt)])
    with th.random.fork_rng(devices=[]):
        th.manual_seed(seed)
        clf = domain_classifier(fs.shape[1]).to(x_train.device)
    opt = th.optim.Adam(clf.parameters(), lr=1e-3)
    for _ in range(steps):
        idx = th.randint(len(x_train), (256,), generator=gen)
        loss = F.binary_cross_entropy_with_logits(clf(x_train[idx]).squeeze(-1), y_train[idx].to(x_train))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with th.no_grad():
        pred = (clf(x_test).squeeze(-1) > 0).float().cpu()
    accuracy = float((pred == y_test).float().mean())
    err = min(1.0 - accuracy, 0.5)
    return {"accuracy": accuracy, "proxy_a_distance": 2.0 * (1.0 - 2.0 * err)}


def paired_agreement(agent: Agent, source: Agent, xs: np.ndarray, xt: np.ndarray) -> float:
    """How often ``agent`` on target states ``xt`` takes the action ``source`` takes on their paired source states.

    Discrete actions: the share of equal (deterministic) actions; continuous: ``1 -`` the mean absolute
    difference as a share of the action range. 1 when the shift no longer changes what the agent does.
    """
    a_t, a_s = agent.act(xt), source.act(xs)
    space = source.action_space
    if isinstance(space, gym.spaces.Box):
        width = np.where(np.isfinite(space.high - space.low), space.high - space.low, 1.0)
        return float(1.0 - np.mean(np.abs(a_t - a_s) / width))
    return float(np.mean(np.all((a_t == a_s).reshape(len(a_t), -1), axis=1)))
