import numpy as np
import pytest

import rllab
from rllab.errors import RllabError
from robustness.learned_adversary import AttackedEnv, LearnedAttack, pa_ad_actor, perturbation_scale, train_adversary


def test_attacked_env_negates_reward_and_keeps_the_budget(cartpole_ppo_path):
    env = AttackedEnv(str(cartpole_ppo_path), eps=0.3, mode="direct")
    obs, _ = env.reset(seed=0)
    seen = env.perturb(obs[None], np.ones((1, 4), dtype=np.float32))[0]
    np.testing.assert_allclose(np.abs(seen - obs), 0.3 * env.scale, rtol=1e-5)
    _, reward, *_ = env.step(env.action_space.sample())
    assert reward == -1.0
    with pytest.raises(RllabError):
        AttackedEnv(str(cartpole_ppo_path), eps=-1)


def test_pa_ad_actor_pushes_the_victim_towards_the_target(cartpole_ppo):
    from robustness.certify import visited_states

    obs = visited_states(cartpole_ppo, 1, 0).astype(np.float32)
    clean = cartpole_ppo.act(obs)
    target = 1 - clean  # the other action everywhere
    radius = 0.5 * perturbation_scale(cartpole_ppo)
    low = np.asarray(cartpole_ppo.observation_space.low)
    high = np.asarray(cartpole_ppo.observation_space.high)
    adv = pa_ad_actor(cartpole_ppo, obs, target, radius, low, high, steps=10)
    assert np.all(np.abs(adv - obs) <= radius + 1e-5)
    flipped = (cartpole_ppo.act(adv) == target).mean()
    assert flipped > 0.4, flipped  # a targeted push flips the action on many visited states at 0.5 std


def test_learned_adversary_is_a_checkpoint_and_attacks_within_budget(cartpole_ppo_path, tmp_path):
    adv = train_adversary(cartpole_ppo_path, eps=0.5, steps=2048, seed=0, out=tmp_path / "adv", progress=False)
    assert adv.env_id == "rllab/Attacked-v0" and adv.spec["env"]["kwargs"]["eps"] == 0.5
    # it records what it was trained for, so that a mismatched victim is refused before any episode
    assert adv.spec["env"]["kwargs"]["victim_spec"] == {
        "env": "CartPole-v1",
        "observation_shape": [4],
        "action_space": {"type": "Discrete", "n": 2},
    }
    again = rllab.load(tmp_path / "adv")  # loads like any agent
    attack = LearnedAttack(again)
    victim = rllab.load(cartpole_ppo_path)
    obs = np.zeros((8, 4), dtype=np.float32)
    out = attack(victim, obs)
    assert np.all(np.abs(out - obs) <= 0.5 * victim.obs_std + 1e-5)
    with pytest.raises(RllabError, match="not a learned adversary"):
        LearnedAttack(cartpole_ppo_path)


@pytest.mark.slow
def test_learned_adversary_beats_the_cartpole_agent(cartpole_ppo_path, tmp_path):
    adv = train_adversary(cartpole_ppo_path, eps=0.5, steps=30_000, seed=0, out=tmp_path / "adv", progress=False)
    victim = rllab.load(cartpole_ppo_path)
    attack = LearnedAttack(adv)
    res = rllab.run_episodes(victim, 10, seed=0, act_fn=lambda obs, ctx: victim.act(attack(victim, obs)))
    assert np.mean(res.returns) < 100


def test_missing_adversary_checkpoint_fails_before_any_episode(tmp_path):
    from robustness.learned_adversary import LearnedAttackAdapter

    with pytest.raises(RllabError, match="no adversary checkpoint"):
        LearnedAttackAdapter(adversary=tmp_path / "nope")
    assert LearnedAttackAdapter(adv_steps=1000).adv_steps == 1000  # training on first use needs no path


def test_atla_uses_the_runs_env_kwargs_and_wrappers(tmp_path):
    wrappers = [{"name": "FrameStackObservation", "kwargs": {"stack_size": 2}}]
    agent = rllab.train(
        "ppo",
        "CartPole-v1",
        seed=0,
        steps=256,
        out=tmp_path / "atla",
        progress=False,
        env_kwargs={"sutton_barto_reward": True},
        wrappers=wrappers,
        overrides={"n_envs": 2, "n_steps": 128, "batch_size": 128, "n_epochs": 1},
        final_eval_episodes=1,
        eval_freq=0,
        defense="atla",
        defense_kwargs={"eps": 0.3, "steps": 2, "adv_every": 100, "adv_steps": 128},
    )
    cfg = agent.spec["training"]["config"]["defense"]
    assert cfg["env"]["kwargs"] == {"sutton_barto_reward": True}
    assert [w["name"] for w in cfg["env"]["wrappers"]] == ["FrameStackObservation"]
    assert cfg["env"]["wrappers"][0]["kwargs"]["stack_size"] == 2
    assert cfg["unit"] == "random-action obs std"


def test_atla_rounds_perturbed_uint8_pixels():
    from types import SimpleNamespace

    from robustness.learned_adversary import AdversarialObservations

    obs = np.array([[10, 200, 0, 255]], dtype=np.uint8)
    fake = SimpleNamespace(
        attacked=SimpleNamespace(eps=1.0, perturb=lambda o, a: o + np.array([0.7, -0.6, -3.0, 4.0], np.float32)),
        adversary=SimpleNamespace(predict=lambda o, deterministic: (None, None)),
    )
    out = AdversarialObservations.perturb(fake, obs)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[11, 199, 0, 255]])
