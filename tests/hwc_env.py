"""A channel-last RGB version of Catch, for testing HWC image handling."""

import gymnasium as gym
import numpy as np

from envs.catch import CatchEnv


class _ToHWC(gym.ObservationWrapper):
    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        _, h, w = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, shape=(h, w, 3), dtype=np.uint8)

    def observation(self, observation):
        return np.repeat(np.moveaxis(observation, 0, -1), 3, axis=-1)


def make_hwc_catch(**kwargs):
    return _ToHWC(CatchEnv(**kwargs))
