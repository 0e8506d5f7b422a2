"""``rllab tune``: Optuna over a search space, pruning at fixed rungs, local or Ray workers, a robust objective."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import rllab
from rllab import hyperparams as hp_lib
from rllab.cli import main
from study.tune.space import load_space
from study.tune.trial import robust_score

pytest.importorskip("optuna")

# 4 trials in 2 batches, 2 rungs (512, 1024 steps); the median pruner starts after 1 finished trial
TINY = ["tune", "--algo", "ppo", "--env", "CartPole-v1", "--trials", "4", "--batch", "2", "--steps", "1024"]
TINY += ["--rungs", "2", "--startup", "1", "--episodes", "2", "--seed", "3"]
ROBUST = ["--objective", "robust", "--eps", "0.5", "--attacks", "pgd,pgd:targeted=0", "--attack-steps", "3"]
WEIGHT = 0.5


def _numbers(record: dict) -> list:
    """Every trial's parameters, state and rung figures, without timings."""
    keep = ("clean", "worst", "worst_attack", "attacks", "score", "steps", "timesteps", "status")
    return [(t["number"], t["params"], t["state"], [{k: r.get(k) for k in keep} for r in t["rungs"]]) for t in record]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A robust tune on 2 local workers, and the same on 1."""
    root = tmp_path_factory.mktemp("tune")
    for jobs in (2, 1):
        argv = [*TINY, *ROBUST, "--weight", str(WEIGHT), "--jobs", str(jobs), "--out", str(root / f"j{jobs}")]
        assert main([*argv, "--name", "t"]) == 0
    return {jobs: json.loads((root / f"j{jobs}" / "t" / "trials.json").read_text()) for jobs in (2, 1)} | {"root": root}


def test_robust_objective_is_the_formula_on_the_recorded_numbers(tuned):
    record = tuned[2]
    assert record["settings"]["weight"] == WEIGHT and record["rung_steps"] == [512, 1024]
    rungs = [r for t in record["trials"] for r in t["rungs"]]
    assert len(rungs) >= 6
    for r in rungs:
        assert set(r["attacks"]) == {"noise", "pgd-3:action", "pgd-3:targeted=0"}
        assert r["worst"] == min(r["attacks"].values()) and r["attacks"][r["worst_attack"]] == r["worst"]
        assert r["score"] == pytest.approx(r["clean"] - WEIGHT * (r["clean"] - r["worst"]), abs=1e-9)
        assert r["score"] == robust_score(r["clean"], r["worst"], WEIGHT)
    for t in record["trials"]:  # the clean return is the trial agent's final evaluation
        agent = rllab.load(t["run"])
        assert agent.spec["training"]["timesteps"] == t["rungs"][-1]["timesteps"] >= t["rungs"][-1]["steps"]
        assert agent.spec["training"]["final_eval"]["mean_return"] == t["rungs"][-1]["clean"]
    done = [t for t in record["trials"] if t["state"] == "complete"]
    best = max(done, key=lambda t: (t["value"], -t["number"]))
    assert record["best"]["number"] == best["number"] and record["best"]["value"] == best["rungs"][-1]["score"]


def test_a_trial_is_pruned_below_the_median_of_finished_trials(tuned):
    trials = tuned[2]["trials"]
    first, second = trials[:2], trials[2:]
    assert all(t["state"] == "complete" for t in first)  # nothing finished before them: never pruned
    median = float(np.percentile([t["rungs"][0]["score"] for t in first], 50))
    for t in second:
        below = t["rungs"][0]["score"] < median
        assert t["state"] == ("pruned" if below else "complete"), (t["rungs"][0]["score"], median)
        assert len(t["rungs"]) == (1 if below else 2)  # a pruned trial trains no further
    assert any(t["state"] == "pruned" for t in second)


def test_one_job_and_two_jobs_give_identical_trials(tuned):
    assert tuned[1]["jobs"] == 1 and tuned[2]["jobs"] == 2
    assert _numbers(tuned[1]["trials"]) == _numbers(tuned[2]["trials"])
    best = [(tuned["root"] / f"j{jobs}" / "t" / "best.yml").read_text() for jobs in (1, 2)]
    assert best[0] == best[1].replace("/j2/", "/j1/")


def test_a_rerun_reuses_every_trial(tuned, capsys):
    out = tuned["root"] / "j2"
    argv = [*TINY, *ROBUST, "--weight", str(WEIGHT), "--jobs", "2", "--out", str(out), "--name", "t"]
    assert main(argv) == 0
    assert not re.search(r"rung \d+/\d+ \(\d+ steps\)", capsys.readouterr().out)  # no rung ran again
    assert _numbers(json.loads((out / "t" / "trials.json").read_text())["trials"]) == _numbers(tuned[2]["trials"])
    assert main([*argv[:-4], "--weight", "0.9", "--out", str(out), "--name", "t"]) == 2  # other settings: refused
    assert "holds a tune with other settings" in capsys.readouterr().err


def test_best_file_round_trips_into_rllab_train(tuned, tmp_path):
    best_file = tuned["root"] / "j2" / "t" / "best.yml"
    best = tuned[2]["best"]
    trial = rllab.load(best["run"]).spec["training"]["config"]
    out = tmp_path / "retrained"
    argv = ["train", "--algo", "ppo", "--env", "CartPole-v1", "--hyperparams", str(best_file), "--seed", "3"]
    assert main([*argv, "--out", str(out), "--eval-freq", "0", "--no-progress", "--threads", "1"]) == 0
    config = rllab.load(out).spec["training"]["config"]
    assert config["steps"] == 1024 and config["n_envs"] == trial["n_envs"] == 8
    assert config["hyperparams"] == {**trial["hyperparams"], "n_timesteps": 1024}
    assert hp_lib.read_file(best_file, "CartPole-v1")["learning_rate"] == best["params"]["learning_rate"]


def _one_line_error(capsys, argv: list[str], expect: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rllab tune: error: ") and expect in err[-1], err


def test_bad_spaces_and_options_are_one_line(tmp_path, capsys):
    base = ["tune", "--algo", "ppo", "--env", "CartPole-v1", "--out", str(tmp_path)]
    bad = tmp_path / "bad.yml"
    bad.write_text("params:\n  learning_rate: {type: float, low: 0.001}\n")
    _one_line_error(capsys, [*base, "--space", str(bad)], "params.learning_rate: a float parameter gives low and high")
    bad.write_text("params:\n  gamma: {type: categorical, choices: [0.9], lo: 1}\n")
    _one_line_error(capsys, [*base, "--space", str(bad)], "params.gamma.lo")
    bad.write_text("algo: dqn\nparams:\n  gamma: {type: categorical, choices: [0.9]}\n")
    _one_line_error(capsys, [*base, "--space", str(bad)], "a search space for dqn, not ppo")
    bad.write_text("params:\n  n_timesteps: {type: int, low: 1000, high: 2000}\n")
    _one_line_error(capsys, [*base, "--space", str(bad)], "params.n_timesteps: the budget is rllab tune's --steps")
    _one_line_error(capsys, [*base, "--space", "nope"], "no search space 'nope'")
    _one_line_error(capsys, [*base, "--objective", "robust"], "--objective robust needs --eps")
    _one_line_error(capsys, [*base, "--objective", "robust", "--eps", "0.1", "--attacks", "pgd:targeted"], "names its")
    _one_line_error(capsys, [*base, "--objective", "robust", "--eps", "0.1", "--attacks", "pdg"], "unknown attack")
    _one_line_error(capsys, [*base, "--eps", "0.1"], "--eps is for --objective robust")
    _one_line_error(capsys, [*base, "--steps", "2", "--rungs", "3"], "too few for 3 median rungs")
    with pytest.raises(SystemExit) as exc:  # argparse's own bounds
        main([*base, "--trials", "0"])
    assert exc.value.code == 2 and "--trials: must be >= 1" in capsys.readouterr().err


def test_missing_optuna_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    _one_line_error(capsys, ["tune", "--algo", "ppo", "--env", "CartPole-v1", "--out", str(tmp_path)], ".[tune]")


def test_shipped_spaces_load_and_show_as_a_file_that_loads_back(tmp_path, capsys):
    for algo in ("ppo", "a2c", "dqn", "reinforce"):
        space, name = load_space(None, algo)
        assert name == algo and space.algo == algo and space.params
        assert main(["tune", "--algo", algo, "--env", "CartPole-v1", "--show-space"]) == 0
        path = tmp_path / f"{algo}.yml"
        path.write_text(capsys.readouterr().out)
        assert load_space(path, algo)[0] == space


@pytest.mark.slow
def test_ray_backend_gives_the_local_backends_trials(tuned):
    pytest.importorskip("ray")
    out = tuned["root"] / "ray"
    argv = [*TINY, *ROBUST, "--weight", str(WEIGHT), "--jobs", "2", "--backend", "ray", "--out", str(out)]
    assert main([*argv, "--name", "t"]) == 0
    record = json.loads((Path(out) / "t" / "trials.json").read_text())
    assert record["backend"] == "ray" and _numbers(record["trials"]) == _numbers(tuned[2]["trials"])
