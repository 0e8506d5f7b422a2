"""A one-dimensional continuous-control task for attack tests: drive a point to the origin.

``Reach1D-v0``: the observation is the position ``x`` (start uniform in [-1, 1]), the action
``a`` in [-1, 1] moves it by ``0.25 * a``, the reward is ``-|x'|`` and an episode lasts 30 steps.
A policy learns it in a few thousand PPO steps (push towards 0), and an observation attacker
that makes ``x`` look like it is on the other side of 0 makes it push away: a continuous agent
on which attacks have a clear, fast, seeded effect.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

ENV_ID = "Reach1D-v0"


class Reach1D(gym.Env):
    """Drive a point on a line to the origin (see the module docstring)."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-2.0, 2.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.x = 0.0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """A start uniform in [-1, 1]."""
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-1.0, 1.0))
        return np.array([self.x], dtype=np.float32), {}

    def step(self, action):
        """Move by 0.25 * action; reward -|x|."""
        a = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        self.x = float(np.clip(self.x + 0.25 * a, -2.0, 2.0))
        return np.array([self.x], dtype=np.float32), -abs(self.x), False, False, {}


def register() -> None:
    """Registers ``Reach1D-v0`` (30-step episodes) with Gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point="tests.toy_control:Reach1D", max_episode_steps=30)
