"""``rllab sweep`` scale-out: the same 4 runs with 1 job at a time, 2 local jobs, and 2 Ray tasks.

PPO on CartPole-v1 (shipped defaults, ``--steps`` each, seeds 0-3), one torch thread per job,
evaluated on 10 episodes. Measures the sweep's wall time per backend (``--fresh`` every time, so
nothing is reused) and the speed-up over one job at a time in the same run, and checks that every
backend produced bit-identical checkpoints (the same weights hash per seed). Writes
bench/results/sweep_scaling.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def run_sweep(out: Path, jobs: int, backend: str, steps: int) -> float:
    argv = ["sweep", "--algo", "ppo", "--env", "CartPole-v1", "--seeds", "0-3", "--steps", str(steps)]
    argv += ["--episodes", "10", "--jobs", str(jobs), "--backend", backend, "--fresh", "--out", str(out)]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rllab.cli", *argv], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def hashes(out: Path) -> list[str]:
    return [
        json.loads((out / "ppo-CartPole-v1" / f"s{s}" / "agent.json").read_text())["weights"]["sha256"]
        for s in range(4)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--workdir", default="runs/bench-sweep")
    args = parser.parse_args()
    work = Path(args.workdir)
    variants = [("1 job (local)", 1, "local"), ("2 jobs (local)", 2, "local"), ("2 jobs (ray)", 2, "ray")]
    rows = []
    for name, jobs, backend in variants:
        out = work / f"{backend}-{jobs}"
        wall = run_sweep(out, jobs, backend, args.steps)
        rows.append({"variant": name, "jobs": jobs, "backend": backend, "wall_s": wall, "hashes": hashes(out)})
        print(f"{name}: {wall:.1f} s")
    base = rows[0]["wall_s"]
    for r in rows:
        r["speedup"] = base / r["wall_s"]
    identical = all(r["hashes"] == rows[0]["hashes"] for r in rows)
    result = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "runs": 4,
        "steps_per_run": args.steps,
        "rows": rows,
        "identical_checkpoints": identical,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sweep_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# rllab sweep scale-out ({os.cpu_count()} CPUs; 4 PPO CartPole runs of {args.steps} steps, 1 thread each)",
        "",
        "| variant | wall s | speed-up over 1 job |",
        "|---|---|---|",
        *[f"| {r['variant']} | {r['wall_s']:.1f} | {r['speedup']:.2f}x |" for r in rows],
        "",
        f"Checkpoints bit-identical across the three variants (weights hash per seed): {'yes' if identical else 'NO'}.",
        "Wall time includes each job's interpreter start (torch and SB3 imports, a few seconds per job) and, for Ray,",
        "starting and stopping a local Ray instance.",
    ]
    (RESULTS / "sweep_scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
