"""``rllab sweep``: seeds x a hyperparameter grid as parallel jobs, summarised across seeds."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import rllab
from rllab.cli import main
from rllab.cli.sweep_job import run_stage
from rllab.errors import RllabError
from rllab.sweep import MAX_RUNS, MAX_SEEDS, config_name, parse_grid, parse_seeds, plan, seed_stats
from rllab.sweep.jobs import run_stages
from rllab.sweep.plan import check_plan

TINY = ["--algo", "ppo", "--env", "CartPole-v1", "--steps", "512", "--episodes", "3"]
TRAIN = ["train", "--algo", "ppo", "--env", "CartPole-v1"]


def test_seeds_grid_and_names():
    assert parse_seeds("0-2") == [0, 1, 2]
    assert parse_seeds("0, 3,7") == [0, 3, 7]
    assert parse_seeds("5") == [5]
    for bad in ("2-1", "a", "0,0", "1-", "-1", "-3--1"):
        with pytest.raises(RllabError):
            parse_seeds(bad)
    assert parse_grid("{learning_rate: [0.001, 0.0003], n_epochs: 4}") == {
        "learning_rate": [0.001, 0.0003],
        "n_epochs": [4],
    }
    for bad in ("[1, 2]", "{a: []}", "{a: [1"):
        with pytest.raises(RllabError):
            parse_grid(bad)
    params = {"algo": "ppo", "env": "CartPole-v1", "learning_rate": 0.001}
    assert config_name(params, ["learning_rate"], multi=False) == "learning_rate=0.001"
    assert config_name(params, [], multi=False) == "ppo-CartPole-v1"
    # structured values give a folder-safe name, and different values give different names
    a = config_name({**params, "policy_kwargs": {"net_arch": [8, 8]}}, ["policy_kwargs"], multi=False)
    b = config_name({**params, "policy_kwargs": {"net_arch": [8, 16]}}, ["policy_kwargs"], multi=False)
    assert a != b and all(c.isalnum() or c in "._=+-" for c in a + b)


def test_seed_stats():
    s = seed_stats([100.0, 200.0, 300.0, 400.0])
    half = stats.t.ppf(0.975, 3) * np.std([100, 200, 300, 400], ddof=1) / 2
    assert s["mean"] == 250.0 and s["median"] == 250.0 and s["n"] == 4
    assert s["ci95"] == pytest.approx([250 - half, 250 + half])
    assert seed_stats([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0])["iqm"] == pytest.approx(3.5)  # middle half
    one = seed_stats([7.0])
    assert one["ci95"] is None and one["std"] == 0.0 and one["mean"] == 7.0


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "cp"
    argv = ["sweep", *TINY, "--seeds", "0-1", "--grid", "{learning_rate: [0.001, 0.0003]}", "--jobs", "2"]
    argv += ["--attack", "pgd", "--eps", "0.5", "--attack-episodes", "3", "--out", str(out)]
    assert main(argv) == 0
    return out, argv


def test_sweep_trains_every_config_and_seed_and_summarises_across_seeds(local_sweep, capsys):
    out, _ = local_sweep
    summary = json.loads((out / "sweep.json").read_text())
    assert set(summary["configs"]) == {"learning_rate=0.001", "learning_rate=0.0003"}
    for name, c in summary["configs"].items():
        lr = c["params"]["learning_rate"]
        assert [r["seed"] for r in sorted(c["runs"], key=lambda r: r["seed"])] == [0, 1] and not c["failed"]
        returns = []
        for r in c["runs"]:
            run = Path(r["run"])
            assert run == (out / name / f"s{r['seed']}").resolve()
            spec = rllab.load(run).spec["training"]["config"]
            assert spec["seed"] == r["seed"] and spec["torch_threads"] == 1 and spec["steps"] == 512
            assert spec["hyperparams"]["learning_rate"] == lr  # the grid value reached the run
            ev = json.loads((run / "sweep-eval.json").read_text())
            assert ev["episodes"] == 3 and ev["mean_return"] == r["mean_return"]
            returns.append(ev["mean_return"])
            card = json.loads((run / "attacks" / "sweep" / "results.json").read_text())
            worst = min(row["0.5"]["mean_return"] for row in card["results"].values())  # noise included
            assert r["attack"]["0.5"]["worst_case"] == worst
            assert r["attack"]["0.5"]["noise"] == card["results"]["noise"]["0.5"]["mean_return"]
        assert c["clean"]["mean"] == pytest.approx(np.mean(returns))
        assert c["clean"]["values"] == [r["mean_return"] for r in c["runs"]]
        assert c["attacked"]["0.5"]["worst_case"]["mean"] == pytest.approx(
            np.mean([r["attack"]["0.5"]["worst_case"] for r in c["runs"]])
        )
    means = [summary["configs"][n]["clean"]["mean"] for n in summary["ranking"]]
    assert means == sorted(means, reverse=True)
    md = (out / "sweep.md").read_text()
    assert "learning_rate=0.001 | 2 |" in md and "worst case eps 0.5" in md and "eps in obs std" in md
    # a run of the sweep is the run `rllab train --threads 1` makes: same weights, bit for bit
    direct = out.parent / "direct"
    argv = ["train", "--algo", "ppo", "--env", "CartPole-v1", "--seed", "1", "--steps", "512", "--threads", "1"]
    assert main([*argv, "--set", "learning_rate=0.0003", "--out", str(direct), "--no-progress"]) == 0
    sha = rllab.load(direct).spec["weights"]["sha256"]
    assert rllab.load(out / "learning_rate=0.0003" / "s1").spec["weights"]["sha256"] == sha


def test_sweep_reuses_finished_work_and_redoes_only_what_changed(local_sweep, capsys):
    out, argv = local_sweep
    weights = out / "learning_rate=0.001" / "s0" / "weights.safetensors"
    evals = out / "learning_rate=0.001" / "s0" / "sweep-eval.json"
    t_weights, t_eval = weights.stat().st_mtime_ns, evals.stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[sweep] ") and " s" in ln]
    assert sum("(reused)" in ln for ln in lines) == 4
    assert weights.stat().st_mtime_ns == t_weights and evals.stat().st_mtime_ns == t_eval
    # more evaluation episodes: the checkpoints and the attack results stay, the evaluation runs again
    card = out / "learning_rate=0.001" / "s0" / "attacks" / "sweep" / "results.json"
    t_card = card.stat().st_mtime_ns
    more = list(argv)
    more[more.index("--episodes") + 1] = "4"
    assert main(more) == 0
    assert weights.stat().st_mtime_ns == t_weights and card.stat().st_mtime_ns == t_card
    assert evals.stat().st_mtime_ns != t_eval and json.loads(evals.read_text())["episodes"] == 4


def test_an_interrupted_sweep_continues_where_it_stopped(tmp_path):
    out = tmp_path / "r"
    argv = ["sweep", "--algo", "ppo", "--env", "CartPole-v1", "--steps", "8192", "--save-freq", "1024"]
    argv += ["--episodes", "2", "--seeds", "0", "--jobs", "1", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rllab.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C reaches the sweep and its jobs: the terminal's process group
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # also when pytest runs as a background job
    )
    run = out / "ppo-CartPole-v1" / "s0"
    deadline = time.time() + 120
    while not (run / "agent.json").exists() and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "run the same command again" in err and err.count("\n") == 1
    saved = rllab.load(run).spec["training"]
    assert not saved["complete"] and 0 < saved["timesteps"] < 8192
    assert not (out / "sweep.json").exists()
    assert main(argv) == 0
    log = (out / "logs" / "ppo-CartPole-v1-s0.log").read_text()
    assert "--resume" in log
    done = rllab.load(run).spec["training"]
    assert done["complete"] and done["resumed_from"] == saved["timesteps"] and done["timesteps"] >= 8192
    assert json.loads((out / "sweep.json").read_text())["configs"]["ppo-CartPole-v1"]["clean"]["n"] == 1


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--grid", "{learning_rate: [1e-3"], "--grid is not valid YAML"),
        (["--seeds", "3-1"], "--seeds must be integers or ranges"),
        (["--algo", "ppo,sac"], "unknown algorithm 'sac'"),
        (["--env", "NoSuch-v0"], "unknown environment id"),
        (["--env-kwargs", "[1]"], "--env-kwargs must be a YAML/JSON mapping"),
        (["--hyperparams", "/no/such.yml"], "no such hyperparameter file"),
        # a user error inside the jobs (SB3 has no such key): reported once, in one line, from the first job
        (["--grid", "{n_epoch: [1, 2]}", "--seeds", "0-2"], "train failed for n_epoch=1 s0: unknown ppo hyperparam"),
    ],
)
def test_sweep_user_errors_are_one_line(tmp_path, capsys, extra, message):
    argv = ["sweep", *TINY, "--seeds", "0", "--jobs", "1", "--out", str(tmp_path / "s")]
    keys = {extra[i] for i in range(0, len(extra), 2)}
    base = [a for i, a in enumerate(argv) if not (a in keys or (i > 0 and argv[i - 1] in keys))]
    assert main([*base, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "s" / "sweep.json").exists()


def test_sweep_ray_backend_gives_the_local_backends_runs(local_sweep, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    out, _ = local_sweep
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    argv = ["sweep", *TINY, "--seeds", "0-1", "--grid", "{learning_rate: [0.001]}", "--jobs", "2"]
    assert main([*argv, "--backend", "ray", "--out", str(tmp_path / "ray")]) == 0
    for seed in (0, 1):
        a = rllab.load(tmp_path / "ray" / "learning_rate=0.001" / f"s{seed}").spec["weights"]["sha256"]
        b = rllab.load(out / "learning_rate=0.001" / f"s{seed}").spec["weights"]["sha256"]
        assert a == b
    summary = json.loads((tmp_path / "ray" / "sweep.json").read_text())
    assert summary["backend"] == "ray" and summary["configs"]["learning_rate=0.001"]["clean"]["n"] == 2
    assert not math.isnan(summary["configs"]["learning_rate=0.001"]["clean"]["mean"])


def test_ray_backend_without_ray_is_one_line(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    argv = ["sweep", *TINY, "--seeds", "0", "--backend", "ray", "--out", str(tmp_path / "s")]
    assert main(argv) == 2
    assert "needs Ray" in capsys.readouterr().err
    assert not list(tmp_path.rglob("agent.json"))  # refused before any job ran


# ------------------------------------------ the plan is lazy and capped; a job's outcome is structured
def test_sweep_seeds_are_capped_before_they_are_listed():
    with pytest.raises(RllabError, match=f"at most {MAX_SEEDS}"):
        parse_seeds("0-99999999")
    with pytest.raises(RllabError, match="must be <="):
        parse_seeds("4294967296")
    assert parse_seeds(f"0-{MAX_SEEDS - 1}")[-1] == MAX_SEEDS - 1
    grid = {"learning_rate": list(range(MAX_RUNS // MAX_SEEDS + 1))}
    with pytest.raises(RllabError, match=f"at most {MAX_RUNS}"):
        check_plan(["ppo"], ["CartPole-v1"], list(range(MAX_SEEDS)), grid)


def test_sweep_plan_is_lazy(tmp_path):
    jobs = plan(["ppo", "a2c"], ["CartPole-v1"], list(range(MAX_SEEDS)), tmp_path)
    first = next(jobs)
    assert not isinstance(jobs, list) and first.config == "ppo-CartPole-v1" and first.seed == 0
    assert next(jobs).seed == 1


def test_a_job_stage_reports_its_error_without_parsing_stderr(tmp_path, capsys):
    assert run_stage(["eval", str(tmp_path / "none")]) == (2, f"no checkpoint at {tmp_path / 'none'}")
    code, error = run_stage([*TRAIN, "--steps", "inf"])
    assert code == 2 and error == "argument --steps: must be finite, got 'inf'"
    capsys.readouterr()
    log = tmp_path / "job.log"
    outcome = run_stages([["eval", str(tmp_path / "none")]], 1, log)
    assert outcome == {
        "status": "failed",
        "stage": 0,
        "returncode": 2,
        "error": f"no checkpoint at {tmp_path / 'none'}",
    }
    assert "rllab eval: error: no checkpoint" in log.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["job.log"]  # the outcome file is gone
