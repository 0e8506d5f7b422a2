"""Pruning (rllab prune): unstructured and structured, iterative with distillation or RL fine-tuning, unit
importance, DQN's target network."""

from __future__ import annotations

import pytest
import torch as th
from safetensors import safe_open

import rllab
from rllab.cli.transforms import prune_checkpoint
from rllab.transforms.prune import schedule, weight_sparsity
from rllab.transforms.summary import parameter_counts
from tests.helpers import collected_states

pytestmark = pytest.mark.usefixtures("one_thread")


def test_unstructured_pruning_masks_are_permanent(cartpole_ppo_path, tmp_path):
    out = tmp_path / "sparse"
    prune_checkpoint(cartpole_ppo_path, 0.8, out=out, finetune="none", seed=0, eval_episodes=2, progress=False)
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
    prune_checkpoint(
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
    x = collected_states(teacher, 64)
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
    prune_checkpoint(
        cartpole_ppo_path, 0.9, out=out, iterative=3, steps=5000, epochs=10, seed=0, eval_episodes=5, progress=False
    )
    agent = rllab.load(out)
    assert weight_sparsity(agent.policy) == pytest.approx(0.9, abs=1e-3)
    rounds = agent.spec["lineage"][-1]["result"]["rounds"]
    assert [r["sparsity"] for r in rounds] == pytest.approx(schedule(0.9, 3), abs=1e-3)
    assert agent.spec["compression"]["mean_return"] >= 400


def test_rl_finetuning_keeps_pruned_weights_zero(cartpole_ppo_path, tmp_path):
    kw = dict(seed=0, eval_episodes=1, progress=False)
    frozen = prune_checkpoint(cartpole_ppo_path, 0.7, out=tmp_path / "frozen", finetune="none", **kw)
    tuned = prune_checkpoint(cartpole_ppo_path, 0.7, out=tmp_path / "rl", finetune="rl", steps=512, **kw)
    w0 = frozen.policy.mlp_extractor.policy_net[2].weight
    w1 = tuned.policy.mlp_extractor.policy_net[2].weight
    assert th.equal(w0 == 0, w1 == 0)  # same mask, still exactly zero after PPO updates
    assert not th.equal(w0, w1)  # and the survivors were trained
    assert tuned.spec["lineage"][-1]["result"]["rounds"][0]["rl_steps"] >= 512


def test_structured_pruning_shrinks_cnn_features(catch_ppo_path, tmp_path):
    out = tmp_path / "catch-narrow"
    prune_checkpoint(
        catch_ppo_path, 0.75, out=out, structured=True, finetune="none", seed=0, eval_episodes=2, progress=False
    )
    agent, teacher = rllab.load(out), rllab.load(catch_ppo_path)
    assert agent.spec["policy"]["kwargs"]["features_extractor_kwargs"]["features_dim"] == 32
    assert agent.policy.features_extractor.linear[0].weight.shape[0] == 32
    kept = agent.spec["lineage"][-1]["result"]["kept_units"]["features"][0]
    x = collected_states(teacher, 32)
    with th.no_grad():
        f_t = teacher.policy.extract_features(teacher.preprocess(x), teacher.policy.features_extractor)
        f_p = agent.policy.extract_features(agent.preprocess(x), agent.policy.features_extractor)
    assert th.allclose(f_p, f_t[:, kept], atol=1e-6)
    assert (out / "weights.safetensors").stat().st_size < 0.3 * (catch_ppo_path / "weights.safetensors").stat().st_size


# ----------------------------------------------------------------------------- widths, importance, DQN
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
    agent = prune_checkpoint(
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
    states = collected_states(agent, 16).numpy()
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
    agent = prune_checkpoint(run, 0.6, out=tmp_path / "p", finetune="none", eval_episodes=1, progress=False)
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
