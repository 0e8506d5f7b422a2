"""Model construction: resolved hyperparameters and an environment in, an SB3 (or REINFORCE) model out.

``ModelRecipe`` says everything that builds a model and its environments (algorithm, environment,
policy class and architecture, image transposition, observation normalisation); ``build_model``
builds it. Training and RL fine-tuning (``rllab prune --finetune rl``) both build models this way.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize, VecTransposeImage

from rllab import hyperparams as hp_lib
from rllab.algos import ALGOS
from rllab.environment import VEC_ENV_CLASSES, env_factory, make_env
from rllab.errors import RllabError
from rllab.nn.policies import POLICY_CLASSES, default_extractor, needs_transpose, policy_kwargs_to_sb3

SET_BY_LAB = {"self", "policy", "env", "_init_setup_model", "seed", "device", "verbose", "policy_kwargs"}


def make_vec_env(
    env_id: str, n_envs: int, seed: int, env_kwargs: dict[str, Any], wrappers: list[dict[str, Any]]
) -> DummyVecEnv:
    """``n_envs`` copies of the environment in a ``DummyVecEnv`` (or the id's registered subclass,
    ``rllab.environment.VEC_ENV_CLASSES``), seeded ``seed``, ``seed + 1``, ..."""
    cls = VEC_ENV_CLASSES.get(env_id, DummyVecEnv)
    return sb3_make_vec_env(env_factory(env_id, env_kwargs, wrappers), n_envs=n_envs, seed=seed, vec_env_cls=cls)


def split_hyperparams(algo: str, hp: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(lab keys, ``algo``'s constructor kwargs), checked: an unknown or non-numeric one is a one-line error."""
    lab, algo_kwargs = hp_lib.split(hp)
    _check_algo_kwargs(algo, algo_kwargs)
    _check_algo_values(algo, algo_kwargs)
    return lab, algo_kwargs


def _check_algo_kwargs(algo: str, algo_kwargs: dict[str, Any]) -> None:
    """An unknown hyperparameter is a one-line error before anything is built (SB3 raises a TypeError)."""
    accepted = set(inspect.signature(ALGOS[algo].__init__).parameters) - SET_BY_LAB
    unknown = sorted(set(algo_kwargs) - accepted)
    if unknown:
        raise RllabError(
            f"unknown {algo} hyperparameter(s) {', '.join(unknown)}; {algo} takes the lab's keys "
            f"({', '.join(sorted(hp_lib.LAB_KEYS))}) and {', '.join(sorted(accepted))}"
        )


def _check_algo_values(algo: str, algo_kwargs: dict[str, Any]) -> None:
    """A hyperparameter whose default is a number must be given a number (SB3 fails late, deep inside);
    every number must be finite (a NaN or infinite one trains a NaN policy)."""
    for name, value in algo_kwargs.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise RllabError(f"bad hyperparameters for {algo}: {name} must be finite, got {value}")
    for name, param in inspect.signature(ALGOS[algo].__init__).parameters.items():
        if name not in algo_kwargs:
            continue
        default, value = param.default, algo_kwargs[name]
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            continue
        if callable(value) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            continue
        raise RllabError(f"bad hyperparameters for {algo}: {name} must be a number, got {value!r}")


def probe_spaces(algo: str, env_id: str, env_kwargs: dict[str, Any], wrappers: list[dict[str, Any]]):
    """(observation space, action space) of the environment, checked against what ``algo`` can act in."""
    probe = make_env(env_id, env_kwargs, wrappers)
    obs_space, act_space = probe.observation_space, probe.action_space
    probe.close()
    if algo == "dqn" and not isinstance(act_space, spaces.Discrete):
        raise RllabError(f"dqn needs a discrete action space; {env_id} has {act_space}")
    if not isinstance(act_space, (spaces.Box, spaces.Discrete)):
        raise RllabError(f"rllab agents take Discrete or Box actions; {env_id} has {act_space}")
    return obs_space, act_space


@dataclass
class ModelRecipe:
    """Everything that builds an SB3 model and its environments, hyperparameters already resolved."""

    algo: str
    env_id: str
    env_kwargs: dict[str, Any]
    wrappers: list[dict[str, Any]]
    n_envs: int
    algo_kwargs: dict[str, Any]
    policy_class: str
    policy_kwargs: dict[str, Any]  # the JSON architecture (names, not classes)
    transpose: bool = False  # channels-last images are transposed for SB3's CNNs
    normalize: bool = False  # observations normalised by a running mean/std (VecNormalize)
    normalize_reward: bool = False  # training rewards scaled by the running std of the discounted return
    train_wrapper_kwargs: dict[str, dict[str, Any]] | None = None  # per wrapper name, training envs only

    @property
    def has_critic(self) -> bool:
        """Whether the policy has a trained value head (REINFORCE without baseline and DQN have none)."""
        return self.algo != "dqn" and bool(self.algo_kwargs.get("use_baseline", True))

    @property
    def spec_policy_kwargs(self) -> dict[str, Any]:
        """The architecture agent.json records (gSDE is a policy setting there, an algorithm one in SB3)."""
        return {**self.policy_kwargs, "use_sde": True} if self.algo_kwargs.get("use_sde") else self.policy_kwargs

    def vec_env(self, n_envs: int, seed: int, training: bool = True) -> VecEnv:
        """``n_envs`` environments as the model sees them (transposed and normalised as the recipe says)."""
        wrappers = self.wrappers
        if training and self.train_wrapper_kwargs:  # e.g. Atari's episodic life and reward clipping
            extra = self.train_wrapper_kwargs
            wrappers = [{**w, "kwargs": {**(w.get("kwargs") or {}), **extra.get(w["name"], {})}} for w in wrappers]
        venv: VecEnv = make_vec_env(self.env_id, n_envs, seed, self.env_kwargs, wrappers)
        if self.transpose:
            venv = VecTransposeImage(venv)
        if (self.normalize or self.normalize_reward) and training:
            # RL Zoo's ``normalize: true``: the return's running std uses the algorithm's own gamma
            gamma = float(self.algo_kwargs.get("gamma", 0.99))
            venv = VecNormalize(venv, norm_obs=self.normalize, norm_reward=self.normalize_reward, gamma=gamma)
        elif self.normalize:  # evaluation: raw rewards, the observations as the policy sees them
            venv = VecNormalize(venv, norm_obs=True, norm_reward=False, training=False)
        return venv


def model_recipe(
    algo: str,
    env_id: str,
    env_kwargs: dict[str, Any],
    wrappers: list[dict[str, Any]],
    n_envs: int,
    lab: dict[str, Any],
    algo_kwargs: dict[str, Any],
    obs_space: spaces.Space,
) -> ModelRecipe:
    """The recipe the hyperparameters give for this observation space (default extractor for images), checked."""
    transpose = needs_transpose(obs_space)
    if not isinstance(lab.get("policy_kwargs") or {}, dict):
        raise RllabError(f"policy_kwargs must be a mapping, got {lab['policy_kwargs']!r}")
    policy_kwargs = dict(lab.get("policy_kwargs") or {})
    _check_extractor(policy_kwargs, obs_space, transpose)
    image = is_image_space(obs_space, check_channels=False)
    if default_extractor(obs_space) != "flatten":  # images, and bounded non-pixel frames (MinAtar)
        policy_kwargs.setdefault("features_extractor", default_extractor(obs_space))
    normalize, normalize_reward = normalize_flags(lab.get("normalize", False))
    if normalize and image:
        raise RllabError("normalize: true is for vector observations; image observations are scaled by 1/255 already")
    policy_class = "DQNPolicy" if algo == "dqn" else "ActorCriticPolicy"
    train_kwargs = lab.get("train_wrapper_kwargs") or None
    if train_kwargs is not None and not all(isinstance(v, dict) for v in dict(train_kwargs).values()):
        raise RllabError(f"train_wrapper_kwargs must map wrapper names to kwargs, got {train_kwargs!r}")
    return ModelRecipe(
        algo,
        env_id,
        env_kwargs,
        wrappers,
        n_envs,
        algo_kwargs,
        policy_class,
        policy_kwargs,
        transpose,
        normalize,
        normalize_reward,
        train_kwargs,
    )


def normalize_flags(value: Any) -> tuple[bool, bool]:
    """(observations, rewards) normalised, from the hyperparameter ``normalize`` as RL Zoo reads it.

    ``true`` normalises both (SB3's ``VecNormalize`` defaults, which RL Zoo's tuned MuJoCo and Acrobot
    values were found with); a mapping ``{norm_obs: .., norm_reward: ..}`` picks (each defaults to true).
    """
    if isinstance(value, bool):
        return value, value
    if isinstance(value, dict) and set(value) <= {"norm_obs", "norm_reward"}:
        flags = (value.get("norm_obs", True), value.get("norm_reward", True))
        if all(isinstance(f, bool) for f in flags):
            return flags[0], flags[1]
    raise RllabError(f"normalize must be true, false or {{norm_obs: BOOL, norm_reward: BOOL}}, got {value!r}")


def _check_extractor(policy_kwargs: dict[str, Any], obs_space: spaces.Space, transpose: bool) -> None:
    """NatureCNN's 8x8/4, 4x4/2, 3x3/1 convolutions need frames of at least 36x36 pixels."""
    if policy_kwargs.get("features_extractor") != "nature_cnn" or len(obs_space.shape) != 3:
        return
    h, w = obs_space.shape[:2] if transpose else obs_space.shape[1:]
    if min(h, w) < 36:
        raise RllabError(
            f"the nature_cnn extractor needs frames of at least 36x36 pixels; these are {h}x{w}: "
            "use features_extractor: small_cnn (the default for images)"
        )


def build_model(recipe: ModelRecipe, seed: int, device: th.device | str = "cpu", verbose: int = 0) -> BaseAlgorithm:
    """The recipe's model on its ``n_envs`` training environments (seeded ``seed``); close ``model.get_env()``."""
    venv = recipe.vec_env(recipe.n_envs, seed)
    try:
        return ALGOS[recipe.algo](
            POLICY_CLASSES[recipe.policy_class],
            venv,
            seed=seed,
            device=device,
            verbose=verbose,
            policy_kwargs=policy_kwargs_to_sb3(recipe.policy_kwargs),
            **recipe.algo_kwargs,
        )
    except (TypeError, ValueError, AssertionError) as exc:
        venv.close()
        raise RllabError(f"bad hyperparameters for {recipe.algo}: {str(exc).splitlines()[0]}") from None
