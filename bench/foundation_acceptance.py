"""The foundation issue's "must show" figures, measured with the shipped defaults.

- PPO on CartPole-v1 reaches >= 475 (20 evaluation episodes) within 100k steps, seeds 0, 1, 2;
- REINFORCE reaches >= 475 on CartPole-v1 within 500k steps on at least 2 of seeds 0, 1, 2;
- A2C and PPO reach >= 0.9 mean return on Catch-v0 within 60k steps;
- DQN reaches >= 475 on CartPole-v1 within 100k steps (seed 0);
- the same command with the same seed gives identical evaluation returns twice (CLI, CPU).

Every run goes through ``rllab train`` (the CLI, in a subprocess) and ``rllab eval --json``.
Writes bench/results/foundation_acceptance.{json,md}.  Usage:
    python bench/foundation_acceptance.py [--only ppo-cartpole,...] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
CHECKS = {
    # name: (algo, env, steps, seeds, threshold)
    "ppo-cartpole": ("ppo", "CartPole-v1", 100_000, [0, 1, 2], 475.0),
    "reinforce-cartpole": ("reinforce", "CartPole-v1", 500_000, [0, 1, 2], 475.0),
    "a2c-catch": ("a2c", "Catch-v0", 60_000, [0], 0.9),
    "ppo-catch": ("ppo", "Catch-v0", 60_000, [0], 0.9),
    "dqn-cartpole": ("dqn", "CartPole-v1", 100_000, [0], 475.0),
}


def rllab(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "rllab.cli", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def train_and_eval(work: Path, algo: str, env: str, steps: int, seed: int, tag: str = "") -> dict:
    run = work / f"{algo}-{env}-s{seed}{tag}"
    t = time.perf_counter()
    rllab(
        "train",
        "--algo",
        algo,
        "--env",
        env,
        "--seed",
        str(seed),
        "--steps",
        str(steps),
        "--out",
        str(run),
        "--no-progress",
    )
    wall = time.perf_counter() - t
    rllab("eval", str(run), "--episodes", "20", "--seed", "0", "--json", str(run / "acceptance-eval.json"))
    res = json.loads((run / "acceptance-eval.json").read_text())
    return {
        "seed": seed,
        "steps": steps,
        "train_wall_s": round(wall, 1),
        "mean_return": res["mean_return"],
        "std_return": res["std_return"],
        "ci95_return": res["ci95_return"],
        "returns": res["returns"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=",".join([*CHECKS, "determinism"]))
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rllab-acceptance-"))
    out_path = RESULTS / "foundation_acceptance.json"
    results = json.loads(out_path.read_text())["checks"] if out_path.exists() else {}
    for name in args.only.split(","):
        if name == "determinism":
            a = train_and_eval(work, "ppo", "CartPole-v1", 20_000, 0, tag="-det-a")
            b = train_and_eval(work, "ppo", "CartPole-v1", 20_000, 0, tag="-det-b")
            results[name] = {
                "runs": [a, b],
                "passed": a["returns"] == b["returns"],
                "goal": "same command + seed on CPU -> identical evaluation returns",
            }
        else:
            algo, env, steps, seeds, threshold = CHECKS[name]
            runs = [train_and_eval(work, algo, env, steps, s) for s in seeds]
            hits = sum(r["mean_return"] >= threshold for r in runs)
            needed = 2 if name == "reinforce-cartpole" else len(seeds)
            results[name] = {
                "algo": algo,
                "env": env,
                "threshold": threshold,
                "runs": runs,
                "seeds_reaching": hits,
                "seeds_needed": needed,
                "passed": hits >= needed,
            }
        print(name, "passed" if results[name]["passed"] else "FAILED", flush=True)
        RESULTS.mkdir(exist_ok=True)
        out_path.write_text(json.dumps({"benchmark": "foundation_acceptance", "checks": results}, indent=2) + "\n")
    lines = ["| check | seeds: mean return over 20 episodes (train wall s) | goal | passed |", "|---|---|---|---|"]
    for name, r in results.items():
        cells = ", ".join(f"s{x['seed']}: {x['mean_return']:.2f} ({x['train_wall_s']}s)" for x in r["runs"])
        goal = r.get("goal") or f">= {r['threshold']} on {r['seeds_needed']} of {len(r['runs'])} seeds"
        lines.append(f"| {name} | {cells} | {goal} | {'yes' if r['passed'] else 'NO'} |")
    (RESULTS / "foundation_acceptance.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
