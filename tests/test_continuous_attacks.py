"""SA-PPO's continuous-control attacks (Random, Critic, MAD, Robust Sarsa, RS+MAD), the learned adversary on a
Gaussian victim, and the IBP bound on a Gaussian policy's mean action, on a tiny seeded continuous agent."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import rllab
from rllab.cli import main
from rllab.errors import RllabError
from robustness.attacks import UniformNoise
from robustness.attacks import sarsa as sarsa_mod
from robustness.attacks.continuous import MAD, Critic, RobustSarsa
from robustness.attacks.sarsa import SarsaSettings, robust_q
from robustness.certify import certify, certify_mean_action, visited_states
from robustness.evaluate import build_attack, continuous_suite, evaluate
from robustness.learned.attack import LearnedAttack
from robustness.learned.train import train_adversary
from robustness.threat import ThreatModel
from tests.toy_control import register

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL_RS = SarsaSettings(steps=3000, epochs=20)  # 940 updates, ~2 s on one thread


@pytest.fixture(scope="module")
def reach_path(tmp_path_factory):
    """PPO on Reach1D-v0 (tests/toy_control.py), 4096 steps, seed 0: drives the point to 0 (return ~ -1.8)."""
    from tests.conftest import trained_run

    register()
    over = ["n_steps=256", "batch_size=64"]
    return trained_run(
        tmp_path_factory,
        "reach1d-ppo",
        algo="ppo",
        env="Reach1D-v0",
        seed=0,
        steps=4096,
        overrides=over,
        threads=1,
        final_eval_episodes=5,
    )


@pytest.fixture(scope="module")
def reach(reach_path):
    return rllab.load(reach_path)


def test_robust_sarsa_lowers_the_return_below_noise(reach):
    card = evaluate(reach, attacks=[RobustSarsa(rs=SMALL_RS)], eps=[1.0], episodes=10, n_envs=10, progress=False)
    clean, noise, rs = card["clean"], card["results"]["noise"]["1"], card["results"]["rs"]["1"]
    # the agent holds the point near 0; noise of 1 obs std barely moves it, RS makes it push away from 0
    assert clean["mean_return"] > -2.5 and noise["mean_return"] > -2.5
    assert rs["mean_return"] < noise["mean_return"] - 1.0, (rs["mean_return"], noise["mean_return"])
    assert rs["ci95_return"][1] < noise["ci95_return"][0]  # apart beyond their 95% intervals
    assert rs["mean_perturbation"] <= 1.0 + 1e-6 and rs["action_change_rate"] > 0.9
    settings = card["attacks"]["rs"]
    assert settings["robust_sarsa"]["transitions"] >= SMALL_RS.steps and settings["mad_ratio"] == 0.0
    assert settings["robust_sarsa"]["eps"] == 0.02 and settings["robust_sarsa"]["reg"] == 0.1


def test_robust_sarsa_td_error_falls_and_q_ranks_actions(reach):
    learned = robust_q(reach, SMALL_RS, seed=0)  # the RS attack's (cached), or trained now
    td = [h["td_loss"] for h in learned.history]
    assert len(td) == 20 and td[-1] < 0.5 * max(td), td  # TD error falls once bootstrapped values settle
    assert all(h["robustness"] > 0 for h in learned.history)  # the action-smoothness term was trained
    q = learned.q
    x = torch.tensor([[0.8], [-0.8]])
    toward, away = q(x, torch.tensor([[-1.0], [1.0]])), q(x, torch.tensor([[1.0], [-1.0]]))
    assert bool((toward > away).all())  # moving towards 0 is worth more than moving away
    near, far = q(torch.tensor([[0.1]]), torch.zeros(1, 1)), q(torch.tensor([[0.8]]), torch.tensor([[-1.0]]))
    assert float(near) > float(far)  # and being near 0 more than being far
    # IBP bounds of Q over the action ball contain Q at sampled actions of the ball
    a = torch.zeros(2, 1)
    lo, hi = q.action_ball_bounds(x, a, 0.3)
    for d in np.linspace(-0.3, 0.3, 13):
        v = q(x, a + float(d))
        assert bool(((lo - 1e-5 <= v) & (v <= hi + 1e-5)).all())


def test_robust_q_is_learned_once_per_victim(reach, reach_path, monkeypatch):
    sarsa_mod._CACHE.clear()
    first = robust_q(reach, SarsaSettings(steps=500, epochs=2), seed=3)
    assert robust_q(reach, SarsaSettings(steps=500, epochs=2), seed=3) is first  # same process: cached
    saved = list((reach_path / "adversaries").glob("rs-*.pt"))
    assert saved and first.info["saved_to"] in {str(p) for p in saved}
    sarsa_mod._CACHE.clear()
    monkeypatch.setattr(sarsa_mod, "train_robust_q", lambda *a, **k: pytest.fail("retrained"))
    again = robust_q(reach, SarsaSettings(steps=500, epochs=2), seed=3)  # a new process: from the victim's folder
    x, act = torch.tensor([[0.3], [-0.5]]), torch.tensor([[0.2], [0.1]])
    assert torch.equal(again.q(x, act), first.q(x, act)) and again.history == first.history
    # another setting or seed is another Q-function
    monkeypatch.undo()
    assert robust_q(reach, SarsaSettings(steps=500, epochs=2), seed=4) is not again


def test_continuous_suite_runs_through_evaluate(reach):
    suite = continuous_suite(reach, rs=SarsaSettings(steps=800, epochs=3))
    assert [a.label for a in suite] == ["critic", "mad", "rs", "rs+mad"]
    card = evaluate(reach, attacks=suite, eps=[0.5, 1.0], episodes=3, n_envs=3, progress=False)
    assert list(card["results"]) == ["noise", "critic", "mad", "rs", "rs+mad"]
    for label, by_eps in card["results"].items():
        assert list(by_eps) == ["0.5", "1"]
        for e, row in by_eps.items():
            assert 0 < row["mean_perturbation"] <= float(e) + 1e-6, (label, e)
            assert row["episodes"] == 3 and row["steps"] == 90
    assert suite[2].robust is suite[3].robust  # RS and RS+MAD share one learned Q, trained once for both eps
    assert card["attacks"]["rs+mad"]["mad_ratio"] == 0.2 and card["attacks"]["critic"]["objective"] == "value"
    # the paper's names, one by one
    assert isinstance(build_attack("random"), UniformNoise)
    assert isinstance(build_attack("critic"), Critic) and isinstance(build_attack("mad"), MAD)
    assert build_attack("rs+mad", rs_ratio=0.5).ratio == 0.5 and build_attack("rs").ratio == 0.0
    with pytest.raises(RllabError, match="ratio"):
        RobustSarsa(ratio=2.0)
    with pytest.raises(RllabError, match="rs-steps"):
        RobustSarsa(rs=SarsaSettings(steps=0))


def test_continuous_attacks_refuse_discrete_agents(tmp_path):
    cart = rllab.train(
        "ppo", "CartPole-v1", seed=0, steps=128, out=tmp_path / "c", progress=False, final_eval_episodes=1
    )
    with pytest.raises(RllabError, match="continuous"):
        continuous_suite(cart)
    with pytest.raises(RllabError, match="continuous-action"):
        evaluate(cart, attacks=["rs"], eps=[0.1], episodes=1, progress=False)
    assert not RobustSarsa().supports(cart)


def test_attack_command_continuous_group(reach_path, tmp_path, capsys):
    out = tmp_path / "card"
    argv = ["attack", str(reach_path), "--attack", "continuous,random", "--eps", "0.5", "--episodes", "2"]
    argv += ["--n-envs", "2", "--rs-steps", "600", "--rs-epochs", "2", "--rs-ratio", "0.5", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    card = json.loads((out / "results.json").read_text())
    assert list(card["results"]) == ["noise", "critic", "mad", "rs", "rs+mad"]
    assert card["attacks"]["rs+mad"]["mad_ratio"] == 0.5
    assert card["attacks"]["rs"]["robust_sarsa"]["steps"] == 600
    assert card["attacks"]["rs"]["robust_sarsa"]["seed"] == 0  # the evaluation's seed by default
    assert "rs+mad" in capsys.readouterr().out
    # a scan screens on other episodes (--seed 7) with the Q-function it then reports (--rs-seed 0): the same one
    screen = tmp_path / "screen"
    screen_argv = [*argv[:-2], "--attack", "rs", "--seed", "7", "--out", str(screen), "--no-progress"]
    assert main([*screen_argv, "--rs-seed", "0"]) == 0
    rs = json.loads((screen / "results.json").read_text())["attacks"]["rs"]["robust_sarsa"]
    assert (
        rs["seed"] == 0
        and rs.get("loaded_from", rs.get("saved_to")) == card["attacks"]["rs"]["robust_sarsa"]["saved_to"]
    )
    assert main(screen_argv) == 0  # without it, the Q-function of seed 7: another one
    rs = json.loads((screen / "results.json").read_text())["attacks"]["rs"]["robust_sarsa"]
    assert rs["seed"] == 7 and rs["saved_to"] != card["attacks"]["rs"]["robust_sarsa"]["saved_to"]
    with pytest.raises(SystemExit) as exc:  # refused by the option's parser, before the checkpoint loads
        main(["attack", str(reach_path), "--attack", "rs", "--rs-eps", "-1"])
    assert exc.value.code == 2 and "argument --rs-eps: must be >= 0" in capsys.readouterr().err


def test_ibp_mean_action_bound_is_sound(reach, tmp_path):
    pend = rllab.train(
        "ppo", "Pendulum-v1", seed=0, steps=256, out=tmp_path / "p", progress=False, final_eval_episodes=1
    )
    for agent in (reach, pend):
        x = torch.as_tensor(visited_states(agent, 1, 0)[:32], dtype=torch.float32)
        for eps in (0.1, 0.5):
            res = certify_mean_action(agent, x, eps)
            tm = ThreatModel.for_agent(agent, eps)
            with torch.no_grad():
                clean = agent.logits(x)
                worst = torch.zeros(len(x))
                for _ in range(100):
                    worst = torch.maximum(worst, (agent.logits(tm.random_point(x)) - clean).abs().amax(-1))
            torch.manual_seed(0)
            adv = MAD(steps=20)(agent, x, tm)  # the attack that maximises the mean's change
            with torch.no_grad():
                worst = torch.maximum(worst, (agent.logits(adv) - clean).abs().amax(-1))
            assert bool((worst <= res["bound"] + 1e-5).all())  # never beyond the certified bound
            assert bool((res["action_bound"] <= res["bound"] + 1e-6).all())
            if agent is reach:  # one input, tiny net: the bound is within a few times the change PGD finds
                assert float(worst.mean()) > 0.2 * float(res["bound"].mean())
    report = certify(pend, [0.1, 0.2], episodes=1)
    assert [r["eps"] for r in report.rows] == [0.1, 0.2]
    assert report.rows[0]["mean_bound"] < report.rows[1]["mean_bound"]  # a larger ball, a larger bound
    assert "mean action" in report.settings["certified"]
    with pytest.raises(RllabError, match="--method ibp"):
        certify(pend, [0.1], method="smoothing")


def test_certify_command_on_a_continuous_agent(reach_path, tmp_path, capsys):
    path = tmp_path / "c.json"
    assert main(["certify", str(reach_path), "--eps", "0.1,0.5", "--episodes", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "||mu(s') - mu(s)||_inf <=" in out and "certified: IBP upper bound" in out
    rows = json.loads(path.read_text())["rows"]
    assert [r["eps"] for r in rows] == [0.1, 0.5] and rows[0]["max_bound"] <= rows[1]["max_bound"]
    assert main(["certify", str(reach_path), "--method", "smoothing"]) == 2
    assert "continuous-action agent use --method ibp" in capsys.readouterr().err


def test_learned_adversary_attacks_a_gaussian_victim(reach_path, reach, tmp_path):
    adv = train_adversary(
        reach_path,
        eps=1.0,
        steps=1024,
        seed=0,
        out=tmp_path / "adv",
        progress=False,
        pgd_steps=3,
        final_eval_episodes=2,
    )
    # PA-AD on a Gaussian victim: the director picks a direction in the victim's action space
    assert adv.action_space.shape == (1,) and adv.spec["env"]["kwargs"]["victim_spec"]["action_space"] == {
        "type": "Box",
        "shape": [1],
    }
    card = evaluate(reach, attacks=[LearnedAttack(adv)], eps=[1.0], episodes=10, n_envs=10, progress=False)
    row, noise = card["results"]["learned"]["1"], card["results"]["noise"]["1"]
    assert row["mean_perturbation"] <= 1.0 + 1e-6
    assert row["mean_return"] < noise["mean_return"] - 1.0, (row["mean_return"], noise["mean_return"])
