"""Activation maximisation: a global view of what an agent responds to (the input each action scores highest)."""

from __future__ import annotations

from collections.abc import Callable

import torch as th

from explain.methods.base import TARGETS, input_bounds
from rllab.agent import Agent
from rllab.errors import RllabError


def total_variation(x: th.Tensor) -> th.Tensor:
    """Anisotropic total variation of (N, C, H, W) images (a smoothness prior for images)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def activation_maximisation(
    agent: Agent,
    target: str = "action",
    steps: int = 300,
    lr: float = 0.05,
    l2: float = 1e-3,
    tv: float = 1e-2,
    seed: int = 0,
    score_fn: Callable[[th.Tensor], th.Tensor] | None = None,
) -> th.Tensor:
    """Activation maximisation (Erhan et al. 2009; Simonyan et al. 2014, eq. 1) for each action.

    argmax_x  S_a(x) - l2 ||x - mean||^2 - tv TV(x), where S_a is the action's logit minus
    the mean logit (a softmax is unchanged by a common shift, so the raw logit can grow
    without changing the policy). x is kept inside the observation space by optimising
    an unconstrained z with x = low + (high - low) sigmoid(z) (unbounded vector bounds:
    mean +- 4 std of the agent's rollouts). Returns (n_outputs, *obs_shape): one input per
    action (``target="action"``, discrete) or the one input maximising V (``value``).
    """
    if target not in TARGETS:
        raise RllabError(f"unknown target {target!r}; use action or value")
    if target == "value" and not agent.has_critic:
        raise RllabError(f"this {agent.algo} agent has no state-value critic to maximise")
    if target == "action" and not agent.is_discrete:
        raise RllabError("activation maximisation per action needs a discrete action space; use target value")
    device = agent.device
    low, high = (t.to(device) for t in input_bounds(agent))
    n_out = int(agent.action_space.n) if target == "action" else 1
    gen = th.Generator().manual_seed(seed)
    z = (0.1 * th.randn((n_out, *agent.observation_space.shape), generator=gen)).to(device).requires_grad_(True)
    mean = agent.obs_mean
    centre = th.as_tensor(mean, device=device) if mean is not None else (low + high) / 2
    scale = (high - low).clamp_min(1e-6)
    opt = th.optim.Adam([z], lr=lr)
    grad_flags = [p.requires_grad for p in agent.parameters()]
    for p in agent.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            x = low + scale * th.sigmoid(z)
            if score_fn is not None:
                score = score_fn(x)
            elif target == "value":
                score = agent.value(x)
            else:
                logits = agent.logits(x)
                score = (logits - logits.mean(-1, keepdim=True)).diagonal()
            reg = l2 * (((x - centre) / scale) ** 2).flatten(1).sum(1)
            loss = -(score - reg).sum()
            if agent.is_image and tv > 0:
                img = x if not agent.transpose_image else x.permute(0, 3, 1, 2)
                loss = loss + tv * n_out * total_variation(img / scale.max())
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        for p, flag in zip(agent.parameters(), grad_flags, strict=True):
            p.requires_grad_(flag)
    with th.no_grad():
        return low + scale * th.sigmoid(z)
