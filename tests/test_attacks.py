"""The attacks' behaviour through the Python API (robustness.attacks, robustness.evaluate): PGD and FGSM and
their gradients, torchattacks, targeted pushes and planning, the surrogate, timed attacks, progress bars."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rllab
from rllab.cli import main
from rllab.errors import RllabError
from robustness.attacks import (
    FGSM,
    PGD,
    PlanningAttack,
    StrategicallyTimed,
    SurrogateTransfer,
    TorchAttack,
    UniformNoise,
)
from robustness.attacks.torchattacks_adapter import BoxModel, box_for
from robustness.evaluate import attacked_run, build_attack, evaluate, standard_suite
from robustness.report import sanity_flags
from robustness.threat import ThreatModel


def _states(agent, n=64, seed=0):
    from robustness.certify import visited_states

    return torch.as_tensor(visited_states(agent, 2, seed)[:n], dtype=torch.float32)


# ----------------------------------------------------------------------- PGD, FGSM and their gradients
def test_every_attack_stays_in_budget_and_fgsm_is_one_step(cartpole_ppo):
    x = _states(cartpole_ppo, 32)
    for norm in ("linf", "l2"):
        t = ThreatModel.for_agent(cartpole_ppo, 0.2, norm)
        attacks = [
            UniformNoise(),
            FGSM("action"),
            PGD("kl", restarts=2),
            PGD("value"),
            PGD("targeted"),
            TorchAttack("APGD", steps=5),
            TorchAttack("PGD" if norm == "linf" else "PGDL2"),
        ]
        attacks += [TorchAttack("Square", queries=20)] if norm == "linf" else []
        for a in attacks:
            t.check(a(cartpole_ppo, x, t), x, a.label)
    t = ThreatModel.for_agent(cartpole_ppo, 0.2, "linf")
    f = FGSM("action")(cartpole_ppo, x, t)
    z = ((f - x) / t.scale).abs()
    assert torch.allclose(z[z > 0], torch.tensor(0.2), atol=1e-5)  # every moved feature moved by exactly eps


def test_strongest_gradient_attack_is_no_weaker_than_noise(cartpole_ppo):
    card = evaluate(cartpole_ppo, attacks=["pgd", PGD("kl")], eps=[0.5, 1.0], episodes=4, seed=0, progress=False)
    clean = card["clean"]["mean_return"]
    for k in ("0.5", "1"):
        noise = card["results"]["noise"][k]["mean_return"]
        strongest = min(card["results"][n][k]["mean_return"] for n in ("pgd-10:action", "pgd-10:kl"))
        assert strongest <= noise
    assert card["results"]["noise"]["0.5"]["mean_return"] >= 0.9 * clean
    # the KL attack breaks the CartPole agent by 1 std (at 0.5 std the figure depends on the training
    # run: 14% of clean for the benchmark's agent, 76% for one trained with other thread timings)
    assert card["results"]["pgd-10:kl"]["1"]["mean_return"] <= 0.2 * clean


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


def test_mlp_fast_path_matches_the_module_path_and_steps_aside_for_hooks(cartpole_ppo_path):
    import torch.nn.utils.prune as prune

    agent = rllab.load(cartpole_ppo_path)
    assert agent.mlp_actor() is not None
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    fast, fast_dist = agent.logits(x), agent.action_dist(x).logits
    (g_fast,) = torch.autograd.grad(fast[:, 0].sum(), x)
    policy = agent.policy
    slow = policy.action_net(policy.mlp_extractor.forward_actor(policy.extract_features(x)))
    (g_slow,) = torch.autograd.grad(slow[:, 0].sum(), x)
    torch.testing.assert_close(fast, slow, rtol=0, atol=0)
    torch.testing.assert_close(fast_dist, torch.log_softmax(slow, -1), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g_fast, g_slow, rtol=0, atol=0)
    # a pruning mask lives in a forward pre-hook: the agent must take the module path and honour it
    prune.l1_unstructured(policy.mlp_extractor.policy_net[0], "weight", amount=0.9)
    assert agent.mlp_actor() is None
    masked = policy.action_net(policy.mlp_extractor.forward_actor(policy.extract_features(x)))
    torch.testing.assert_close(agent.logits(x), masked)
    assert not torch.allclose(agent.logits(x), slow)


def test_hand_written_mlp_gradient_matches_autograd(cartpole_ppo_path, tmp_path):
    from rllab.cli.defend import defend_checkpoint
    from robustness.attacks.gradients import MLPInputGradient
    from robustness.attacks.objectives import Objective

    agent = rllab.load(cartpole_ppo_path)
    gen = torch.Generator().manual_seed(0)
    std = torch.as_tensor(agent.obs_std, dtype=torch.float32)
    x = torch.randn(64, 4, generator=gen) * std
    for normalize in (False, True):
        if normalize:  # observation normalisation in front, tight enough that some features clip
            agent.normalize_obs, agent.obs_clip, agent.obs_eps = True, 1.0, 1e-8
            agent.register_buffer("norm_mean", 0.1 * std)
            agent.register_buffer("norm_var", std**2)
        for objective in ("action", "targeted", "margin", "kl"):
            loss_fn = Objective(agent, objective, x)
            by_hand = MLPInputGradient.build(agent, loss_fn)
            assert by_hand is not None
            xp = (x + 0.3 * torch.randn(x.shape, generator=gen) * std).requires_grad_(True)
            (auto,) = torch.autograd.grad(loss_fn(xp).sum(), xp)
            torch.testing.assert_close(by_hand(xp.detach()), auto, rtol=1e-4, atol=1e-5 * float(auto.abs().max()))
            if normalize:
                assert (auto == 0).any()  # clipped features have no gradient, by hand too
    threat = ThreatModel.for_agent(agent, 0.3)
    torch.manual_seed(0)
    fast = PGD("kl", steps=10)(agent, x, threat)
    slow_attack = PGD("kl", steps=10)
    slow_attack.by_hand = False
    torch.manual_seed(0)
    slow = slow_attack(agent, x, threat)
    assert (fast == slow).float().mean() > 0.99  # the same attack, up to float rounding in sign()
    assert MLPInputGradient.build(agent, Objective(agent, "value", x)) is None  # the critic: autograd
    smooth = defend_checkpoint(cartpole_ppo_path, tmp_path / "sm", smoothing={"sigma": 0.1, "n": 4, "mode": "mean"})
    assert MLPInputGradient.build(smooth, Objective(smooth, "action", x)) is None


@pytest.fixture(scope="module")
def pendulum_tiny(tmp_path_factory):
    from tests.conftest import trained_run

    over = ["n_steps=64", "batch_size=64"]
    path = trained_run(
        tmp_path_factory, "pendulum-ppo-tiny", algo="ppo", env="Pendulum-v1", seed=0, steps=256, overrides=over
    )
    return rllab.load(path)


def test_fgsm_kl_is_r_fgsm_and_moves_a_continuous_agent(pendulum_tiny, one_thread):
    from robustness.attacks import FGSM
    from robustness.evaluate import evaluate

    card = evaluate(pendulum_tiny, attacks=[FGSM("kl")], eps=[0.2], episodes=2, n_envs=2, seed=0, progress=False)
    row = card["results"]["fgsm:kl"]["0.2"]
    assert row["mean_perturbation"] > 0.5 * 0.2  # plain FGSM stood still: the KL's gradient is 0 at the clean point
    assert row["action_change_rate"] > 0.9
    assert row["mean_return"] != card["clean"]["mean_return"]
    settings = card["attacks"]["fgsm:kl"]
    assert settings["random_start"] is True and "R+FGSM" in settings["gradient_at"]
    # the step is eps from the clean observation: every moved feature moved by exactly eps (linf)
    tm = ThreatModel.for_agent(pendulum_tiny, 0.2)
    x = pendulum_tiny.as_tensor(np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32) * 0.3)
    torch.manual_seed(0)
    z = ((FGSM("kl")(pendulum_tiny, x, tm) - x) / tm.scale).abs()
    assert torch.allclose(z[z > 0], torch.tensor(0.2), atol=1e-5) and (z > 0).float().mean() > 0.9
    assert FGSM("action").settings()["random_start"] is False  # its gradient does not vanish: plain FGSM


# ---------------------------------------------------------------------------------------- torchattacks
def test_torchattacks_adapter_round_trip(cartpole_ppo, catch_ppo):
    for agent in (cartpole_ppo, catch_ppo):
        x = _states(agent, 16)
        t = ThreatModel.for_agent(agent, 0.25 if not agent.is_image else 4 / 255)
        low, width, eps_u = box_for(agent, x, t)
        model = BoxModel(agent, low, width)
        u = model.to_u(x)
        assert u.dim() == 4 and u.min() >= 0 and u.max() <= 1
        torch.testing.assert_close(model.to_obs(u), x, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(model(u), agent.logits(x), atol=1e-4, rtol=1e-4)
        # one torchattacks eps unit along any feature is eps of the threat model
        moved = model.to_obs(u + eps_u)
        torch.testing.assert_close(t.size(moved, x), torch.full((16,), t.eps), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("agent_name,eps", [("cartpole_ppo", 0.3), ("catch_ppo", 16 / 255)])
def test_own_pgd_agrees_with_torchattacks_pgd(request, agent_name, eps):
    agent = request.getfixturevalue(agent_name)
    x = _states(agent, 64)
    t = ThreatModel.for_agent(agent, eps)
    ours = PGD("action", steps=10, random_start=False)(agent, x, t)
    theirs = TorchAttack("PGD", steps=10, random_start=False)(agent, x, t)
    tol = 1e-3 * float(t.scale.max()) * eps
    assert (ours - theirs).abs().max() <= tol + 1e-5
    np.testing.assert_array_equal(agent.act(ours), agent.act(theirs))


@pytest.mark.parametrize("name", ["APGD", "Square"])
def test_torchattacks_apgd_square_leave_the_global_rng_alone(cartpole_ppo, name):
    tm = ThreatModel.for_agent(cartpole_ppo, 0.1, "linf")
    x = cartpole_ppo.as_tensor(np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32) * 0.05)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    TorchAttack(name, steps=3, queries=10)(cartpole_ppo, x, tm)
    assert torch.equal(torch.rand(3), expected)


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


# ------------------------------------------------------------------------ targeted pushes and planning
def test_pushing_one_way_topples_cartpole_where_flips_do_not(cartpole_ppo, catch_ppo):
    x = _states(cartpole_ppo, 64)
    t = ThreatModel.for_agent(cartpole_ppo, 0.5)
    clean = cartpole_ppo.act(x)
    for k in (0, 1):
        pushed = PGD("targeted", target=k)
        adv = pushed(cartpole_ppo, x, t)
        t.check(adv, x, pushed.label)
        now = cartpole_ppo.act(adv)
        assert (now == k).mean() > (clean == k).mean()  # it forces k where it can
        assert np.all(now[clean == k] == k)  # and never pushes away from k
    assert PGD("targeted", target=1).label == "pgd-10:targeted=1"
    assert PGD("targeted", target=1).settings()["target_action"] == 1
    attacks = [PGD("targeted"), PGD("targeted", target=0), PGD("targeted", target=1)]
    card = evaluate(cartpole_ppo, attacks=attacks, eps=[1.0], episodes=4, seed=0, progress=False)
    rows = {n: r["1"]["mean_return"] for n, r in card["results"].items()}
    # a balancing controller recovers from flips; a steady push towards one side topples it
    pushed = min(rows["pgd-10:targeted=0"], rows["pgd-10:targeted=1"])
    assert pushed < 0.5 * rows["pgd-10:targeted"] and pushed < 0.2 * card["clean"]["mean_return"]
    labels = [a.label for a in standard_suite(cartpole_ppo)]
    assert "pgd-10:targeted=0" in labels and "pgd-10:targeted=1" in labels
    assert sum("targeted=" in a.label for a in standard_suite(catch_ppo)) == 3
    with pytest.raises(RllabError, match="not one of this agent's actions"):
        evaluate(cartpole_ppo, attacks=[PGD("targeted", target=2)], eps=[0.1], episodes=1, progress=False)
    with pytest.raises(RllabError, match="goes with the targeted objective"):
        PGD("kl", target=1)
    with pytest.raises(RllabError, match="not 'surrogate'"):
        build_attack("surrogate", target=1)


def test_pushing_each_observation_towards_its_own_action(cartpole_ppo):
    x = _states(cartpole_ppo, 64)
    t = ThreatModel.for_agent(cartpole_ppo, 0.5)
    targets = torch.arange(64) % 2
    pgd = PGD("targeted", random_start=False)
    mixed = pgd.towards(cartpole_ppo, x, t, targets)
    t.check(mixed, x, "towards")
    for k in (0, 1):  # the same perturbation as the fixed-target attack on each group
        rows = targets == k
        fixed = PGD("targeted", target=k, random_start=False)(cartpole_ppo, x[rows], t)
        assert torch.allclose(mixed[rows], fixed, atol=1e-6)
    clean, now = cartpole_ppo.act(x), cartpole_ppo.act(mixed)
    assert np.mean(now == targets.numpy()) > np.mean(clean == targets.numpy())
    with pytest.raises(RllabError, match="among this agent's actions"):
        pgd.towards(cartpole_ppo, x, t, torch.full((64,), 2))
    with pytest.raises(RllabError, match="3 target actions for 64"):
        pgd.towards(cartpole_ppo, x, t, torch.zeros(3))
    with pytest.raises(RllabError, match="needs the targeted objective"):
        PGD("kl").towards(cartpole_ppo, x, t, targets)


def test_planning_attack_is_no_weaker_than_the_steady_push_and_replays_what_it_plans(cartpole_ppo, monkeypatch):
    plan = PlanningAttack(population=8, rounds=3, elites=2)
    pushes = [PGD("targeted", target=k, random_start=False) for k in (0, 1)]
    card = evaluate(cartpole_ppo, attacks=[plan, *pushes], eps=[1.0], episodes=3, seed=0, n_envs=1, progress=False)
    rows = {n: r["1"] for n, r in card["results"].items()}
    planned = rows["plan-cem:pgd-10"]
    push = min(rows["pgd-10:targeted=0"]["mean_return"], rows["pgd-10:targeted=1"]["mean_return"])
    # the steady pushes are among its candidate plans, so planning can only do better (up to float noise
    # between batched and one-at-a-time PGD, a step or two)
    assert planned["mean_return"] <= push + 2
    assert planned["mean_return"] < 0.2 * card["clean"]["mean_return"]
    assert planned["gain_over_steady_push"] >= 0
    assert planned["steps"] == sum(planned["returns"])  # CartPole: one reward per step, every step checked
    assert 0.9 < planned["mean_perturbation"] <= 1.0 + 1e-6 and planned["action_change_rate"] > 0
    assert card["attacks"]["plan-cem:pgd-10"]["population"] == 8
    with pytest.raises(RllabError, match="episodes"):
        plan(cartpole_ppo, torch.zeros(1, 4), ThreatModel.for_agent(cartpole_ppo, 1.0))
    # an agent that does not act the same way twice cannot be planned against: a clear error, not a row
    rng = np.random.default_rng(0)
    monkeypatch.setattr(type(cartpole_ppo), "act", lambda self, obs, deterministic=True: rng.integers(0, 2, len(obs)))
    with pytest.raises(RllabError, match="did not replay the same episode"):
        evaluate(cartpole_ppo, attacks=[plan], eps=[1.0], episodes=1, progress=False)


# ------------------------------------------------------------------ the surrogate (black-box transfer)
def test_surrogate_learns_the_victim_and_counts_queries(cartpole_ppo):
    s = SurrogateTransfer(queries=3000, epochs=20)
    s.prepare(cartpole_ppo, seed=0)
    assert s.queries == 3000 and s.agreement >= 0.9
    x = _states(cartpole_ppo, 32)
    t = ThreatModel.for_agent(cartpole_ppo, 0.5)
    t.check(s(cartpole_ppo, x, t), x, s.label)
    assert s.settings()["queries_used"] == 3000


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


def test_surrogate_of_atari_sized_frames_is_small_and_keeps_frames_as_uint8():
    """84x84x4 stacks: strided convolutions (not a 14M-weight first layer) and queries kept in their own dtype."""
    from robustness.attacks.surrogate import SurrogatePolicy

    big = SurrogatePolicy((4, 84, 84), 6, [128], True, np.zeros((4, 84, 84)), np.full((4, 84, 84), 255.0))
    small = SurrogatePolicy((1, 10, 5), 3, [128], True, np.zeros((1, 10, 5)), np.full((1, 10, 5), 255.0))
    assert sum(p.numel() for p in big.parameters()) < 500_000
    assert sum(p.numel() for p in small.parameters()) == (16 * 9 + 16) + (16 * 16 * 9 + 16) + (800 * 128 + 128) + 387
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    assert big.logits(frames).shape == (3, 6) and torch.equal(big.logits(frames), big.logits(frames.float()))


# ------------------------------------------------------------------------- strategically timed attacks
def test_timed_attack_respects_its_cap(cartpole_ppo):
    timed = StrategicallyTimed(PGD("kl"), threshold=0.0, max_fraction=0.25)
    t = ThreatModel.for_agent(cartpole_ppo, 0.5)
    row = attacked_run(cartpole_ppo, timed, t, episodes=2, seed=0, n_envs=2)
    assert timed.fraction_attacked <= 0.25 + 1e-9 and timed.fraction_attacked > 0.2
    assert row["action_change_rate"] <= 0.25 + 1e-9


def test_a_timed_attack_that_never_fires_is_flagged(cartpole_ppo, capsys, cartpole_ppo_path, tmp_path):
    never = StrategicallyTimed(PGD("action"), max_fraction=0.0)
    card = evaluate(cartpole_ppo, attacks=[never], eps=[0.2], episodes=2, progress=False)
    assert card["results"][never.label]["0.2"]["fraction_attacked"] == 0
    assert card["results"][never.label]["0.2"]["mean_return"] == card["clean"]["mean_return"]
    assert any("attacked no step at eps 0.2" in f for f in sanity_flags(card))
    fires = StrategicallyTimed(PGD("action"), threshold=0.0)
    card = evaluate(cartpole_ppo, attacks=[fires], eps=[0.2], episodes=2, progress=False)
    assert not any("attacked no step" in f for f in sanity_flags(card))
    assert main(["attack", str(cartpole_ppo_path), "--attack", "timed", "--threshold", "1.5"]) == 2
    assert "threshold must be in [0, 1)" in capsys.readouterr().err


def test_timed_attack_settings_hold_no_stale_fraction_and_rows_hold_the_real_one(cartpole_ppo):
    from robustness.attacks import StrategicallyTimed
    from robustness.evaluate import evaluate

    timed = StrategicallyTimed(PGD("action", steps=2), threshold=0.0, max_fraction=0.25)
    card = evaluate(cartpole_ppo, attacks=[timed], eps=[0.05], episodes=1, n_envs=1, progress=False)
    settings = card["attacks"][timed.label]
    assert "fraction_attacked" not in settings  # it was always 0.0 there: read after the per-row reset
    assert settings["max_fraction"] == 0.25
    assert card["results"][timed.label]["0.05"]["fraction_attacked"] == pytest.approx(0.25, abs=0.01)


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


# --------------------------------------------------------------------------------------- progress bars
def test_progress_bars_are_drawn_on_a_terminal_only(cartpole_ppo, capsys, monkeypatch):
    import sys

    from robustness.evaluate import _progress, evaluate

    evaluate(cartpole_ppo, attacks=["noise"], eps=[0.05], episodes=1, n_envs=1, progress=True)
    assert capsys.readouterr().err == ""  # pytest's captured stderr is not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    shown, hidden = _progress(3, True), _progress(3, False)
    drawn = [not shown.disable, not hidden.disable]
    shown.close(), hidden.close()
    assert drawn == [True, False]
