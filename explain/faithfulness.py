"""Faithfulness metrics: is an attribution map evidence about the agent, or decoration?

* ``relevance_mass`` (Arras et al. 2022, "CLEVR-XAI"): share of the absolute
  attribution that falls on ground-truth inputs (Catch's ``info["mask"]``).
* ``pointing_game`` (Zhang et al. 2018): is the most relevant pixel a ground-truth pixel.
* ``deletion_insertion`` (Petsiuk et al. 2018, RISE, sec. 4.1): remove (or insert) inputs
  from most to least relevant and follow the probability of the agent's action; area
  under the curve, beside the same curve for random orderings.
* ``sanity_check`` (Adebayo et al. 2018, cascading model-parameter randomisation): the
  Spearman rank correlation between maps of the trained agent and of copies whose
  layers are re-initialised from the top down.

Maps are reduced to one relevance per spatial position by summing absolute values over
channels (a position is a pixel for images, a feature for vectors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from scipy import stats
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from explain.methods.validate import as_index_tensor
from rllab.agent import Agent, clone_module
from rllab.errors import RllabError


def spatial_relevance(attr: th.Tensor | np.ndarray, agent: Agent) -> np.ndarray:
    """(N, *obs_shape) attributions -> (N, P) absolute relevance per position (pixel or feature)."""
    a = np.abs(attr.detach().cpu().numpy() if isinstance(attr, th.Tensor) else np.asarray(attr)).astype(np.float64)
    if agent.is_image:
        a = a.sum(axis=-1) if agent.transpose_image else a.sum(axis=1)
    return a.reshape(a.shape[0], -1)


def relevance_mass(attr: th.Tensor | np.ndarray, masks: np.ndarray, agent: Agent) -> np.ndarray:
    """Per state: sum of |attribution| on ground-truth positions / total (0 for an all-zero map)."""
    r = spatial_relevance(attr, agent)
    m = np.asarray(masks, dtype=bool).reshape(r.shape[0], -1)
    total = r.sum(1)
    inside = (r * m).sum(1)
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def pointing_game(attr: th.Tensor | np.ndarray, masks: np.ndarray, agent: Agent) -> np.ndarray:
    """Per state: 1 when the maximum relevance lies on the ground truth and strictly above every
    other position's (ties with a non-ground-truth position, e.g. a constant map, count as misses)."""
    r = spatial_relevance(attr, agent)
    m = np.asarray(masks, dtype=bool).reshape(r.shape[0], -1)
    best_in = np.where(m, r, -np.inf).max(1)
    best_out = np.where(~m, r, -np.inf).max(1)
    return (best_in > best_out).astype(np.float64)


# ------------------------------------------------------------ deletion / insertion
def _action_probability(agent: Agent, x: th.Tensor, actions: th.Tensor) -> th.Tensor:
    logits = agent.logits(x)
    return th.softmax(logits, -1).gather(1, actions.view(-1, 1)).squeeze(1)


def _position_index(agent: Agent) -> tuple[int, np.ndarray]:
    """Number of positions P and, for every input element, its position (channels share a pixel)."""
    shape = agent.observation_space.shape
    if agent.is_image:
        if agent.transpose_image:
            h, w, c = shape
            pos = np.broadcast_to(np.arange(h * w).reshape(h, w, 1), shape)
        else:
            c, h, w = shape
            pos = np.broadcast_to(np.arange(h * w).reshape(1, h, w), shape)
        return h * w, pos.reshape(-1)
    n = int(np.prod(shape))
    return n, np.arange(n)


@dataclass
class CurveResult:
    """Deletion/insertion areas per state and their curves (fraction of positions on the x axis)."""

    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    deletion_curve: np.ndarray
    insertion_curve: np.ndarray

    def summary(self) -> dict[str, float]:
        """Mean deletion and insertion areas over the states."""
        return {"deletion_auc": float(self.deletion_auc.mean()), "insertion_auc": float(self.insertion_auc.mean())}


def _curves(
    agent: Agent,
    obs: th.Tensor,
    actions: th.Tensor,
    order: np.ndarray,
    baseline: th.Tensor,
    n_steps: int,
    batch_size: int,
) -> CurveResult:
    """Curves for a given ordering (N, P) of positions, most relevant first."""
    n = obs.shape[0]
    p, pos_of_elem = _position_index(agent)
    counts = np.unique(np.linspace(0, p, min(n_steps, p) + 1).round().astype(int))
    rank = np.empty_like(order)
    rank[np.arange(n)[:, None], order] = np.arange(p)[None, :]
    # element e is removed at step k when rank(position(e)) < counts[k]
    elem_rank = th.as_tensor(rank[:, pos_of_elem])  # (N, E)
    thresholds = th.as_tensor(counts).view(1, -1, 1)
    flat = obs.reshape(n, -1)
    # one baseline for every state, or one per state (N, *obs_shape), e.g. each frame blurred
    per_state = baseline.dim() == obs.dim() and baseline.shape[0] == n and n > 1
    base = baseline.to(obs).reshape(n, -1) if per_state else baseline.to(obs).reshape(1, -1).expand(n, -1)
    out = {}
    for mode in ("deletion", "insertion"):
        probs = th.empty(n, len(counts))
        for s0 in range(0, n, max(1, batch_size // len(counts))):
            s1 = min(n, s0 + max(1, batch_size // len(counts)))
            removed = elem_rank[s0:s1].unsqueeze(1).to(obs.device) < thresholds.to(obs.device)  # (n', K, E)
            if mode == "deletion":
                x = th.where(removed, base[s0:s1].unsqueeze(1), flat[s0:s1].unsqueeze(1))
            else:
                x = th.where(removed, flat[s0:s1].unsqueeze(1), base[s0:s1].unsqueeze(1))
            k = len(counts)
            with th.no_grad():
                pr = _action_probability(
                    agent, x.reshape(-1, *obs.shape[1:]), actions[s0:s1].repeat_interleave(k)
                ).reshape(s1 - s0, k)
            probs[s0:s1] = pr.cpu()
        out[mode] = probs.numpy().astype(np.float64)
    xs = counts / p
    return CurveResult(
        deletion_auc=np.trapezoid(out["deletion"], xs, axis=1),
        insertion_auc=np.trapezoid(out["insertion"], xs, axis=1),
        deletion_curve=out["deletion"],
        insertion_curve=out["insertion"],
    )


def deletion_insertion(
    agent: Agent,
    obs: Any,
    attr: th.Tensor | np.ndarray,
    actions: Any = None,
    baseline: th.Tensor | None = None,
    n_steps: int = 50,
    random_orderings: int = 5,
    seed: int = 0,
    batch_size: int = 4096,
) -> dict[str, Any]:
    """Deletion and insertion AUCs of the action probability (Petsiuk et al. 2018), vs random orderings.

    Deletion replaces the most relevant positions by ``baseline`` first (default: zeros
    for images, the agent's mean observation for vectors; a batch ``(N, *obs_shape)`` gives
    each state its own baseline, e.g. its Gaussian-blurred frame); insertion starts from the
    baseline and puts the most relevant inputs back first. Lower deletion / higher
    insertion AUC = more faithful. Needs a discrete action space.
    """
    if not agent.is_discrete:
        raise RllabError("deletion/insertion curves follow an action probability: they need discrete actions")
    x = agent.as_tensor(obs).detach()
    if actions is None:
        with th.no_grad():
            acts = agent.logits(x).argmax(-1)
    else:
        acts = as_index_tensor(actions, x.device)
    if baseline is None:
        mean = agent.obs_mean
        baseline = th.zeros(x.shape[1:]) if agent.is_image or mean is None else th.as_tensor(mean)
    rel = spatial_relevance(attr, agent)
    rng = np.random.default_rng(seed)
    # stable sort on (-relevance, random tie-break) so equal relevances are not read in raster order
    tie = rng.random(rel.shape)
    order = np.lexsort((tie, -rel), axis=1)
    res = _curves(agent, x, acts, order, baseline, n_steps, batch_size)
    rand_del, rand_ins = [], []
    for _ in range(random_orderings):
        rorder = np.argsort(rng.random(rel.shape), axis=1)
        r = _curves(agent, x, acts, rorder, baseline, n_steps, batch_size)
        rand_del.append(r.deletion_auc)
        rand_ins.append(r.insertion_auc)
    return {
        "deletion_auc": float(res.deletion_auc.mean()),
        "insertion_auc": float(res.insertion_auc.mean()),
        "random_deletion_auc": float(np.mean(rand_del)),
        "random_insertion_auc": float(np.mean(rand_ins)),
        # p(action | all-baseline input): the level every deletion curve ends on, a floor for its area
        "baseline_probability": float(res.deletion_curve[:, -1].mean()),
        "deletion_curve": res.deletion_curve.mean(0).tolist(),
        "insertion_curve": res.insertion_curve.mean(0).tolist(),
        "states": int(x.shape[0]),
        "random_orderings": random_orderings,
    }


# ------------------------------------------------------------ sanity check
def randomisation_cascade(agent: Agent, target: str = "action") -> list[tuple[str, nn.Module]]:
    """The parameterised layers on the path to the explained output, from the output down."""
    policy = agent.policy
    if isinstance(policy, DQNPolicy):
        blocks = [("q_net.features_extractor", policy.q_net.features_extractor), ("q_net.q_net", policy.q_net.q_net)]
    else:
        head = policy.action_net if target == "action" else policy.value_net
        extractor = policy.pi_features_extractor if target == "action" else policy.vf_features_extractor
        mlp = policy.mlp_extractor.policy_net if target == "action" else policy.mlp_extractor.value_net
        blocks = [
            ("features_extractor", extractor),
            ("mlp_extractor." + ("policy_net" if target == "action" else "value_net"), mlp),
            ("action_net" if target == "action" else "value_net", head),
        ]
    layers: list[tuple[str, nn.Module]] = []
    for prefix, block in blocks:
        for name, m in block.named_modules():
            if any(True for _ in m.parameters(recurse=False)) and hasattr(m, "reset_parameters"):
                layers.append((f"{prefix}.{name}" if name else prefix, m))
    return layers[::-1]


def spearman_rows(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """Spearman rank correlation of each row pair, restricted to ``region`` (columns (P,) or per row (N, P));
    nan where a row is constant there."""
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        cols = None if region is None else (region if region.ndim == 1 else region[i])
        x, y = (a[i], b[i]) if cols is None else (a[i, cols], b[i, cols])
        if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
            out[i] = np.nan
        else:
            out[i] = stats.spearmanr(x, y).statistic
    return out


def sanity_check(
    agent: Agent,
    obs: Any,
    method_factory: Callable[[Agent], Any],
    seed: int = 0,
    region: str = "varying",
) -> dict[str, Any]:
    """Cascading parameter randomisation (Adebayo et al. 2018, sec. 3.1).

    Layers on the path to the explained output are re-initialised (their own
    ``reset_parameters``, seeded) one at a time from the output down, cumulatively;
    after each step the maps are recomputed and compared with the trained agent's by
    per-state Spearman rank correlation of |attribution|, over a region:

    * ``varying`` (default): the positions whose observed value varies across the given
      states (inputs that never change cannot be told apart by any map);
    * ``lit``: per state, the positions whose input is non-zero. Input-times-gradient,
      occlusion-to-zero and blur-perturbation maps are exactly zero on unlit pixels of a
      sparse frame (Catch is mostly zeros) whatever the weights, so over ``varying`` their
      maps stay correlated trivially; ``lit`` compares them where they can differ.

    The headline check uses plain gradient maps (``Saliency``), which are dense.
    ``method_factory(agent)`` builds the explainer for an agent.
    """
    if region not in ("varying", "lit"):
        raise RllabError(f"unknown sanity-check region {region!r}; use varying or lit")
    x = agent.as_tensor(obs).detach()
    # the same noise for every map of a stochastic method (SmoothGrad), so only the weights differ
    th.manual_seed(seed)
    original = spatial_relevance(method_factory(agent).attribute(x), agent)
    raw = x.cpu().numpy().reshape(x.shape[0], -1)
    p, pos_of_elem = _position_index(agent)
    if region == "varying":
        cols = np.zeros(p, dtype=bool)
        np.logical_or.at(cols, pos_of_elem, np.ptp(raw, axis=0) > 0)
        description, size = "positions whose input varies across the states", int(cols.sum())
    else:
        cols_t = np.zeros((p, raw.shape[0]), dtype=bool)
        np.logical_or.at(cols_t, pos_of_elem, (raw != 0).T)
        cols = cols_t.T
        description, size = "per state, the positions whose input is non-zero", float(cols.sum(1).mean())
    target = getattr(method_factory(agent), "target", "action")
    randomised = clone_module(agent)
    steps = []
    for i, (name, layer) in enumerate(randomisation_cascade(randomised, target)):
        th.manual_seed(seed + 1 + i)
        layer.reset_parameters()
        th.manual_seed(seed)
        maps = spatial_relevance(method_factory(randomised).attribute(x), randomised)
        rho = spearman_rows(original, maps, cols)
        steps.append({"layer": name, "spearman": float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan")})
    return {
        "steps": steps,
        "spearman_full": steps[-1]["spearman"] if steps else float("nan"),
        "region": description,
        "region_size": size,
        "positions": int(p),
        "states": int(x.shape[0]),
    }
