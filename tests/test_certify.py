import numpy as np
import pytest
import torch
from scipy import stats

import rllab
from rllab.cli import main
from rllab.errors import RllabError
from robustness.certify import action_score_bounds, certify_ibp, certify_smoothing, unit_scale, visited_states


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
    delta = eps * unit_scale(agent)
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
    delta = eps * unit_scale(agent)
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
