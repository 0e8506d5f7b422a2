"""What does ``rllab train --algo ppo`` cost over the same PPO run written against SB3?

Both runs: PPO on CartPole-v1, the shipped hyperparameters (rllab/hyperparams/ppo.yml),
the same steps and seed, one torch thread, alternating order, ``--repeats`` times each.
Three variants are timed in the same process:

- ``sb3``: ``PPO("MlpPolicy", make_vec_env(...)).learn(steps)``, nothing else;
- ``rllab-core``: ``rllab.train`` with periodic evaluation and checkpoints off
  (the lab's own machinery: env factory, logger, spec, final save, observation
  statistics and the 20-episode final evaluation);
- ``rllab-default``: ``rllab.train`` as the CLI runs it (evaluation and checkpoints
  every steps/10).

Writes bench/results/train_overhead.{json,md}.  Usage:
    python bench/train_overhead.py [--steps 100000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import rllab
from rllab import hyperparams as hp_lib
from rllab.evaluation import evaluate
from rllab.nn.policies import policy_kwargs_to_sb3

RESULTS = Path(__file__).parent / "results"


def run_sb3(steps: int, seed: int) -> tuple[float, float]:
    hp = hp_lib.resolve("ppo", "CartPole-v1")
    lab, algo_kwargs = hp_lib.split(hp)
    t = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=lab["n_envs"], seed=seed)
    model = PPO(
        "MlpPolicy",
        env,
        seed=seed,
        device="cpu",
        policy_kwargs=policy_kwargs_to_sb3(lab.get("policy_kwargs") or {}),
        **algo_kwargs,
    )
    model.learn(steps)
    wall = time.perf_counter() - t
    # final return measured outside the timed region, with the lab's evaluator on the same policy
    tmp = Path(tempfile.mkdtemp())
    model.save(tmp / "m.zip")
    from rllab.sb3_import import import_sb3

    agent = import_sb3(tmp / "m.zip", "CartPole-v1", tmp / "ck")
    ret = evaluate(agent, episodes=20, seed=0).summary()["mean_return"]
    shutil.rmtree(tmp)
    return wall, ret


def run_lab(steps: int, seed: int, periodic: bool) -> tuple[float, float]:
    tmp = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    kwargs = {} if periodic else {"eval_freq": 0, "save_freq": 0}
    agent = rllab.train("ppo", "CartPole-v1", seed=seed, steps=steps, out=tmp / "run", progress=False, **kwargs)
    wall = time.perf_counter() - t
    ret = evaluate(agent, episodes=20, seed=0).summary()["mean_return"]
    shutil.rmtree(tmp)
    return wall, ret


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs: dict[str, list[tuple[float, float]]] = {"sb3": [], "rllab-core": [], "rllab-default": []}
    for _ in range(args.repeats):
        runs["sb3"].append(run_sb3(args.steps, args.seed))
        runs["rllab-core"].append(run_lab(args.steps, args.seed, periodic=False))
        runs["rllab-default"].append(run_lab(args.steps, args.seed, periodic=True))
    base = statistics.median(w for w, _ in runs["sb3"])
    rows = {}
    for name, values in runs.items():
        wall = statistics.median(w for w, _ in values)
        rows[name] = {
            "wall_s": [round(w, 2) for w, _ in values],
            "median_wall_s": round(wall, 2),
            "ratio_to_sb3": round(wall / base, 3),
            "final_mean_return": [r for _, r in values],
        }
    out = {
        "benchmark": "train_overhead",
        "env": "CartPole-v1",
        "algo": "ppo",
        "steps": args.steps,
        "seed": args.seed,
        "repeats": args.repeats,
        "torch_threads": 1,
        "machine": platform.platform(),
        "cpu_count": __import__("os").cpu_count(),
        "results": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_overhead.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        f"# PPO CartPole-v1, {args.steps} steps, seed {args.seed}, {args.repeats} repeats, 1 torch thread",
        "",
        "| variant | median wall (s) | ratio to SB3 | final mean return (20 ep) |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['median_wall_s']} | {r['ratio_to_sb3']} | {r['final_mean_return']} |")
    (RESULTS / "train_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
