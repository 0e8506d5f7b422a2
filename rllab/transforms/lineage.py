"""A transform's new agent and its ancestry: the child of a parent agent, and the one lineage step that
records which parent, which transform, which settings and what the transform measured."""

from __future__ import annotations

import copy
from typing import Any

from stable_baselines3.common.policies import BasePolicy

from rllab.agent import Agent
from rllab.spec import LineageStep, append_lineage


def offspring(parent: Agent, policy: BasePolicy, policy_kwargs: dict[str, Any] | None = None) -> Agent:
    """A new agent around ``policy`` with ``parent``'s spec and everything in front of its policy
    (observation normalisation, input defenses), copied; its lineage step is added by :func:`record`
    once the transform has measured its result."""
    spec = copy.deepcopy(parent.spec)
    if policy_kwargs is not None:
        spec["policy"]["kwargs"] = policy_kwargs
    agent = Agent(spec, policy).copy_front_from(parent)
    return agent.to(parent.device).train(parent.training)


def provenance(agent: Agent) -> dict[str, Any]:
    """Where ``agent`` was loaded from (as given and resolved; empty if it never was) and its weights' hash."""
    return {
        "path": "" if agent.path is None else str(agent.path),
        "resolved": "" if agent.path is None else str(agent.path.resolve()),
        "sha256": (agent.spec.get("weights") or {}).get("sha256"),
    }


def record(
    agent: Agent,
    parent: Agent,
    transform: str,
    params: dict[str, Any],
    result: dict[str, Any] | None = None,
    **extra: Any,
) -> Agent:
    """Append to ``agent``'s lineage the step from ``parent`` (where it was loaded from) by ``transform``."""
    step = LineageStep.of(parent.path, parent.spec, transform, params)
    step.result = result
    step.extra = dict(extra)
    append_lineage(agent.spec, step)
    return agent
