"""``rllab defend``: put input filters or noise smoothing in front of an agent.

The result is a new checkpoint (same weights, ``preprocessing.filters`` and/or
``preprocessing.smoothing`` set, a lineage step recording the settings), which
loads, evaluates, attacks and explains like any other agent. Noise scales are
given in the threat model's units (pixel/255 for images, multiples of the
per-feature observation std stored in the checkpoint for vectors) and stored in
raw units beside the unit-level value.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from rllab.agent import Agent, load
from rllab.checkpoint import SPEC_FILE, lineage_entry
from rllab.errors import RllabError
from rllab.filters import FILTERS


def parse_spec(text: str) -> dict[str, Any]:
    """``"median:size=3"`` -> ``{"name": "median", "params": {"size": 3}}`` (values parsed as numbers)."""
    name, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise RllabError(f"bad filter setting {item!r} in {text!r}; expected key=value")
        try:
            params[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            params[key.strip()] = value.strip()
    return {"name": name.strip(), "params": params}


def raw_scale(agent: Agent, sigma: float) -> float | list[float]:
    """A noise scale in threat-model units -> raw observation units."""
    if sigma < 0:
        raise RllabError(f"noise scale must be >= 0, got {sigma}")
    if agent.is_image:
        return float(sigma) * 255.0
    std = agent.obs_std
    if std is None:
        raise RllabError("this checkpoint has no observation statistics; re-save it with rllab to gather them")
    return (float(sigma) * np.asarray(std, dtype=np.float64).reshape(-1)).tolist()


def defend(
    run: str | Path,
    out: str | Path,
    filters: list[dict[str, Any]] | None = None,
    smoothing: dict[str, Any] | None = None,
    purifier: dict[str, Any] | None = None,
) -> Agent:
    """Write a defended copy of the checkpoint ``run`` to ``out`` and return it."""
    out = Path(out)
    if (out / SPEC_FILE).exists():
        raise RllabError(f"{out} already holds a checkpoint")
    agent = load(run)
    filters = [dict(f) for f in filters or []]
    if not filters and smoothing is None and purifier is None:
        raise RllabError("nothing to do: give at least one --filter, --smooth or --purifier")
    for f in filters:
        if f["name"] not in FILTERS:
            raise RllabError(f"unknown input filter {f['name']!r}; known: {', '.join(FILTERS)}")
        if f["name"] == "gaussian_noise":
            unit_sigma = float(f["params"].get("sigma", 0.1))
            f["params"] = {"sigma": raw_scale(agent, unit_sigma)}
            f["unit_sigma"] = unit_sigma
    spec = copy.deepcopy(agent.spec)
    spec["preprocessing"]["filters"] = [
        *(spec["preprocessing"].get("filters") or []),
        *({"name": f["name"], "params": f["params"]} for f in filters),
    ]
    if smoothing is not None:
        n = int(smoothing.get("n", 16))
        if n < 1:
            raise RllabError(f"smoothing needs n >= 1, got {n}")
        unit_sigma = float(smoothing.get("sigma", 0.1))
        spec["preprocessing"]["smoothing"] = {
            "sigma": raw_scale(agent, unit_sigma),
            "unit_sigma": unit_sigma,
            "n": n,
            "mode": smoothing.get("mode", "vote"),
        }
    trained = None
    if purifier is not None:
        from rllab.purifier import train_purifier

        trained, summary = train_purifier(agent, **purifier)
        spec["preprocessing"]["purifier"] = trained.spec()
        purifier = {**{k: v for k, v in purifier.items() if k != "attack"}, **summary}
    params = {"filters": filters, "smoothing": spec["preprocessing"].get("smoothing"), "purifier": purifier}
    spec["lineage"] = [*spec.get("lineage", []), lineage_entry(run, agent.spec, "defend", params)]
    defended = Agent(spec, agent.policy)
    if trained is not None:
        defended.purifier.load_state_dict(trained.state_dict())
    if agent.normalize_obs:
        defended.norm_mean.copy_(agent.norm_mean)
        defended.norm_var.copy_(agent.norm_var)
    defended.eval()
    defended.save(out)
    return load(out)
