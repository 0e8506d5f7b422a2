"""Network architectures, described by plain JSON and rebuilt without pickle.

A checkpoint stores ``policy = {"class": ..., "kwargs": {...}}`` where every value
is JSON: activations and feature extractors are names looked up in the tables
below, never class objects. ``policy_kwargs_to_sb3`` turns that into the
keyword arguments Stable-Baselines3's policy constructors take.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import torch.nn.functional as F
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from rllab.errors import RllabError
from rllab.spaces import frame_layout


class SmallCNN(BaseFeaturesExtractor):
    """A CNN for small frames (NatureCNN's 8x8/4 first layer needs >= 36x36 inputs).

    3x3 convolutions with padding; a layer strides by 2 only while the feature map
    is at least 16 pixels on its shorter side, so a 10x5 Catch frame keeps its full
    resolution and an 84x84 frame is reduced to 11x11 before the linear head.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int = 128,
        channels: tuple[int, ...] | list[int] = (16, 32),
        normalized_image: bool = False,
    ) -> None:
        super().__init__(observation_space, features_dim)
        n_in, h, w = observation_space.shape
        layers: list[nn.Module] = []
        for out in channels:
            stride = 2 if min(h, w) >= 16 else 1
            layers += [nn.Conv2d(n_in, int(out), kernel_size=3, stride=stride, padding=1), nn.ReLU()]
            n_in = int(out)
            h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
        layers.append(nn.Flatten())
        self.cnn = nn.Sequential(*layers)
        self.linear = nn.Sequential(nn.Linear(n_in * h * w, features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.linear(self.cnn(observations))


class MinAtarCNN(BaseFeaturesExtractor):
    """The MinAtar paper's network body for 10x10xC frames: one 3x3 convolution of ``channels`` (16), stride 1,
    no padding, then a ``features_dim`` (128) ReLU layer. Reads (H, W, C) frames as MinAtar emits them
    (channels last, detected from the space; a (C, H, W) space is read as it is), so no transposition is
    needed and gradients are with respect to the raw frames."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128, channels: int = 16) -> None:
        super().__init__(observation_space, features_dim)
        self.channels_last = frame_layout(observation_space) != "chw"
        h, w, c = observation_space.shape if self.channels_last else np.roll(observation_space.shape, -1)
        if min(h, w) < 3:
            raise RllabError(f"minatar_cnn needs frames of at least 3x3; these are {h}x{w}")
        self.cnn = nn.Sequential(nn.Conv2d(int(c), int(channels), kernel_size=3, stride=1), nn.ReLU(), nn.Flatten())
        self.linear = nn.Sequential(nn.Linear(int(channels) * (h - 2) * (w - 2), features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        x = observations.float()
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return self.linear(self.cnn(x))


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}
EXTRACTORS: dict[str, type[BaseFeaturesExtractor]] = {
    "flatten": FlattenExtractor,
    "small_cnn": SmallCNN,
    "nature_cnn": NatureCNN,
    "minatar_cnn": MinAtarCNN,
}
POLICY_CLASSES: dict[str, type[BasePolicy]] = {
    "ActorCriticPolicy": ActorCriticPolicy,
    "DQNPolicy": DQNPolicy,
}
# activation layers an MLP actor may hold to run as plain functions (see ``mlp_actor``)
FAST_ACTIVATIONS = {nn.Tanh: th.tanh, nn.ReLU: F.relu}


def default_extractor(observation_space: gym.spaces.Space) -> str:
    """Small CNN for image observations, the MinAtar CNN for bounded non-pixel frames (10x10xC booleans),
    flatten (then MLP) for everything else."""
    if is_image_space(observation_space, check_channels=False, normalized_image=False):
        return "small_cnn"
    if frame_layout(observation_space) is not None and min(observation_space.shape) > 0:
        return "minatar_cnn"
    return "flatten"


def policy_kwargs_to_sb3(kwargs: dict[str, Any]) -> dict[str, Any]:
    """JSON policy kwargs -> SB3 constructor kwargs (names resolved to classes)."""
    out = dict(kwargs)
    act = out.pop("activation_fn", None)
    if act is not None:
        if act not in ACTIVATIONS:
            raise RllabError(f"unknown activation {act!r}; known: {', '.join(ACTIVATIONS)}")
        out["activation_fn"] = ACTIVATIONS[act]
    ext = out.pop("features_extractor", None)
    if ext is not None:
        if ext not in EXTRACTORS:
            raise RllabError(f"unknown features extractor {ext!r}; known: {', '.join(EXTRACTORS)}")
        out["features_extractor_class"] = EXTRACTORS[ext]
    if "net_arch" in out and isinstance(out["net_arch"], dict):
        out["net_arch"] = {k: list(v) for k, v in out["net_arch"].items()}
    return out


def build_policy(
    policy_class: str,
    observation_space: gym.spaces.Space,
    action_space: gym.spaces.Space,
    kwargs: dict[str, Any],
    device: th.device | str = "cpu",
) -> BasePolicy:
    """A freshly initialised SB3 policy of class ``policy_class`` with the JSON architecture ``kwargs``."""
    if policy_class not in POLICY_CLASSES:
        raise RllabError(f"unknown policy class {policy_class!r}; known: {', '.join(POLICY_CLASSES)}")
    cls = POLICY_CLASSES[policy_class]
    try:
        policy = cls(observation_space, action_space, lambda _: 0.0, **policy_kwargs_to_sb3(kwargs))
    except TypeError as exc:
        raise RllabError(f"bad policy architecture {kwargs!r}: {exc}") from None
    return policy.to(device)


def mlp_actor(policy: BasePolicy) -> tuple[nn.Module, ...] | None:
    """The actor's layers when it is a plain MLP that can run without nn.Module dispatch, else None.

    Attacks call the actor tens of times per environment step on batches of a few vectors,
    where ``nn.Module.__call__`` and SB3's feature extraction cost more than the matrix
    products. Only exact ``nn.Linear`` / tanh / ReLU layers without hooks qualify (pruning's
    masks and other reparametrisations live in hooks, so those agents take the module path);
    checked on every call, nothing is cached.
    """
    if not isinstance(policy, ActorCriticPolicy) or not isinstance(policy.observation_space, gym.spaces.Box):
        return None
    extractor = policy.features_extractor if policy.share_features_extractor else policy.pi_features_extractor
    if type(extractor) is not FlattenExtractor or not isinstance(policy.mlp_extractor.policy_net, nn.Sequential):
        return None
    layers = (*policy.mlp_extractor.policy_net, policy.action_net)
    for m in layers:
        plain = type(m) is nn.Linear or type(m) in FAST_ACTIVATIONS
        if not plain or m._forward_hooks or m._forward_pre_hooks:
            return None
    return layers


def count_parameters(module: nn.Module) -> dict[str, int]:
    """The number of parameters of ``module``, in all and non-zero."""
    total = sum(p.numel() for p in module.parameters())
    nonzero = sum(int((p != 0).sum()) for p in module.parameters())
    return {"total": int(total), "nonzero": int(nonzero)}


def needs_transpose(space: gym.spaces.Space) -> bool:
    """Whether SB3 would wrap this observation space in ``VecTransposeImage`` (a channels-last image)."""
    return is_image_space(space, check_channels=True) and not is_image_space_channels_first(space)


def transposed_image_space(space: gym.spaces.Box) -> gym.spaces.Box:
    """HWC image space -> CHW, as SB3's VecTransposeImage does."""
    low = np.transpose(space.low, (2, 0, 1))
    high = np.transpose(space.high, (2, 0, 1))
    return gym.spaces.Box(low=low, high=high, dtype=space.dtype)
