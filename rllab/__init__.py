"""rllab: train, attack, defend, explain, adapt and compress RL agents on one checkpoint format.

The public API (``rllab.load``, ``rllab.train``, ``rllab.evaluate``, ...) is imported on first use, so that
``import rllab.cli`` (the console script) starts without torch and a Ctrl-C during start-up is one line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rllab.agent import Agent, load
    from rllab.errors import RllabError
    from rllab.evaluation import EvalResult, evaluate, run_episodes
    from rllab.training import train

__version__ = "0.1.0"
_EXPORTS = {
    "Agent": "rllab.agent",
    "load": "rllab.agent",
    "RllabError": "rllab.errors",
    "EvalResult": "rllab.evaluation",
    "evaluate": "rllab.evaluation",
    "run_episodes": "rllab.evaluation",
    "train": "rllab.training",
}
__all__ = ["Agent", "EvalResult", "RllabError", "evaluate", "load", "run_episodes", "train"]


def __getattr__(name: str) -> Any:
    """``rllab.NAME`` of the public API, imported from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rllab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
