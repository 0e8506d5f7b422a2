"""Certification (robustness.certify, rllab certify): IBP bounds are sound, randomised smoothing follows Cohen et
al.'s formula, and the command's settings and outputs."""

import numpy as np
import pytest
import torch
from scipy import stats

import rllab
from rllab.cli import main
from rllab.errors import RllabError
from rllab.units import ThreatUnit
from robustness.certify import action_score_bounds, certify_ibp, certify_smoothing, visited_states


@pytest.fixture(scope="module")
def tiny_agents(tmp_path_factory):
    root = tmp_path_factory.mktemp("cert")
    out = {}
    for name, env, arch in [("mlp", "CartPole-v1", "[16, 16]"), ("cnn", "Catch-v0", None)]:
        over = [f"policy_kwargs={{net_arch: {arch}}}"] if arch else None
        rllab.train(
            "ppo", env, seed=0, steps=2048, out=root / name, progress=False, overrides=over, final_eval_episodes=2
        )
        out[name] = rllab.load(root / name)
        out[f"{name}_path"] = root / name
    return out


def _box_samples(agent, obs, eps, k, gen):
    delta = eps * torch.as_tensor(ThreatUnit.for_agent(agent).scale)
    space = agent.observation_space
    low = torch.as_tensor(space.low, dtype=torch.float32)
    high = torch.as_tensor(space.high, dtype=torch.float32)
    u = torch.rand((k, *obs.shape), generator=gen) * 2 - 1
    u[: k // 4] = u[: k // 4].sign()  # box corners too
    return torch.maximum(torch.minimum(obs + u * delta, high), low)


@pytest.mark.parametrize("name,eps", [("mlp", 0.1), ("mlp", 0.5), ("cnn", 4 / 255), ("cnn", 32 / 255)])
def test_bounds_contain_the_outputs_of_1000_random_perturbations(tiny_agents, name, eps):
    agent = tiny_agents[name]
    states = torch.as_tensor(visited_states(agent, 1, 0)[:8], dtype=torch.float32)
    _, lo, hi = action_score_bounds(agent, states, eps)
    gen = torch.Generator().manual_seed(0)
    for i, s in enumerate(states):
        z = agent.logits(_box_samples(agent, s, eps, 1000, gen)).detach()
        assert torch.all(z >= lo[i] - 1e-4) and torch.all(z <= hi[i] + 1e-4)


def _pgd_flip(agent, obs, action, eps, steps=50):
    """A strong local attack on the margin: does anything inside the box change the action?"""
    delta = eps * torch.as_tensor(ThreatUnit.for_agent(agent).scale)
    low = torch.as_tensor(agent.observation_space.low, dtype=torch.float32)
    high = torch.as_tensor(agent.observation_space.high, dtype=torch.float32)
    x = obs.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        z = agent.logits(x)
        other = z.clone()
        other[torch.arange(len(action)), action] = -torch.inf
        margin = z[torch.arange(len(action)), action] - other.max(-1).values
        (grad,) = torch.autograd.grad(margin.sum(), x)
        with torch.no_grad():
            x = x - 0.1 * delta * grad.sign()
            x = torch.maximum(torch.minimum(x, obs + delta), obs - delta).clamp(low, high)
    return agent.logits(x).argmax(-1) != action


@pytest.mark.parametrize("name,eps", [("mlp", 0.05), ("mlp", 0.2), ("cnn", 1 / 255)])
def test_no_attack_flips_a_certified_action(tiny_agents, name, eps):
    agent = tiny_agents[name]
    states = torch.as_tensor(visited_states(agent, 2, 1), dtype=torch.float32)
    res = certify_ibp(agent, states, eps)
    cert = res["certified"]
    flipped = _pgd_flip(agent, states, res["action"], eps)
    assert not torch.any(flipped & cert)
    # the check is not vacuous: at 4x the budget the attack flips some states
    assert _pgd_flip(agent, states, res["action"], 4 * eps if name == "mlp" else 64 / 255).any()


def test_certified_fraction_falls_with_eps_and_is_one_at_zero(tiny_agents):
    agent = tiny_agents["mlp"]
    states = visited_states(agent, 2, 0)
    fracs = [float(certify_ibp(agent, states, e)["certified"].float().mean()) for e in (0.0, 0.05, 0.2, 1.0)]
    assert fracs[0] == 1.0 and fracs == sorted(fracs, reverse=True)


def test_smoothing_certificate_matches_cohen_formula(tiny_agents):
    agent = tiny_agents["mlp"]
    states = visited_states(agent, 1, 0)[:4]
    torch.manual_seed(0)
    tiny_sigma = certify_smoothing(agent, states, sigma=1e-6, n0=16, n=200, alpha=0.01)
    # with negligible noise every draw agrees: p_lower = alpha ** (1/n), radius = sigma * Phi^-1(p_lower)
    p = 0.01 ** (1 / 200)
    np.testing.assert_allclose(tiny_sigma["p_lower"].numpy(), p, rtol=1e-6)
    np.testing.assert_allclose(tiny_sigma["radius"].numpy(), 1e-6 * stats.norm.ppf(p), rtol=1e-5)
    np.testing.assert_array_equal(tiny_sigma["action"].numpy(), agent.act(states))
    huge = certify_smoothing(agent, states, sigma=100.0, n0=16, n=200, alpha=0.01)
    assert huge["radius"].numpy().max() <= 100.0 * stats.norm.ppf(p) + 1e-6


def test_certify_command_and_errors(tiny_agents, tmp_path, capsys):
    mlp = tiny_agents["mlp_path"]
    path = tmp_path / "c.json"
    assert main(["certify", str(mlp), "--eps", "0.05,0.1", "--episodes", "1", "--json", str(path)]) == 0
    assert "certified" in capsys.readouterr().out
    rows = __import__("json").loads(path.read_text())["rows"]
    assert [r["eps"] for r in rows] == [0.05, 0.1]
    assert main(["certify", str(mlp), "--eps", "-0.1"]) == 2
    assert "eps must be a finite number >= 0" in capsys.readouterr().err
    pend = rllab.train(
        "ppo", "Pendulum-v1", seed=0, steps=256, out=tmp_path / "p", progress=False, final_eval_episodes=1
    )
    with pytest.raises(RllabError, match="discrete"):
        certify_ibp(pend, np.zeros((1, 3), dtype=np.float32), 0.1)


def _purified(agent):
    """``agent`` with an MLP purifier in front, scaled up so that it visibly changes observations."""
    import copy

    from rllab.agent import Agent

    spec = copy.deepcopy(agent.spec)
    spec["preprocessing"]["purifier"] = {"kind": "mlp", "hidden": [32], "center": [0.0] * 4, "scale": [1.0] * 4}
    torch.manual_seed(0)
    purified = Agent(spec, agent.policy)
    with torch.no_grad():
        for p in purified.purifier.parameters():
            p.mul_(5)
    return purified.eval()


def test_ibp_through_a_purifier_is_sound(cartpole_ppo):
    from rllab.units import ThreatUnit
    from robustness.certify import action_score_bounds, certify_ibp, visited_states

    agent, eps = _purified(cartpole_ppo), 0.2
    states = torch.as_tensor(visited_states(cartpole_ppo, 1, 0)[:16], dtype=torch.float32)
    _, lo, hi = action_score_bounds(agent, states, eps)
    res = certify_ibp(agent, states, eps)
    assert 0 < int(res["certified"].sum()) < len(states)
    delta = eps * torch.as_tensor(ThreatUnit.for_agent(agent).scale)
    gen = torch.Generator().manual_seed(0)
    for i, s in enumerate(states):
        u = torch.rand((1000, 4), generator=gen) * 2 - 1
        u[:250] = u[:250].sign()  # corners of the box too
        with torch.no_grad():
            z = agent.logits(s + u * delta)  # CartPole's bounds are far away: no clipping needed
        assert torch.all(z >= lo[i] - 1e-4) and torch.all(z <= hi[i] + 1e-4)
        if res["certified"][i]:
            assert torch.all(z.argmax(-1) == res["action"][i])


# --------------------------------------------------------------------------------- the certify command
def test_certify_cli_smoothing_sigma_defaults_to_the_agents_own(cartpole_ppo_path, tmp_path):
    import json

    from rllab.cli import main
    from rllab.cli.defend import defend_checkpoint

    defend_checkpoint(cartpole_ppo_path, tmp_path / "sm", smoothing={"sigma": 0.4, "n": 4, "mode": "vote"})
    args = ["certify", str(tmp_path / "sm"), "--method", "smoothing", "--eps", "0.1", "--episodes", "1"]
    assert main([*args, "--samples", "50", "--json", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["settings"]["sigma"] == 0.4
    assert main([*args, "--samples", "50", "--sigma", "0.2", "--json", str(tmp_path / "d.json")]) == 0
    assert json.loads((tmp_path / "d.json").read_text())["settings"]["sigma"] == 0.2
    assert main(["certify", str(tmp_path / "sm"), "--eps", "0.1", "--episodes", "1"]) == 2  # IBP: refused


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--alpha", "2"], "0 < alpha < 1, got 2"),
        (["--alpha", "0"], "0 < alpha < 1, got 0"),
        (["--samples", "0"], "--samples must be >= 1, got 0"),
        (["--sigma", "0"], "--sigma must be > 0, got 0"),
        (["--sigma", "-1"], "--sigma must be > 0, got -1"),
    ],
)
def test_certify_smoothing_refuses_bad_settings_in_one_line(cartpole_ppo_path, tmp_path, capsys, extra, message):
    from rllab.cli import main
    from robustness.certify import certify_smoothing

    out = tmp_path / "cert.json"
    argv = ["certify", str(cartpole_ppo_path), "--method", "smoothing", "--eps", "0.1", "--json", str(out), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not out.exists()
    with pytest.raises(RllabError, match="n0"):
        certify_smoothing(rllab.load(cartpole_ppo_path), np.zeros((1, 4), np.float32), 0.25, n0=0, n=10)


def test_attack_and_certify_refuse_an_unwritable_output_before_any_episode(cartpole_ppo_path, tmp_path, capsys):
    from rllab.cli import main as cli

    afile = tmp_path / "afile"
    afile.write_text("x")
    argv = ["attack", str(cartpole_ppo_path), "--attack", "fgsm", "--eps", "0.1", "--episodes", "1"]
    assert cli([*argv, "--out", str(afile / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "is a file, not a folder" in err and err.count("\n") == 1
    assert cli(["certify", str(cartpole_ppo_path), "--eps", "0.1", "--json", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "it is a directory" in err and err.count("\n") == 1
    assert cli(["certify", str(cartpole_ppo_path), "--eps", "0.1,-1"]) == 2
    assert "eps must be a finite number >= 0" in capsys.readouterr().err
