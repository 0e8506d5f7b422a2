"""rllab's Gymnasium environments and wrappers (no torch here, by design).

Importing this package registers:

- ``Catch-v0``: 10x5 pixel Catch, no distractors.
- ``CatchDistractors-v0``: the same game with 3 moving distractor pixels of
  intensity 128 that never affect reward (for explanation ground truth).

Both accept ``rows``, ``columns``, ``distractors``, ``distractor_intensity``,
``distractor_mode`` and ``scale`` (pixels per cell) through
``gymnasium.make(id, **kwargs)`` or ``rllab train --env-kwargs '{scale: 3}'``.
"""

from __future__ import annotations

import gymnasium as gym

from envs.catch import CatchEnv

__all__ = ["CatchEnv", "register_envs"]

CATCH_MAX_STEPS = 100  # a Catch episode ends after rows - 1 steps; this only guards misuse


def register_envs() -> None:
    """Register the lab's environments with Gymnasium (idempotent)."""
    specs = {
        "Catch-v0": {},
        "CatchDistractors-v0": {"distractors": 3},
    }
    for env_id, kwargs in specs.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="envs.catch:CatchEnv",
                kwargs=kwargs,
                max_episode_steps=CATCH_MAX_STEPS,
            )


register_envs()
