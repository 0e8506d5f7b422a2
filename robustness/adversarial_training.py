"""Adversarial training of on-policy agents: the SA-PPO regulariser and training on attacked observations.

- ``sa-reg`` (Zhang et al. 2020, "Robust Deep RL against Adversarial Perturbations on
  State Observations", SA-PPO, eq. 5 and Algorithm 2 with the PGD solver): adds
  ``coef * mean_s max_{s' in B_eps(s)} KL(pi(.|s) || pi(.|s'))`` to the policy loss, with
  ``pi(.|s)`` held fixed (detached) as in the reference implementation; the inner max is
  solved with a few signed-gradient PGD steps from a random start. ``eps`` ramps linearly
  from 0 over the first ``ramp`` fraction of training.
- ``adv-obs``: the naive baseline: every minibatch's observations are replaced by PGD
  perturbations that maximise the same KL before the algorithm's own loss is computed.

Both work with the lab's REINFORCE and SB3's A2C and PPO without copying their training
loops: the minibatch is captured where the algorithm calls ``policy.evaluate_actions``
and the regulariser's gradient is added where it calls ``policy.optimizer.step``.

Budgets are in the threat model's units: pixel/255 for image observations; for vector
observations, multiples of the per-feature standard deviation of the observations seen so
far in training (a running estimate; the checkpoint's own ``obs_stats`` are gathered after
training, from the final policy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.running_mean_std import RunningMeanStd
from torch.distributions import kl_divergence

from rllab.errors import RllabError
from rllab.training import TRAINING_DEFENSES


def _dist(policy, obs: th.Tensor):
    return policy.get_distribution(obs).distribution


def _kl(p, q) -> th.Tensor:
    kl = kl_divergence(p, q)
    return kl.sum(-1) if kl.dim() > 1 else kl


def kl_pgd(
    policy,
    obs: th.Tensor,
    radius: th.Tensor,
    low: th.Tensor,
    high: th.Tensor,
    steps: int,
    generator: th.Generator | None = None,
) -> th.Tensor:
    """argmax over the linf box ``|s' - s| <= radius`` of KL(pi(.|s) || pi(.|s')), by PGD (step 2*radius/steps)."""
    with th.no_grad():
        clean = _dist(policy, obs)
        noise = th.rand(obs.shape, generator=generator, device=obs.device) * 2 - 1
        adv = th.clamp(obs + noise * radius, low, high)
    step = 2.0 * radius / max(steps, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = _kl(clean, _dist(policy, adv)).sum()
        (grad,) = th.autograd.grad(loss, adv)
        with th.no_grad():
            adv = adv + step * grad.sign()
            adv = th.clamp(th.minimum(th.maximum(adv, obs - radius), obs + radius), low, high)
    return adv.detach()


class _StateAdversary:
    """Holds the settings, the running observation statistics and the current eps."""

    def __init__(
        self, model: BaseAlgorithm, mode: str, eps: float, coef: float, steps: int, ramp: float, seed: int
    ) -> None:
        self.model, self.mode = model, mode
        self.eps, self.coef, self.steps, self.ramp = eps, coef, steps, ramp
        space = model.policy.observation_space
        self.image = is_image_space(space, check_channels=False)
        device = model.device
        self.low = th.as_tensor(np.maximum(space.low, -1e6), dtype=th.float32, device=device)
        self.high = th.as_tensor(np.minimum(space.high, 1e6), dtype=th.float32, device=device)
        self.rms = RunningMeanStd(shape=space.shape)
        self.generator = th.Generator(device=device).manual_seed(seed)
        self.last_obs: th.Tensor | None = None
        self.last_reg = 0.0

    def current_eps(self) -> float:
        progress = 1.0 - float(self.model._current_progress_remaining)
        return self.eps * min(1.0, progress / self.ramp) if self.ramp > 0 else self.eps

    def radius(self, obs: th.Tensor) -> th.Tensor:
        eps = self.current_eps()
        if self.image:
            return th.full_like(obs[0], eps * 255.0)
        std = th.as_tensor(np.sqrt(self.rms.var), dtype=th.float32, device=obs.device)
        return eps * std

    def observe(self, obs: th.Tensor) -> None:
        if not self.image:
            self.rms.update(obs.detach().cpu().numpy().reshape(-1, *self.rms.mean.shape))


def install(
    model: BaseAlgorithm, mode: str, eps: float, coef: float = 0.1, steps: int = 10, ramp: float = 0.5, seed: int = 0
) -> dict[str, Any]:
    """Attach ``sa-reg`` or ``adv-obs`` to an on-policy SB3 model; returns the settings to record."""
    if mode not in ("sa-reg", "adv-obs"):
        raise RllabError(f"unknown training defense {mode!r}; use sa-reg or adv-obs")
    if eps < 0 or coef < 0 or steps < 1 or not 0 <= ramp <= 1:
        raise RllabError("defense settings need eps >= 0, coef >= 0, steps >= 1 and 0 <= ramp <= 1")
    if not hasattr(model, "rollout_buffer"):
        raise RllabError(f"--defense {mode} needs an on-policy algorithm (reinforce, a2c, ppo)")
    adv = _StateAdversary(model, mode, eps, coef, steps, ramp, seed)
    policy = model.policy
    evaluate_actions = policy.evaluate_actions
    optimizer_step = policy.optimizer.step

    def evaluate_with_adversary(obs: th.Tensor, actions: th.Tensor):
        adv.observe(obs)
        adv.last_obs = obs
        if mode == "adv-obs" and adv.current_eps() > 0:
            was_training = policy.training
            obs = kl_pgd(policy, obs, adv.radius(obs), adv.low, adv.high, adv.steps, adv.generator)
            policy.train(was_training)
        return evaluate_actions(obs, actions)

    def step_with_regulariser(*args: Any, **kwargs: Any):
        if mode == "sa-reg" and adv.last_obs is not None and adv.current_eps() > 0 and adv.coef > 0:
            obs = adv.last_obs
            perturbed = kl_pgd(policy, obs, adv.radius(obs), adv.low, adv.high, adv.steps, adv.generator)
            with th.no_grad():
                clean = _dist(policy, obs)
            reg = _kl(clean, _dist(policy, perturbed)).mean()
            (adv.coef * reg).backward()
            th.nn.utils.clip_grad_norm_(policy.parameters(), getattr(model, "max_grad_norm", 0.5))
            adv.last_reg = float(reg.detach())
            model.logger.record("train/sa_reg_kl", adv.last_reg)
        model.logger.record("train/adv_eps", adv.current_eps())
        return optimizer_step(*args, **kwargs)

    policy.evaluate_actions = evaluate_with_adversary
    policy.optimizer.step = step_with_regulariser
    return {
        "name": mode,
        "eps": eps,
        "unit": "pixel/255" if adv.image else "running obs std",
        "coef": coef,
        "pgd_steps": steps,
        "ramp": ramp,
        "norm": "linf",
        "objective": "kl",
    }


def _sa_reg(model: BaseAlgorithm, **kwargs: Any) -> dict[str, Any]:
    return install(model, "sa-reg", **kwargs)


def _adv_obs(model: BaseAlgorithm, **kwargs: Any) -> dict[str, Any]:
    return install(model, "adv-obs", **kwargs)


def _atla(model: BaseAlgorithm, **kwargs: Any) -> dict[str, Any]:
    from robustness.learned_adversary import install_atla

    kwargs.pop("coef", None)
    kwargs.pop("ramp", None)
    return install_atla(model, **kwargs)


TRAINING_DEFENSES.update({"sa-reg": _sa_reg, "adv-obs": _adv_obs, "atla": _atla})
