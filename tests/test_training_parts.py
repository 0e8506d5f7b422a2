"""The parts of training and rollouts, without training: TrainConfig, model recipes, visited states, moments."""

from __future__ import annotations

import json

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


def test_normalize_true_scales_training_rewards_with_the_algorithms_gamma_as_rl_zoo_does():
    """RL Zoo's ``normalize: true`` is SB3's VecNormalize defaults: observations and rewards, the return's
    std with the algorithm's gamma (the lab normalised observations only)."""
    space = gym.spaces.Box(-np.inf, np.inf, (4,))
    lab, algo_kwargs = split_hyperparams("ppo", {"normalize": True, "gamma": 0.98})
    recipe = model_recipe("ppo", "CartPole-v1", {}, [], 2, lab, algo_kwargs, space)
    venv = recipe.vec_env(2, seed=0)
    assert venv.norm_obs and venv.norm_reward and venv.gamma == 0.98
    venv.reset()
    rewards = [venv.step(np.array([0, 1]))[1] for _ in range(5)]
    assert not np.allclose(rewards, 1.0)  # CartPole pays 1 per step: the training envs see it scaled
    venv.close()
    evaluation = recipe.vec_env(1, seed=0, training=False)
    assert evaluation.norm_obs and not evaluation.norm_reward and not evaluation.training
    evaluation.close()
    lab, algo_kwargs = split_hyperparams("ppo", {"normalize": {"norm_reward": False}})
    venv = model_recipe("ppo", "CartPole-v1", {}, [], 1, lab, algo_kwargs, space).vec_env(1, seed=0)
    assert venv.norm_obs and not venv.norm_reward
    venv.close()
    for bad in ("yes", {"norm_obs": 1}, {"clip_obs": 5.0}):
        lab, algo_kwargs = split_hyperparams("ppo", {"normalize": bad})
        with pytest.raises(rllab.RllabError, match="normalize must be true, false or"):
            model_recipe("ppo", "CartPole-v1", {}, [], 1, lab, algo_kwargs, space)


def test_a_resumed_run_continues_the_reward_scale_where_it_stopped(tmp_path, monkeypatch):
    from rllab.training import trainer

    run = tmp_path / "run"
    small = {"normalize": True, "n_envs": 2, "n_steps": 128, "batch_size": 128, "n_epochs": 1}
    common = {"progress": False, "final_eval_episodes": 1, "eval_freq": 0}
    rllab.train("ppo", "CartPole-v1", steps=256, out=run, overrides=small, **common)
    (state,) = (run / "resume").glob("state.*.json")
    saved = json.loads(state.read_text())["ret_rms"]
    assert saved["count"] > 200 and saved["var"] > 1.0  # returns of CartPole's 1-per-step rewards
    restored = {}

    def spy(model, run_dir, spec):
        step = real(model, run_dir, spec)
        rms = model.get_env().ret_rms
        restored.update(mean=float(rms.mean), var=float(rms.var), count=float(rms.count))
        return step

    real = trainer.restore_run
    monkeypatch.setattr(trainer, "restore_run", spy)
    rllab.train("ppo", "CartPole-v1", steps=512, out=run, resume=True, **common)
    assert restored == pytest.approx({k: saved[k] for k in ("mean", "var", "count")})
