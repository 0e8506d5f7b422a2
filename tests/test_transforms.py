"""What the compression transforms share: Agent -> Agent with its lineage, the input defenses carried over,
refusals and the command line's checks. Each transform's own tests: test_distill.py, test_prune.py,
test_quantize.py."""

from __future__ import annotations

import pytest
import torch as th

import rllab
from rllab.agent import clone_module
from rllab.cli import main
from rllab.cli.transforms import distill_checkpoint, prune_checkpoint
from tests.helpers import purifier_state, sample_obs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_transforms_take_agents_and_return_agents_with_their_lineage(cartpole_ppo, tmp_path):
    from rllab.transforms import prune as prune_agent
    from rllab.transforms import quantize as quantize_agent

    lineage = list(cartpole_ppo.spec["lineage"])
    pruned, result = prune_agent(cartpole_ppo, 0.5, finetune="none", progress=False)
    step = pruned.spec["lineage"][-1]
    assert step["transform"] == "prune" and step["parent"] == str(cartpole_ppo.path)
    assert step["result"] == result.to_json() and result.weight_sparsity == pytest.approx(0.5, abs=1e-3)
    assert pruned.spec["lineage"][:-1] == lineage and cartpole_ppo.spec["lineage"] == lineage  # parent untouched
    q, q_result = quantize_agent(cartpole_ppo)
    assert q.spec["lineage"][-1]["note"].startswith("gradients") and "result" not in q.spec["lineage"][-1]
    assert q_result.modules == q.spec["quantization"]["modules"]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_non_finite_weights_are_refused_and_nothing_is_written(cartpole_ppo, cartpole_ppo_path, tmp_path):
    from rllab.cli.transforms import finish
    from rllab.transforms import check_finite
    from rllab.transforms import prune as prune_agent

    pruned, _ = prune_agent(cartpole_ppo, 0.5, finetune="none", progress=False)
    check_finite(pruned)
    with th.no_grad():
        pruned.policy.action_net.weight[0, 0] = float("nan")
    with pytest.raises(rllab.RllabError, match="non-finite"):
        finish(pruned, tmp_path / "nan", cartpole_ppo_path, "prune", 0, 1)
    assert not (tmp_path / "nan").exists()


# ---------------------------------------------------------- the input defenses survive every transform
def test_derive_copies_the_purifier_and_normalisation(purified_path):
    parent = rllab.load(purified_path)
    child = parent.derive(clone_module(parent.policy), "prune", {}, purified_path)
    for k, v in purifier_state(parent).items():
        assert th.equal(child.purifier.state_dict()[k], v), k
    x = sample_obs(parent)
    assert th.equal(child.logits(x), parent.logits(x))
    # a copy, not shared: changing the child's purifier leaves the parent's alone
    with th.no_grad():
        next(child.purifier.parameters()).add_(1.0)
    assert not th.equal(next(child.purifier.parameters()), next(parent.purifier.parameters()))
    assert not child.training  # derived from an agent in eval mode


def test_prune_and_distill_keep_a_trained_purifier(purified_path, tmp_path):
    parent_state = purifier_state(rllab.load(purified_path))
    pruned = rllab.load(
        prune_checkpoint(
            purified_path, sparsity=0.3, finetune="none", out=tmp_path / "p", eval_episodes=1, progress=False
        ).path
    )
    student = rllab.load(
        distill_checkpoint(
            purified_path, arch=[8], steps=64, rounds=1, epochs=2, out=tmp_path / "d", eval_episodes=1, progress=False
        ).path
    )
    for agent in (pruned, student):
        for k, v in parent_state.items():
            assert th.equal(agent.purifier.state_dict()[k], v), k


# ------------------------------------------------------------------------------------ the command line
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


@pytest.mark.parametrize(
    "argv",
    [
        ["distill", "--lr", "nan"],
        ["distill", "--lr", "-1"],
        ["distill", "--temperature", "inf"],
        ["distill", "--steps", "0"],
        ["prune", "--lr", "0"],
        ["prune", "--sparsity", "nan"],
        ["quantize", "--min-features", "1.5"],
        ["adapt", "--coef", "inf"],
        ["adapt", "--explore", "nan"],
    ],
)
def test_transform_options_refuse_bad_numbers_in_one_line(argv, tmp_path, capsys):
    command, option, value = argv
    with pytest.raises(SystemExit) as exc:
        main([command, str(tmp_path / "run"), option, value, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and option in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_transforms_draw_no_progress_bar_off_a_terminal(cartpole_ppo_path, tmp_path, capsys):
    argv = ["prune", str(cartpole_ppo_path), "--sparsity", "0.5", "--steps", "200", "--epochs", "1"]
    assert main([*argv, "--episodes", "2", "--out", str(tmp_path / "p")]) == 0
    captured = capsys.readouterr()
    assert "prune:" not in captured.err and "round/s" not in captured.err and "\r" not in captured.err
    assert "2 episodes" in captured.out
