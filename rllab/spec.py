"""The checkpoint's ancestry: one typed lineage step, appended to ``agent.json`` in one place.

Every transform that makes a checkpoint from another (distill, prune, quantize, adapt, defend,
adversarial training, SB3 import) records which parent, which transform, which settings and what it
measured, as a :class:`LineageStep` appended by :func:`append_lineage`.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Spec = dict[str, Any]
"""The content of ``agent.json`` (validated against ``rllab.schema`` when read)."""


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
