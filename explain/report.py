"""Explaining an agent's episodes with several methods: the maps logged to an ``ExplanationWriter``
(TensorBoard and PNG/GIF files), faithfulness metrics measured, and the metrics table.

``explain_agent`` logs, per explained step, the frame, heatmap and overlay (images, each map with its colour
scale and the explained action's name), a grid and an animated GIF of the overlays per episode, or for vector
agents a feature x time heatmap and per-feature bars; faithfulness scalars; a text entry per method with its
target and baseline; and, on request only, the activation maximisation view. Each method's entries share the
tag group ``K_METHOD`` (``explain.tensorboard.method_group``), which TensorBoard opens first. Where the files go
is the caller's choice (``explain.commands.explain_run`` writes them into a run folder).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
import yaml
from tqdm.auto import tqdm

from explain.episodes import Trajectories, action_names, collect_states
from explain.faithfulness import deletion_insertion, pointing_game, relevance_mass, sanity_check
from explain.methods import ALIASES, METHODS, Explainer, activation_maximisation, make_method, space_kind
from explain.tensorboard import (
    ExplanationWriter,
    colormap,
    feature_bars_figure,
    feature_time_figure,
    grid,
    heat_map,
    method_group,
    overlay,
    relevance,
    upscale,
    with_scale,
)
from rllab.agent import Agent
from rllab.errors import RllabError
from rllab.frames import frame_rgb

CARTPOLE_FEATURES = ["cart position", "cart velocity", "pole angle", "pole angular velocity"]


def _split_top_level(text: str) -> list[str]:
    """Splits on the commas outside parentheses and brackets: ``a,b(x=1,y=[1,2])`` -> two parts."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                raise RllabError(f"unbalanced brackets in method list {text!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise RllabError(f"unbalanced brackets in method list {text!r}")
    return [*parts, text[start:]]


def _method_options(name: str, text: str) -> dict[str, Any]:
    """``window=3,stride=3`` -> ``{"window": 3, "stride": 3}`` (values read as YAML: numbers, lists, strings)."""
    options: dict[str, Any] = {}
    for item in _split_top_level(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RllabError(f"method options are key=value, got {item.strip()!r} in {name}({text})")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise RllabError(f"cannot read the value of {key.strip()!r} in {name}({text})") from None
        options[key.strip()] = tuple(parsed) if isinstance(parsed, list) else parsed
    return options


def parse_methods(text: str | Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """Method names with their options: ``"saliency,occlusion(window=3,stride=3)"`` ->
    ``[("saliency", {}), ("occlusion", {"window": 3, "stride": 3})]``."""
    items = _split_top_level(text) if isinstance(text, str) else list(text)
    items = [n.strip() for n in items if n.strip()]
    if not items:
        raise RllabError("give at least one method, e.g. --method saliency,occlusion")
    out: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        name, _, rest = item.partition("(")
        name = name.strip()
        if rest and not rest.endswith(")"):
            raise RllabError(f"method options go in parentheses at the end: {item!r}")
        options = _method_options(name, rest[:-1]) if rest[:-1].strip() else {}
        key = ALIASES.get(name, name)
        if key not in METHODS:
            raise RllabError(f"unknown explanation method {name!r}; known: {', '.join(METHODS)}")
        accepted = set(inspect.signature(METHODS[key].__init__).parameters) - {"self", "agent", "target"}
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise RllabError(f"{key} takes no option {unknown[0]!r}; its options: {', '.join(sorted(accepted))}")
        same = [o for k, o in out if k == key]
        if same and same[0] != options:
            raise RllabError(f"{key} is given twice with different options; give it once")
        if not same:
            out.append((key, options))
    return out


def method_metrics(agent: Agent, method: Explainer, tr: Trajectories, attr: th.Tensor, seed: int = 0) -> dict[str, Any]:
    """Faithfulness numbers of one method's maps on the states of ``tr``."""
    row: dict[str, Any] = {"method": method.name, "target": method.target, "states": len(tr)}
    if tr.masks is not None:
        row["relevance_mass"] = float(relevance_mass(attr, tr.masks, agent).mean())
        row["pointing_game"] = float(pointing_game(attr, tr.masks, agent).mean())
    if agent.is_discrete and method.target == "action":
        di = deletion_insertion(agent, tr.obs, attr, actions=tr.actions, seed=seed)
        row.update({k: di[k] for k in ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc")})
    if method.name != "random":
        sc = sanity_check(agent, tr.obs, method.for_agent, seed=seed)
        row["sanity_spearman"] = sc["spearman_full"]
        if agent.is_image:
            lit = sanity_check(agent, tr.obs, method.for_agent, seed=seed, region="lit")
            row["sanity_spearman_lit"] = lit["spearman_full"]
    return row


METRIC_COLUMNS = [
    ("relevance_mass", "mass"),
    ("pointing_game", "pointing"),
    ("deletion_auc", "deletion"),
    ("random_deletion_auc", "del.rand"),
    ("insertion_auc", "insertion"),
    ("random_insertion_auc", "ins.rand"),
    ("sanity_spearman", "sanity rho"),
    ("sanity_spearman_lit", "rho (lit)"),
]


# what each column measures and which direction is better (the legend under the table, and metrics.json's
# "columns" entry)
METRIC_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "relevance_mass": (
        "higher is better (0..1)",
        "share of the map's absolute attribution on the ground-truth positions (Catch's ball and paddle)",
    ),
    "pointing_game": (
        "higher is better (0..1)",
        "fraction of states whose most relevant position is a ground-truth position",
    ),
    "deletion_auc": (
        "lower is better; should be below del.rand",
        "area under the probability of the agent's action as positions are replaced by the baseline (zeros for "
        "images, the mean observation for vectors), most relevant first",
    ),
    "random_deletion_auc": (
        "reference",
        "the deletion area for random orderings of the positions (mean of 5): the floor a map must beat",
    ),
    "insertion_auc": (
        "higher is better; should be above ins.rand",
        "area under the probability of the agent's action as positions are put back into the baseline, most "
        "relevant first",
    ),
    "random_insertion_auc": (
        "reference",
        "the insertion area for random orderings of the positions (mean of 5): the floor a map must beat",
    ),
    "sanity_spearman": (
        "lower (near 0) is better",
        "model-randomisation sanity check (Adebayo et al. 2018): Spearman rank correlation between the maps of "
        "the trained agent and of a copy whose layers were all re-initialised, over the positions whose input "
        "varies across the states; a map that survives randomisation does not explain the agent",
    ),
    "sanity_spearman_lit": (
        "lower (near 0) is better",
        "the same sanity check over 'lit' positions only: per state, the pixels whose input is non-zero. Maps that "
        "are zero on unlit pixels whatever the weights (occlusion to zero, blur perturbation) look trivially "
        "correlated over all pixels of a sparse frame; this column compares them where they can differ (images)",
    ),
}


def metric_columns(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The columns present in ``rows``: their table header, meaning and better direction."""
    return {
        k: {"header": h, "better": METRIC_DESCRIPTIONS[k][0], "meaning": METRIC_DESCRIPTIONS[k][1]}
        for k, h in METRIC_COLUMNS
        if any(k in r for r in rows)
    }


def metrics_table(rows: Sequence[dict[str, Any]], legend: bool = True) -> str:
    """The methods x metrics table, with a legend saying what each column measures and which way is better."""
    cols = [(k, h) for k, h in METRIC_COLUMNS if any(k in r for r in rows)]
    header = f"{'method':22s}" + "".join(f"{h:>12s}" for _, h in cols)
    lines = [header, "-" * len(header)]
    for r in rows:
        cells = "".join(f"{r[k]:12.3f}" if isinstance(r.get(k), float) else f"{'-':>12s}" for k, _ in cols)
        lines.append(f"{r['method']:22s}{cells}")
    if legend and cols:
        lines.append("")
        lines += [f"  {c['header']}: {c['meaning']} ({c['better']})" for c in metric_columns(rows).values()]
        if any(r["method"] == "random" for r in rows):
            lines.append("  random: uniform random maps, the floor every method is compared with")
    return "\n".join(lines)


def _explained(agent: Agent, target: str, names: Sequence[str], action: Any) -> str:
    """What a map's scale strip says it explains: the action's name, V(s), or a Gaussian policy's mean action."""
    if target == "value":
        return "|attr| of V(s)"
    if names:
        return f"|attr| of action {names[int(np.asarray(action).reshape(-1)[0]) - int(agent.action_space.start)]}"
    return "|attr| of the summed mean action"


def _log_images(
    w: ExplanationWriter,
    agent: Agent,
    tr: Trajectories,
    attr: np.ndarray,
    group: str,
    every: int,
    fps: float,
    target: str,
    names: Sequence[str],
) -> None:
    channels_last = agent.transpose_image
    for e in np.unique(tr.episode):
        idx = tr.episode_slice(int(e))
        shown = [k for k in idx if tr.t[k] % every == 0]
        overlays = []
        for k in shown:
            t = int(tr.t[k])
            frame = frame_rgb(tr.obs[k], channels_last)
            rel = relevance(attr[k], channels_last)
            heat = heat_map(attr[k], channels_last)
            label = _explained(agent, target, names, tr.actions[k])
            overlays.append(with_scale(upscale(overlay(frame, heat)), float(rel.max()), label))
            w.image(f"{group}/ep{e}/heatmap", with_scale(upscale(colormap(heat)), float(rel.max()), label), step=t)
            w.image(f"{group}/ep{e}/overlay", overlays[-1], step=t)
        w.image(f"{group}/ep{e}/grid", grid(overlays), step=0)
        w.animation(f"{group}/ep{e}/animation", overlays, step=0, fps=fps)


def _log_frames(w: ExplanationWriter, agent: Agent, tr: Trajectories, every: int) -> None:
    for e in np.unique(tr.episode):
        for k in tr.episode_slice(int(e)):
            if tr.t[k] % every == 0:
                w.image(f"frame/ep{e}", upscale(frame_rgb(tr.obs[k], agent.transpose_image)), step=int(tr.t[k]))


def _log_vector(
    w: ExplanationWriter, agent: Agent, tr: Trajectories, attr: np.ndarray, method: str, group: str
) -> None:
    names = CARTPOLE_FEATURES if agent.env_id.startswith("CartPole") else None
    for e in np.unique(tr.episode):
        idx = tr.episode_slice(int(e))
        a = attr[idx]
        w.figure(f"{group}/ep{e}/feature_time", feature_time_figure(a, names, f"{method}, episode {e}"))
        w.figure(f"{group}/ep{e}/feature_bars", feature_bars_figure(a, names, f"{method}, episode {e}"))


def _log_global_view(w: ExplanationWriter, agent: Agent, target: str, seed: int, names: Sequence[str]) -> None:
    """Activation maximisation: the input that most raises each action's score (or V), inside the space; tags
    name the actions (``activation_maximisation/left``)."""
    if target == "action" and not agent.is_discrete:
        return
    x = activation_maximisation(agent, target=target, seed=seed).cpu().numpy()
    labels = [n.replace(" ", "_") for n in names] if target == "action" else ["value"]
    if agent.is_image:
        for label, img in zip(labels, x, strict=True):
            w.image(f"activation_maximisation/{label}", upscale(frame_rgb(img, agent.transpose_image)))
    else:
        features = CARTPOLE_FEATURES if agent.env_id.startswith("CartPole") else None
        fig = feature_time_figure(x, features, "input maximising " + target)
        fig.axes[0].set_xticks(range(len(labels)), labels)  # one column per action, named
        fig.axes[0].set_xlabel("action" if target == "action" else "")
        fig.axes[-1].set_ylabel("input value")  # the colour bar: these are inputs, not attributions
        w.figure("activation_maximisation/inputs", fig)
    w.text(
        "activation_maximisation/config",
        f"Activation maximisation (Erhan et al. 2009) of the {target} score, seed {seed}: "
        "300 Adam steps, L2 pull to the mean observation, total variation for images, inside the observation space.",
    )


def _build(name: str, agent: Agent, target: str, options: dict[str, Any]) -> Explainer:
    try:
        return make_method(name, agent, target=target, **options)
    except (TypeError, ValueError) as exc:  # an option of the wrong kind, e.g. window=abc
        shown = ",".join(f"{k}={v}" for k, v in options.items())
        raise RllabError(f"{name}({shown}): {exc}") from None


def check_counts(episodes: int, every: int) -> None:
    """Refuse a non-positive number of episodes or logging interval (before anything is loaded or written)."""
    if episodes <= 0:
        raise RllabError(f"--episodes must be positive, got {episodes}")
    if every <= 0:
        raise RllabError(f"--every must be positive, got {every}")


def build_methods(agent: Agent, methods: str | Sequence[str], target: str = "action") -> list[Explainer]:
    """The methods of a list such as ``"saliency,occlusion(window=3)"`` built for ``agent``: a method that
    cannot apply (a Greydanus map of a vector agent, a value target without a critic) fails here, before
    any work."""
    space_kind(agent)  # an observation space nothing can draw fails first
    return [_build(n, agent, target, options) for n, options in parse_methods(methods)]


def explain_agent(
    agent: Agent,
    methods: Sequence[Explainer],
    writer: ExplanationWriter,
    episodes: int = 1,
    target: str = "action",
    every: int = 1,
    metrics: bool = False,
    seed: int = 0,
    fps: float = 4.0,
    progress: bool = True,
    activation_max: bool = False,
) -> dict[str, Any]:
    """Explain ``episodes`` episodes of ``agent`` (episode j reset with seed ``seed + j``) with ``methods``
    (``build_methods``), logging the maps to ``writer``; returns what ran and the faithfulness rows.

    The k-th method's entries go under the tag group ``k_METHOD`` (``method_group``). With ``metrics``, every
    method is measured (``method_metrics``) and a random-map control is added unless it was asked for; the
    numbers are logged as scalars ``k_METHOD/faithfulness/METRIC``. ``activation_max`` adds the activation
    maximisation view (one input per action, named; 300 optimiser steps per action).
    """
    check_counts(episodes, every)
    kind = space_kind(agent)
    th.manual_seed(seed)
    tr = collect_states(agent, episodes=episodes, seed=seed)
    if kind == "image" and every > 1 and not metrics:
        tr = tr.every(every)  # attribute only the states whose images are logged (faithfulness needs them all)
    rows: list[dict[str, Any]] = []
    names = action_names(agent)
    methods_bar = tqdm(methods, desc="explaining", disable=not progress or not sys.stderr.isatty(), unit="method")
    for rank, m in enumerate(methods_bar, start=1):
        methods_bar.set_postfix_str(m.name)
        group = method_group(rank, m.name)
        attr_t = m.attribute(tr.obs, actions=tr.actions if target == "action" and agent.is_discrete else None)
        attr = attr_t.cpu().numpy()
        if kind == "image":
            _log_images(writer, agent, tr, attr, group, every, fps, target, names)
        else:
            _log_vector(writer, agent, tr, attr, m.name, group)
        desc = m.describe()
        writer.text(
            f"{group}/config",
            "| key | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in desc.items()),
        )
        if metrics:
            rows.append(method_metrics(agent, m, tr, attr_t, seed=seed))
            _log_metrics(writer, group, rows[-1])
    if kind == "image":  # after the maps: TensorBoard serves a run's tags in the order they were first written
        _log_frames(writer, agent, tr, every)
    if activation_max:
        _log_global_view(writer, agent, target, seed, names)
    if metrics and not any(m.name == "random" for m in methods):  # the control, unless it was asked for
        rand = make_method("random", agent, target=target, seed=seed)
        rows.append(method_metrics(agent, rand, tr, rand.attribute(tr.obs), seed=seed))
        _log_metrics(writer, method_group(len(methods) + 1, "random"), rows[-1])
    return {
        "env": agent.env_id,
        "algo": agent.algo,
        "target": target,
        "seed": seed,
        "episodes": episodes,
        "states": len(tr),
        "episode_returns": tr.returns,
        "methods": [m.describe() for m in methods],
        "action_names": names,
        "activation_maximisation": activation_max,
        "metrics": rows,
        "columns": metric_columns(rows),
    }


def _log_metrics(writer: ExplanationWriter, group: str, row: dict[str, Any]) -> None:
    for k, _ in METRIC_COLUMNS:
        if isinstance(row.get(k), float):
            writer.scalar(f"{group}/faithfulness/{k}", row[k])
