"""The content of ``agent.json``: a new agent's skeleton, and its ancestry, one typed lineage step appended
in one place.

Every transform that makes a checkpoint from another (distill, prune, quantize, adapt, defend,
adversarial training, SB3 import) records which parent, which transform, which settings and what it
measured, as a :class:`LineageStep` appended by :func:`append_lineage`.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from rllab.environment import env_module
from rllab.spaces import space_to_json

Spec = dict[str, Any]
"""The content of ``agent.json`` (validated against ``rllab.schema`` when read)."""


def spec_skeleton(
    algo: str,
    env_id: str,
    env_kwargs: dict[str, Any],
    wrappers: list[dict[str, Any]],
    observation_space: gym.spaces.Space,
    action_space: gym.spaces.Space,
    policy_class: str,
    policy_kwargs: dict[str, Any],
    has_critic: bool,
    transpose_image: bool = False,
    obs_normalization: dict[str, Any] | None = None,
) -> Spec:
    """A new agent's ``agent.json`` content before training fills statistics, summary and lineage (the env's
    registering module recorded, so a new process can rebuild a third-party environment)."""
    env: dict[str, Any] = {"id": env_id, "kwargs": env_kwargs, "wrappers": wrappers}
    module = env_module(env_id)
    if module is not None:
        env["module"] = module
    return {
        "algo": algo,
        "env": env,
        "observation_space": space_to_json(observation_space),
        "action_space": space_to_json(action_space),
        "policy": {"class": policy_class, "kwargs": policy_kwargs, "has_critic": has_critic},
        "preprocessing": {"transpose_image": transpose_image, "obs_normalization": obs_normalization},
        "obs_stats": None,
        "training": {},
        "lineage": [],
    }


def now() -> str:
    """The current UTC time as ISO 8601 (seconds)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass
class LineageStep:
    """One step of a checkpoint's ancestry: the parent checkpoint, the transform and its settings."""

    parent: str
    parent_resolved: str
    parent_sha256: str | None
    transform: str
    params: dict[str, Any]
    time: str = field(default_factory=now)
    result: dict[str, Any] | None = None  # what the transform measured (sparsity, agreement, returns)
    extra: dict[str, Any] = field(default_factory=dict)  # transform-specific records (teachers, note, summary)

    @classmethod
    def of(cls, parent_path: str | Path | None, parent_spec: Spec, transform: str, params: dict[str, Any]):
        """The step from ``parent_spec`` (found at ``parent_path``) by ``transform`` with ``params``."""
        parent = "" if parent_path is None else str(parent_path)
        return cls(
            parent=parent,
            parent_resolved=str(Path(parent).resolve()) if parent else "",
            parent_sha256=(parent_spec.get("weights") or {}).get("sha256"),
            transform=transform,
            params=dict(params),
        )

    def to_json(self) -> dict[str, Any]:
        """The step as agent.json stores it (``extra`` keys flattened beside the standard ones)."""
        data = asdict(self)
        extra = data.pop("extra")
        if data["result"] is None:
            data.pop("result")
        return {**data, **extra}


def append_lineage(spec: Spec, step: LineageStep | dict[str, Any]) -> Spec:
    """Append one ancestry step to ``spec["lineage"]`` (a new list: the parent's spec is not changed)."""
    entry = step.to_json() if isinstance(step, LineageStep) else dict(step)
    spec["lineage"] = [*(spec.get("lineage") or []), entry]
    return spec


def last_step(spec: Spec) -> dict[str, Any]:
    """The newest lineage step (to add what a transform measured after the step was written)."""
    lineage = spec.get("lineage") or []
    if not lineage:
        raise KeyError("this checkpoint has no lineage step")
    return lineage[-1]
