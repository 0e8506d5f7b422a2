"""Regression tests for fixed bugs in the agent, checkpoints, transforms, import and evaluation."""

from __future__ import annotations

import copy
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import rllab
from rllab.agent import Agent, agent_from_spec, clone_module, spec_skeleton
from rllab.transforms import distill, prune


@pytest.fixture(autouse=True)
def _one_thread():
    previous = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(previous)


def _obs(agent: Agent, n: int = 32, seed: int = 0) -> np.ndarray:
    space = copy.deepcopy(agent.observation_space)
    space.seed(seed)
    return np.stack([space.sample() for _ in range(n)])


def _purifier_state(agent: Agent) -> dict[str, th.Tensor]:
    return {k: v.detach().clone() for k, v in agent.purifier.state_dict().items()}


@pytest.fixture(scope="module")
def purified_path(cartpole_ppo_path, tmp_path_factory) -> Path:
    """The CartPole PPO agent behind a (non-identity, fixed-seed) MLP purifier, saved as a checkpoint."""
    base = rllab.load(cartpole_ppo_path)
    spec = copy.deepcopy(base.spec)
    spec["preprocessing"]["purifier"] = {"kind": "mlp", "hidden": [8], "center": [0.0] * 4, "scale": [1.0] * 4}
    agent = Agent(spec, clone_module(base.policy))
    gen = th.Generator().manual_seed(0)
    with th.no_grad():
        for p in agent.purifier.parameters():
            p.copy_(0.05 * th.randn(p.shape, generator=gen))
    out = tmp_path_factory.mktemp("purified") / "run"
    agent.save(out)
    return out


# ------------------------------------------------------- bug 1: derive keeps the input defenses
def test_derive_copies_the_purifier_and_normalisation(purified_path):
    parent = rllab.load(purified_path)
    child = parent.derive(clone_module(parent.policy), "prune", {}, purified_path)
    for k, v in _purifier_state(parent).items():
        assert th.equal(child.purifier.state_dict()[k], v), k
    x = _obs(parent)
    assert th.equal(child.logits(x), parent.logits(x))
    # a copy, not shared: changing the child's purifier leaves the parent's alone
    with th.no_grad():
        next(child.purifier.parameters()).add_(1.0)
    assert not th.equal(next(child.purifier.parameters()), next(parent.purifier.parameters()))
    assert not child.training  # derived from an agent in eval mode


def test_prune_and_distill_keep_a_trained_purifier(purified_path, tmp_path):
    parent_state = _purifier_state(rllab.load(purified_path))
    pruned = rllab.load(
        prune(purified_path, sparsity=0.3, finetune="none", out=tmp_path / "p", eval_episodes=1, progress=False).path
    )
    student = rllab.load(
        distill(
            purified_path, arch=[8], steps=64, rounds=1, epochs=2, out=tmp_path / "d", eval_episodes=1, progress=False
        ).path
    )
    for agent in (pruned, student):
        for k, v in parent_state.items():
            assert th.equal(agent.purifier.state_dict()[k], v), k


def test_distillation_trains_only_the_student_policy(purified_path):
    from rllab.transforms.distill import fit, new_student, student_kwargs

    teacher = rllab.load(purified_path)
    kwargs = student_kwargs(teacher, [8], False, None)
    student = teacher.derive(new_student(teacher, kwargs), "distill", {}, purified_path, policy_kwargs=kwargs)
    before_policy = [p.detach().clone() for p in student.policy.parameters()]
    states = _obs(teacher, 64).astype(np.float32)
    fit(student, [teacher], states, 1.0, 2, 1e-2, 32, False, th.Generator().manual_seed(0))
    for k, v in _purifier_state(teacher).items():
        assert th.equal(student.purifier.state_dict()[k], v), k
    assert any(not th.equal(a, b) for a, b in zip(before_policy, student.policy.parameters(), strict=True))


# ------------------------------------------------------- bug 9: device after quantisation
def test_quantized_agent_reports_the_device_it_was_moved_to():
    from rllab.transforms.quantize import apply_quantization_spec, quantize_agent

    spec = spec_skeleton(
        "ppo",
        "X",
        {},
        [],
        gym.spaces.Box(-1, 1, (20,), np.float32),
        gym.spaces.Discrete(3),
        "ActorCriticPolicy",
        {"net_arch": [64, 64]},
        True,
    )
    agent = agent_from_spec(spec).eval()
    assert agent.device.type == "cpu"  # fills the cache
    q = quantize_agent(agent)
    assert q.device.type == "cpu"
    assert q.to("meta").device.type == "meta"
    rebuilt = agent_from_spec(copy.deepcopy(spec))
    assert rebuilt.device.type == "cpu"
    apply_quantization_spec(rebuilt, q.spec["quantization"])
    assert rebuilt.to("meta").device.type == "meta"
