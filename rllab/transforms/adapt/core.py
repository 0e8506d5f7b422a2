"""``adapt``: the training loop, the summary and its warnings."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from tqdm.auto import tqdm

from rllab.agent import Agent
from rllab.environment import describe_domain
from rllab.errors import RllabError
from rllab.evaluation import observation_stats
from rllab.nn.build import clone_module
from rllab.parsing import plural
from rllab.transforms.adapt.data import mean_return, own_behaviour, paired_states, random_behaviour, target_spec
from rllab.transforms.adapt.features import (
    align_point,
    domain_classifier,
    domain_features,
    domain_gap,
    ganin_schedule,
    paired_agreement,
    prediction_entropy,
    reverse_gradient,
    task_loss,
)
from rllab.transforms.lineage import offspring, record

METHODS = ("consistency", "dann", "entropy")
LOSSES = ("grl", "confusion")
DEFAULT_COEF = {"consistency": 0.0, "dann": 1.0, "entropy": 1.0}  # the domain loss's weight by method
EMA_DECAY = 0.99  # of the saved weights (Yazici et al. 2019: averaging stabilises adversarial training)
MIN_GAP_CLOSED = 0.25  # below this share of the source-target gap, the summary says nothing was gained
FOOLED = 0.6  # a fresh domain classifier at or below this held-out accuracy is fooled


@dataclass
class AdaptResult:
    """What adaptation measured: mean returns in both domains before and after, the domain gap before and
    after, warnings, and the training curves (``summary`` is what ``agent.json["adaptation"]`` stores)."""

    summary: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The figures the lineage step stores (the summary without its training curves)."""
        keys = ("mean_return", "gap_closed", "domain_gap_before", "domain_gap_after", "paired_agreement", "warnings")
        return {k: self.summary[k] for k in keys}


def _check(method: str, loss: str, coef: float, steps: int, states: int, batch_size: int, lr: float, explore: float):
    if method not in METHODS:
        raise RllabError(f"unknown --method {method!r}; use one of {', '.join(METHODS)}")
    if loss not in LOSSES:
        raise RllabError(f"unknown --loss {loss!r}; use one of {', '.join(LOSSES)}")
    for name, value, low in (("--steps", steps, 1), ("--states", states, 100), ("--batch-size", batch_size, 1)):
        if value < low:
            raise RllabError(f"{name} must be at least {low}, got {value}")
    if coef < 0 or lr <= 0 or not 0 <= explore <= 1:
        raise RllabError("need --coef >= 0, --lr > 0 and 0 <= --explore <= 1")


def adapt(
    source: Agent,
    *,
    target_env: str | None = None,
    target_env_kwargs: dict[str, Any] | None = None,
    target_wrappers: list[dict[str, Any]] | None = None,
    method: str = "consistency",
    steps: int = 2000,
    coef: float | None = None,
    loss: str = "confusion",
    align: str = "auto",
    states: int = 10_000,
    explore: float = 0.3,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
    eval_episodes: int = 50,
    progress: bool = True,
) -> tuple[Agent, AdaptResult]:
    """A copy of ``source`` adapted to a target domain without target rewards.

    ``method``: ``consistency`` (the source agent's outputs on each source state taught on its target
    twin, plus ``coef`` times the domain loss, 0 by default), ``dann`` (the domain loss alone beside the
    source task loss) or ``entropy`` (``dann`` plus entropy minimisation on target predictions). The new
    agent's environment is the target domain, its lineage names the source, and ``agent.spec["adaptation"]``
    holds the summary (returns in both domains before and after, domain gap before and after, warnings).
    """
    coef = DEFAULT_COEF.get(method, 1.0) if coef is None else coef
    _check(method, loss, coef, steps, states, batch_size, lr, explore)
    if source.spec.get("quantization"):
        raise RllabError("a quantised checkpoint cannot be trained; adapt its float parent, then quantise")
    if source.defenses:
        raise RllabError("adapt the undefended agent, then put the defense in front with rllab defend")
    tspec = target_spec(source.spec, target_env, target_env_kwargs, target_wrappers)
    where = align_point(source, align)
    if method == "entropy" and not source.is_discrete:
        raise RllabError("--method entropy needs discrete actions; use --method consistency or dann")
    params = {
        "method": method,
        "source_env": copy.deepcopy(source.spec["env"]),
        "target_env": copy.deepcopy(tspec["env"]),
        "loss": loss,
        "align": where,
        "coef": coef,
        "steps": steps,
        "states": states,
        "explore": explore,
        "lr": lr,
        "batch_size": batch_size,
        "ema_decay": EMA_DECAY,
        "seed": seed,
    }
    student = offspring(source, clone_module(source.policy))
    student.spec["env"] = tspec["env"]
    source_in_target = Agent(tspec, source.policy).copy_front_from(source)  # the unadapted agent in the target
    student.make_env().close()  # a target the checkpoint's spaces do not fit fails here, in one line

    th.manual_seed(seed)
    rng = np.random.default_rng(seed)
    # Both domains visited in lockstep, so each source state has a target twin: the agent's own (exploring)
    # actions, and random actions from other reset seeds. The classifier sees the random twins: visited by
    # the agent, target states would also differ by how badly the unadapted agent plays there.
    own_s, own_t = paired_states(own_behaviour(source, explore, rng), source, source_in_target, states, seed)
    xs, xt = paired_states(random_behaviour(source, seed), source, source_in_target, states, seed + 50_000)
    order = rng.permutation(len(xs))
    xs, xt = xs[order], xt[order]
    n_train = int(0.8 * len(xs))  # the rest measures the domain gap and the paired agreement
    train_s, train_t = xs[:n_train], xt[:n_train]
    pair_s, pair_t = np.concatenate([own_s, train_s]), np.concatenate([own_t, train_t])
    gap_before = domain_gap(source, xs, xt, where, seed=seed)  # its 80/20 split is train_*/held-out
    agree_before = paired_agreement(source_in_target, source, xs[n_train:], xt[n_train:])

    with th.no_grad():
        dim = domain_features(student, student.as_tensor(xs[:2]), where).shape[1]
    clf = domain_classifier(dim).to(student.device)
    opt = th.optim.Adam(student.policy.parameters(), lr=lr)
    clf_opt = th.optim.Adam(clf.parameters(), lr=lr)
    labels = th.cat([th.zeros(batch_size), th.ones(batch_size)]).to(student.device)
    student.train()
    history: list[dict[str, float]] = []
    average = clone_module(student.policy)  # the weights saved: an exponential moving average
    bar = tqdm(range(steps), desc="adapt", disable=not progress, leave=False)
    for step in bar:
        scale = ganin_schedule(step / steps, coef)
        for group in opt.param_groups:
            group["lr"] = lr * (1 - step / steps)  # the game settles instead of stopping mid-swing
        i = rng.integers(0, len(pair_s), batch_size)
        ps, pt = student.as_tensor(pair_s[i]), student.as_tensor(pair_t[i])
        task = task_loss(student, source, ps)  # DANN's only task loss: it never sees a target state's label
        objective, consistency = task, None
        if method == "consistency":  # the source's outputs on the source twin, taught on both twins
            consistency = task_loss(student, source, pt, ps)
            objective = (task + consistency) / 2
        if method == "entropy":
            objective = objective + scale * prediction_entropy(student, pt)
        s = student.as_tensor(train_s[rng.integers(0, len(train_s), batch_size)])
        t = student.as_tensor(train_t[rng.integers(0, len(train_t), batch_size)])
        feats = domain_features(student, th.cat([s, t]), where)
        if loss == "grl":
            scores = clf(reverse_gradient(feats, scale)).squeeze(-1)
            dom = F.binary_cross_entropy_with_logits(scores, labels)
            objective = objective + dom
        else:
            scores = clf(feats.detach()).squeeze(-1)
            dom = F.binary_cross_entropy_with_logits(scores, labels)
            clf_opt.zero_grad()
            dom.backward()
            clf_opt.step()
            if scale > 0:
                confusion = F.binary_cross_entropy_with_logits(clf(feats).squeeze(-1), th.full_like(labels, 0.5))
                objective = objective + scale * confusion
        opt.zero_grad()
        clf_opt.zero_grad()
        objective.backward()
        opt.step()
        if loss == "grl":
            clf_opt.step()
        with th.no_grad():
            for pe, pp in zip(average.parameters(), student.policy.parameters(), strict=True):
                pe.mul_(EMA_DECAY).add_(pp, alpha=1 - EMA_DECAY)
        if step % max(1, steps // 100) == 0 or step == steps - 1:
            acc = float(((scores > 0).float() == labels).float().mean())
            point = {"step": step, "task": task.item(), "domain": dom.item(), "classifier_accuracy": acc}
            if consistency is not None:
                point["consistency"] = consistency.item()
            history.append(point)
            bar.set_postfix(task=f"{task.item():.4f}", clf_acc=f"{acc:.2f}")
    student.policy.load_state_dict(average.state_dict())
    student.eval()
    gap_after = domain_gap(student, xs, xt, where, seed=seed)
    agree_after = paired_agreement(student, source, xs[n_train:], xt[n_train:])

    eval_seed = seed + 1_000_000
    returns = {
        "target_before": mean_return(source_in_target, eval_episodes, eval_seed),
        "target_after": mean_return(student, eval_episodes, eval_seed),
        "source_before": mean_return(source, eval_episodes, eval_seed),
        "source_after": mean_return(
            Agent(copy.deepcopy(source.spec), student.policy).copy_front_from(source), eval_episodes, eval_seed
        ),
    }
    summary = {
        "method": method,
        "source_env": describe_domain(source.spec["env"]),
        "target_env": describe_domain(tspec["env"]),
        "episodes": eval_episodes,
        "eval_seed": eval_seed,
        "mean_return": returns,
        "gap_closed": gap_closed(returns),
        "domain_gap_before": gap_before,
        "domain_gap_after": gap_after,
        "paired_agreement": {"before": agree_before, "after": agree_after},
        "history": history,
    }
    summary["warnings"] = adaptation_warnings(summary)
    result = AdaptResult(summary)
    student.spec["adaptation"] = summary
    student.spec["training"] = {"complete": True, "adapted_from": "" if source.path is None else str(source.path)}
    student.spec["obs_stats"] = (
        observation_stats(student, episodes=10, seed=seed + 10_000) if student.spec.get("obs_stats") else None
    )
    record(student, source, "adapt", params, result.to_json())
    return student, result


def gap_closed(returns: dict[str, float]) -> float | None:
    """``(target after - target before) / (source before - target before)``; None when the target was no worse.

    The source agent's return in its own domain is what the target could reach; a gap under 5% of it
    (or of the target's) is evaluation noise, and there was nothing to close.
    """
    before, after, reachable = returns["target_before"], returns["target_after"], returns["source_before"]
    gap = reachable - before
    if gap <= 0.05 * max(abs(reachable), abs(before), 1e-8):
        return None
    return (after - before) / gap


def adaptation_warnings(summary: dict[str, Any]) -> list[str]:
    """What a user must not miss: the target return did not rise (with the domain classifier fooled or not),
    or the source return fell."""
    r, closed, acc = summary["mean_return"], summary["gap_closed"], summary["domain_gap_after"]["accuracy"]
    out = []
    if closed is not None and closed < MIN_GAP_CLOSED:
        rise = (
            f"the target return did not rise ({r['target_before']:.2f} -> {r['target_after']:.2f}, "
            f"{closed:.0%} of the gap closed)"
        )
        if acc <= FOOLED:
            out.append(
                f"NOT ADAPTED: the domain classifier is fooled (held-out accuracy {acc:.2f}) but {rise}: the features "
                "were aligned without what the actions depend on"
                + ("; try --method consistency" if summary["method"] != "consistency" else "")
            )
        else:
            out.append(f"NOT ADAPTED: {rise}")
    drop = r["source_before"] - r["source_after"]
    if drop > 0.05 * max(abs(r["source_before"]), 1e-8):
        out.append(f"the source return fell ({r['source_before']:.2f} -> {r['source_after']:.2f})")
    return out


def summary_line(summary: dict[str, Any]) -> str:
    """One line of an adaptation summary: returns in both domains before -> after, and the domain gap."""
    r, b, a = summary["mean_return"], summary["domain_gap_before"], summary["domain_gap_after"]
    closed = summary.get("gap_closed")
    pa = summary.get("paired_agreement")
    return (
        f"target {summary['target_env']}: return {r['target_before']:.2f} -> {r['target_after']:.2f}"
        + ("" if closed is None else f" ({closed:.0%} of the gap closed)")
        + f"; source {summary['source_env']}: {r['source_before']:.2f} -> {r['source_after']:.2f} "
        f"({plural(summary['episodes'], 'episode')}); "
        f"domain classifier accuracy {b['accuracy']:.2f} -> {a['accuracy']:.2f}"
        + ("" if pa is None else f"; paired action agreement {pa['before']:.2f} -> {pa['after']:.2f}")
    )
