"""Compression transforms: distillation, pruning, quantisation, lineage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch as th
from safetensors import safe_open

import rllab
from rllab.cli import main
from rllab.transforms import distill, distillation_loss, load_quantized, prune, quantize
from rllab.transforms.distill import ensemble_target, new_student
from rllab.transforms.prune import schedule, weight_sparsity
from rllab.transforms.summary import parameter_counts

pytestmark = pytest.mark.usefixtures("one_thread")


def _states(agent: rllab.Agent, n: int = 256) -> th.Tensor:
    from rllab.transforms.distill import collect_states

    return th.as_tensor(collect_states(agent.act, agent, n, seed=123))


# ------------------------------------------------------------------ losses
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
    x = _states(cartpole_ppo, 64)
    target = ensemble_target([cartpole_ppo, cartpole_ppo], x, temperature=2.0)
    expected = th.log_softmax(cartpole_ppo.logits(x).detach() / 2.0, -1)
    assert th.allclose(th.log_softmax(target / 2.0, -1), expected, atol=1e-5)


# ------------------------------------------------------------ distillation
def test_distilled_student_is_small_keeps_return_and_records_lineage(cartpole_ppo_path, tmp_path):
    out = tmp_path / "student"
    distill(cartpole_ppo_path, [8, 8], out=out, steps=6000, rounds=3, epochs=10, seed=0, progress=False)
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


# ------------------------------------------------------------------ pruning
def test_unstructured_pruning_masks_are_permanent(cartpole_ppo_path, tmp_path):
    out = tmp_path / "sparse"
    prune(cartpole_ppo_path, 0.8, out=out, finetune="none", seed=0, eval_episodes=2, progress=False)
    agent = rllab.load(out)
    assert weight_sparsity(agent.policy) == pytest.approx(0.8, abs=1e-3)
    with safe_open(str(out / "weights.safetensors"), "pt") as f:
        assert not any(k.endswith(("_orig", "_mask")) for k in f.keys())
    teacher = rllab.load(cartpole_ppo_path)
    # the surviving weights are the teacher's largest ones, unchanged without fine-tuning
    w_t = teacher.policy.mlp_extractor.policy_net[2].weight
    w_p = agent.policy.mlp_extractor.policy_net[2].weight
    kept = w_p != 0
    assert th.equal(w_p[kept], w_t[kept])
    assert schedule(0.9, 3)[-1] == pytest.approx(0.9) and schedule(0.9, 3)[0] < schedule(0.9, 3)[1]


@pytest.mark.parametrize("importance", ["magnitude", "gradient"])
def test_structured_pruning_removes_units_and_keeps_their_outputs(cartpole_ppo_path, tmp_path, importance):
    out = tmp_path / f"narrow-{importance}"
    prune(
        cartpole_ppo_path,
        0.5,
        out=out,
        structured=True,
        importance=importance,
        finetune="none",
        seed=0,
        eval_episodes=2,
        progress=False,
    )
    agent = rllab.load(out)
    teacher = rllab.load(cartpole_ppo_path)
    assert agent.spec["policy"]["kwargs"]["net_arch"] == {"pi": [32, 32], "vf": [32, 32]}
    assert agent.policy.mlp_extractor.policy_net[0].weight.shape == (32, 4)
    assert agent.policy.action_net.weight.shape == (2, 32)
    size = (out / "weights.safetensors").stat().st_size
    assert size < 0.35 * (cartpole_ppo_path / "weights.safetensors").stat().st_size
    kept = agent.spec["lineage"][-1]["result"]["kept_units"]["pi"]
    x = _states(teacher, 64)
    with th.no_grad():
        h_t = teacher.policy.mlp_extractor.policy_net[:2](teacher.preprocess(x))
        h_p = agent.policy.mlp_extractor.policy_net[:2](agent.preprocess(x))
    assert th.allclose(h_p, h_t[:, kept[0]], atol=1e-6)
    if importance == "magnitude":
        w = teacher.policy.mlp_extractor.policy_net[0]
        score = w.weight.abs().sum(1) + w.bias.abs()
        assert set(kept[0]) == set(th.topk(score, 32).indices.tolist())


def test_iterative_pruning_with_distillation_recovers_return(cartpole_ppo_path, tmp_path):
    out = tmp_path / "iter"
    # 3 rounds (the acceptance figures' schedule): with 2 rounds of this small budget the return
    # after 90% sparsity depends on the teacher run (500 for one, 9 for another)
    prune(cartpole_ppo_path, 0.9, out=out, iterative=3, steps=5000, epochs=10, seed=0, eval_episodes=5, progress=False)
    agent = rllab.load(out)
    assert weight_sparsity(agent.policy) == pytest.approx(0.9, abs=1e-3)
    rounds = agent.spec["lineage"][-1]["result"]["rounds"]
    assert [r["sparsity"] for r in rounds] == pytest.approx(schedule(0.9, 3), abs=1e-3)
    assert agent.spec["compression"]["mean_return"] >= 400


# ------------------------------------------------------------- quantisation
def test_quantized_round_trip(cartpole_ppo_path, tmp_path):
    out = tmp_path / "int8"
    quantize(cartpole_ppo_path, out=out, seed=0, eval_episodes=5)
    q = load_quantized(out)
    f = rllab.load(cartpole_ppo_path)
    with safe_open(str(out / "weights.safetensors"), "pt") as fh:
        assert fh.get_tensor("policy.mlp_extractor.policy_net.2.weight_int8").dtype == th.int8
        # the 4-input embedding is too small to gain from int8 and stays float
        assert fh.get_tensor("policy.mlp_extractor.policy_net.0.weight").dtype == th.float32
    assert q.spec["quantization"]["dtype"] == "int8"
    assert q.spec["lineage"][-1]["transform"] == "quantize"
    x = _states(f, 256)
    with th.no_grad():
        lq, lf = q.logits(x), f.logits(x)
    assert not th.equal(lq, lf)  # really quantised
    assert (lq - lf).abs().max() < 0.05 * lf.abs().max()
    assert (lq.argmax(-1) == lf.argmax(-1)).float().mean() > 0.97
    size = (out / "weights.safetensors").stat().st_size
    assert size < 0.4 * (cartpole_ppo_path / "weights.safetensors").stat().st_size
    # saved and reloaded: identical outputs
    q.save(tmp_path / "again")
    assert th.equal(load_quantized(tmp_path / "again").logits(x), lq)
    # gradients flow (straight through the rounding) for white-box attacks
    xg = x[:8].clone().requires_grad_(True)
    q.logits(xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    assert q.spec["compression"]["mean_return"] >= 0.95 * 500


# ----------------------------------------------------------------------- CLI
def test_cli_writes_and_refuses_bad_input(cartpole_ppo_path, tmp_path, capsys):
    out = tmp_path / "cli-q"
    assert main(["quantize", str(cartpole_ppo_path), "--out", str(out), "--episodes", "2"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert main(["quantize", str(cartpole_ppo_path), "--out", str(out)]) == 2  # never overwrites
    assert main(["distill", str(cartpole_ppo_path), "--arch", "8,x", "--out", str(tmp_path / "bad")]) == 2
    assert "--arch" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(["prune", str(cartpole_ppo_path), "--sparsity", "1.5", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_same_seed_same_student(cartpole_ppo_path, tmp_path):
    kw = dict(steps=1000, rounds=2, epochs=2, seed=3, eval_episodes=1, progress=False)
    a = distill(cartpole_ppo_path, [4], out=tmp_path / "a", **kw)
    b = distill(cartpole_ppo_path, [4], out=tmp_path / "b", **kw)
    for (na, pa), (_, pb) in zip(a.policy.state_dict().items(), b.policy.state_dict().items(), strict=True):
        assert th.equal(pa, pb), na
    assert np.isfinite(a.spec["lineage"][-1]["result"]["final_loss"])


def test_rl_finetuning_keeps_pruned_weights_zero(cartpole_ppo_path, tmp_path):
    kw = dict(seed=0, eval_episodes=1, progress=False)
    frozen = prune(cartpole_ppo_path, 0.7, out=tmp_path / "frozen", finetune="none", **kw)
    tuned = prune(cartpole_ppo_path, 0.7, out=tmp_path / "rl", finetune="rl", steps=512, **kw)
    w0 = frozen.policy.mlp_extractor.policy_net[2].weight
    w1 = tuned.policy.mlp_extractor.policy_net[2].weight
    assert th.equal(w0 == 0, w1 == 0)  # same mask, still exactly zero after PPO updates
    assert not th.equal(w0, w1)  # and the survivors were trained
    assert tuned.spec["lineage"][-1]["result"]["rounds"][0]["rl_steps"] >= 512


def test_continuous_ensemble_distillation_with_critic(tmp_path):
    """Gaussian-KL distillation of a two-teacher ensemble on Pendulum, critic included."""
    teachers = [
        rllab.train("ppo", "Pendulum-v1", seed=s, steps=512, n_envs=1, out=tmp_path / f"t{s}", progress=False)
        for s in (0, 1)
    ]
    paths = [t.path for t in teachers]
    out = tmp_path / "student"
    student = distill(
        paths, [16], out=out, steps=2000, rounds=2, epochs=30, critic=True, seed=0, eval_episodes=1, progress=False
    )
    assert student.has_critic and rllab.load(out).spec["lineage"][-1]["params"]["teachers"] == [str(p) for p in paths]
    x = _states(teachers[0], 512)
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


def test_structured_pruning_shrinks_cnn_features(catch_ppo_path, tmp_path):
    out = tmp_path / "catch-narrow"
    prune(catch_ppo_path, 0.75, out=out, structured=True, finetune="none", seed=0, eval_episodes=2, progress=False)
    agent, teacher = rllab.load(out), rllab.load(catch_ppo_path)
    assert agent.spec["policy"]["kwargs"]["features_extractor_kwargs"]["features_dim"] == 32
    assert agent.policy.features_extractor.linear[0].weight.shape[0] == 32
    kept = agent.spec["lineage"][-1]["result"]["kept_units"]["features"][0]
    x = _states(teacher, 32)
    with th.no_grad():
        f_t = teacher.policy.extract_features(teacher.preprocess(x), teacher.policy.features_extractor)
        f_p = agent.policy.extract_features(agent.preprocess(x), agent.policy.features_extractor)
    assert th.allclose(f_p, f_t[:, kept], atol=1e-6)
    assert (out / "weights.safetensors").stat().st_size < 0.3 * (catch_ppo_path / "weights.safetensors").stat().st_size


def test_dqn_teacher_distils_into_policy_network(tmp_path):
    """Rusu et al. (2016): softmax(Q / T) of a DQN teacher as the target of a policy network."""
    teacher = rllab.train("dqn", "CartPole-v1", seed=0, steps=1000, out=tmp_path / "dqn", progress=False)
    student = distill(
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
    x = _states(teacher, 512)
    agree = (loaded.act(x) == teacher.act(x)).mean()
    assert agree >= 0.9, agree
    assert th.equal(loaded.logits(x), student.logits(x))


# ------------------------------------------------------------- fixed bugs
def _untrained_run(tmp_path, algo: str, net_arch, name: str = "run"):
    """An untrained CartPole checkpoint with the given architecture (pruning needs no trained weights)."""
    import gymnasium as gym

    from rllab.agent import agent_from_spec, spec_skeleton

    env = gym.make("CartPole-v1")
    cls = "DQNPolicy" if algo == "dqn" else "ActorCriticPolicy"
    spec = spec_skeleton(
        algo, "CartPole-v1", {}, [], env.observation_space, env.action_space, cls, {"net_arch": net_arch}, algo != "dqn"
    )
    env.close()
    th.manual_seed(0)
    agent = agent_from_spec(spec).eval()
    agent.spec["training"] = {"complete": True}
    agent.save(tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize(
    "net_arch,sparsity,rounds,widths",
    [
        ({"pi": [64, 64], "vf": [10]}, 0.5, 2, {"pi": [32, 32], "vf": [5]}),
        ({"pi": [25], "vf": [25]}, 0.75, 1, {"pi": [7], "vf": [7]}),
        ({"pi": [10, 20], "vf": [64, 64]}, 0.7, 1, {"pi": [3, 6], "vf": [20, 20]}),
    ],
)
def test_structured_pruning_reaches_each_layers_target_width(tmp_path, net_arch, sparsity, rounds, widths):
    run = _untrained_run(tmp_path, "ppo", net_arch)
    agent = prune(
        run,
        sparsity,
        out=tmp_path / "p",
        structured=True,
        iterative=rounds,
        finetune="none",
        eval_episodes=1,
        progress=False,
    )
    assert agent.spec["policy"]["kwargs"]["net_arch"] == widths
    assert rllab.load(tmp_path / "p").spec["lineage"][-1]["result"]["widths"] == widths


def test_gradient_importance_without_a_critic_ranks_the_critic_by_magnitude(cartpole_ppo):
    from rllab.agent import Agent, clone_module
    from rllab.transforms.prune import remove_units, unit_importance

    spec = {**cartpole_ppo.spec, "policy": {**cartpole_ppo.spec["policy"], "has_critic": False}}
    agent = Agent(spec, clone_module(cartpole_ppo.policy)).eval()  # a distilled student, REINFORCE without baseline
    states = _states(agent, 16).numpy()
    scores = unit_importance(agent, states, "gradient")
    magnitude = unit_importance(agent, None, "magnitude")
    for got, want in zip(scores["vf"], magnitude["vf"], strict=True):
        assert th.equal(got, want)
    with_critic = unit_importance(cartpole_ppo, states, "gradient")
    for got, want in zip(scores["pi"], with_critic["pi"], strict=True):  # the actor's scores are the gradient ones
        assert th.allclose(got, want)
    policy, kwargs, _ = remove_units(agent, {"pi": [16, 16], "vf": [8, 8]}, scores)
    assert kwargs["net_arch"] == {"pi": [16, 16], "vf": [8, 8]}


def test_dqn_pruning_budget_and_sparsity_leave_out_the_target_network(tmp_path):
    from rllab.transforms.prune import prunable

    run = _untrained_run(tmp_path, "dqn", [64, 64])
    dqn = rllab.load(run)
    with th.no_grad():  # a trained DQN's target network lags its online network
        for p in dqn.policy.q_net_target.parameters():
            p.mul_(0.5)
    dqn.save(run)
    agent = prune(run, 0.6, out=tmp_path / "p", finetune="none", eval_episodes=1, progress=False)
    loaded = rllab.load(tmp_path / "p")
    q_net, target = loaded.policy.q_net, loaded.policy.q_net_target
    assert weight_sparsity(q_net) == pytest.approx(0.6, abs=1e-3)  # the acting network holds the whole budget
    assert loaded.spec["lineage"][-1]["result"]["weight_sparsity"] == pytest.approx(0.6, abs=1e-3)
    assert weight_sparsity(loaded.policy) == pytest.approx(0.6, abs=1e-3)
    for a, b in zip(q_net.state_dict().values(), target.state_dict().values(), strict=True):
        assert th.equal(a, b)  # the target network is the pruned network
    target_ids = {id(m) for m in target.modules()}
    assert not any(id(m) in target_ids for m, _ in prunable(agent.policy))
    # the reported parameter count is the acting network's, not twice it
    counts = parameter_counts(loaded)
    assert counts["policy"]["total"] == sum(p.numel() for p in q_net.parameters()) == counts["actor"]["total"]
    assert counts["policy"]["total"] * 2 == sum(p.numel() for p in loaded.policy.parameters())


def test_quantised_checkpoints_are_not_pruned_and_distil_into_float_students(cartpole_ppo_path, tmp_path):
    q = quantize(cartpole_ppo_path, out=tmp_path / "q", eval_episodes=1).path
    with pytest.raises(rllab.RllabError, match="quantised checkpoint cannot be pruned"):
        prune(q, 0.5, out=tmp_path / "p", finetune="none", eval_episodes=1, progress=False)
    assert not (tmp_path / "p").exists()
    distill(q, arch=[8], steps=64, rounds=1, epochs=1, out=tmp_path / "d", eval_episodes=1, progress=False)
    student = rllab.load(tmp_path / "d")  # the int8 teacher's quantisation section is not the student's
    assert "quantization" not in student.spec
    assert student.policy.mlp_extractor.policy_net[0].weight.shape == (8, 4)
