"""How long `rllab lab` takes: the study from scratch, then the same command again (every stage cached).

Runs `rllab lab [--quick] --out DIR` as a child process twice and records, for each run, the wall time and
the CPU time of the child (user + sys). With one PyTorch thread (OMP_NUM_THREADS=1, the lab's default for
these agents) the CPU time is the wall time the run takes on an idle core, which is what a budget on an
idle 2-core machine means; on a busy shared machine the wall time says more about the neighbours. Each
stage's own wall and CPU seconds come from DIR/timings.json.

    .venv/bin/python bench/lab_budget.py --quick          # -> bench/results/lab_budget_quick.{md,json}
    .venv/bin/python bench/lab_budget.py                  # the default study -> bench/results/lab_budget.{md,json}

The study runs its stages ``--jobs`` at a time (2 here, the lab's default on 2 cores). On a shared machine the
measured wall time says more about the neighbours, so the table also gives the wall time the same schedule takes
on an idle machine with that many cores: the lab's scheduler replayed on each stage's CPU seconds
(``idle_schedule``: the earliest ready stage of the study's order starts as soon as a core is free; a stage is
ready when the agent it reads is made).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def run(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall and CPU seconds (user + sys) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}


def idle_schedule(stages: list[dict], jobs: int) -> float:
    """The wall seconds of the lab's schedule on ``jobs`` idle cores, each stage lasting its CPU seconds; a stage
    waits for the stages the study recorded it ``needs`` (those writing its inputs)."""
    waiting = [s for s in stages if s["status"] == "ran"]
    done: dict[str, float] = {}
    free = [0.0] * jobs
    while waiting:
        t = min(free)
        ready = [s for s in waiting if all(done.get(n, 1e18) <= t for n in s.get("needs", []))]
        if not ready:  # wait for the next stage to finish
            t = min(v for v in done.values() if v > t)
            free = [max(f, t) for f in free]
            continue
        stage = ready[0]
        waiting.remove(stage)
        core = free.index(t)
        free[core] = t + stage["cpu_s"]
        done[stage["stage"]] = free[core]
    return max(done.values(), default=0.0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None, help="study folder (default runs/bench-lab[-quick]; emptied first)")
    p.add_argument("--jobs", type=int, default=2, help="rllab lab --jobs")
    args = p.parse_args()
    tag = "lab_budget_quick" if args.quick else "lab_budget"
    out = Path(args.out or ROOT / "runs" / ("bench-lab-quick" if args.quick else "bench-lab"))
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(ROOT / ".venv" / "bin" / "rllab"), "lab", *(["--quick"] if args.quick else []), "--out", str(out)]
    cmd += ["--jobs", str(args.jobs)]
    load = os.getloadavg()
    first = run(cmd, env)
    stages = json.loads((out / "timings.json").read_text())["timings"]
    second = run(cmd, env)
    cached = json.loads((out / "timings.json").read_text())["timings"]
    result = {
        "command": " ".join(["rllab", *cmd[1:]]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "load_average_at_start": load,
        "first": first,
        "rerun": second,
        "rerun_all_cached": all(t["status"] == "cached" for t in cached),
        "rerun_wall_ratio": second["wall_s"] / first["wall_s"],
        "rerun_cpu_ratio": second["cpu_s"] / first["cpu_s"],
        "stages": stages,
    }
    result["jobs"] = args.jobs
    result["idle_schedule_s"] = idle_schedule(stages, args.jobs)
    result["stage_cpu_sum_s"] = sum(t.get("cpu_s", 0.0) for t in stages)
    (RESULTS / f"{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# `{result['command']}`: time from scratch and again (cached)",
        "",
        f"{result['date']}; Python {result['python']}, {result['platform']}, {result['cores']} cores, load "
        f"average {load[0]:.1f} at the start (a shared machine); OMP_NUM_THREADS=1. CPU: the child's user + sys "
        "seconds, the wall time of the same one-thread run on an idle core. Reproduce: "
        f"`.venv/bin/python bench/lab_budget.py{' --quick' if args.quick else ''}`.",
        "",
        "| run | wall s | CPU s |",
        "|---|---|---|",
        f"| from scratch | {first['wall_s']:.1f} | {first['cpu_s']:.1f} |",
        f"| again, every stage cached ({'yes' if result['rerun_all_cached'] else 'NO'}) | {second['wall_s']:.1f} | "
        f"{second['cpu_s']:.1f} |",
        f"| ratio | {result['rerun_wall_ratio']:.1%} | {result['rerun_cpu_ratio']:.1%} |",
        "",
        f"`--jobs {args.jobs}`. On an idle {args.jobs}-core machine the same schedule takes "
        f"**{result['idle_schedule_s'] / 60:.1f} min** (replayed on the stages' CPU seconds, "
        f"{result['stage_cpu_sum_s'] / 60:.1f} min of CPU in all).",
        "",
        "| stage | wall s | CPU s |",
        "|---|---|---|",
    ]
    lines += [f"| {t['stage']} | {t['seconds']:.1f} | {t.get('cpu_s', 0.0):.1f} |" for t in stages]
    (RESULTS / f"{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
