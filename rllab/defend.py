"""Defending an agent at its input: filters, noise smoothing or a trained purifier in front of the policy.

``defend(agent, ...)`` returns a new agent (the same policy weights, ``preprocessing.filters``,
``preprocessing.smoothing`` and/or ``preprocessing.purifier`` set, a lineage step recording the
settings), which saves, loads, evaluates, attacks and explains like any other agent. Noise scales are
given in the threat model's units (pixel/255 for images, multiples of the per-feature observation std
stored in the checkpoint for vectors) and stored in raw units beside the unit-level value.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from rllab.agent import Agent
from rllab.errors import RllabError
from rllab.nn.build import clone_module
from rllab.nn.filters import FILTERS
from rllab.purify import train_purifier
from rllab.schema import MAX_SMOOTHING_SAMPLES
from rllab.spec import LineageStep, append_lineage
from rllab.units import ThreatUnit, check_budget


def stored_scale(unit: ThreatUnit, sigma: float) -> float | list[float]:
    """A noise scale in threat units -> raw units as ``agent.json`` stores them: one number for pixel
    units, one per feature for std units (multiplied in float64, as they always were)."""
    raw = float(sigma) * unit.scale.astype(np.float64)
    return float(raw.flat[0]) if unit.is_pixel else raw.reshape(-1).tolist()


def _noise_scale(agent: Agent, sigma: float, option: str) -> tuple[float | list[float], str]:
    """A noise scale checked in threat units, as (its raw scale, the unit's name)."""
    check_budget(sigma, agent.is_image, option, "sigma={v}")
    unit = ThreatUnit.for_agent(agent)
    return stored_scale(unit, sigma), unit.name


def defend(
    agent: Agent,
    filters: list[dict[str, Any]] | None = None,
    smoothing: dict[str, Any] | None = None,
    purifier: dict[str, Any] | None = None,
) -> Agent:
    """``agent`` behind input ``filters`` (``{"name", "params"}``), noise ``smoothing`` (``sigma``, ``n``,
    ``mode``) and/or a purifier trained by ``rllab.purify.train_purifier(agent, **purifier)``.

    The parent (``agent.path``) and the settings are recorded as a ``defend`` lineage step; ``agent`` is
    not changed.
    """
    filters = [dict(f) for f in filters or []]
    if not filters and smoothing is None and purifier is None:
        raise RllabError("nothing to do: give at least one --filter, --smooth or --purifier")
    for f in filters:
        if f["name"] not in FILTERS:
            raise RllabError(f"unknown input filter {f['name']!r}; known: {', '.join(FILTERS)}")
        if f["name"] == "gaussian_noise":
            unit_sigma = float(f["params"].get("sigma", 0.1))
            raw, unit = _noise_scale(agent, unit_sigma, "--filter gaussian_noise: sigma")
            f["params"] = {"sigma": raw}
            f["unit_sigma"], f["unit"] = unit_sigma, unit
    spec = copy.deepcopy(agent.spec)
    # the noise scale the user gave (threat units) is stored beside the raw one the filter uses
    spec["preprocessing"]["filters"] = [*(spec["preprocessing"].get("filters") or []), *filters]
    if smoothing is not None:
        n = int(smoothing.get("n", 16))
        if n < 1:
            raise RllabError(f"smoothing needs n >= 1, got {n}")
        if n > MAX_SMOOTHING_SAMPLES:
            raise RllabError(f"smoothing needs n <= {MAX_SMOOTHING_SAMPLES}, got {n}")
        unit_sigma = float(smoothing.get("sigma", 0.1))
        raw, unit = _noise_scale(agent, unit_sigma, "--smooth sigma")
        spec["preprocessing"]["smoothing"] = {
            "sigma": raw,
            "unit_sigma": unit_sigma,
            "unit": unit,
            "n": n,
            "mode": smoothing.get("mode", "vote"),
        }
    trained = None
    if purifier is not None:
        check_budget(float(purifier.get("sigma", 0.1)), agent.is_image, "--purifier-sigma", "sigma={v}")
        trained, summary = train_purifier(agent, **purifier)
        spec["preprocessing"]["purifier"] = trained.spec()
        purifier = {**{k: v for k, v in purifier.items() if k != "attack"}, **summary}
    params = {"filters": filters, "smoothing": spec["preprocessing"].get("smoothing"), "purifier": purifier}
    append_lineage(spec, LineageStep.of(agent.path, agent.spec, "defend", params))
    defended = Agent(spec, clone_module(agent.policy)).copy_front_from(agent)  # a parent's purifier kept
    if trained is not None:
        defended.purifier.load_state_dict(trained.state_dict())
    return defended.to(agent.device).eval()
