"""Training-time defenses (adversarial training), found by module name so that rllab never imports attack code.

A provider module (``robustness.adversarial_training``) registers ``name -> installer(model, seed, **settings)``
in ``TRAINING_DEFENSES`` when imported; the installer changes the model's update and returns the settings
it used, which the checkpoint records in its training config and lineage. A defense that trains something
of its own (ATLA's adversary) sets ``model.rllab_defense_state`` to a ``DefenseState``, which ``--resume``
saves beside the optimizer and restores.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.preprocessing import is_image_space

from rllab.errors import RllabError
from rllab.spec import append_lineage, now
from rllab.units import check_budget

TRAINING_DEFENSES: dict[str, Callable[..., dict[str, Any]]] = {}
DEFENSE_STATE_ATTR = "rllab_defense_state"  # set on the model by a defense with trained state of its own


class DefenseState(Protocol):
    """A training defense's own state (weights, optimizer, counters) that a resumed run continues from."""

    def state(self) -> tuple[dict[str, th.Tensor], dict[str, Any]]:
        """Tensors (saved as safetensors) and JSON-able metadata."""

    def load_state(self, tensors: dict[str, th.Tensor], meta: dict[str, Any]) -> None:
        """Restore what ``state`` returned; one ``RllabError`` line when it does not fit."""


DEFENSE_PROVIDERS = ["robustness.adversarial_training"]


def training_defense(name: str) -> Callable[..., dict[str, Any]]:
    """The installer registered as ``name``, importing the provider modules that register them."""
    if name not in TRAINING_DEFENSES:
        for module in DEFENSE_PROVIDERS:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError:
                continue
    if name not in TRAINING_DEFENSES:
        known = ", ".join(TRAINING_DEFENSES) or "none installed"
        raise RllabError(f"unknown training defense {name!r}; known: {known}")
    return TRAINING_DEFENSES[name]


def check_defense_eps(defense_kwargs: dict[str, Any] | None, obs_space: spaces.Space) -> None:
    """The adversarial-training budget, in the threat model's units, checked before anything is built."""
    eps = (defense_kwargs or {}).get("eps")
    if eps is not None:
        check_budget(float(eps), is_image_space(obs_space, check_channels=False), "--eps", "--eps {v}")


def install_defense(
    model: BaseAlgorithm, spec: dict[str, Any], name: str, defense_kwargs: dict[str, Any] | None, seed: int
) -> None:
    """Install training defense ``name`` on ``model``; ``spec`` records its settings and a lineage step."""
    settings = training_defense(name)(model, seed=seed, **(defense_kwargs or {}))
    spec["training"]["config"]["defense"] = {**settings, **(defense_kwargs or {})}
    append_lineage(
        spec, {"parent": None, "transform": f"adversarial-training:{name}", "params": settings, "time": now()}
    )
