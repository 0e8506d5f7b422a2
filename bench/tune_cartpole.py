"""``rllab tune`` on CartPole-v1 PPO: 20 trials, 2 jobs, the robustness-aware objective; then the same 20 trials on
the Ray backend, compared number for number.

The tune (the shipped PPO search space, median pruner, TPE seeded) trains each trial for ``--steps`` in 3 rungs,
evaluates it on ``--episodes`` episodes (rllab train's final-evaluation seeds) and attacks it at ``--eps`` std with
``--attacks`` (and noise); the objective is ``clean - w * (clean - worst case)``. Reported: the best robust score
and the best clean return among finished trials, beside the shipped (RL Zoo) CartPole hyperparameters trained and
evaluated the same way (one straight run of ``--steps``, same seed) as the baseline measured in the same run; the
wall time per backend; and whether the Ray tune gave the local tune's trials exactly. Writes
bench/results/tune_cartpole.{json,md}.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/tune_cartpole.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import rllab
from robustness.evaluate import evaluate as attacked_evaluate
from study.tune.trial import build_attacks, robust_score, run_trial

RESULTS = Path(__file__).parent / "results"
CONFIRM_EPISODES, CONFIRM_SEED = 20, 100_000  # fresh episodes, none of them seen by the tune
KEEP = ("steps", "timesteps", "clean", "worst", "worst_attack", "attacks", "score", "status")


def tune_argv(args: argparse.Namespace, backend: str, out: Path) -> list[str]:
    """The ``rllab tune`` command line of one backend."""
    argv = ["tune", "--algo", "ppo", "--env", "CartPole-v1", "--trials", str(args.trials), "--steps", str(args.steps)]
    argv += ["--rungs", "3", "--batch", str(args.jobs), "--jobs", str(args.jobs), "--seed", "0"]
    argv += ["--episodes", str(args.episodes), "--objective", "robust", "--weight", str(args.weight)]
    argv += ["--eps", str(args.eps), "--attacks", args.attacks, "--backend", backend, "--fresh"]
    return [*argv, "--out", str(out), "--name", backend]


def numbers(record: dict) -> list:
    """Every trial's parameters, state and rung figures (not its timings)."""
    return [
        {
            "number": t["number"],
            "params": t["params"],
            "state": t["state"],
            "rungs": [{k: r.get(k) for k in KEEP} for r in t["rungs"]],
        }
        for t in record["trials"]
    ]


def base_run(args: argparse.Namespace, work: Path) -> str:
    """The baseline's run folder."""
    return str(work / "baseline")


def baseline(args: argparse.Namespace, work: Path) -> dict:
    """The shipped CartPole PPO hyperparameters, trained for the tune's budget and scored as a trial is."""
    task = {
        "number": -1, "rung": 0, "steps": args.steps, "run": base_run(args, work), "algo": "ppo",
        "env": "CartPole-v1", "seed": 0, "hyperparams": {}, "episodes": args.episodes, "objective": "robust",
        "weight": args.weight, "eps": args.eps, "attacks": args.attacks.split(","), "attack_steps": 10,
    }  # fmt: skip
    shutil.rmtree(task["run"], ignore_errors=True)
    started = time.perf_counter()
    result = run_trial(task)
    result["wall_s"] = time.perf_counter() - started
    return result


def confirm(run: str, args: argparse.Namespace) -> dict:
    """An agent re-scored on ``CONFIRM_EPISODES`` fresh episodes: clean, worst case (attack) and objective."""
    agent = rllab.load(run)
    clean = rllab.evaluate(agent, episodes=CONFIRM_EPISODES, seed=CONFIRM_SEED).summary()["mean_return"]
    attacks = build_attacks(agent, args.attacks.split(","), 10)
    card = attacked_evaluate(
        agent, attacks, eps=[args.eps], episodes=CONFIRM_EPISODES, seed=CONFIRM_SEED, n_envs=8, progress=False
    )
    rows = {label: by_eps[f"{args.eps:g}"]["mean_return"] for label, by_eps in card["results"].items()}
    worst = min(rows, key=lambda k: rows[k])
    return {
        "clean": clean,
        "worst": rows[worst],
        "worst_attack": worst,
        "score": robust_score(clean, rows[worst], args.weight),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--steps", type=int, default=24_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--eps", type=float, default=0.5)
    parser.add_argument("--weight", type=float, default=0.5)
    parser.add_argument("--attacks", default="pgd:targeted=0,pgd:targeted=1")
    parser.add_argument("--workdir", default="runs/bench-tune")
    args = parser.parse_args()
    work = Path(args.workdir)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    runs = {}
    for backend in ("local", "ray"):
        argv = tune_argv(args, backend, work)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rllab.cli", *argv], check=True, env=env)
        wall = time.perf_counter() - started
        record = json.loads((work / backend / "trials.json").read_text())
        runs[backend] = {"command": "rllab " + " ".join(argv), "wall_s": round(wall, 1), "record": record}
        print(f"[bench] {backend}: {wall:.0f} s")
    base = baseline(args, work)
    local, ray = runs["local"]["record"], runs["ray"]["record"]
    identical = numbers(local) == numbers(ray)
    confirmed = {
        "best": confirm(local["best"]["run"], args),
        "best_clean": confirm(local["best_clean"]["run"], args),
        "baseline": confirm(base_run(args, work), args),
    }
    top = max(t["rungs"][-1]["clean"] for t in local["trials"] if t["state"] == "complete")
    tied = [t for t in local["trials"] if t["state"] == "complete" and t["rungs"][-1]["clean"] == top]
    best_yml = {b: (work / b / "best.yml").read_text().replace(f"/{b}/", "/BACKEND/") for b in runs}
    result = {
        "date": dt.date.today().isoformat(),
        "command": "OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/tune_cartpole.py",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": {p: version(p) for p in ("torch", "stable-baselines3", "gymnasium", "optuna", "ray")},
        "settings": local["settings"],
        "jobs": args.jobs,
        "rung_steps": local["rung_steps"],
        "space": local["space"],
        "best": local["best"],
        "best_clean": local["best_clean"],
        "baseline_shipped_defaults": base,
        "confirmed_on_fresh_episodes": {"episodes": CONFIRM_EPISODES, "seed": CONFIRM_SEED, **confirmed},
        "tied_at_best_clean": {
            "clean": top,
            "trials": [t["number"] for t in tied],
            "scores": [t["value"] for t in tied],
            "worst": [t["rungs"][-1]["worst"] for t in tied],
        },
        "states": {s: sum(t["state"] == s for t in local["trials"]) for s in ("complete", "pruned", "failed")},
        "wall_s": {b: runs[b]["wall_s"] for b in runs},
        "commands": {b: runs[b]["command"] for b in runs},
        "ray_identical_to_local": identical,
        "best_yml_identical": best_yml["local"] == best_yml["ray"],
        "trials": numbers(local),
        "ray_trials": None if identical else numbers(ray),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tune_cartpole.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "tune_cartpole.md").write_text(render(result, (work / "local" / "trials.md").read_text()))
    print(f"[bench] ray identical to local: {identical}; best {local['best']['value']:.4g}")


def render(r: dict, table: str) -> str:
    """The markdown summary."""
    s, best, clean, base = r["settings"], r["best"], r["best_clean"], r["baseline_shipped_defaults"]
    attacks = ", ".join(s["attacks"])
    lines = [
        f"# rllab tune: CartPole-v1 PPO, {s['trials']} trials, {r['jobs']} jobs, robustness-aware objective",
        "",
        f"Date {r['date']}; {r['machine']['cpu_count']} CPUs (shared); "
        + ", ".join(f"{k} {v}" for k, v in r["versions"].items()),
        f"Reproduce: `{r['command']}`",
        "",
        f"- budget: {r['rung_steps'][-1]} PPO steps per trial, in 3 rungs {r['rung_steps']} (median pruner, "
        f"{s['startup']} startup trials); {s['episodes']} evaluation episodes per figure; seed {s['seed']}",
        f"- objective: clean - {s['weight']:g} x (clean - worst case), worst case = the lowest mean return at eps "
        f"{s['eps']:g} obs-std over {attacks} (PGD-{s['attack_steps']}) and uniform noise",
        f"- trials: {r['states']['complete']} finished, {r['states']['pruned']} pruned, {r['states']['failed']} failed",
        "",
        "| | trial | robust score | clean return | worst case (attack) |",
        "|---|---|---|---|---|",
        f"| best robustness-aware score | {best['number']} | {best['score']:.4g} | {best['clean']:.4g} | "
        f"{best['worst']:.4g} ({best['worst_attack']}) |",
        f"| best clean return | {clean['number']} | {clean['score']:.4g} | {clean['clean']:.4g} | "
        f"{clean['worst']:.4g} ({clean['worst_attack']}) |",
        f"| baseline: shipped (RL Zoo) hyperparameters, same budget | - | {base['score']:.4g} | {base['clean']:.4g} | "
        f"{base['worst']:.4g} ({base['worst_attack']}) |",
        "",
        f"Best robust score vs the baseline's: {best['score']:.4g} / {base['score']:.4g} = "
        f"{best['score'] / base['score']:.2f}x."
        if base["score"]
        else "",
        "",
        f"What the robust objective adds: {len(r['tied_at_best_clean']['trials'])} finished trials reached the best "
        f"clean return ({r['tied_at_best_clean']['clean']:.4g}: trials "
        f"{', '.join(map(str, r['tied_at_best_clean']['trials']))}), so a clean objective cannot tell them apart; "
        f"their worst case ranges from {min(r['tied_at_best_clean']['worst']):.4g} to "
        f"{max(r['tied_at_best_clean']['worst']):.4g} and their robust score from "
        f"{min(r['tied_at_best_clean']['scores']):.4g} to {max(r['tied_at_best_clean']['scores']):.4g}.",
        "",
        f"Re-scored on {CONFIRM_EPISODES} fresh episodes (seeds {CONFIRM_SEED}+, none seen by the tune; same attacks):",
        "",
        "| agent | robust score | clean return | worst case (attack) |",
        "|---|---|---|---|",
        *(
            f"| {name} | {c['score']:.4g} | {c['clean']:.4g} | {c['worst']:.4g} ({c['worst_attack']}) |"
            for name, c in (
                (f"best robustness-aware trial ({best['number']})", r["confirmed_on_fresh_episodes"]["best"]),
                (f"best clean trial ({clean['number']})", r["confirmed_on_fresh_episodes"]["best_clean"]),
                ("baseline (shipped hyperparameters)", r["confirmed_on_fresh_episodes"]["baseline"]),
            )
        ),
        "",
        "| backend | wall s | trials identical to local |",
        "|---|---|---|",
        f"| local, 2 worker processes | {r['wall_s']['local']} | - |",
        f"| Ray, 2 tasks at a time | {r['wall_s']['ray']} | {'yes' if r['ray_identical_to_local'] else 'NO'} |",
        "",
        "Identical means every trial's sampled parameters, state (finished or pruned, and where) and every rung's "
        "clean, per-attack, worst-case and objective numbers are equal, and best.yml is the same file. "
        f"best.yml identical: {'yes' if r['best_yml_identical'] else 'NO'}. Wall times are of a shared host "
        "(other jobs ran beside; load average about 9 on 2 cores), not a comparison of the backends' speed; they "
        "include starting the workers (2 interpreters importing torch and SB3, or a local Ray instance).",
        "",
        "The local tune's trials table (trials.md):",
        "",
        table.split("\n", 1)[1].strip(),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
