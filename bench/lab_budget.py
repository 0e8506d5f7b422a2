"""How long `rllab lab` takes: the study from scratch, then the same command again (every stage cached).

Runs `rllab lab [--quick] --out DIR` as a child process twice and records, for each run, the wall time and
the CPU time of the child (user + sys). With one PyTorch thread (OMP_NUM_THREADS=1, the lab's default for
these agents) the CPU time is the wall time the run takes on an idle core, which is what a budget on an
idle 2-core machine means; on a busy shared machine the wall time says more about the neighbours. Each
stage's own wall and CPU seconds come from DIR/timings.json.

    .venv/bin/python bench/lab_budget.py --quick          # -> bench/results/lab_budget_quick.{md,json}
    .venv/bin/python bench/lab_budget.py                  # the default study -> bench/results/lab_budget.{md,json}
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None, help="study folder (default runs/bench-lab[-quick]; emptied first)")
    args = p.parse_args()
    tag = "lab_budget_quick" if args.quick else "lab_budget"
    out = Path(args.out or ROOT / "runs" / ("bench-lab-quick" if args.quick else "bench-lab"))
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(ROOT / ".venv" / "bin" / "rllab"), "lab", *(["--quick"] if args.quick else []), "--out", str(out)]
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
        "| stage | wall s | CPU s |",
        "|---|---|---|",
    ]
    lines += [f"| {t['stage']} | {t['seconds']:.1f} | {t.get('cpu_s', 0.0):.1f} |" for t in stages]
    (RESULTS / f"{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
