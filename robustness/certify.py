"""Certified action robustness: states where no perturbation within eps can change the action.

Two certificates, both per visited state:

- **Interval bound propagation** (Gowal et al. 2018, eqs. 6-7): the box
  ``[x - eps, x + eps]`` (clipped to the observation space) is pushed through the
  agent's preprocessing and network as centre/radius pairs; monotone activations
  map bounds to bounds (a purifier is not monotone: IBP goes through its layers too;
  input filters and noise smoothing are refused). For the chosen action ``a`` and every other action ``b``
  the final linear layer is applied to the *difference* of rows ``W_a - W_b``, which
  bounds the margin ``z_a - z_b`` more tightly than subtracting two intervals. The
  action is certified when every margin's lower bound is > 0. Sound by construction:
  a certified action cannot change within the box (a test checks this against attacks).
- **Randomized smoothing** (Cohen et al. 2019, CERTIFY; per-state action certification
  as in CROP, Wu et al. 2022): for the agent smoothed with Gaussian noise of scale
  ``sigma``, draw ``n0`` noisy copies to pick the top action, ``n`` more to bound its
  probability from below (one-sided Clopper-Pearson at level ``1 - alpha``), and
  certify the l2 radius ``sigma * Phi^-1(p_lower)``; abstain when ``p_lower <= 1/2``.

For a **Gaussian (continuous-action) policy** there is no action to flip: IBP certifies, per
state, an upper bound on how far the deterministic action (the Gaussian mean ``mu``) can move
within the box, ``max_{s' in B(s)} ||mu(s') - mu(s)||_inf <= max_j max(ub_j - mu_j, mu_j - lb_j)``,
and the same for the action the environment receives (the mean clipped to the action space,
tighter). It certifies the mean action only: the std, sampled actions and returns are not bounded.
Randomized smoothing certifies a discrete action and is refused for continuous agents.

Budgets are in the threat model's units: pixel/255 for images, multiples of the
per-feature observation std stored in the checkpoint for vectors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from scipy import stats
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import FlattenExtractor, NatureCNN
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from rllab.agent import Agent
from rllab.errors import RllabError
from rllab.evaluation import collect_observations
from rllab.nn.policies import MinAtarCNN, SmallCNN
from rllab.schema import MAX_SMOOTHING_SAMPLES
from rllab.units import ThreatUnit, unit_name

Interval = tuple[th.Tensor, th.Tensor]  # (centre, radius)


class ChannelsFirst(nn.Module):
    """(N, H, W, C) -> (N, C, H, W), as MinAtarCNN permutes channels-last frames before its convolution."""

    def forward(self, x: th.Tensor) -> th.Tensor:
        return x.permute(0, 3, 1, 2)


def _actor_layers(agent: Agent) -> list[nn.Module]:
    return actor_layers(agent.policy)


def actor_layers(policy: nn.Module) -> list[nn.Module]:
    """The modules from an SB3 policy's (preprocessed) input to its action scores, in order."""
    if isinstance(policy, DQNPolicy):
        extractor, head = policy.q_net.features_extractor, list(policy.q_net.q_net)
    else:
        extractor = policy.pi_features_extractor if not policy.share_features_extractor else policy.features_extractor
        head = [*policy.mlp_extractor.policy_net, policy.action_net]
    if isinstance(extractor, FlattenExtractor):
        front: list[nn.Module] = [nn.Flatten()]
    elif isinstance(extractor, (SmallCNN, NatureCNN)):
        front = [*extractor.cnn, *extractor.linear]
    elif isinstance(extractor, MinAtarCNN):  # reads channels-last frames: the same permutation first
        front = [ChannelsFirst()] * extractor.channels_last + [*extractor.cnn, *extractor.linear]
    else:
        raise RllabError(f"IBP does not know the features extractor {type(extractor).__name__}")
    return [*front, *head]


def propagate(layer: nn.Module, c: th.Tensor, r: th.Tensor) -> Interval:
    """Interval (centre, radius) through one layer (differentiable: IBP training uses it too)."""
    if isinstance(layer, nn.Linear):
        return layer(c), r @ layer.weight.abs().t()
    if isinstance(layer, nn.Conv2d):
        conv = nn.functional.conv2d
        kw = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation, "groups": layer.groups}
        return layer(c), conv(r, layer.weight.abs(), None, **kw)
    if isinstance(layer, (nn.Flatten, ChannelsFirst)):  # re-indexing: centre and radius move alike
        return layer(c), layer(r)
    if isinstance(layer, (nn.ReLU, nn.Tanh, nn.ELU, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Sigmoid)):
        if isinstance(layer, (nn.SiLU, nn.GELU)):
            raise RllabError(f"IBP needs monotone activations; {type(layer).__name__} is not")
        lo, hi = layer(c - r), layer(c + r)
        return (lo + hi) / 2, (hi - lo) / 2
    raise RllabError(f"IBP cannot propagate through {type(layer).__name__}")


def action_score_bounds(agent: Agent, obs: th.Tensor, eps: float) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """Returns (scores at obs, lower, upper) bounds of every action score over the linf box of radius eps."""
    c, r = _input_box(agent, obs, eps)
    layers = _actor_layers(agent)
    for layer in layers:
        c, r = propagate(layer, c, r)
    return agent.logits(obs), c - r, c + r


def purifier_bounds(purifier: nn.Module, lo: th.Tensor, hi: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Sound elementwise bounds of a residual purifier's output over the box ``[lo, hi]``.

    ``x -> z = (x - center) / scale -> z + net(z) -> clamp(y * scale + center)``: the affine maps
    and the clamp are elementwise and non-decreasing (``scale > 0``), ``net`` is a chain of
    Linear/Conv2d/ReLU layers that IBP propagates, and the bounds of a sum are the sums of the
    bounds. The purifier itself is not monotone, so its outputs at ``lo`` and ``hi`` are not bounds.
    """
    scale = purifier.scale
    if bool((scale <= 0).any()):
        raise RllabError("IBP needs a purifier with positive scales")
    z_lo, z_hi = (lo - purifier.center) / scale, (hi - purifier.center) / scale
    c, r = (z_lo + z_hi) / 2, (z_hi - z_lo) / 2
    nc, nr = c, r
    for layer in purifier.net:
        nc, nr = propagate(layer, nc, nr)
    c, r = c + nc.reshape(c.shape), r + nr.reshape(r.shape)
    out_lo = ((c - r) * scale + purifier.center).clamp(purifier.low, purifier.high)
    out_hi = ((c + r) * scale + purifier.center).clamp(purifier.low, purifier.high)
    return out_lo, out_hi


def _input_box(agent: Agent, obs: th.Tensor, eps: float) -> Interval:
    if agent.filters or agent.smoothing is not None:
        raise RllabError(
            "IBP cannot bound input filters or noise smoothing; certify this agent with --method smoothing"
        )
    if eps < 0:
        raise RllabError(f"eps must be >= 0, got {eps}")
    x = agent.as_tensor(obs).float()
    delta = eps * th.as_tensor(ThreatUnit.for_agent(agent).scale).to(x)
    space = agent.observation_space
    low = th.as_tensor(space.low, dtype=th.float32, device=x.device)
    high = th.as_tensor(space.high, dtype=th.float32, device=x.device)
    lo, hi = th.maximum(x - delta, low), th.minimum(x + delta, high)
    if agent.purifier is not None:  # not monotone: bounded by IBP through its layers
        lo, hi = purifier_bounds(agent.purifier, lo, hi)
    # the rest of the preprocessing (transposition, observation normalisation) and SB3's image
    # scaling are elementwise and non-decreasing: bounds map to bounds (unaware: the purifier is done)
    policy_space = agent.policy.observation_space
    norm_images = agent.policy.normalize_images
    with agent.unaware():
        lo = preprocess_obs(agent.preprocess(lo), policy_space, norm_images)
        hi = preprocess_obs(agent.preprocess(hi), policy_space, norm_images)
    return (lo + hi) / 2, (hi - lo) / 2


@th.no_grad()
def certify_ibp(agent: Agent, obs: Any, eps: float) -> dict[str, th.Tensor]:
    """Per state: the agent's action, the lower bound of its worst margin, and whether it is certified."""
    if not agent.is_discrete:
        raise RllabError("action certification needs a discrete action space")
    c, r = _input_box(agent, agent.as_tensor(obs), eps)
    layers = _actor_layers(agent)
    for layer in layers[:-1]:
        c, r = propagate(layer, c, r)
    last = layers[-1]
    assert isinstance(last, nn.Linear)
    action = agent.logits(obs).argmax(-1)
    w_diff = last.weight[action].unsqueeze(1) - last.weight.unsqueeze(0)  # (B, A, H): W_a - W_b
    b_diff = last.bias[action].unsqueeze(1) - last.bias.unsqueeze(0)
    margin_lo = th.einsum("bah,bh->ba", w_diff, c) + b_diff - th.einsum("bah,bh->ba", w_diff.abs(), r)
    margin_lo[th.arange(len(action)), action] = th.inf
    worst = margin_lo.min(-1).values
    return {"action": action, "margin_lower": worst, "certified": worst > 0}


@th.no_grad()
def certify_mean_action(agent: Agent, obs: Any, eps: float) -> dict[str, th.Tensor]:
    """Per state of a Gaussian policy: IBP bounds of the mean action over the linf box of radius eps.

    ``bound``: the certified upper bound on ``||mu(s') - mu(s)||_inf`` over the box;
    ``action_bound``: the same for the action the environment receives (the mean, squashed where
    the policy squashes, clipped to the action space), never larger.
    """
    if agent.is_discrete or agent.has_q:
        raise RllabError("the mean-action bound is for continuous-action (Gaussian) policies")
    x = agent.as_tensor(obs)
    mean, lo, hi = action_score_bounds(agent, x, eps)
    mean = mean.reshape(lo.shape)
    bound = th.maximum(hi - mean, mean - lo).amax(-1).clamp_min(0)
    if getattr(agent.policy, "squash_output", False):  # tanh is monotone: bounds map to bounds
        mean, lo, hi = th.tanh(mean), th.tanh(lo), th.tanh(hi)
    space = agent.action_space
    low = th.as_tensor(space.low, dtype=mean.dtype, device=mean.device).reshape(-1)
    high = th.as_tensor(space.high, dtype=mean.dtype, device=mean.device).reshape(-1)
    act, a_lo, a_hi = (t.clamp(low, high) for t in (mean, lo, hi))  # clipping is monotone too
    action_bound = th.maximum(a_hi - act, act - a_lo).amax(-1).clamp_min(0)
    return {"mean": mean, "lower": lo, "upper": hi, "bound": bound, "action_bound": action_bound}


CONTINUOUS_STATEMENT = (
    "IBP upper bound, per visited state, on max over the linf ball of ||mu(s') - mu(s)||_inf (mu: the Gaussian "
    "policy's mean action, raw units); action_bound: the same for the executed (clipped) action. The mean action "
    "is certified, not sampled actions, the policy's std or returns."
)


@th.no_grad()
def certify_smoothing(
    agent: Agent, obs: Any, sigma: float, n0: int = 64, n: int = 1000, alpha: float = 0.001, batch: int = 2048
) -> dict[str, th.Tensor]:
    """Cohen et al. 2019 CERTIFY per state; radius in l2, threat-model units (-1 means abstain)."""
    if not agent.is_discrete:
        raise RllabError("smoothing certification needs a discrete action space")
    check_smoothing(sigma, n, alpha, n0)
    x = agent.as_tensor(obs)
    scale = th.as_tensor(ThreatUnit.for_agent(agent).scale).to(x)
    low = th.as_tensor(agent.observation_space.low, dtype=th.float32, device=x.device)
    high = th.as_tensor(agent.observation_space.high, dtype=th.float32, device=x.device)
    n_actions = int(agent.action_space.n)

    def counts(k: int) -> th.Tensor:
        out = th.zeros(x.shape[0], n_actions, device=x.device)
        per = max(1, batch // x.shape[0])
        done = 0
        while done < k:
            m = min(per, k - done)
            noisy = x.unsqueeze(0) + th.randn((m, *x.shape), device=x.device) * sigma * scale
            # the base classifier is the agent without its own smoothing (which this procedure replaces);
            # its filters and purifier, if any, are part of it: raw_scores runs them via preprocess
            acts = agent.raw_scores(noisy.clamp(low, high).reshape(m * x.shape[0], *x.shape[1:])).argmax(-1)
            out += nn.functional.one_hot(acts.reshape(m, x.shape[0]), n_actions).sum(0)
            done += m
        return out

    top = counts(n0).argmax(-1)
    k = counts(n).gather(1, top.unsqueeze(1)).squeeze(1).cpu().numpy()
    p_lower = np.where(k > 0, stats.beta.ppf(alpha, k, n - k + 1), 0.0)
    radius = np.where(p_lower > 0.5, sigma * stats.norm.ppf(np.clip(p_lower, 1e-12, 1 - 1e-12)), -1.0)
    return {"action": top, "p_lower": th.as_tensor(p_lower), "radius": th.as_tensor(radius, dtype=th.float32)}


def check_smoothing(sigma: float, n: int, alpha: float, n0: int = 64) -> None:
    """CERTIFY's settings, checked before any state is visited."""
    if not (np.isfinite(sigma) and sigma > 0):
        raise RllabError(f"--sigma must be > 0, got {sigma:g}")
    if int(n) != n or n < 1:
        raise RllabError(f"--samples must be >= 1, got {n}")
    if n > MAX_SMOOTHING_SAMPLES:  # noisy copies of every visited state: bounded like a smoothed agent's n
        raise RllabError(f"--samples must be <= {MAX_SMOOTHING_SAMPLES}, got {n}")
    if int(n0) != n0 or n0 < 1:
        raise RllabError(f"n0 (samples to pick the top action) must be >= 1, got {n0}")
    if not 0 < alpha < 1:
        raise RllabError(f"--alpha is the failure probability of the certificate: 0 < alpha < 1, got {alpha:g}")


@dataclass
class CertificationReport:
    """The certified fractions of one certification run, with its unit and settings."""

    method: str
    unit: str
    states: int
    rows: list[dict[str, Any]]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The report as written to ``--json``."""
        return {
            "method": self.method,
            "unit": self.unit,
            "states": self.states,
            "rows": self.rows,
            "settings": self.settings,
        }


def visited_states(agent: Agent, episodes: int, seed: int) -> np.ndarray:
    """Every observation of ``episodes`` clean episodes from reset seeds ``seed``, ``seed + 1``, ..."""
    return collect_observations(agent, episodes=episodes, seed=seed)


def certify(
    agent: Agent,
    eps: list[float],
    episodes: int = 5,
    seed: int = 0,
    method: str = "ibp",
    sigma: float = 0.1,
    n: int = 1000,
    alpha: float = 0.001,
) -> CertificationReport:
    """The certified fraction of the states visited in ``episodes`` clean episodes, at each eps."""
    if method not in ("ibp", "smoothing"):
        raise RllabError(f"unknown certification method {method!r}; use ibp or smoothing")
    if not agent.is_discrete and method == "smoothing":
        raise RllabError(
            "smoothing certifies a discrete action (Cohen et al. 2019); for a continuous-action agent use "
            "--method ibp, which bounds how far its mean action can move within eps"
        )
    if method == "smoothing":
        check_smoothing(sigma, n, alpha)
    if any(e < 0 for e in eps):
        raise RllabError(f"eps must be >= 0, got {min(eps):g}")
    states = visited_states(agent, episodes, seed)
    unit = unit_name(agent.is_image, agent.observation_space)
    rows = []
    if method == "ibp" and not agent.is_discrete:
        for e in eps:
            t = time.perf_counter()
            res = certify_mean_action(agent, states, e)
            bound, act = res["bound"], res["action_bound"]
            rows.append(
                {
                    "eps": e,
                    "mean_bound": float(bound.mean()),
                    "median_bound": float(bound.median()),
                    "max_bound": float(bound.max()),
                    "mean_action_bound": float(act.mean()),
                    "max_action_bound": float(act.max()),
                    "wall_s": round(time.perf_counter() - t, 3),
                }
            )
        settings: dict[str, Any] = {"norm": "linf", "certified": CONTINUOUS_STATEMENT}
    elif method == "ibp":
        for e in eps:
            t = time.perf_counter()
            res = certify_ibp(agent, states, e)
            rows.append(
                {
                    "eps": e,
                    "certified_fraction": float(res["certified"].float().mean()),
                    "median_margin_lower": float(res["margin_lower"].median()),
                    "wall_s": round(time.perf_counter() - t, 3),
                }
            )
        settings = {"norm": "linf"}
    elif method == "smoothing":
        res = certify_smoothing(agent, states, sigma, n=n, alpha=alpha)
        radius = res["radius"].numpy()
        for e in eps:
            rows.append(
                {
                    "eps": e,
                    "certified_fraction": float((radius >= e).mean()),
                    "abstain_fraction": float((radius < 0).mean()),
                }
            )
        settings = {"norm": "l2", "sigma": sigma, "n": n, "alpha": alpha}
    else:
        raise RllabError(f"unknown certification method {method!r}; use ibp or smoothing")
    return CertificationReport(
        method, unit, int(states.shape[0]), rows, {**settings, "episodes": episodes, "seed": seed}
    )


def default_sigma(agent: Agent) -> float:
    """The smoothing sigma to certify with: the agent's own (threat-model units) when it is smoothed, else 0.25."""
    smoothing = agent.smoothing or {}
    if smoothing.get("unit_sigma") is not None:
        return float(smoothing["unit_sigma"])
    return 0.25
