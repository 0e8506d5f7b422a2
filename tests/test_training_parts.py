"""The parts of training and rollouts, without training: TrainConfig, model recipes, visited states, moments."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rllab
from rllab.agent import agent_from_spec
from rllab.evaluation import RunningMoments, collect_observations, run_episodes
from rllab.spec import spec_skeleton
from rllab.training import TrainConfig, build_model, default_run_dir, model_recipe, split_hyperparams


@pytest.fixture(scope="module")
def cartpole_agent() -> rllab.Agent:
    env = gym.make("CartPole-v1")
    spec = spec_skeleton(
        "ppo", "CartPole-v1", {}, [], env.observation_space, env.action_space, "ActorCriticPolicy", {}, True
    )
    env.close()
    return agent_from_spec(spec)


def test_running_moments_match_the_stacked_data():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 0.01, size=(n, 2, 3)) for n in (1, 8, 5, 8, 3)]
    moments = RunningMoments()
    for b in batches:
        moments.add(b)
    x = np.concatenate(batches)
    assert moments.count == len(x)
    np.testing.assert_array_equal(moments.mean, x.mean(axis=0))  # the same summation order: to the bit
    np.testing.assert_allclose(moments.std, x.std(axis=0), rtol=1e-12)


def test_collect_observations_by_episodes_is_what_the_rollouts_saw(cartpole_agent):
    seen = []
    run_episodes(cartpole_agent, 3, seed=5, on_step=lambda step: seen.append(step["obs"]))
    x = collect_observations(cartpole_agent, episodes=3, seed=5)
    np.testing.assert_array_equal(x, np.concatenate(seen))


def test_collect_observations_by_steps_with_a_behaviour_policy(cartpole_agent):
    calls = []

    def left(batch):
        calls.append(len(batch))
        return np.zeros(len(batch), dtype=np.int64)

    x = collect_observations(cartpole_agent, steps=50, seed=1, policy=left, n_envs=4)
    assert x.shape == (50, 4) and set(calls) == {4}
    np.testing.assert_array_equal(x, collect_observations(cartpole_agent, steps=50, seed=1, policy=left, n_envs=4))
    with pytest.raises(ValueError):
        collect_observations(cartpole_agent, seed=1)


def test_train_config_takes_the_train_keywords():
    config = TrainConfig("ppo", "ALE/Pong-v5", seed=3)
    assert (
        config.run_dir
        == default_run_dir("ppo", "ALE/Pong-v5", 3)
        == rllab.training.default_run_dir("ppo", "ALE/Pong-v5", 3)
    )
    with pytest.raises(TypeError):
        rllab.train("ppo", "CartPole-v1", no_such_option=1)
    with pytest.raises(rllab.RllabError, match="--seed must be >= 0"):
        TrainConfig("ppo", "CartPole-v1", seed=-1).check()


def test_build_model_from_a_recipe():
    lab, algo_kwargs = split_hyperparams("ppo", {"n_steps": 16, "batch_size": 16, "policy_kwargs": {"net_arch": [8]}})
    space = gym.spaces.Box(-1, 1, (4,))
    recipe = model_recipe("ppo", "CartPole-v1", {}, [], 2, lab, algo_kwargs, space)
    assert recipe.policy_class == "ActorCriticPolicy" and recipe.has_critic and not recipe.transpose
    model = build_model(recipe, seed=0)
    assert model.n_envs == 2 and model.n_steps == 16
    model.get_env().close()
    with pytest.raises(rllab.RllabError, match="unknown ppo hyperparameter"):
        split_hyperparams("ppo", {"no_such_key": 1})
