"""The learned adversary's environments stepped together (``AttackedVecEnv``) vs one by one (``DummyVecEnv``).

Training a learned adversary (``rllab attack --attack learned``, ``train_adversary``) and ATLA's adversary phase
step several copies of the attacked MDP; each step runs the PA-AD actor (PGD-10 through the victim) and the
victim. ``AttackedVecEnv`` runs both once on the batch of all copies. Two measurements, same victim, same seeds,
one torch thread, interleaved repeats (medians):

- ``step``: vector steps per second of 8 copies with random adversary actions;
- ``train``: wall time of ``train_adversary`` (PPO, 8 copies, the lab's settings) for ``--train-steps`` steps.

The victim defaults to the committed Hopper PPO seed 0 (bench/agents/hopper/ppo-s0). Writes
bench/results/attacked_vec_env.{json,md}.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/attacked_vec_env.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from rllab.environment import VEC_ENV_CLASSES
from robustness.learned.env import ENV_ID, AttackedEnv, AttackedVecEnv, register
from robustness.learned.train import train_adversary

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def step_rate(cls: type, victim: str, eps: float, copies: int, steps: int) -> float:
    """Vector steps per second of ``copies`` attacked envs in ``cls`` under random adversary actions."""
    venv = cls([lambda: AttackedEnv(victim, eps=eps) for _ in range(copies)])
    venv.seed(0)
    venv.reset()
    rng = np.random.default_rng(0)
    shape = (copies, *venv.action_space.shape)
    start = time.perf_counter()
    for _ in range(steps):
        venv.step(rng.uniform(-1, 1, shape).astype(np.float32))
    elapsed = time.perf_counter() - start
    venv.close()
    return steps / elapsed


def train_time(cls: type, victim: str, eps: float, steps: int) -> float:
    """Seconds of ``train_adversary`` for ``steps`` PPO steps with the attacked envs in ``cls``."""
    VEC_ENV_CLASSES[ENV_ID] = cls
    out = Path(tempfile.mkdtemp(prefix="rllab-advbench-"))
    try:
        start = time.perf_counter()
        train_adversary(victim, eps, steps=steps, seed=0, out=out / "adv", progress=False, final_eval_episodes=1)
        return time.perf_counter() - start
    finally:
        VEC_ENV_CLASSES[ENV_ID] = AttackedVecEnv
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    """Measure both ways, write the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--victim", default="bench/agents/hopper/ppo-s0")
    p.add_argument("--eps", type=float, default=0.075)
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--steps", type=int, default=300, help="vector steps per step-rate repeat")
    p.add_argument("--train-steps", type=int, default=4096, help="PPO steps per train repeat")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    register()
    victim = str(ROOT / args.victim)
    classes = {"one by one (DummyVecEnv)": DummyVecEnv, "together (AttackedVecEnv)": AttackedVecEnv}
    rates: dict[str, list[float]] = {k: [] for k in classes}
    trains: dict[str, list[float]] = {k: [] for k in classes}
    for _ in range(args.repeats):
        for name, cls in classes.items():
            rates[name].append(step_rate(cls, victim, args.eps, args.copies, args.steps))
        for name, cls in classes.items():
            trains[name].append(train_time(cls, victim, args.eps, args.train_steps))
    plain, batched = classes
    rate = {k: float(np.median(v)) for k, v in rates.items()}
    train = {k: float(np.median(v)) for k, v in trains.items()}
    result = {
        "victim": args.victim,
        "eps": args.eps,
        "copies": args.copies,
        "steps": args.steps,
        "train_steps": args.train_steps,
        "repeats": args.repeats,
        "threads": 1,
        "load_average": os.getloadavg()[0],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "vector_steps_per_s": rate,
        "train_s": train,
        "step_speedup": rate[batched] / rate[plain],
        "train_speedup": train[plain] / train[batched],
    }
    lines = [
        "# The learned adversary's environments: stepped together vs one by one",
        "",
        f"Victim {args.victim} (eps {args.eps:g} std, PA-AD actor PGD-10), {args.copies} copies, one torch thread, "
        f"median of {args.repeats} interleaved repeats; {result['machine']}, load average "
        f"{result['load_average']:.1f} at the end (other jobs ran beside it). "
        "Reproduce: `OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/attacked_vec_env.py`.",
        "",
        f"| copies stepped | vector steps/s ({args.steps} steps) | train_adversary, {args.train_steps:,} PPO steps |",
        "| --- | --- | --- |",
        *[f"| {k} | {rate[k]:.0f} | {train[k]:.1f} s |" for k in classes],
        f"| speed-up | {result['step_speedup']:.2f}x | {result['train_speedup']:.2f}x |",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "attacked_vec_env.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "attacked_vec_env.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
