from importlib import resources

import pytest
import yaml

from rllab import hyperparams as hp_lib
from rllab.algos import ALGOS
from rllab.errors import RllabError
from rllab.nn.policies import POLICY_CLASSES, default_extractor, policy_kwargs_to_sb3
from rllab.training import make_vec_env

FAMILY_IDS = {"default": "CartPole-v1", "atari": "ALE/Pong-v5", "minatar": "MinAtar/Breakout-v1"}  # a block's id


def _shipped():
    for algo in ALGOS:
        table = yaml.safe_load(resources.files("rllab.hyperparams").joinpath(f"{algo}.yml").read_text())
        for env_id in table:
            yield algo, env_id


@pytest.mark.parametrize("algo,env_id", list(_shipped()))
def test_every_shipped_block_builds_its_algorithm(algo, env_id):
    """Each block builds its algorithm on its environment (a family block on one of its ids, with its preset)."""
    hp = hp_lib.resolve(algo, env_id)
    lab, kwargs = hp_lib.split(hp)
    assert lab["n_timesteps"] > 0 and lab["n_envs"] > 0
    env = FAMILY_IDS.get(env_id, env_id)
    venv = make_vec_env(env, 1, 0, lab.get("env_kwargs") or {}, lab.get("wrappers") or [])
    policy = POLICY_CLASSES["DQNPolicy" if algo == "dqn" else "ActorCriticPolicy"]
    pk = dict(lab.get("policy_kwargs") or {})
    if default_extractor(venv.observation_space) != "flatten":
        pk.setdefault("features_extractor", default_extractor(venv.observation_space))
    if "buffer_size" in kwargs and len(venv.observation_space.shape) == 3:
        kwargs["buffer_size"] = 1000  # the replay memory of 100k Atari frames is 5.6 GB
    ALGOS[algo](policy, venv, policy_kwargs=policy_kwargs_to_sb3(pk), device="cpu", **kwargs)


def test_linear_schedule_and_precedence(tmp_path):
    f = tmp_path / "h.yml"
    f.write_text("learning_rate: lin_0.5\nn_steps: 7\n")
    hp = hp_lib.resolve("ppo", "CartPole-v1", f, ["n_steps=9"])
    assert hp["n_steps"] == 9 and hp["n_epochs"] == 20  # --set > file > shipped
    _, kwargs = hp_lib.split(hp)
    assert kwargs["learning_rate"](1.0) == pytest.approx(0.5) and kwargs["learning_rate"](0.0) == 0.0


def test_bad_values_are_user_errors(tmp_path):
    f = tmp_path / "h.yml"
    f.write_text("learning_rate: [unclosed\n")
    with pytest.raises(RllabError, match="cannot parse"):
        hp_lib.resolve("ppo", "CartPole-v1", f)
    with pytest.raises(RllabError, match="bad schedule"):
        hp_lib.split({"learning_rate": "lin_x"})


def test_a_file_keyed_by_another_env_id_says_so(tmp_path):
    f = tmp_path / "hp.yml"
    f.write_text("Acrobot-v1:\n  gamma: 0.9\nMountainCar-v0:\n  gamma: 0.8\n")
    with pytest.raises(RllabError, match="holds hyperparameters for Acrobot-v1, MountainCar-v0, not CartPole-v1"):
        hp_lib.resolve("ppo", "CartPole-v1", f)
    f.write_text("CartPole-v1:\n  gamma: 0.9\nAcrobot-v1:\n  gamma: 0.8\n")
    assert hp_lib.resolve("ppo", "CartPole-v1", f)["gamma"] == 0.9
    f.write_text("gamma: 0.7\npolicy_kwargs: {net_arch: [8]}\n")  # unkeyed: the settings themselves
    assert hp_lib.resolve("ppo", "CartPole-v1", f)["gamma"] == 0.7
