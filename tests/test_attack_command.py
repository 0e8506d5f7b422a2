"""The ``rllab attack`` command: its options reach the attacks, pixel budgets print as k/255, notes and
warnings, bad input refused in one line before any episode."""

from __future__ import annotations

import pytest

import rllab
from rllab.cli import main
from rllab.errors import RllabError
from robustness.attacks import PGD, TorchAttack
from robustness.evaluate import evaluate


def test_attack_command_prints_pixel_budgets_as_fractions_of_255(catch_ppo_path, tmp_path, capsys):
    args = ["attack", str(catch_ppo_path), "--attack", "fgsm", "--eps", "4/255,8/255", "--episodes", "2"]
    assert main([*args, "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "eps 4/255: " in out and "eps 8/255: " in out and "0.0156863" not in out


def test_a_fraction_eps_on_a_vector_agent_warns_but_runs(cartpole_ppo_path, catch_ppo_path, tmp_path, capsys):
    import json

    from rllab.cli import main

    out = tmp_path / "att"
    argv = ["attack", str(cartpole_ppo_path), "--attack", "fgsm", "--eps", "4/255,0.1", "--episodes", "1"]
    assert main([*argv, "--n-envs", "1", "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: --eps 4/255: the k/255 form is meant for pixel budgets")
    assert "0.0157 std" in err[0]
    assert json.loads((out / "results.json").read_text())["threat_model"]["eps"] == pytest.approx([4 / 255, 0.1])
    assert main(["certify", str(cartpole_ppo_path), "--eps", "1/255", "--episodes", "1"]) == 0
    assert "warning: --eps 1/255" in capsys.readouterr().err
    assert main(["certify", str(catch_ppo_path), "--eps", "1/255", "--episodes", "1"]) == 0
    assert "warning" not in capsys.readouterr().err  # pixels: the form it is meant for


def test_attack_all_passes_the_users_settings_to_the_suite(cartpole_ppo_path, monkeypatch, tmp_path):
    import importlib

    from rllab.cli import main
    from rllab.errors import RllabError
    from robustness.attacks import StrategicallyTimed, SurrogateTransfer

    seen = {}

    def fake_evaluate(agent, attacks=None, **kwargs):
        seen["attacks"] = attacks
        raise RllabError("stop here")

    monkeypatch.setattr(importlib.import_module("robustness.commands"), "evaluate", fake_evaluate)
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


def test_bpda_and_eot_on_an_agent_without_such_defenses_are_dropped_with_a_note(cartpole_ppo_path, tmp_path, capsys):
    import json

    from rllab.cli import main

    out = tmp_path / "att"
    argv = ["attack", str(cartpole_ppo_path), "--attack", "fgsm", "--bpda", "--eot", "4", "--eps", "0.05"]
    assert main([*argv, "--episodes", "1", "--n-envs", "1", "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(" changes nothing")[0] for line in err] == ["note: --bpda", "note: --eot 4"]
    card = json.loads((out / "results.json").read_text())
    assert set(card["results"]) == {"noise", "fgsm:action"}  # no +bpda / +eot4 label
    assert card["attacks"]["fgsm:action"]["bpda"] is False and card["attacks"]["fgsm:action"]["eot"] == 1


def test_bad_input_is_one_clear_error(cartpole_ppo_path, tmp_path, capsys):
    assert main(["attack", str(cartpole_ppo_path), "--eps", "-1"]) == 2
    assert "eps must be" in capsys.readouterr().err
    assert main(["attack", str(cartpole_ppo_path), "--attack", "magic"]) == 2
    assert "unknown attack 'magic'" in capsys.readouterr().err
    # checked before any episode runs: nothing is written
    args = ["attack", str(cartpole_ppo_path), "--attack", "torchattacks-square", "--norm", "l2"]
    assert main([*args, "--out", str(tmp_path / "sq")]) == 2
    assert "needs image observations" in capsys.readouterr().err
    assert not (tmp_path / "sq").exists()
    rllab.train(
        "reinforce",
        "CartPole-v1",
        seed=0,
        steps=512,
        out=tmp_path / "nb",
        progress=False,
        overrides={"use_baseline": False},
        final_eval_episodes=1,
    )
    assert main(["attack", str(tmp_path / "nb"), "--objective", "value", "--out", str(tmp_path / "o")]) == 2
    assert "needs a critic or Q-function" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    cont = rllab.train(
        "ppo", "Pendulum-v1", seed=0, steps=256, out=tmp_path / "pend", progress=False, final_eval_episodes=1
    )
    with pytest.raises(RllabError, match="needs discrete actions"):
        evaluate(cont, attacks=[PGD("action")], eps=[0.1], episodes=1, progress=False)
    with pytest.raises(RllabError, match="plans discrete actions"):
        evaluate(cont, attacks=["plan"], eps=[0.1], episodes=1, progress=False)
