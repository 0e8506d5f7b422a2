"""rllab adapt: domain-adversarial adaptation to a shifted domain without its rewards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch as th
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rllab
from rllab.cli import main
from rllab.cli.transforms import adapt_checkpoint
from rllab.errors import RllabError
from rllab.transforms import adapt
from rllab.transforms.adapt import (
    adaptation_warnings,
    domain_gap,
    ganin_schedule,
    gap_closed,
    paired_states,
    reverse_gradient,
    target_spec,
)

SHIFT = [{"name": "ObservationShift", "kwargs": {"offset": 100}}]


def test_gradient_reversal_is_identity_forward_and_negated_backward():
    x = th.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert th.equal(y, x)
    (y * th.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert th.allclose(x.grad, th.tensor([-0.5, -1.0, -1.5]))


def test_ganin_schedule_ramps_from_zero_to_coef():
    assert ganin_schedule(0.0, 2.0) == 0.0
    assert ganin_schedule(1.0, 2.0) == pytest.approx(2.0, abs=1e-3)
    values = [ganin_schedule(p / 10, 1.0) for p in range(11)]
    assert values == sorted(values)


def test_target_spec_merges_the_shift_and_refuses_no_shift(catch_ppo):
    spec = target_spec(catch_ppo.spec, env_kwargs={"distractors": 2}, wrappers=SHIFT)
    assert spec["env"]["kwargs"]["distractors"] == 2 and spec["env"]["wrappers"] == SHIFT
    assert catch_ppo.spec["env"]["wrappers"] == []  # the source spec is untouched
    with pytest.raises(RllabError, match="target domain"):
        target_spec(catch_ppo.spec)
    with pytest.raises(RllabError, match="is the source domain"):
        target_spec(catch_ppo.spec, env="Catch-v0")


def test_domain_gap_tells_shifted_states_apart_and_not_identical_ones(catch_ppo):
    rng = np.random.default_rng(0)
    states = np.zeros((600, 1, 10, 5), dtype=np.uint8)
    states[np.arange(600), 0, rng.integers(0, 9, 600), rng.integers(0, 5, 600)] = 255
    states[:, 0, 9, 2] = 255
    shifted = np.clip(states.astype(int) + 100, 0, 255).astype(np.uint8)
    same = domain_gap(catch_ppo, states, states.copy(), "first")
    apart = domain_gap(catch_ppo, states, shifted, "first")
    assert same["accuracy"] <= 0.6 and same["proxy_a_distance"] <= 0.4
    assert apart["accuracy"] >= 0.95 and apart["proxy_a_distance"] >= 1.8


def test_paired_states_differ_by_the_shift_alone(catch_ppo):
    """Both domains visited in lockstep: each target state is its source twin plus the distractors."""
    target = rllab.Agent(
        target_spec(catch_ppo.spec, env_kwargs={"distractors": 3, "distractor_intensity": 200}), catch_ppo.policy
    )
    rng = np.random.default_rng(0)
    xs, xt = paired_states(lambda b: rng.integers(0, 3, len(b)), catch_ppo, target, 300, seed=7)
    assert xs.shape == xt.shape == (300, *catch_ppo.observation_space.shape)
    assert (xt == 200).any() and not (xs == 200).any()
    restored = np.where(xt == 200, 0, xt)  # a distractor hides nothing under it ...
    hidden = (xs != restored) & (xt == 200)  # ... unless it sits on the ball or the paddle
    assert np.array_equal(np.where(hidden, xs, restored), xs)
    assert hidden.mean() < 0.01


def _summary(target_before, target_after, source_after, accuracy, method="dann"):
    returns = {
        "target_before": target_before,
        "target_after": target_after,
        "source_before": 1.0,
        "source_after": source_after,
    }
    return {
        "method": method,
        "mean_return": returns,
        "gap_closed": gap_closed(returns),
        "domain_gap_after": {"accuracy": accuracy},
    }


def test_the_summary_warns_when_the_classifier_is_fooled_and_nothing_was_gained():
    """Issue 18's seed 1: classifier at 0.50, target return 0.48 -> 0.44: never reported as adapted."""
    fooled = _summary(0.48, 0.44, 1.0, 0.50)
    assert fooled["gap_closed"] == pytest.approx(-0.04 / 0.52)
    (warning,) = adaptation_warnings(fooled)
    assert warning.startswith("NOT ADAPTED: the domain classifier is fooled (held-out accuracy 0.50)")
    assert "0.48 -> 0.44, -8% of the gap closed" in warning and "try --method consistency" in warning
    (warning,) = adaptation_warnings(_summary(0.48, 0.50, 1.0, 0.97, method="consistency"))
    assert warning.startswith("NOT ADAPTED: the target return did not rise") and "--method" not in warning
    assert adaptation_warnings(_summary(0.20, 0.72, 1.0, 0.50)) == []  # 65% of the gap: adapted
    assert adaptation_warnings(_summary(0.98, 0.98, 1.0, 0.50)) == []  # no gap to close
    assert _summary(0.98, 0.98, 1.0, 0.5)["gap_closed"] is None
    (warning,) = adaptation_warnings(_summary(0.20, 0.90, 0.80, 0.50))
    assert warning == "the source return fell (1.00 -> 0.80)"


@pytest.mark.usefixtures("one_thread")
def test_consistency_on_paired_states_recovers_distractors_at_a_tiny_budget(catch_ppo):
    """Issue 18: 3 distractors at 200/255 cut the catches to a fifth or less; at a tiny budget (200 steps, 1000
    states per domain) teaching the source agent's actions on the target twins (``consistency``, the default)
    closes most of the gap (>= 60%) with the source kept and the twins' agreement up. Aligning the domains
    (``dann``) at the same budget keeps the source and does not lower the target; how it compares with
    consistency is not stable at this budget (it closed under half of the gap with the packages of issue 18,
    77% with stable-baselines3 2.9.2 / gymnasium 1.4 where consistency closed 69%): the methods are compared
    on 100-episode rows in bench/adapt_acceptance.py, not here."""
    shift = {"distractors": 3, "distractor_intensity": 200}
    kw = dict(target_env_kwargs=shift, steps=200, states=1000, lr=3e-3, eval_episodes=30, progress=False)
    _, aligned = adapt(catch_ppo, method="dann", **kw)
    _, paired = adapt(catch_ppo, method="consistency", **kw)
    a, p = aligned.summary, paired.summary
    assert a["mean_return"]["target_before"] == p["mean_return"]["target_before"] <= 0.2  # <= 60% caught
    assert p["gap_closed"] >= 0.6 and p["warnings"] == []  # 0.69-0.93 measured (30 episodes: +-1 catch)
    assert a["mean_return"]["target_after"] >= a["mean_return"]["target_before"]
    assert a["mean_return"]["source_after"] >= 0.9 and p["mean_return"]["source_after"] >= 0.9
    assert p["paired_agreement"]["after"] > p["paired_agreement"]["before"] + 0.1


@pytest.mark.slow  # ~2 min on 2 cores; the method's CI proof is the paired-states test above
def test_adaptation_recovers_the_shifted_domain_and_beats_source_fine_tuning(catch_ppo_path, tmp_path):
    """A brighter background (offset 100/255) breaks the agent; adaptation without target rewards recovers it.

    The same training on source states alone (``dann`` with the domain loss off) does not: the gain
    comes from what the method sees of the target.
    """
    kw = dict(target_wrappers=SHIFT, states=4000, eval_episodes=50, progress=False)
    adapted = adapt_checkpoint(catch_ppo_path, tmp_path / "dann", **kw)
    baseline = adapt_checkpoint(catch_ppo_path, tmp_path / "none", method="dann", coef=0.0, **kw)
    r, b = adapted.spec["adaptation"]["mean_return"], baseline.spec["adaptation"]["mean_return"]
    assert r["target_before"] <= 0.0  # catch rate <= 50% in the shifted domain before
    assert r["target_after"] >= 0.9  # >= 95% after
    assert r["source_after"] >= 0.9  # and still >= 95% where it was trained
    assert b["target_after"] <= r["target_before"] + 0.3

    # a checkpoint like any other: its environment is the target domain, its lineage names the source
    loaded = rllab.load(tmp_path / "dann")
    assert loaded.spec["env"]["wrappers"] == SHIFT
    step = loaded.spec["lineage"][-1]
    assert step["transform"] == "adapt" and step["parent"] == str(catch_ppo_path)
    assert step["params"]["method"] == "consistency" and step["params"]["align"] == "first"
    assert step["params"]["coef"] == 0.0  # consistency alone by default
    assert step["result"]["warnings"] == [] and step["result"]["gap_closed"] >= 0.9
    obs, _ = loaded.make_env().reset(seed=0)
    assert obs.min() == 100  # the shifted background
    catches = np.asarray(rllab.evaluate(loaded, episodes=20, seed=5).returns)
    assert (catches > 0).mean() >= 0.9


def test_adapt_runs_on_a_vector_agent_and_is_reproducible(cartpole_ppo_path, tmp_path):
    kw = dict(
        target_wrappers=[{"name": "ObservationShift", "kwargs": {"offset": 0.05}}],
        steps=30,
        states=400,
        eval_episodes=1,
        seed=3,
        progress=False,
    )
    a = adapt_checkpoint(cartpole_ppo_path, tmp_path / "a", **kw)
    b = adapt_checkpoint(cartpole_ppo_path, tmp_path / "b", **kw)
    assert a.spec["lineage"][-1]["params"]["align"] == "first"
    for (name, pa), (_, pb) in zip(a.policy.state_dict().items(), b.policy.state_dict().items(), strict=True):
        assert th.equal(pa, pb), name
    assert a.spec["obs_stats"] is not None  # re-measured in the target domain


def test_cli_adapts_and_refuses_bad_input(catch_ppo_path, tmp_path, capsys):
    out = tmp_path / "cli"
    shift = json.dumps(SHIFT)
    args = ["adapt", str(catch_ppo_path), "--steps", "20", "--states", "200", "--episodes", "2", "--no-progress"]
    assert main([*args, "--target-wrappers", shift, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "ObservationShift(offset=100)" in printed
    events = EventAccumulator(str(out / "tb" / "adapt"))
    events.Reload()
    assert {"adapt/task_loss", "adapt/consistency_loss", "adapt/classifier_accuracy"} <= set(events.Tags()["scalars"])
    summary = rllab.load(out).spec["adaptation"]
    warned = [line.strip().removeprefix("warning: ") for line in printed.splitlines() if "warning:" in line]
    assert warned == summary["warnings"]
    assert "paired action agreement" in printed and "adapt/paired_agreement" in events.Tags()["scalars"]
    after = summary["mean_return"]["target_after"]
    assert events.Scalars("adapt/target_mean_return")[-1].value == pytest.approx(after)
    assert main([*args, "--target-wrappers", shift, "--out", str(out)]) == 2  # never overwrites
    assert main([*args, "--target-wrappers", shift, "--method", "entropy", "--out", str(tmp_path / "e")]) == 0
    step = rllab.load(tmp_path / "e").spec["lineage"][-1]
    assert step["params"]["method"] == "entropy" and step["params"]["coef"] == 1.0
    bad = tmp_path / "bad"
    for extra, message in [
        ([], "give the target domain"),
        (["--target-wrappers", "{name: x"], "not valid YAML"),
        (["--target-wrappers", "[{kwargs: {}}]"], "need a name"),
        (["--target-wrappers", "[{name: Nope}]"], "unknown wrapper"),
        (["--target-env-kwargs", "{rows: 12}"], "do not match"),  # other observation shape
        (["--target-env-kwargs", "{rows: 12}", "--align", "extractor"], "do not match"),
        (["--target-wrappers", shift, "--coef", "-1"], "--coef"),
    ]:
        assert main([*args, *extra, "--out", str(bad)]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (extra, err)
        assert not bad.exists()


def test_eval_in_a_shifted_domain_leaves_the_checkpoint_alone(catch_ppo_path, tmp_path, capsys):
    spec_before = (catch_ppo_path / "agent.json").read_text()
    args = ["eval", str(catch_ppo_path), "--episodes", "20"]
    assert main([*args, "--json", str(tmp_path / "clean.json")]) == 0
    assert main([*args, "--wrappers", json.dumps(SHIFT), "--json", str(tmp_path / "shifted.json")]) == 0
    assert "on Catch-v0 + ObservationShift(offset=100)" in capsys.readouterr().out
    clean = json.loads((tmp_path / "clean.json").read_text())
    shifted = json.loads((tmp_path / "shifted.json").read_text())
    assert shifted["domain"] == "Catch-v0 + ObservationShift(offset=100)"
    assert clean["mean_return"] >= 0.9 and shifted["mean_return"] <= clean["mean_return"] - 0.5
    assert (catch_ppo_path / "agent.json").read_text() == spec_before
    for extra, message in [
        (["--wrappers", "{name: ObservationShift}"], "must be a YAML/JSON list"),
        (["--env-kwargs", "{rows: 12}"], "do not match"),
        (["--env-kwargs", "[1]"], "must be a YAML/JSON mapping"),
    ]:
        assert main([*args, *extra]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("align", ["first", "latent"])
def test_adapt_trains_a_dqn_agent_towards_its_q_values(tmp_path, align):
    """DQN agents keep their Q-values on source states (relative squared error), aligned where asked."""
    teacher = rllab.train("dqn", "CartPole-v1", seed=0, steps=500, out=tmp_path / "dqn", progress=False)
    shift = [{"name": "ObservationShift", "kwargs": {"scale": 2.0}}]
    adapted = adapt_checkpoint(
        teacher.path,
        tmp_path / "a",
        target_wrappers=shift,
        align=align,
        steps=200,
        states=400,
        eval_episodes=1,
        progress=False,
    )
    assert adapted.has_q and adapted.spec["lineage"][-1]["params"]["align"] == align
    obs = np.stack([teacher.make_env().reset(seed=i)[0] for i in range(32)])  # source states
    with th.no_grad():
        q_s, q_t = adapted.q_values(obs), teacher.q_values(obs)
    assert not th.equal(q_s, q_t)  # trained ...
    assert ((q_s - q_t).pow(2).mean() / q_t.pow(2).mean()).item() < 0.05  # ... and still close to the source's
    assert adapted.spec["adaptation"]["history"][-1]["task"] < 0.05


def test_gsde_agents_can_be_adapted_pruned_quantized_and_sanity_checked(tmp_path):
    """PPO on Pendulum uses gSDE by default, whose noise matrices are not graph leaves: deepcopy alone fails."""
    from explain.faithfulness import sanity_check
    from explain.methods import Saliency
    from rllab.agent import clone_module
    from rllab.cli.transforms import prune_checkpoint, quantize_checkpoint

    teacher = rllab.train("ppo", "Pendulum-v1", seed=0, steps=256, out=tmp_path / "pend", progress=False)
    assert teacher.policy.use_sde
    copy_ = clone_module(teacher.policy)
    for (name, a), (_, b) in zip(copy_.state_dict().items(), teacher.policy.state_dict().items(), strict=True):
        assert th.equal(a, b) and a.data_ptr() != b.data_ptr(), name
    assert not teacher.policy.action_dist.exploration_mat.is_leaf  # the original is left as it was
    shift = [{"name": "ObservationShift", "kwargs": {"offset": 0.1}}]
    adapted = adapt_checkpoint(
        teacher.path, tmp_path / "a", target_wrappers=shift, steps=50, states=400, eval_episodes=1, progress=False
    )
    assert adapted.spec["adaptation"]["history"][-1]["task"] < 0.05  # Gaussian KL to the source's actions
    with pytest.raises(RllabError, match="needs discrete actions"):
        adapt_checkpoint(teacher.path, tmp_path / "e", target_wrappers=shift, method="entropy", progress=False)
    pruned = prune_checkpoint(teacher.path, 0.5, tmp_path / "p", steps=256, epochs=1, eval_episodes=1, progress=False)
    assert pruned.spec["lineage"][-1]["transform"] == "prune"
    quantized = quantize_checkpoint(teacher.path, out=tmp_path / "q", eval_episodes=1)
    assert quantized.spec["lineage"][-1]["transform"] == "quantize"
    obs = np.stack([teacher.make_env().reset(seed=i)[0] for i in range(8)])
    check = sanity_check(teacher, obs, Saliency(teacher).for_agent)  # randomises a copy of the agent
    assert np.isfinite(check["spearman_full"])


def test_transforms_refuse_an_existing_checkpoint_before_training(cartpole_ppo_path, catch_ppo_path, monkeypatch):
    import importlib

    cli = importlib.import_module("rllab.cli.transforms")
    distill_module = importlib.import_module("rllab.transforms.distill")  # the package's names are the functions
    prune_module = importlib.import_module("rllab.transforms.prune")
    adapt_module = importlib.import_module("rllab.transforms.adapt.core")

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(distill_module, "train_by_distillation", no_training)
    monkeypatch.setattr(prune_module, "global_magnitude_prune", no_training)
    monkeypatch.setattr(adapt_module, "paired_states", no_training)
    with pytest.raises(RllabError, match="already holds a checkpoint"):
        cli.distill_checkpoint(cartpole_ppo_path, [4], out=catch_ppo_path)
    with pytest.raises(RllabError, match="already holds a checkpoint"):
        cli.prune_checkpoint(cartpole_ppo_path, 0.5, out=catch_ppo_path)
    with pytest.raises(RllabError, match="must differ"):
        adapt_checkpoint(catch_ppo_path, catch_ppo_path, target_wrappers=SHIFT)
