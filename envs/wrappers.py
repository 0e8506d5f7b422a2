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
    TimeLimit,
)

from envs.atari import AtariWrapper, ClipReward, EpisodicLife


class ObservationShift(gym.ObservationWrapper):
    """A domain shift: ``obs * scale + offset`` (clipped to the space's bounds).

    The same scale/offset applies to every feature (or pixel); for uint8 images the
    result is rounded back to uint8. Used to build shifted target domains.
    """

    def __init__(self, env: gym.Env, scale: float = 1.0, offset: float = 0.0) -> None:
        super().__init__(env)
        self.scale, self.offset = float(scale), float(offset)
        if not (np.isfinite(self.scale) and np.isfinite(self.offset)):  # NaN observations, yet a plausible return
            raise ValueError(f"ObservationShift needs a finite scale and offset, got scale={scale}, offset={offset}")

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
    "AtariWrapper": AtariWrapper,
    "EpisodicLife": EpisodicLife,
    "ClipReward": ClipReward,
    "TimeLimit": TimeLimit,
}


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples wrappers take (a shape stored as ``[84, 84]`` is ``(84, 84)`` again)."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def wrappers_to_json(wrappers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Wrapper entries as agent.json stores them: tuples written as lists (``apply_wrappers`` makes them
    tuples again), so the stored entries equal the ones read back."""

    def plain(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return value.item() if isinstance(value, np.generic) else value

    return [plain(dict(w)) for w in wrappers]


def apply_wrappers(env: gym.Env, wrappers: list[dict[str, Any]]) -> gym.Env:
    """``env`` wrapped by each named wrapper of ``wrappers`` in order (a ValueError names an unknown one); list
    arguments are given as tuples, which JSON cannot store."""
    for w in wrappers:
        name = w.get("name")
        if name not in WRAPPERS:
            raise ValueError(f"unknown wrapper {name!r}; known: {', '.join(WRAPPERS)}")
        env = WRAPPERS[name](env, **_tuples(w.get("kwargs") or {}))
    return env
