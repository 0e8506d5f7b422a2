"""Named observation wrappers, so a checkpoint can list them as plain JSON.

``agent.json`` records ``env.wrappers = [{"name": ..., "kwargs": {...}}]``; the
names resolve through ``WRAPPERS`` only, never through an import path taken
from the file.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import (
    FlattenObservation,
    FrameStackObservation,
    GrayscaleObservation,
    ResizeObservation,
)


class ObservationShift(gym.ObservationWrapper):
    """A domain shift: ``obs * scale + offset`` (clipped to the space's bounds).

    The same scale/offset applies to every feature (or pixel); for uint8 images the
    result is rounded back to uint8. Used to build shifted target domains.
    """

    def __init__(self, env: gym.Env, scale: float = 1.0, offset: float = 0.0) -> None:
        super().__init__(env)
        self.scale, self.offset = float(scale), float(offset)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        space = self.observation_space
        out = observation.astype(np.float64) * self.scale + self.offset
        if isinstance(space, spaces.Box):
            out = np.clip(out, space.low, space.high)
            if np.issubdtype(space.dtype, np.integer):
                out = np.rint(out)
            return out.astype(space.dtype)
        return out


WRAPPERS: dict[str, type[gym.Wrapper]] = {
    "FlattenObservation": FlattenObservation,
    "FrameStackObservation": FrameStackObservation,
    "GrayscaleObservation": GrayscaleObservation,
    "ResizeObservation": ResizeObservation,
    "ObservationShift": ObservationShift,
}


def apply_wrappers(env: gym.Env, wrappers: list[dict[str, Any]]) -> gym.Env:
    """``env`` wrapped by each named wrapper of ``wrappers`` in order (a ValueError names an unknown one)."""
    for w in wrappers:
        name = w.get("name")
        if name not in WRAPPERS:
            raise ValueError(f"unknown wrapper {name!r}; known: {', '.join(WRAPPERS)}")
        env = WRAPPERS[name](env, **w.get("kwargs", {}))
    return env
