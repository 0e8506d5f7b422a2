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
