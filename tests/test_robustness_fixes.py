"""Regression tests for fixed robustness bugs (one test, or a few, per fix)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustness.attacks import PGD, TorchAttack
from robustness.threat import ThreatModel


def test_pgd_by_hand_gradient_accepts_float64_observations(cartpole_ppo):
    tm = ThreatModel.for_agent(cartpole_ppo, 0.3)
    x = cartpole_ppo.as_tensor(np.random.default_rng(0).normal(size=(8, 4)) * 0.05)
    assert x.dtype == torch.float64
    fast = PGD("action", steps=3, random_start=False)
    slow = PGD("action", steps=3, random_start=False)
    slow.by_hand = False
    adv_fast, adv_slow = fast(cartpole_ppo, x, tm), slow(cartpole_ppo, x, tm)
    assert adv_fast.dtype == torch.float64
    assert torch.allclose(adv_fast, adv_slow, atol=1e-6)
    tm.check(adv_fast, x, "pgd")


@pytest.mark.parametrize("name", ["APGD", "Square"])
def test_torchattacks_apgd_square_leave_the_global_rng_alone(cartpole_ppo, name):
    tm = ThreatModel.for_agent(cartpole_ppo, 0.1, "linf")
    x = cartpole_ppo.as_tensor(np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32) * 0.05)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    TorchAttack(name, steps=3, queries=10)(cartpole_ppo, x, tm)
    assert torch.equal(torch.rand(3), expected)


def test_l2_random_point_is_uniform_in_the_ball_of_the_free_features():
    d = 4
    scale = torch.tensor([1.0, 0.0, 2.0, 0.0])  # two features with a zero budget
    tm = ThreatModel(1.0, "l2", "obs std", scale, torch.full((d,), -1e9), torch.full((d,), 1e9))
    x = torch.zeros(20_000, d)
    torch.manual_seed(0)
    adv = tm.random_point(x)
    tm.check(adv, x, "noise")
    z = tm.size(adv, x)
    # uniform in the 2-D unit ball: P(|z| <= r) = r^2, E|z| = 2/3
    assert abs(float((z <= 0.5).float().mean()) - 0.25) < 0.015
    assert abs(float(z.mean()) - 2 / 3) < 0.01


def test_timed_attack_settings_hold_no_stale_fraction_and_rows_hold_the_real_one(cartpole_ppo):
    from robustness.attacks import StrategicallyTimed
    from robustness.evaluate import evaluate

    timed = StrategicallyTimed(PGD("action", steps=2), threshold=0.0, max_fraction=0.25)
    card = evaluate(cartpole_ppo, attacks=[timed], eps=[0.05], episodes=1, n_envs=1, progress=False)
    settings = card["attacks"][timed.label]
    assert "fraction_attacked" not in settings  # it was always 0.0 there: read after the per-row reset
    assert settings["max_fraction"] == 0.25
    assert card["results"][timed.label]["0.05"]["fraction_attacked"] == pytest.approx(0.25, abs=0.01)


def _row(mean, lo, hi):
    return {"mean_return": mean, "ci95_return": [lo, hi], "std_return": 0.0}


def _card(eps, results):
    attacks = {"pgd-10:action": {"attack": "pgd", "kind": "white-box", "objective": "action", "steps": 10}}
    return {
        "threat_model": {"eps": eps, "unit": "obs std", "norm": "linf"},
        "attacks": attacks,
        "results": results,
        "agent": {"defenses": []},
        "clean": _row(500, 500, 500),
    }


def test_eps_typed_out_of_order_is_sorted_in_the_card_and_the_flags(cartpole_ppo):
    from robustness.evaluate import evaluate
    from robustness.report import _table, sanity_flags

    card = evaluate(cartpole_ppo, attacks=["noise"], eps=[0.2, 0.1, 0.1], episodes=1, n_envs=1, progress=False)
    assert card["threat_model"]["eps"] == [0.1, 0.2]
    assert list(card["results"]["noise"]) == ["0.1", "0.2"]
    # an old card with eps in the order typed: no false "return rises" flag, and the table is ordered
    results = {
        "noise": {"0.2": _row(480, 470, 490), "0.1": _row(500, 500, 500)},
        "pgd-10:action": {"0.2": _row(100, 90, 110), "0.1": _row(400, 390, 410)},
    }
    old = _card([0.2, 0.1], results)
    assert not [f for f in sanity_flags(old) if "rises" in f]
    header, _, _ = _table(old)
    assert header[-2:] == ["eps 0.1", "eps 0.2"]
    # a real rise is still flagged
    results["pgd-10:action"] = {"0.2": _row(400, 390, 410), "0.1": _row(100, 90, 110)}
    assert [f for f in sanity_flags(_card([0.2, 0.1], results)) if "rises from 100 at eps 0.1 to 400" in f]


def test_timed_rows_record_change_rate_and_perturbation_over_attacked_steps(cartpole_ppo):
    from robustness.attacks import StrategicallyTimed
    from robustness.evaluate import evaluate
    from robustness.report import render_markdown

    timed = StrategicallyTimed(PGD("targeted", steps=3, target=0), threshold=0.0, max_fraction=0.25)
    card = evaluate(cartpole_ppo, attacks=[timed], eps=[0.5], episodes=1, n_envs=1, progress=False)
    r = card["results"][timed.label]["0.5"]
    assert r["steps"] == 500 and r["attacked_steps"] == 125
    assert r["attacked_steps"] / r["steps"] == pytest.approx(r["fraction_attacked"])
    # all-step numbers are the attacked-step numbers diluted by the clean steps
    assert r["action_change_rate"] == pytest.approx(r["attacked_action_change_rate"] * 0.25)
    assert r["attacked_action_change_rate"] > 0.2
    assert r["attacked_mean_perturbation"] == pytest.approx(0.5, abs=1e-5)  # linf PGD ends on the boundary
    assert r["mean_perturbation"] == pytest.approx(0.125, abs=1e-5)
    noise = card["results"]["noise"]["0.5"]  # every step attacked: both views agree
    assert noise["attacked_steps"] == noise["steps"]
    assert noise["attacked_action_change_rate"] == noise["action_change_rate"]
    card["flags"] = []
    assert "of the 25% attacked)" in render_markdown(card)


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
    from robustness.certify import action_score_bounds, certify_ibp, unit_scale, visited_states

    agent, eps = _purified(cartpole_ppo), 0.2
    states = torch.as_tensor(visited_states(cartpole_ppo, 1, 0)[:16], dtype=torch.float32)
    _, lo, hi = action_score_bounds(agent, states, eps)
    res = certify_ibp(agent, states, eps)
    assert 0 < int(res["certified"].sum()) < len(states)
    delta = eps * unit_scale(agent)
    gen = torch.Generator().manual_seed(0)
    for i, s in enumerate(states):
        u = torch.rand((1000, 4), generator=gen) * 2 - 1
        u[:250] = u[:250].sign()  # corners of the box too
        with torch.no_grad():
            z = agent.logits(s + u * delta)  # CartPole's bounds are far away: no clipping needed
        assert torch.all(z >= lo[i] - 1e-4) and torch.all(z <= hi[i] + 1e-4)
        if res["certified"][i]:
            assert torch.all(z.argmax(-1) == res["action"][i])


def test_certify_cli_smoothing_sigma_defaults_to_the_agents_own(cartpole_ppo_path, tmp_path):
    import json

    from rllab.cli import main
    from rllab.defend import defend

    defend(cartpole_ppo_path, tmp_path / "sm", smoothing={"sigma": 0.4, "n": 4, "mode": "vote"})
    args = ["certify", str(tmp_path / "sm"), "--method", "smoothing", "--eps", "0.1", "--episodes", "1"]
    assert main([*args, "--samples", "50", "--json", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["settings"]["sigma"] == 0.4
    assert main([*args, "--samples", "50", "--sigma", "0.2", "--json", str(tmp_path / "d.json")]) == 0
    assert json.loads((tmp_path / "d.json").read_text())["settings"]["sigma"] == 0.2
    assert main(["certify", str(tmp_path / "sm"), "--eps", "0.1", "--episodes", "1"]) == 2  # IBP: refused


def test_attack_all_passes_the_users_settings_to_the_suite(cartpole_ppo_path, monkeypatch, tmp_path):
    import importlib

    from rllab.cli import main
    from rllab.errors import RllabError
    from robustness.attacks import StrategicallyTimed, SurrogateTransfer

    seen = {}

    def fake_evaluate(agent, attacks=None, **kwargs):
        seen["attacks"] = attacks
        raise RllabError("stop here")

    monkeypatch.setattr(importlib.import_module("robustness.evaluate"), "evaluate", fake_evaluate)
    args = ["attack", str(cartpole_ppo_path), "--attack", "all", "--out", str(tmp_path / "r"), "--no-progress"]
    args += ["--queries", "123", "--restarts", "3", "--bpda", "--eot", "2", "--threshold", "0.1"]
    assert main([*args, "--max-fraction", "0.5"]) == 2
    suite = seen["attacks"]
    assert suite is not None
    by_type = {type(a): a for a in suite}
    assert by_type[SurrogateTransfer].budget == 123
    timed = by_type[StrategicallyTimed]
    assert (timed.threshold, timed.max_fraction, timed.base.restarts) == (0.1, 0.5, 3)
    pgds = [a for a in suite if type(a) is PGD]
    assert pgds and all(a.restarts == 3 for a in pgds)
    # --bpda / --eot are dropped with a note: this agent has no non-differentiable or random defense
    assert not [a.label for a in pgds if a.bpda or a.eot > 1]
    apgd = [a for a in suite if isinstance(a, TorchAttack) and a.attack == "APGD"]
    assert apgd[0].restarts == 3


def test_surrogate_counts_and_bounds_every_victim_query(cartpole_ppo, monkeypatch):
    from robustness.attacks import SurrogateTransfer

    asked = []
    act = cartpole_ppo.act

    def counting_act(obs, *args, **kwargs):
        asked.append(len(np.asarray(obs)))
        return act(obs, *args, **kwargs)

    monkeypatch.setattr(cartpole_ppo, "act", counting_act)
    attack = SurrogateTransfer(queries=50, epochs=1)
    attack.prepare(cartpole_ppo, seed=0)
    assert sum(asked) == 50  # a CartPole episode lasts 500 steps: the rollout stops at the budget
    assert attack.queries == 50 and attack.settings()["queries_used"] == 50


def test_torchattacks_sees_channel_last_images_as_chw():
    from types import SimpleNamespace

    import gymnasium as gym

    from robustness.attacks.torchattacks_adapter import BoxModel

    space = gym.spaces.Box(0, 255, shape=(6, 5, 3), dtype=np.uint8)
    seen = []
    agent = SimpleNamespace(
        observation_space=space, transpose_image=True, logits=lambda obs: seen.append(obs) or obs.sum((1, 2))
    )
    model = BoxModel(agent, torch.zeros(6, 5, 3), torch.full((6, 5, 3), 255.0))
    x = torch.arange(2 * 6 * 5 * 3, dtype=torch.float32).reshape(2, 6, 5, 3) % 256
    u = model.to_u(x)
    assert u.shape == (2, 3, 6, 5)
    assert torch.equal(u[:, 1, 4, 2], x[:, 4, 2, 1] / 255)
    torch.testing.assert_close(model.to_obs(u), x)
    model(u)
    torch.testing.assert_close(seen[0], x)  # the agent gets its own (H, W, C) layout back
