"""Catch: a tiny pixel game with a ground-truth relevance mask.

A ball starts in a random column of the top row and falls one row per step; the
agent moves a paddle on the bottom row (left, stay, right). When the ball
reaches the bottom row the episode ends with +1 if the paddle is under it and -1
otherwise (bsuite's Catch, Osband et al. 2020, rendered as pixels).

Observations are ``uint8`` images of shape ``(1, rows, columns)`` (channel
first, so Stable-Baselines3 uses them as they are): ball and paddle are 255,
optional distractors are lit at ``distractor_intensity``. Distractors move or
flicker at random and never affect the reward. ``info["mask"]`` is a boolean
``(rows, columns)`` array (times ``scale``) marking the pixels that matter (ball and paddle only).

``scale=k`` renders every cell as a ``k x k`` block of pixels (observation
``(1, rows*k, columns*k)``, mask scaled the same way): objects then span several
pixels, as in Atari frames, which is what pixel-level tools (median filters,
deletion curves) assume. The game itself does not change.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

LEFT, STAY, RIGHT = 0, 1, 2


class CatchEnv(gym.Env[np.ndarray, np.int64]):
    """Catch: a ball falls down a small grid; the paddle at the bottom must catch it (reward +1, else -1)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(
        self,
        rows: int = 10,
        columns: int = 5,
        distractors: int = 0,
        distractor_intensity: int = 128,
        distractor_mode: str = "move",
        scale: int = 1,
        render_mode: str | None = None,
    ) -> None:
        if rows < 3 or columns < 2:
            raise ValueError(f"Catch needs rows >= 3 and columns >= 2, got {rows}x{columns}")
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        if distractors < 0:
            raise ValueError(f"distractors must be >= 0, got {distractors}")
        if not 0 < distractor_intensity < 255:
            raise ValueError("distractor_intensity must be in (0, 255) so distractors differ from ball and paddle")
        if distractor_mode not in ("move", "flicker"):
            raise ValueError(f"distractor_mode must be 'move' or 'flicker', got {distractor_mode!r}")
        self.rows, self.columns = rows, columns
        self.n_distractors = distractors
        self.distractor_intensity = distractor_intensity
        self.distractor_mode = distractor_mode
        self.scale = int(scale)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 255, shape=(1, rows * self.scale, columns * self.scale), dtype=np.uint8)
        self.action_space = spaces.Discrete(3)
        self._ball = np.zeros(2, dtype=np.int64)
        self._paddle = columns // 2
        # Distractors live on rows above the paddle row so they never overlap it.
        self._distractors = np.zeros((distractors, 2), dtype=np.int64)
        self._lit = np.ones(distractors, dtype=bool)

    # -- dynamics -----------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._ball = np.array([0, self.np_random.integers(self.columns)], dtype=np.int64)
        self._paddle = self.columns // 2
        if self.n_distractors:
            self._distractors[:, 0] = self.np_random.integers(0, self.rows - 1, self.n_distractors)
            self._distractors[:, 1] = self.np_random.integers(0, self.columns, self.n_distractors)
            self._lit[:] = True
        return self._obs(), self._info()

    def step(self, action):
        action = int(action)
        if action not in (LEFT, STAY, RIGHT):
            raise ValueError(f"invalid Catch action {action}")
        self._paddle = int(np.clip(self._paddle + action - 1, 0, self.columns - 1))
        self._ball[0] += 1
        self._move_distractors()
        terminated = bool(self._ball[0] == self.rows - 1)
        reward = 0.0
        if terminated:
            reward = 1.0 if self._ball[1] == self._paddle else -1.0
        return self._obs(), reward, terminated, False, self._info()

    def _move_distractors(self) -> None:
        if not self.n_distractors:
            return
        if self.distractor_mode == "move":
            moves = self.np_random.integers(-1, 2, size=self._distractors.shape)
            self._distractors += moves
            self._distractors[:, 0] %= self.rows - 1
            self._distractors[:, 1] %= self.columns
        else:
            self._lit = self.np_random.random(self.n_distractors) < 0.5

    # -- rendering ----------------------------------------------------------
    def _cell_mask(self) -> np.ndarray:
        mask = np.zeros((self.rows, self.columns), dtype=bool)
        mask[self._ball[0], self._ball[1]] = True
        mask[self.rows - 1, self._paddle] = True
        return mask

    def _upscale(self, a: np.ndarray) -> np.ndarray:
        if self.scale == 1:
            return a
        return np.repeat(np.repeat(a, self.scale, axis=0), self.scale, axis=1)

    def ground_truth_mask(self) -> np.ndarray:
        """Boolean mask of the observation's pixels that matter (ball and paddle)."""
        return self._upscale(self._cell_mask())

    def _obs(self) -> np.ndarray:
        frame = np.zeros((self.rows, self.columns), dtype=np.uint8)
        if self.n_distractors:
            d = self._distractors[self._lit]
            frame[d[:, 0], d[:, 1]] = self.distractor_intensity
        frame[self._cell_mask()] = 255
        return self._upscale(frame)[None]

    def _info(self) -> dict[str, Any]:
        return {"mask": self.ground_truth_mask()}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        frame = self._obs()[0]
        scale = max(1, 16 // self.scale)
        return np.repeat(np.repeat(np.stack([frame] * 3, axis=-1), scale, axis=0), scale, axis=1)
