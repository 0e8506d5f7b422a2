"""A stand-in third-party package: importing it registers ``ThirdParty/HwcCatch-v0`` (channels-last RGB Catch),
so tests can use Gymnasium's ``module:Env-id`` syntax (``tests.third_party_env:ThirdParty/HwcCatch-v0``)."""

import gymnasium as gym

if "ThirdParty/HwcCatch-v0" not in gym.registry:
    gym.register(id="ThirdParty/HwcCatch-v0", entry_point="tests.hwc_env:make_hwc_catch", max_episode_steps=100)
