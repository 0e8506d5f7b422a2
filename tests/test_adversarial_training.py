import numpy as np
import pytest
import torch

import rllab
from rllab.cli import main
from robustness.adversarial_training import _dist, _kl, kl_pgd, kl_upper_bound


def _box(agent):
    space = agent.policy.observation_space
    return (
        torch.as_tensor(np.maximum(space.low, -1e6), dtype=torch.float32),
        torch.as_tensor(np.minimum(space.high, 1e6), dtype=torch.float32),
    )


def test_kl_pgd_stays_in_the_box_and_beats_random_start(cartpole_ppo):
    policy = cartpole_ppo.policy
    rng = np.random.default_rng(0)
    obs = torch.as_tensor(rng.normal(size=(64, 4)) * cartpole_ppo.obs_std, dtype=torch.float32)
    radius = 0.3 * torch.as_tensor(cartpole_ppo.obs_std)
    low, high = _box(cartpole_ppo)
    adv = kl_pgd(policy, obs, radius, low, high, steps=10, generator=torch.Generator().manual_seed(0))
    assert torch.all((adv - obs).abs() <= radius + 1e-6)
    with torch.no_grad():
        clean = _dist(policy, obs)
        kl_adv = _kl(clean, _dist(policy, adv)).mean()
        rand = obs + (torch.rand(obs.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1) * radius
        kl_rand = _kl(clean, _dist(policy, rand)).mean()
    assert kl_adv > 3 * kl_rand


def test_regulariser_is_zero_at_eps_zero(cartpole_ppo):
    policy = cartpole_ppo.policy
    obs = torch.zeros(8, 4)
    low, high = _box(cartpole_ppo)
    adv = kl_pgd(policy, obs, torch.zeros(4), low, high, steps=5)
    with torch.no_grad():
        assert _kl(_dist(policy, obs), _dist(policy, adv)).abs().max() == 0


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_ibp_kl_bound_is_sound_zero_at_eps_zero_and_differentiable(env):
    from stable_baselines3 import PPO

    torch.manual_seed(0)
    policy = PPO("MlpPolicy", env, seed=0, device="cpu").policy
    obs = torch.randn(32, *policy.observation_space.shape)
    low, high = torch.full_like(obs[0], -1e6), torch.full_like(obs[0], 1e6)
    radius = torch.full_like(obs[0], 0.3)
    assert kl_upper_bound(policy, obs, radius * 0, low, high).abs().max() < 1e-6
    bound = kl_upper_bound(policy, obs, radius, low, high)
    assert torch.all(bound > 0)
    gen = torch.Generator().manual_seed(0)
    worst = torch.zeros(len(obs))
    with torch.no_grad():
        clean = _dist(policy, obs)
        for _ in range(1000 // 50):
            noise = (torch.rand((50, *obs.shape), generator=gen) * 2 - 1) * radius
            kls = torch.stack([_kl(clean, _dist(policy, obs + n)) for n in noise])
            worst = torch.maximum(worst, kls.max(0).values)
    adv = kl_pgd(policy, obs, radius, low, high, steps=20, generator=gen)
    with torch.no_grad():
        worst = torch.maximum(worst, _kl(clean, _dist(policy, adv)))
    assert torch.all(worst <= bound + 1e-6), "the IBP bound must contain every perturbation's KL"
    bound.sum().backward()
    assert policy.action_net.weight.grad is not None and policy.action_net.weight.grad.abs().sum() > 0


def test_ibp_solver_trains_and_is_recorded(tmp_path, capsys):
    common = dict(algo="ppo", env="CartPole-v1", seed=0, steps=1024, progress=False, final_eval_episodes=2, eval_freq=0)
    plain = rllab.train(out=tmp_path / "plain", **common)
    ibp = rllab.train(
        out=tmp_path / "ibp",
        defense="sa-reg",
        defense_kwargs={"eps": 0.5, "coef": 1.0, "ramp": 0.0, "solver": "ibp"},
        **common,
    )
    assert not all(
        torch.equal(a, b) for a, b in zip(plain.state_dict().values(), ibp.state_dict().values(), strict=True)
    )
    cfg = ibp.spec["training"]["config"]["defense"]
    assert cfg["solver"] == "ibp" and cfg["pgd_steps"] == 0
    args = ["train", "--algo", "ppo", "--env", "CartPole-v1", "--steps", "256", "--defense", "adv-obs"]
    assert main([*args, "--defense-solver", "ibp", "--out", str(tmp_path / "x")]) == 2
    assert "--defense-solver does not apply to --defense adv-obs" in capsys.readouterr().err
    assert not (tmp_path / "x" / "agent.json").exists()


@pytest.mark.parametrize("defense", ["sa-reg", "adv-obs"])
def test_training_defense_changes_the_update_and_is_recorded(tmp_path, defense):
    common = dict(algo="ppo", env="CartPole-v1", seed=0, steps=1024, progress=False, final_eval_episodes=2, eval_freq=0)
    plain = rllab.train(out=tmp_path / "plain", **common)
    zero = rllab.train(out=tmp_path / "zero", defense=defense, defense_kwargs={"eps": 0.0}, **common)
    defended = rllab.train(
        out=tmp_path / "def",
        defense=defense,
        defense_kwargs={"eps": 0.5, "coef": 1.0, "steps": 3, "ramp": 0.0},
        **common,
    )
    same = [torch.equal(a, b) for a, b in zip(plain.state_dict().values(), zero.state_dict().values(), strict=True)]
    assert all(same), "eps = 0 must leave training exactly as without the defense"
    assert not all(
        torch.equal(a, b) for a, b in zip(plain.state_dict().values(), defended.state_dict().values(), strict=True)
    )
    cfg = defended.spec["training"]["config"]["defense"]
    assert cfg["name"] == defense and cfg["eps"] == 0.5
    assert defended.spec["lineage"][0]["transform"] == f"adversarial-training:{defense}"


def test_defense_errors(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--algo",
                "dqn",
                "--env",
                "CartPole-v1",
                "--steps",
                "256",
                "--defense",
                "sa-reg",
                "--out",
                str(tmp_path / "d"),
            ]
        )
        == 2
    )
    assert "on-policy" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--algo",
                "ppo",
                "--env",
                "CartPole-v1",
                "--steps",
                "256",
                "--defense",
                "magic",
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 2
    )
    assert "unknown training defense 'magic'" in capsys.readouterr().err


def test_atla_alternates_victim_and_adversary(tmp_path):
    from robustness.learned import atla

    seen = []
    original = atla.AdversarialObservations.perturb

    def spy(self, obs):
        out = original(self, obs)
        seen.append(np.abs(out - obs).max())
        return out

    atla.AdversarialObservations.perturb = spy
    try:
        agent = rllab.train(
            "ppo",
            "CartPole-v1",
            seed=0,
            steps=2048,
            out=tmp_path / "atla",
            progress=False,
            final_eval_episodes=2,
            eval_freq=0,
            defense="atla",
            defense_kwargs={"eps": 0.3, "steps": 3, "adv_every": 2, "adv_steps": 256},
        )
    finally:
        atla.AdversarialObservations.perturb = original
    cfg = agent.spec["training"]["config"]["defense"]
    assert cfg["name"] == "atla" and cfg["adv_every"] == 2
    assert max(seen) > 0  # the victim's rollouts really saw perturbed observations
    assert agent.spec["lineage"][0]["transform"] == "adversarial-training:atla"


def test_train_cli_takes_atla_cadence_and_refuses_settings_a_defense_does_not_use(tmp_path, capsys):
    base = ["train", "--algo", "ppo", "--env", "CartPole-v1", "--steps", "256", "--no-progress", "--set", "n_steps=64"]
    for extra, message in [
        (["--defense", "sa-reg", "--defense-adv-every", "1"], "--defense-adv-every does not apply to --defense sa-reg"),
        (["--defense", "atla", "--defense-coef", "1", "--defense-ramp", "0"], "--defense-coef, --defense-ramp do not"),
        (["--defense-adv-steps", "64"], "--defense-adv-steps only applies with --defense"),
    ]:
        assert main([*base, *extra, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
        assert not (tmp_path / "x").exists()
    atla = ["--defense", "atla", "--eps", "0.2", "--defense-steps", "2", "--defense-adv-every", "1"]
    assert main([*base, *atla, "--defense-adv-steps", "64", "--out", str(tmp_path / "a"), "--eval-episodes", "1"]) == 0
    cfg = rllab.load(tmp_path / "a").spec["training"]["config"]["defense"]
    assert (cfg["adv_every"], cfg["adv_steps"], cfg["pgd_steps"], cfg["eps"]) == (1, 64, 2, 0.2)
    assert "coef" not in cfg and "ramp" not in cfg  # atla uses neither: nothing recorded that did not act


def test_atla_under_observation_normalisation_perturbs_raw_observations(tmp_path, monkeypatch):
    """MuJoCo's shipped defaults normalise observations: the adversary perturbs the raw ones (the run's
    normalisation comes after, as for the agent at evaluation) and attacks the victim as it normalises then."""
    from robustness.learned import atla

    victims, seen = [], []
    attacked_env = atla.AttackedEnv
    original = atla.AdversarialObservations.perturb

    envs = []

    def capture(victim, *args, **kwargs):
        victims.append(victim)
        envs.append(attacked_env(victim, *args, **kwargs))
        return envs[-1]

    def spy(self, obs):
        out = original(self, obs)
        seen.append((obs.copy(), out, self.attacked.unit.scale.copy()))  # the unit of that moment
        return out

    monkeypatch.setattr(atla, "AttackedEnv", capture)
    monkeypatch.setattr(atla.AdversarialObservations, "perturb", spy)
    agent = rllab.train(
        "ppo",
        "CartPole-v1",
        seed=0,
        steps=2048,
        out=tmp_path / "atla-norm",
        progress=False,
        final_eval_episodes=2,
        eval_freq=1024,  # the evaluation callback syncs VecNormalize statistics along the wrapper chain
        eval_episodes=1,
        overrides={"normalize": True},
        defense="atla",
        defense_kwargs={"eps": 0.3, "steps": 3, "adv_every": 1, "adv_steps": 128},
    )
    assert agent.normalize_obs and victims and victims[0].normalize_obs
    # raw observations in, perturbed within eps x the run's running std (SA-PPO's normalised-state unit), which
    # followed the statistics as they moved: at the end it is the saved agent's normalisation std
    assert agent.spec["training"]["config"]["defense"]["unit"] == "running obs std"
    for obs, out, scale in seen:
        assert float(np.max(np.abs(out - obs) / scale)) <= 0.3 + 1e-4
    obs, out, scale = seen[-1]
    assert float(np.max(np.abs(out - obs) / scale)) > 0.2  # the budget is used, in that unit
    assert not np.allclose(seen[0][2], scale)  # the unit moved with the statistics ...
    final = victims[0].norm_var.numpy().reshape(-1)  # ... and at the end is the saved agent's normalisation std
    np.testing.assert_allclose(np.sqrt(final), np.sqrt(agent.norm_var.numpy()).reshape(-1), rtol=1e-5)
    np.testing.assert_allclose(envs[0].scale, np.sqrt(final), rtol=1e-5)
    # the last adversary phase came after the last update: the victim normalised exactly as the saved agent does
    assert torch.allclose(victims[0].norm_mean, agent.norm_mean) and torch.allclose(victims[0].norm_var, agent.norm_var)


@pytest.mark.parametrize("mode", ["adv-obs", "sa-reg"])
def test_perturbations_stay_within_eps_under_observation_normalisation(tmp_path, monkeypatch, mode):
    """With VecNormalize the policy sees normalised observations: box and radius must be in those units."""
    import robustness.adversarial_training as at

    calls = []
    original = at.kl_pgd

    def spy(policy, obs, radius, low, high, steps, generator=None):
        out = original(policy, obs, radius, low, high, steps, generator)
        calls.append((float(((out - obs).abs() - radius).max()), radius.clone(), low.clone(), high.clone()))
        return out

    monkeypatch.setattr(at, "kl_pgd", spy)
    rllab.train(
        "ppo",
        "Acrobot-v1",
        seed=0,
        steps=512,
        out=tmp_path / "acro",
        progress=False,
        overrides={"n_envs": 2, "n_steps": 256, "batch_size": 256, "n_epochs": 1, "normalize": True},
        defense=mode,
        defense_kwargs={"eps": 0.1, "ramp": 0.0, "steps": 2, "coef": 0.1},
        final_eval_episodes=1,
        eval_freq=0,
    )
    assert calls
    for excess, radius, low, high in calls:
        assert excess <= 1e-5, "a perturbation left the eps ball"
        # eps is in multiples of the raw std; normalised by that running std, one unit is about 1
        assert torch.allclose(radius, torch.full_like(radius, 0.1), rtol=1e-3)
        assert torch.all(low >= -10) and torch.all(high <= 10)  # VecNormalize's clip box
