"""Adversarial training of on-policy agents: the SA-PPO regulariser and training on attacked observations.

- ``sa-reg`` (Zhang et al. 2020, "Robust Deep RL against Adversarial Perturbations on
  State Observations", SA-PPO, eq. 5 and Algorithm 2 with the PGD solver): adds
  ``coef * mean_s max_{s' in B_eps(s)} KL(pi(.|s) || pi(.|s'))`` to the policy loss, with
  ``pi(.|s)`` held fixed (detached) as in the reference implementation; the inner max is
  solved with a few signed-gradient PGD steps from a random start (``solver="pgd"``), or
  replaced by a sound upper bound computed with interval bound propagation
  (``solver="ibp"``, the convex-relaxation variant of SA-PPO with IBP in place of
  CROWN-IBP; see :func:`kl_upper_bound`). ``eps`` ramps linearly from 0 over the first
  ``ramp`` fraction of training.
- ``adv-obs``: the naive baseline: every minibatch's observations are replaced by PGD
  perturbations that maximise the same KL before the algorithm's own loss is computed.

Both work with the lab's REINFORCE and SB3's A2C and PPO without copying their training
loops: the minibatch is captured where the algorithm calls ``policy.evaluate_actions``
and the regulariser's gradient is added where it calls ``policy.optimizer.step``.

Budgets are in the threat model's units: pixel/255 for image observations; for vector
observations, multiples of the per-feature standard deviation of the observations seen so
far in training (a running estimate; the checkpoint's own ``obs_stats`` are gathered after
training, from the final policy). Under observation normalisation (SB3's ``VecNormalize``) the
policy is trained on normalised observations: the running std is VecNormalize's, the radius is
expressed in normalised units, and the box is the observation space mapped through the
normalisation and its clip.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution
from stable_baselines3.common.preprocessing import is_image_space, preprocess_obs
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import unwrap_vec_normalize
from torch.distributions import kl_divergence

from rllab.errors import RllabError
from rllab.training import TRAINING_DEFENSES
from rllab.units import RUNNING_STD, ThreatUnit
from robustness.certify import actor_layers, propagate
from robustness.learned.atla import install_atla


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
    """argmax over the linf box ``|s' - s| <= radius`` of KL(pi(.|s) || pi(.|s')), by PGD (step 2*radius/steps).

    ``low``/``high`` are widened to contain ``obs``, so the result is always within ``radius`` of it.
    """
    low, high = th.minimum(low, obs), th.maximum(high, obs)
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


def kl_upper_bound(policy, obs: th.Tensor, radius: th.Tensor, low: th.Tensor, high: th.Tensor) -> th.Tensor:
    """Per state, an upper bound of ``max_{|s' - s| <= radius} KL(pi(.|s) || pi(.|s'))`` by IBP.

    The box (clipped to the observation space) is pushed through the actor with interval
    bound propagation up to the last hidden layer. For a categorical policy, with
    ``p = pi(.|s)`` fixed and ``U_ij`` the upper bound of the logit difference
    ``z'_j - z'_i`` (last layer applied to the row differences ``W_j - W_i``),
    ``KL = sum_i p_i (log p_i + log sum_j exp(z'_j - z'_i)) <= sum_i p_i (log p_i + logsumexp_j U_ij)``.
    For a diagonal Gaussian with state-independent std ``sigma`` and mean bounds ``[l, u]``,
    ``KL <= sum_k max(mu_k - l_k, u_k - mu_k)^2 / (2 sigma_k^2)``. The bound is 0 at radius 0,
    differentiable in the weights, and (being sound) never below the KL that PGD finds.
    """
    low, high = th.minimum(low, obs), th.maximum(high, obs)
    lo = th.clamp(th.maximum(obs - radius, low), max=high)
    hi = th.clamp(th.minimum(obs + radius, high), min=low)
    lo = preprocess_obs(lo, policy.observation_space, policy.normalize_images)
    hi = preprocess_obs(hi, policy.observation_space, policy.normalize_images)
    c, r = (lo + hi) / 2, (hi - lo) / 2
    layers = actor_layers(policy)
    for layer in layers[:-1]:
        c, r = propagate(layer, c, r)
    last = layers[-1]
    dist = policy.action_dist
    with th.no_grad():
        clean = _dist(policy, obs)
    if isinstance(dist, CategoricalDistribution):
        w_diff = last.weight.unsqueeze(0) - last.weight.unsqueeze(1)  # [i, j] = W_j - W_i
        b_diff = last.bias.unsqueeze(0) - last.bias.unsqueeze(1)
        upper = th.einsum("ijh,bh->bij", w_diff, c) + b_diff + th.einsum("ijh,bh->bij", w_diff.abs(), r)
        logp = clean.logits  # normalised log-probabilities
        return (logp.exp() * (logp + th.logsumexp(upper, dim=-1))).sum(-1)
    if isinstance(dist, DiagGaussianDistribution):
        mc, mr = propagate(last, c, r)
        mu, sigma = clean.mean, clean.stddev
        dev = th.maximum(mu - (mc - mr), (mc + mr) - mu)
        return (dev.square() / (2 * sigma.square())).sum(-1)
    raise RllabError(f"the IBP solver of sa-reg supports categorical and Gaussian policies, not {type(dist).__name__}")


class _StateAdversary:
    """Holds the settings, the running observation statistics and the current eps."""

    def __init__(
        self,
        model: BaseAlgorithm,
        mode: str,
        eps: float,
        coef: float,
        steps: int,
        ramp: float,
        seed: int,
        solver: str = "pgd",
    ) -> None:
        self.model, self.mode, self.solver = model, mode, solver
        self.eps, self.coef, self.steps, self.ramp = eps, coef, steps, ramp
        space = model.policy.observation_space
        self.image = is_image_space(space, check_channels=False)
        self.pixel = ThreatUnit.pixel(tuple(space.shape)) if self.image else None
        device = model.device
        self.low = th.as_tensor(np.maximum(space.low, -1e6), dtype=th.float32, device=device)
        self.high = th.as_tensor(np.minimum(space.high, 1e6), dtype=th.float32, device=device)
        # with VecNormalize the policy is trained on normalised observations: the box and the budget
        # must be mapped into those units (see bounds and radius)
        venv = unwrap_vec_normalize(model.get_env()) if model.get_env() is not None else None
        self.vec_normalize = venv if venv is not None and venv.norm_obs else None
        self.rms = RunningMeanStd(shape=space.shape)
        self.generator = th.Generator(device=device).manual_seed(seed)
        self.last_obs: th.Tensor | None = None
        self.last_reg = 0.0

    def current_eps(self) -> float:
        """The budget now: ramped linearly from 0 over the first ``ramp`` fraction of training."""
        progress = 1.0 - float(self.model._current_progress_remaining)
        return self.eps * min(1.0, progress / self.ramp) if self.ramp > 0 else self.eps

    def _norm_stats(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """VecNormalize's running (mean, var, sqrt(var + epsilon)) of the raw observations."""
        vn = self.vec_normalize
        mean = th.as_tensor(vn.obs_rms.mean, dtype=th.float32, device=obs.device)
        var = th.as_tensor(vn.obs_rms.var, dtype=th.float32, device=obs.device)
        return mean, var, th.sqrt(var + vn.epsilon)

    def bounds(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """The observation space's box in the units the policy sees (normalised under VecNormalize)."""
        if self.vec_normalize is None:
            return self.low.to(obs.device), self.high.to(obs.device)
        space = self.model.policy.observation_space
        mean, _, denom = self._norm_stats(obs)
        clip = float(self.vec_normalize.clip_obs)
        raw_low = th.as_tensor(space.low, dtype=th.float32, device=obs.device)  # infinite bounds stay infinite
        raw_high = th.as_tensor(space.high, dtype=th.float32, device=obs.device)
        return ((raw_low - mean) / denom).clamp(-clip, clip), ((raw_high - mean) / denom).clamp(-clip, clip)

    def radius(self, obs: th.Tensor) -> th.Tensor:
        """``eps`` times the running std of the raw observations, in the units the policy sees."""
        eps = self.current_eps()
        if self.pixel is not None:  # eps * 255 in double, then rounded once
            return (eps * th.as_tensor(self.pixel.scale, dtype=th.float64, device=obs.device)).to(obs.dtype)
        if self.vec_normalize is not None:  # raw std / the normaliser's scale (about 1 per feature)
            _, var, denom = self._norm_stats(obs)
            return eps * th.sqrt(var) / denom
        unit = ThreatUnit.std(np.sqrt(self.rms.var), name=RUNNING_STD)
        return eps * th.as_tensor(unit.scale, device=obs.device)

    def observe(self, obs: th.Tensor) -> None:
        """Adds a minibatch of raw vector observations to the running statistics."""
        if not self.image and self.vec_normalize is None:
            self.rms.update(obs.detach().cpu().numpy().reshape(-1, *self.rms.mean.shape))


def install(
    model: BaseAlgorithm,
    mode: str,
    eps: float,
    coef: float = 0.1,
    steps: int = 10,
    ramp: float = 0.5,
    seed: int = 0,
    solver: str = "pgd",
) -> dict[str, Any]:
    """Attach ``sa-reg`` or ``adv-obs`` to an on-policy SB3 model; returns the settings to record."""
    if mode not in ("sa-reg", "adv-obs"):
        raise RllabError(f"unknown training defense {mode!r}; use sa-reg or adv-obs")
    if solver not in ("pgd", "ibp") or (mode == "adv-obs" and solver != "pgd"):
        raise RllabError(f"unknown solver {solver!r} for {mode}; sa-reg takes pgd or ibp, adv-obs pgd")
    if eps < 0 or coef < 0 or steps < 1 or not 0 <= ramp <= 1:
        raise RllabError("defense settings need eps >= 0, coef >= 0, steps >= 1 and 0 <= ramp <= 1")
    if not hasattr(model, "rollout_buffer"):
        raise RllabError(f"--defense {mode} needs an on-policy algorithm (reinforce, a2c, ppo)")
    adv = _StateAdversary(model, mode, eps, coef, steps, ramp, seed, solver)
    if solver == "ibp":
        actor_layers(model.policy)  # fails early, with a clear message, on networks IBP cannot bound
    policy = model.policy
    evaluate_actions = policy.evaluate_actions
    optimizer_step = policy.optimizer.step

    def evaluate_with_adversary(obs: th.Tensor, actions: th.Tensor):
        adv.observe(obs)
        adv.last_obs = obs
        if mode == "adv-obs" and adv.current_eps() > 0:
            was_training = policy.training
            obs = kl_pgd(policy, obs, adv.radius(obs), *adv.bounds(obs), adv.steps, adv.generator)
            policy.train(was_training)
        return evaluate_actions(obs, actions)

    def step_with_regulariser(*args: Any, **kwargs: Any):
        if mode == "sa-reg" and adv.last_obs is not None and adv.current_eps() > 0 and adv.coef > 0:
            obs = adv.last_obs
            if adv.solver == "ibp":
                reg = kl_upper_bound(policy, obs, adv.radius(obs), *adv.bounds(obs)).mean()
            else:
                perturbed = kl_pgd(policy, obs, adv.radius(obs), *adv.bounds(obs), adv.steps, adv.generator)
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
        "unit": adv.pixel.name if adv.pixel is not None else RUNNING_STD,
        "coef": coef,
        "solver": solver,
        "pgd_steps": steps if solver == "pgd" else 0,
        "ramp": ramp,
        "norm": "linf",
        "objective": "kl",
    }


def _no_adversary_settings(mode: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    extra = [k for k in ("adv_every", "adv_steps") if k in kwargs]
    if extra:
        raise RllabError(f"{', '.join(extra)} set the cadence of atla's learned adversary; {mode} has none")
    return kwargs


def _sa_reg(model: BaseAlgorithm, **kwargs: Any) -> dict[str, Any]:
    return install(model, "sa-reg", **_no_adversary_settings("sa-reg", kwargs))


def _adv_obs(model: BaseAlgorithm, **kwargs: Any) -> dict[str, Any]:
    return install(model, "adv-obs", **_no_adversary_settings("adv-obs", kwargs))


def _atla(model: BaseAlgorithm, **kwargs: Any) -> dict[str, Any]:
    if kwargs.pop("solver", "pgd") != "pgd":
        raise RllabError("atla trains its adversary with PPO; --defense-solver applies to sa-reg only")
    kwargs.pop("coef", None)
    kwargs.pop("ramp", None)
    return install_atla(model, **kwargs)


TRAINING_DEFENSES.update({"sa-reg": _sa_reg, "adv-obs": _adv_obs, "atla": _atla})
