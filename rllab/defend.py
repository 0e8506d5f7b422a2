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
from rllab.checkpoint import SPEC_FILE, lineage_entry, removed_on_failure
from rllab.errors import RllabError
from rllab.nn.filters import FILTERS
from rllab.units import check_budget

TEXT_SETTINGS = {"mode"}  # settings that are words, not numbers
INTEGER_SETTINGS = {"size", "bits", "n"}


def parse_spec(text: str, option: str = "--filter") -> dict[str, Any]:
    """``"median:size=3"`` -> ``{"name": "median", "params": {"size": 3}}``.

    Values are numbers (fractions such as ``8/255`` allowed; ``size``, ``bits`` and ``n`` integers)
    except the word-valued ``mode``; anything else is a one-line error naming ``option``.
    """
    from rllab.parsing import parse_number

    name, _, rest = text.partition(":")
    name = name.strip()
    label = f"{option} {name}:" if option == "--filter" else option
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise RllabError(f"{label} bad setting {item!r}; expected key=value")
        if key in TEXT_SETTINGS:
            params[key] = value
            continue
        if key in INTEGER_SETTINGS:
            try:
                number = int(value)
            except ValueError:
                raise RllabError(f"{label} {key} must be an integer, got {value!r}") from None
            params[key] = number
            continue
        number = parse_number(value, f"{label} {key}")
        if "/" not in value and value.lstrip("+-").isdigit():
            number = int(number)
        params[key] = number
    return {"name": name, "params": params}


def unit_name(agent: Agent) -> str:
    return "pixel/255" if agent.is_image else "obs std"


def check_noise_scale(agent: Agent, sigma: float, what: str) -> None:
    """A noise scale in threat units: >= 0, and for images at most the pixel range (sigma=8 is 8x it)."""
    check_budget(sigma, agent.is_image, what, "sigma={v}")


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
            check_noise_scale(agent, unit_sigma, "--filter gaussian_noise: sigma")
            f["params"] = {"sigma": raw_scale(agent, unit_sigma)}
            f["unit_sigma"], f["unit"] = unit_sigma, unit_name(agent)
    spec = copy.deepcopy(agent.spec)
    # the noise scale the user gave (threat units) is stored beside the raw one the filter uses
    spec["preprocessing"]["filters"] = [*(spec["preprocessing"].get("filters") or []), *filters]
    if smoothing is not None:
        n = int(smoothing.get("n", 16))
        if n < 1:
            raise RllabError(f"smoothing needs n >= 1, got {n}")
        unit_sigma = float(smoothing.get("sigma", 0.1))
        check_noise_scale(agent, unit_sigma, "--smooth sigma")
        spec["preprocessing"]["smoothing"] = {
            "sigma": raw_scale(agent, unit_sigma),
            "unit_sigma": unit_sigma,
            "unit": unit_name(agent),
            "n": n,
            "mode": smoothing.get("mode", "vote"),
        }
    trained = None
    if purifier is not None:
        check_noise_scale(agent, float(purifier.get("sigma", 0.1)), "--purifier-sigma")
        from rllab.nn.purifier import train_purifier

        trained, summary = train_purifier(agent, **purifier)
        spec["preprocessing"]["purifier"] = trained.spec()
        purifier = {**{k: v for k, v in purifier.items() if k != "attack"}, **summary}
    params = {"filters": filters, "smoothing": spec["preprocessing"].get("smoothing"), "purifier": purifier}
    spec["lineage"] = [*spec.get("lineage", []), lineage_entry(run, agent.spec, "defend", params)]
    defended = Agent(spec, agent.policy).copy_front_from(agent)  # a parent's purifier and statistics kept
    if trained is not None:
        defended.purifier.load_state_dict(trained.state_dict())
    defended.eval()
    with removed_on_failure(out):
        defended.save(out)
    return load(out)
