"""Atari 2600 preprocessing as Stable-Baselines3's ``AtariWrapper`` does it (no torch here, by design).

``AtariWrapper`` chains SB3's wrappers in SB3's order: no-op reset (up to ``noop_max`` no-ops), frame skip
with a max-pool over the last two frames, episodic life (``terminal_on_life_loss``), fire on reset, 84x84
grey frames (OpenCV's INTER_AREA, as SB3) and reward clipping to its sign. Use it on ALE ids made with
``frameskip=1`` (the skip is the wrapper's). Unlike SB3's ``WarpFrame`` the frame is (H, W), so a
``FrameStackObservation`` after it gives the (stack, H, W) channels-first frames SB3's CNNs read.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def _cv2() -> Any:
    try:
        import cv2
    except ModuleNotFoundError:
        raise gym.error.DependencyNotInstalled(
            "opencv is not installed: install the 'atari' extra (pip install -e '.[atari]')"
        ) from None
    return cv2


class NoopReset(gym.Wrapper):
    """Start each episode after 1..``noop_max`` no-op steps (action 0), drawn from the env's generator."""

    def __init__(self, env: gym.Env, noop_max: int = 30) -> None:
        super().__init__(env)
        self.noop_max = int(noop_max)

    def reset(self, **kwargs: Any):
        """Reset, then step NOOP a random number of times."""
        obs, info = self.env.reset(**kwargs)
        for _ in range(int(self.unwrapped.np_random.integers(1, self.noop_max + 1))):
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        return obs, info


class FireReset(gym.Wrapper):
    """Press FIRE (then action 2) after a reset, for games that wait for it."""

    def reset(self, **kwargs: Any):
        """Reset, then FIRE and action 2 (resetting again where either ends the episode)."""
        self.env.reset(**kwargs)
        _, _, terminated, truncated, _ = self.env.step(1)
        if terminated or truncated:
            self.env.reset(**kwargs)
        obs, _, terminated, truncated, _ = self.env.step(2)
        if terminated or truncated:
            self.env.reset(**kwargs)
        return obs, {}


class EpisodicLife(gym.Wrapper):
    """A lost life ends the episode; the game itself is reset only when it is over."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives, self.was_real_done = 0, True

    def step(self, action: Any):
        """Step; ``terminated`` also when a life was lost."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.was_real_done = terminated or truncated
        lives = self.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs: Any):
        """A real reset after game over, else one no-op step from the lost life."""
        if self.was_real_done:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = self.unwrapped.ale.lives()
        return obs, info


class MaxAndSkip(gym.Wrapper):
    """Repeat an action ``skip`` times, summing rewards; the observation is the max of the last two frames."""

    def __init__(self, env: gym.Env, skip: int = 4) -> None:
        super().__init__(env)
        self._buffer = np.zeros((2, *env.observation_space.shape), dtype=env.observation_space.dtype)
        self._skip = int(skip)

    def step(self, action: Any):
        """``skip`` steps of ``action``."""
        total, terminated, truncated, info = 0.0, False, False, {}
        for i in range(self._skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            if i == self._skip - 2:
                self._buffer[0] = obs
            if i == self._skip - 1:
                self._buffer[1] = obs
            total += float(reward)
            if terminated or truncated:
                break
        return self._buffer.max(axis=0), total, terminated, truncated, info


class WarpFrame(gym.ObservationWrapper):
    """RGB frames -> ``size`` x ``size`` grey (H, W) ``uint8``, OpenCV INTER_AREA as in the Nature DQN."""

    def __init__(self, env: gym.Env, size: int = 84) -> None:
        super().__init__(env)
        self.size = int(size)
        self._cv2 = _cv2()
        self.observation_space = spaces.Box(0, 255, (self.size, self.size), dtype=np.uint8)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        """One frame, grey and resized."""
        cv2 = self._cv2
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        return cv2.resize(grey, (self.size, self.size), interpolation=cv2.INTER_AREA)


class ClipReward(gym.RewardWrapper):
    """Rewards clipped to their sign: -1, 0 or +1."""

    def reward(self, reward: Any) -> float:
        """The sign of ``reward``."""
        return float(np.sign(float(reward)))


class AtariWrapper(gym.Wrapper):
    """SB3's ``AtariWrapper`` (same wrappers, same order, same defaults), with (H, W) frames for stacking."""

    def __init__(
        self,
        env: gym.Env,
        noop_max: int = 30,
        frame_skip: int = 4,
        screen_size: int = 84,
        terminal_on_life_loss: bool = True,
        clip_reward: bool = True,
    ) -> None:
        meanings = env.unwrapped.get_action_meanings()
        if noop_max > 0:
            env = NoopReset(env, noop_max)
        if frame_skip > 1:
            env = MaxAndSkip(env, frame_skip)
        if terminal_on_life_loss:
            env = EpisodicLife(env)
        if "FIRE" in meanings:
            env = FireReset(env)
        env = WarpFrame(env, screen_size)
        if clip_reward:
            env = ClipReward(env)
        super().__init__(env)
