"""Distillation (rllab distill): the losses, students of one or several teachers, DQN and continuous
teachers, reproducibility, lineage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch as th

import rllab
from rllab.cli import main
from rllab.cli.transforms import distill_checkpoint
from rllab.transforms import distillation_loss
from rllab.transforms.distill import ensemble_target, new_student
from rllab.transforms.summary import parameter_counts
from tests.helpers import collected_states, purifier_state, sample_obs

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------- losses
def test_distillation_loss_zero_for_identical_and_positive_otherwise():
    g = th.Generator().manual_seed(0)
    z = th.randn(32, 4, generator=g)
    for t in (0.5, 1.0, 4.0):
        assert distillation_loss(z, z.clone(), t).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(z + th.randn(32, 4, generator=g), z, 1.0).item() > 1e-3
    # temperature softens both distributions: the unscaled KL shrinks as T grows,
    # and T^2 * KL tends to the logit-matching limit (half the mean squared centred-logit gap, Hinton 2015 §2.1)
    s = z + 0.3 * th.randn(32, 4, generator=g)
    kls = [distillation_loss(s, z, t).item() / t**2 for t in (1.0, 2.0, 8.0)]
    assert kls[0] > kls[1] > kls[2] > 0
    d = (s - s.mean(-1, keepdim=True)) - (z - z.mean(-1, keepdim=True))
    limit = (d.pow(2).mean(-1) / 2).mean().item()
    assert distillation_loss(s, z, 100.0).item() == pytest.approx(limit, rel=0.02)


def test_gaussian_kl_matches_closed_form():
    m_t, s_t = th.tensor([[0.3]]), th.tensor([[0.5]])
    m_s, s_s = th.tensor([[-0.2]]), th.tensor([[0.8]])
    expected = math.log(0.8 / 0.5) + (0.5**2 + 0.5**2) / (2 * 0.8**2) - 0.5
    assert distillation_loss((m_s, s_s), (m_t, s_t)).item() == pytest.approx(expected, rel=1e-5)
    assert distillation_loss((m_t, s_t), (m_t, s_t)).item() == pytest.approx(0.0, abs=1e-7)


def test_ensemble_of_identical_teachers_is_the_teacher(cartpole_ppo):
    x = collected_states(cartpole_ppo, 64)
    target = ensemble_target([cartpole_ppo, cartpole_ppo], x, temperature=2.0)
    expected = th.log_softmax(cartpole_ppo.logits(x).detach() / 2.0, -1)
    assert th.allclose(th.log_softmax(target / 2.0, -1), expected, atol=1e-5)


# -------------------------------------------------------------------------------------------- students
def test_distilled_student_is_small_keeps_return_and_records_lineage(cartpole_ppo_path, tmp_path):
    out = tmp_path / "student"
    distill_checkpoint(cartpole_ppo_path, [8, 8], out=out, steps=6000, rounds=3, epochs=10, seed=0, progress=False)
    student = rllab.load(out)
    teacher = rllab.load(cartpole_ppo_path)
    assert student.spec["policy"]["kwargs"]["net_arch"] == {"pi": [8, 8], "vf": []}
    assert parameter_counts(student)["actor"]["total"] <= 0.1 * parameter_counts(teacher)["actor"]["total"]
    step = student.spec["lineage"][-1]
    assert step["transform"] == "distill" and step["parent"] == str(cartpole_ppo_path)
    assert step["parent_sha256"] == teacher.spec["weights"]["sha256"]
    assert step["params"]["arch"] == [8, 8] and step["params"]["data"] == "mixed"
    summary = student.spec["compression"]
    assert summary["mean_return"] >= 0.95 * 500
    assert summary["file_bytes"] == (out / "weights.safetensors").stat().st_size
    assert set(summary["latency_s"]) == {"batch_1", "batch_256"}
    assert not student.has_critic  # the critic was not distilled, so the checkpoint says so
    assert rllab.evaluate(student, episodes=5).summary()["mean_return"] >= 475


def test_same_seed_same_student(cartpole_ppo_path, tmp_path):
    kw = dict(steps=1000, rounds=2, epochs=2, seed=3, eval_episodes=1, progress=False)
    a = distill_checkpoint(cartpole_ppo_path, [4], out=tmp_path / "a", **kw)
    b = distill_checkpoint(cartpole_ppo_path, [4], out=tmp_path / "b", **kw)
    for (na, pa), (_, pb) in zip(a.policy.state_dict().items(), b.policy.state_dict().items(), strict=True):
        assert th.equal(pa, pb), na
    assert np.isfinite(a.spec["lineage"][-1]["result"]["final_loss"])


def test_distillation_trains_only_the_student_policy(purified_path):
    from rllab.transforms.distill import fit, new_student, student_kwargs

    teacher = rllab.load(purified_path)
    kwargs = student_kwargs(teacher, [8], False, None)
    student = teacher.derive(new_student(teacher, kwargs), "distill", {}, purified_path, policy_kwargs=kwargs)
    before_policy = [p.detach().clone() for p in student.policy.parameters()]
    states = sample_obs(teacher, 64).astype(np.float32)
    fit(student, [teacher], states, 1.0, 2, 1e-2, 32, False, th.Generator().manual_seed(0))
    for k, v in purifier_state(teacher).items():
        assert th.equal(student.purifier.state_dict()[k], v), k
    assert any(not th.equal(a, b) for a, b in zip(before_policy, student.policy.parameters(), strict=True))


def test_continuous_ensemble_distillation_with_critic(tmp_path):
    """Gaussian-KL distillation of a two-teacher ensemble on Pendulum, critic included."""
    teachers = [
        rllab.train("ppo", "Pendulum-v1", seed=s, steps=512, n_envs=1, out=tmp_path / f"t{s}", progress=False)
        for s in (0, 1)
    ]
    paths = [t.path for t in teachers]
    out = tmp_path / "student"
    student = distill_checkpoint(
        paths, [16], out=out, steps=2000, rounds=2, epochs=30, critic=True, seed=0, eval_episodes=1, progress=False
    )
    assert student.has_critic and rllab.load(out).spec["lineage"][-1]["params"]["teachers"] == [str(p) for p in paths]
    x = collected_states(teachers[0], 512)
    target = ensemble_target(teachers, x)
    with th.no_grad():
        mean, std = student.action_dist(x).base_dist.mean, student.action_dist(x).base_dist.stddev
        th.manual_seed(1)
        fresh = new_student(teachers[0], student.spec["policy"]["kwargs"])
        untrained = teachers[0].derive(fresh, "test", {}, paths[0])
        base = untrained.action_dist(x).base_dist
    kl = distillation_loss((mean, std), target).item()
    kl_untrained = distillation_loss((base.mean, base.stddev), target).item()
    assert kl < 0.2 * kl_untrained
    values = th.stack([t.value(x) for t in teachers]).mean(0)
    assert th.nn.functional.mse_loss(student.value(x), values).item() < 0.2 * values.var().item() + 1e-3


def test_dqn_teacher_distils_into_policy_network(tmp_path):
    """Rusu et al. (2016): softmax(Q / T) of a DQN teacher as the target of a policy network."""
    teacher = rllab.train("dqn", "CartPole-v1", seed=0, steps=1000, out=tmp_path / "dqn", progress=False)
    student = distill_checkpoint(
        teacher.path,
        [32],
        out=tmp_path / "s",
        temperature=0.05,
        data="teacher",
        steps=3000,
        rounds=1,
        epochs=30,
        seed=0,
        eval_episodes=1,
        progress=False,
    )
    loaded = rllab.load(tmp_path / "s")
    assert loaded.spec["policy"]["class"] == "ActorCriticPolicy" and loaded.algo == "distill-dqn"
    assert not loaded.has_q
    x = collected_states(teacher, 512)
    agree = (loaded.act(x) == teacher.act(x)).mean()
    assert agree >= 0.9, agree
    assert th.equal(loaded.logits(x), student.logits(x))


def test_ensemble_distillation_records_every_teacher(cartpole_ppo_path, tmp_path, capsys):
    import shutil

    second = tmp_path / "second"
    shutil.copytree(cartpole_ppo_path, second)
    out = tmp_path / "student"
    argv = ["distill", str(cartpole_ppo_path), str(second), "--steps", "200", "--rounds", "1", "--epochs", "1"]
    assert main([*argv, "--episodes", "1", "--out", str(out)]) == 0
    step = json.loads((out / "agent.json").read_text())["lineage"][-1]
    sha = json.loads((Path(cartpole_ppo_path) / "agent.json").read_text())["weights"]["sha256"]
    assert [t["path"] for t in step["teachers"]] == [str(cartpole_ppo_path), str(second)]
    assert [t["resolved"] for t in step["teachers"]] == [str(Path(cartpole_ppo_path).resolve()), str(second.resolve())]
    assert [t["sha256"] for t in step["teachers"]] == [sha, sha]
