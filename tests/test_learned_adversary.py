"""Learned adversaries (robustness.learned): the attacked environment, PA-AD, training an adversary, ATLA,
and an adversary used on another victim or at another eps."""

import numpy as np
import pytest
import torch

import rllab
from rllab.errors import RllabError
from rllab.units import ThreatUnit
from robustness.learned.attack import LearnedAttack
from robustness.learned.env import AttackedEnv, pa_ad_actor
from robustness.learned.train import train_adversary
from robustness.threat import ThreatModel
from tests.helpers import copy_run


def test_attacked_env_negates_reward_and_keeps_the_budget(cartpole_ppo_path):
    env = AttackedEnv(str(cartpole_ppo_path), eps=0.3, mode="direct")
    obs, _ = env.reset(seed=0)
    seen = env.perturb(obs[None], np.ones((1, 4), dtype=np.float32))[0]
    np.testing.assert_allclose(np.abs(seen - obs), 0.3 * env.scale, rtol=1e-5)
    _, reward, *_ = env.step(env.action_space.sample())
    assert reward == -1.0
    with pytest.raises(RllabError):
        AttackedEnv(str(cartpole_ppo_path), eps=-1)


@pytest.mark.parametrize("mode", ["pa-ad", "direct"])
def test_attacked_vec_env_steps_as_the_copies_would_one_by_one_with_one_victim_call(cartpole_ppo_path, mode):
    """AttackedVecEnv batches the PGD actor and the victim across copies: the same trajectories as a DummyVecEnv
    of the same copies (within float tolerance), with one victim call per step instead of one per copy."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from robustness.learned.env import AttackedVecEnv, load_victim

    victim = load_victim(str(cartpole_ppo_path))
    calls = []
    act = victim.act

    def counting_act(obs, *args, **kwargs):
        calls.append(len(obs))
        return act(obs, *args, **kwargs)

    runs = {}
    for cls in (DummyVecEnv, AttackedVecEnv):
        venv = cls([lambda: AttackedEnv(str(cartpole_ppo_path), eps=0.5, mode=mode, pgd_steps=3) for _ in range(4)])
        venv.seed(7)
        rng = np.random.default_rng(0)
        obs, trace = venv.reset(), []
        calls.clear()
        victim.act = counting_act
        try:
            for _ in range(60):
                actions = rng.integers(0, 2, 4) if mode == "pa-ad" else rng.uniform(-1, 1, (4, 4)).astype(np.float32)
                obs, rewards, dones, _ = venv.step(actions)
                trace.append((obs.copy(), rewards.copy(), dones.copy()))
        finally:
            victim.act = act
        runs[cls.__name__] = (trace, list(calls))
    (plain, plain_calls), (batched, batched_calls) = runs["DummyVecEnv"], runs["AttackedVecEnv"]
    assert plain_calls == [1] * 240 and batched_calls == [4] * 60
    if mode == "pa-ad":  # the actor's targets topple the pole: episodes end (and reset) along the way
        assert sum(d.sum() for _, _, d in plain) > 0
    for (o1, r1, d1), (o2, r2, d2) in zip(plain, batched, strict=True):
        np.testing.assert_allclose(o1, o2, atol=1e-5)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(d1, d2)


def test_attacked_env_ignores_a_batch_result_for_another_action(cartpole_ppo_path):
    env = AttackedEnv(str(cartpole_ppo_path), eps=0.5)
    env.reset(seed=0)
    env._pending = (np.asarray(1), np.asarray(0))  # prepared for adversary action 1 ...
    calls = []
    act = env.victim.act
    env.victim.act = lambda obs, *a, **k: (calls.append(len(obs)), act(obs, *a, **k))[1]
    try:
        env.step(np.asarray(0))  # ... but the copy is stepped with action 0: it computes its own
    finally:
        env.victim.act = act
    assert calls == [1] and env._pending is None


def test_pa_ad_actor_pushes_the_victim_towards_the_target(cartpole_ppo):
    from robustness.certify import visited_states

    obs = visited_states(cartpole_ppo, 1, 0).astype(np.float32)
    clean = cartpole_ppo.act(obs)
    target = 1 - clean  # the other action everywhere
    radius = 0.5 * ThreatUnit.for_agent(cartpole_ppo).scale
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
    # its PPO normalises observations and rewards as the victim's training did: CartPole's did not
    assert not again.normalize_obs
    normed = train_adversary(cartpole_ppo_path, 0.5, steps=256, out=tmp_path / "adv-n", progress=False, normalize=True)
    assert normed.normalize_obs and rllab.load(tmp_path / "adv-n").normalize_obs
    attack = LearnedAttack(again)
    victim = rllab.load(cartpole_ppo_path)
    obs = np.zeros((8, 4), dtype=np.float32)
    out = attack(victim, torch.as_tensor(obs), ThreatModel.for_agent(victim, 0.5)).numpy()
    assert np.all(np.abs(out - obs) <= 0.5 * victim.obs_std + 1e-5)
    with pytest.raises(RllabError, match="not a learned adversary"):
        LearnedAttack(cartpole_ppo_path)


@pytest.mark.slow
def test_learned_adversary_beats_the_cartpole_agent(cartpole_ppo_path, tmp_path):
    adv = train_adversary(cartpole_ppo_path, eps=0.5, steps=30_000, seed=0, out=tmp_path / "adv", progress=False)
    victim = rllab.load(cartpole_ppo_path)
    attack, threat = LearnedAttack(adv), ThreatModel.for_agent(victim, 0.5)
    res = rllab.run_episodes(
        victim, 10, seed=0, act_fn=lambda obs, ctx: victim.act(attack(victim, victim.as_tensor(obs), threat))
    )
    assert np.mean(res.returns) < 100


def test_missing_adversary_checkpoint_fails_before_any_episode(tmp_path):

    with pytest.raises(RllabError, match="no adversary checkpoint"):
        LearnedAttack(adversary=tmp_path / "nope")
    assert LearnedAttack(adv_steps=1000).adv_steps == 1000  # training on first use needs no path


def _atla_cartpole(out, adv_every=100, normalize=False, steps=256, **kwargs):
    """A 256-step ATLA run on CartPole (tiny adversary), for what the run records."""
    overrides = {"n_envs": 2, "n_steps": 128, "batch_size": 128, "n_epochs": 1, "normalize": normalize}
    defense_kwargs = {"eps": 0.3, "steps": 2, "adv_every": adv_every, "adv_steps": 128}
    return rllab.train(
        "ppo", "CartPole-v1", seed=0, steps=steps, out=out, progress=False, overrides=overrides,
        final_eval_episodes=1, eval_freq=0, defense="atla", defense_kwargs=defense_kwargs, **kwargs,
    )  # fmt: skip


def test_atla_uses_the_runs_env_kwargs_and_wrappers(tmp_path):
    wrappers = [{"name": "FrameStackObservation", "kwargs": {"stack_size": 2}}]
    agent = _atla_cartpole(tmp_path / "atla", env_kwargs={"sutton_barto_reward": True}, wrappers=wrappers)
    cfg = agent.spec["training"]["config"]["defense"]
    assert cfg["env"]["kwargs"] == {"sutton_barto_reward": True}
    assert [w["name"] for w in cfg["env"]["wrappers"]] == ["FrameStackObservation"]
    assert cfg["env"]["wrappers"][0]["kwargs"]["stack_size"] == 2
    assert cfg["unit"] == "random-action obs std"
    assert cfg["adversary_normalized"] is False  # the run does not normalise: neither does its adversary


def test_atla_adversary_normalises_where_the_run_does(tmp_path):
    agent = _atla_cartpole(tmp_path / "atla", adv_every=1, normalize=True)  # the adversary trains, normalised
    assert agent.spec["training"]["config"]["defense"]["adversary_normalized"] is True
    from types import SimpleNamespace

    from robustness.learned.atla import AdversarialObservations

    seen = []  # the adversary acts on its own normalisation of the raw states
    fake = SimpleNamespace(
        attacked=SimpleNamespace(eps=1.0, perturb=lambda o, a: o),
        adversary=SimpleNamespace(predict=lambda o, deterministic: (seen.append(o), None)),
        adversary_norm=SimpleNamespace(normalize_obs=lambda o: (o - 1.0) / 2.0),
    )
    out = AdversarialObservations.perturb(fake, np.full((1, 4), 5.0, np.float32))
    np.testing.assert_array_equal(seen[0], np.full((1, 4), 2.0))
    np.testing.assert_array_equal(out, np.full((1, 4), 5.0))  # the perturbation is of the raw state


def _resume_meta(run):
    import json

    (state,) = (run / "resume").glob("state.*.json")
    return json.loads(state.read_text())


def test_atla_resume_continues_the_adversary_and_its_cadence(tmp_path, capsys):
    run = tmp_path / "atla"
    _atla_cartpole(run, adv_every=1, normalize=True)  # 1 victim update, then 1 adversary rollout (4 x 128)
    first = _resume_meta(run)["defense"]
    assert (first["num_timesteps"], first["victim_updates"]) == (512, 1)
    assert len(first["obs_rms"]["mean"]) == 4 and first["ret_rms"]["count"] > 1
    assert (run / "resume" / "defense.256.safetensors").is_file()
    agent = _atla_cartpole(run, adv_every=1, normalize=True, resume=True, steps=512)
    assert agent.spec["training"]["config"]["defense"]["adv_every"] == 1  # the recorded cadence, kept
    second = _resume_meta(run)["defense"]
    # the adversary went on from 512 steps (a fresh one would stand at 512 again); the old files are gone
    assert (second["num_timesteps"], second["victim_updates"]) == (1024, 2)
    assert sorted(p.name for p in (run / "resume").iterdir()) == [
        "defense.512.safetensors", "optimizer.512.safetensors", "state.512.json"
    ]  # fmt: skip
    assert "starts afresh" not in capsys.readouterr().err
    saved = (run / "resume" / "defense.512.safetensors").read_bytes()
    (run / "resume" / "defense.512.safetensors").write_bytes(saved[:100])  # truncated: one line, the run kept
    with pytest.raises(RllabError, match="defense.512.safetensors unreadable"):
        _atla_cartpole(run, adv_every=1, normalize=True, resume=True, steps=768)
    assert (run / "agent.json").is_file() and (run / "resume" / "state.512.json").is_file()
    (run / "resume" / "defense.512.safetensors").unlink()  # as a run saved by an older rllab
    _atla_cartpole(run, adv_every=1, normalize=True, resume=True, steps=768)
    assert "holds no state of the defense's own model at step 512" in capsys.readouterr().err
    assert _resume_meta(run)["defense"]["num_timesteps"] == 512  # a fresh adversary, one rollout in


def test_atla_adversary_state_round_trips_and_refuses_what_does_not_fit(tmp_path):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from robustness.learned.atla import AdversaryState

    def state(seed, norm=True):
        venv = make_vec_env("CartPole-v1", n_envs=2, seed=seed)
        env = VecNormalize(venv) if norm else venv
        ppo = PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=seed, device="cpu")
        return AdversaryState(ppo, env if norm else None, {"n": 0})

    trained = state(0)
    trained.adversary.learn(128)
    trained.updates["n"] = 3
    tensors, meta = trained.state()
    fresh = state(1)
    fresh.load_state(tensors, meta)
    for a, b in zip(
        trained.adversary.policy.state_dict().values(), fresh.adversary.policy.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    np.testing.assert_array_equal(*(s.adversary.predict(obs, deterministic=True)[0] for s in (fresh, trained)))
    np.testing.assert_array_equal(fresh.norm.obs_rms.mean, trained.norm.obs_rms.mean)
    assert fresh.norm.ret_rms.count == trained.norm.ret_rms.count
    assert (fresh.adversary.num_timesteps, fresh.updates["n"]) == (128, 3)
    opt = fresh.adversary.policy.optimizer.state_dict()["state"]
    assert opt and all(torch.isfinite(v["exp_avg"]).all() for v in opt.values())  # Adam's moments came along
    with pytest.raises(RllabError, match="victim_updates"):
        fresh.load_state(tensors, {**meta, "victim_updates": -1})
    with pytest.raises(RllabError, match="other normalisation"):
        state(2, norm=False).load_state(tensors, meta)
    bad = {**tensors, "policy.action_net.weight": torch.full_like(tensors["policy.action_net.weight"], float("nan"))}
    with pytest.raises(RllabError, match="not finite"):
        fresh.load_state(bad, meta)
    with pytest.raises(RllabError, match="does not fit"):
        fresh.load_state({k: v for k, v in tensors.items() if k != "policy.action_net.bias"}, meta)


def test_atla_rounds_perturbed_uint8_pixels():
    from types import SimpleNamespace

    from robustness.learned.atla import AdversarialObservations

    obs = np.array([[10, 200, 0, 255]], dtype=np.uint8)
    fake = SimpleNamespace(
        attacked=SimpleNamespace(eps=1.0, perturb=lambda o, a: o + np.array([0.7, -0.6, -3.0, 4.0], np.float32)),
        adversary=SimpleNamespace(predict=lambda o, deterministic: (None, None)),
        adversary_norm=None,
    )
    out = AdversarialObservations.perturb(fake, obs)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[11, 199, 0, 255]])


# ----------------------------------------------- an adversary used on another victim or at another eps
def _fake_adversary(victim_path, out, eps=0.5, record=True):
    """A CartPole PPO checkpoint relabelled as a PA-AD adversary of ``victim_path`` (same spaces as a real one)."""
    import json
    import shutil

    out.mkdir(parents=True)
    for name in ("agent.json", "weights.safetensors"):
        shutil.copy(victim_path / name, out / name)
    spec = json.loads((out / "agent.json").read_text())
    kwargs = {"victim": str(victim_path.resolve()), "eps": eps, "mode": "pa-ad"}
    if record:
        kwargs["victim_spec"] = {
            "env": "CartPole-v1",
            "observation_shape": [4],
            "action_space": {"type": "Discrete", "n": 2},
        }
    spec["env"] = {"id": "rllab/Attacked-v0", "kwargs": kwargs, "wrappers": []}
    (out / "agent.json").write_text(json.dumps(spec))
    return out


@pytest.mark.parametrize("record", [True, False])
def test_an_adversary_for_another_victim_kind_is_refused_in_one_line(
    cartpole_ppo_path, catch_ppo_path, tmp_path, capsys, record
):
    from rllab.cli import main

    adv = _fake_adversary(cartpole_ppo_path, tmp_path / "adv", record=record)
    out = tmp_path / "att"
    argv = ["attack", str(catch_ppo_path), "--attack", "learned", "--adversary", str(adv), "--eps", "0.5"]
    assert main([*argv, "--episodes", "1", "--n-envs", "1", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained against a CartPole-v1 (observations of shape (4,), 2 actions) victim" in err[0]
    assert "this agent is a Catch-v0" in err[0] and not out.exists()


def test_an_adversary_used_at_another_eps_or_on_another_agent_warns(cartpole_ppo_path, tmp_path, capsys):
    from robustness.evaluate import build_attack, evaluate

    adv = _fake_adversary(cartpole_ppo_path, tmp_path / "adv", eps=0.5)
    # the same agent at its training eps: no warning
    attack = build_attack("learned", adversary=str(adv))
    evaluate(rllab.load(cartpole_ppo_path), attacks=[attack], eps=[0.5], episodes=1, n_envs=1, progress=False)
    assert "warning" not in capsys.readouterr().err
    # a copy of the victim (another CartPole agent) at two eps, one of them not the training one
    other = copy_run(cartpole_ppo_path, tmp_path / "other")
    attack = build_attack("learned", adversary=str(adv))
    card = evaluate(rllab.load(other), attacks=[attack], eps=[0.1, 0.5], episodes=1, n_envs=1, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("warning: ") for line in err)
    assert (
        "trained against another CartPole-v1 agent" in err[0]
        and "trained at eps 0.5; it is used here at eps 0.1" in err[1]
    )
    settings = card["attacks"]["learned"]
    assert settings["adversary_trained_for"]["eps"] == 0.5 and len(settings["warnings"]) == 2


def test_adv_seeds_attacks_with_the_strongest_adversary_by_its_own_evaluation(cartpole_ppo_path, tmp_path, capsys):
    import json

    from rllab.cli import main
    from robustness.evaluate import build_attack, evaluate

    victim = copy_run(cartpole_ppo_path, tmp_path / "victim")
    # three cached adversaries of training seeds 0, 1, 2 (as the attack names them); their closing evaluations
    # left the victim 120, 35 and 80: seed 1 is the strongest
    for seed, victim_return in [(0, 120.0), (1, 35.0), (2, 80.0)]:
        adv = _fake_adversary(victim, victim / "adversaries" / f"learned-eps0.3-s{seed}-64steps", eps=0.3)
        spec = json.loads((adv / "agent.json").read_text())
        spec["training"]["final_eval"]["mean_return"] = -victim_return  # the adversary's return: minus the victim's
        (adv / "agent.json").write_text(json.dumps(spec))
    attack = build_attack("learned", adv_steps=64, adv_seeds=3)
    card = evaluate(rllab.load(victim), attacks=[attack], eps=[0.3], episodes=1, n_envs=1, progress=False)
    settings = card["attacks"]["learned"]
    picked = str(victim / "adversaries" / "learned-eps0.3-s1-64steps")
    assert settings["trained_adversaries"] == {"0.3": picked} and settings["adv_seeds"] == 3
    assert settings["adversary_selection"]["0.3"]["picked"] == picked
    assert sorted(settings["adversary_selection"]["0.3"]["victim_return"].values()) == [35.0, 80.0, 120.0]
    one = build_attack("learned", adv_steps=64)  # one seed: the adversary of the evaluation's seed, no selection
    card = evaluate(rllab.load(victim), attacks=[one], eps=[0.3], episodes=1, n_envs=1, progress=False)
    assert card["attacks"]["learned"]["trained_adversaries"]["0.3"].endswith("learned-eps0.3-s0-64steps")
    assert "adversary_selection" not in card["attacks"]["learned"]
    argv = ["attack", str(victim), "--attack", "learned", "--eps", "0.3", "--episodes", "1", "--no-progress"]
    assert main([*argv, "--adv-seeds", "2", "--adversary", picked, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # (out-of-range values: tests/test_cli_values.py)
    assert len(err) == 1 and "--adv-seeds applies to adversaries the attack trains itself" in err[0]
    assert not (tmp_path / "x").exists()
