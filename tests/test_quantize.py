"""Quantisation (rllab quantize): int8 round trip, the device a quantised agent reports, quantised checkpoints
as parents, the summary beside the parent's figures."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from safetensors import safe_open

import rllab
from rllab.agent import agent_from_spec, spec_skeleton
from rllab.cli import main
from rllab.cli.transforms import distill_checkpoint, prune_checkpoint, quantize_checkpoint
from tests.helpers import collected_states

pytestmark = pytest.mark.usefixtures("one_thread")


def test_quantized_round_trip(cartpole_ppo_path, tmp_path):
    out = tmp_path / "int8"
    quantize_checkpoint(cartpole_ppo_path, out=out, seed=0, eval_episodes=5)
    q = rllab.load(out)
    f = rllab.load(cartpole_ppo_path)
    with safe_open(str(out / "weights.safetensors"), "pt") as fh:
        assert fh.get_tensor("policy.mlp_extractor.policy_net.2.weight_int8").dtype == th.int8
        # the 4-input embedding is too small to gain from int8 and stays float
        assert fh.get_tensor("policy.mlp_extractor.policy_net.0.weight").dtype == th.float32
    assert q.spec["quantization"]["dtype"] == "int8"
    assert q.spec["lineage"][-1]["transform"] == "quantize"
    x = collected_states(f, 256)
    with th.no_grad():
        lq, lf = q.logits(x), f.logits(x)
    assert not th.equal(lq, lf)  # really quantised
    assert (lq - lf).abs().max() < 0.05 * lf.abs().max()
    assert (lq.argmax(-1) == lf.argmax(-1)).float().mean() > 0.97
    size = (out / "weights.safetensors").stat().st_size
    assert size < 0.4 * (cartpole_ppo_path / "weights.safetensors").stat().st_size
    # saved and reloaded: identical outputs
    q.save(tmp_path / "again")
    assert th.equal(rllab.load(tmp_path / "again").logits(x), lq)
    # gradients flow (straight through the rounding) for white-box attacks
    xg = x[:8].clone().requires_grad_(True)
    q.logits(xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    assert q.spec["compression"]["mean_return"] >= 0.95 * 500


def test_quantized_agent_reports_the_device_it_was_moved_to():
    from rllab.nn.quantized import apply_quantization_spec
    from rllab.transforms.quantize import quantize_agent

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


def test_quantised_checkpoints_are_not_pruned_and_distil_into_float_students(cartpole_ppo_path, tmp_path):
    q = quantize_checkpoint(cartpole_ppo_path, out=tmp_path / "q", eval_episodes=1).path
    with pytest.raises(rllab.RllabError, match="quantised checkpoint cannot be pruned"):
        prune_checkpoint(q, 0.5, out=tmp_path / "p", finetune="none", eval_episodes=1, progress=False)
    assert not (tmp_path / "p").exists()
    distill_checkpoint(q, arch=[8], steps=64, rounds=1, epochs=1, out=tmp_path / "d", eval_episodes=1, progress=False)
    student = rllab.load(tmp_path / "d")  # the int8 teacher's quantisation section is not the student's
    assert "quantization" not in student.spec
    assert student.policy.mlp_extractor.policy_net[0].weight.shape == (8, 4)


def test_quantize_prints_the_parents_figures_beside_the_new_ones(cartpole_ppo_path, tmp_path, capsys):
    out = tmp_path / "q"
    assert main(["quantize", str(cartpole_ppo_path), "--episodes", "1", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    new = next(ln for ln in lines if ln.strip().startswith("new "))
    parent = next(ln for ln in lines if ln.strip().startswith("parent "))
    for line in (new, parent):
        assert "params" in line and "KiB" in line and "latency" in line and "over 1 episode" in line
        assert "1 episodes" not in line
    spec = json.loads((out / "agent.json").read_text())
    assert spec["compression"]["parent"]["mean_return"] == pytest.approx(500.0)
    assert spec["compression"]["parent"]["episodes"] == 1 and spec["compression"]["parent"]["eval_seed"] == 0
    step = spec["lineage"][-1]
    assert step["parent"] == str(cartpole_ppo_path)
    assert step["parent_resolved"] == str(Path(cartpole_ppo_path).resolve())
