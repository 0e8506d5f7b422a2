"""ALE Pong-v5 end to end on the CPU from the command line alone (issue 16, must-show 3): ``rllab train``
(20k steps, the shipped Atari preset: AtariWrapper + 4-frame stack + NatureCNN, PPO with RL Zoo's atari
hyperparameters), ``rllab eval``, ``rllab attack --attack quick --episodes 1`` and ``rllab explain``; each
command's wall time and peak RSS (``os.wait4``'s ru_maxrss of that child alone).

    nice -n 10 .venv/bin/python bench/atari_pong_cli.py [--steps 20000] [--out runs/bench-pong]

Writes bench/results/atari_pong_cli.{json,md} after every command (a stopped run keeps what it measured).
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
RLLAB = [sys.executable, "-m", "rllab.cli"]


def run_measured(argv: list[str], log: Path, timeout: float) -> dict:
    """Run one command; its wall time, peak RSS (MiB), exit status and last output line."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.5)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    return {
        "command": "rllab " + " ".join(argv[len(RLLAB) :]),
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "exit_code": code,
        "timed_out": wall >= timeout,
        "output_tail": lines[-6:],
    }


def write(record: dict) -> None:
    """The JSON record and the Markdown table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "atari_pong_cli.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# ALE Pong-v5 end to end from the CLI, on the CPU",
        "",
        f"{record['date']}; {record['host']['cpus']} CPUs shared with other work (load average "
        f"{record['host']['load_avg_1min_start']:.1f} at the start); torch {record['versions']['torch']}, "
        f"ale-py {record['versions']['ale_py']}, SB3 {record['versions']['stable_baselines3']}; every command "
        f"under `nice -n 10`, default `--threads` ({record['threads_default']}).",
        "",
        "| command | wall time | CPU time | peak RSS | exit |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in record["rows"]:
        mins = f"{r['wall_s'] / 60:.1f} min" + (" (timed out)" if r["timed_out"] else "")
        cpu = f"{r['cpu_s'] / 60:.1f} min" if "cpu_s" in r else "-"
        lines.append(f"| `{r['command']}` | {mins} | {cpu} | {r['peak_rss_mib']:.0f} MiB | {r['exit_code']} |")
    for rerun in record.get("reruns", []):
        lines += [
            "",
            f"Measured again ({', '.join(rerun['commands'])}) on the same trained run at {rerun['date']} (load average "
            f"{rerun['load_avg_1min_start']:.1f}), with `--only`; the other rows are from the first run.",
        ]
    lines += [
        "",
        "Goal (issue 16): each under 10 minutes and 2 GB on 2 cores. CPU time: the child's user + sys seconds; "
        "with one torch thread (the default on 2 cores) it is the wall time on an idle core, while the wall time "
        "here depends on what else ran on the shared host.",
        "",
    ]
    for r in record["rows"]:
        lines += [f"`{r['command']}` ended with:", "", "```", *r["output_tail"], "```", ""]
    lines += [f"Reproduce: `{record['reproduce']}`", ""]
    (RESULTS / "atari_pong_cli.md").write_text("\n".join(lines))


def main() -> None:
    """Run the four commands in order and record each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--out", default="runs/bench-pong")
    parser.add_argument("--timeout", type=float, default=1500, help="seconds per command at most")
    parser.add_argument(
        "--only", type=lambda t: t.split(","), help="rerun these commands (e.g. attack) on the trained run"
    )
    args = parser.parse_args()
    import ale_py
    import stable_baselines3
    import torch

    from rllab.cli import _cores

    run = ROOT / args.out
    previous = json.loads((RESULTS / "atari_pong_cli.json").read_text()) if args.only else None
    if not args.only:
        shutil.rmtree(run, ignore_errors=True)
    logs = run.parent / f"{run.name}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    record = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": {
            "cpus": os.cpu_count(),
            "load_avg_1min_start": os.getloadavg()[0],
            "python": platform.python_version(),
        },
        "versions": {
            "torch": torch.__version__,
            "ale_py": ale_py.__version__,
            "stable_baselines3": stable_baselines3.__version__,
        },
        "threads_default": max(1, min(_cores() // 2, 4)),
        "reproduce": f"nice -n 10 .venv/bin/python bench/atari_pong_cli.py --steps {args.steps}",
        "rows": [],
    }
    commands = [
        [
            "train",
            "--algo",
            "ppo",
            "--env",
            "ALE/Pong-v5",
            "--steps",
            str(args.steps),
            "--eval-freq",
            "0",
            "--out",
            str(run),
            "--no-progress",
        ],
        ["eval", str(run), "--episodes", "5"],
        ["attack", str(run), "--attack", "quick", "--episodes", "1", "--no-progress"],
        ["explain", str(run), "--no-progress"],
    ]
    if previous is not None:  # --only: measure these commands again on the trained run, keep the other rows
        record = previous
        record.setdefault("reruns", []).append(
            {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "commands": args.only}
            | {"load_avg_1min_start": os.getloadavg()[0]}
        )
    for i, argv in enumerate(commands):
        if args.only and argv[0] not in args.only:
            continue
        row = run_measured(RLLAB + argv, logs / f"{i}-{argv[0]}.log", args.timeout)
        if previous is not None:
            record["rows"] = [row if r["command"].split()[1] == argv[0] else r for r in record["rows"]]
        else:
            record["rows"].append(row)
        record["host"][f"load_avg_1min_after_{argv[0]}"] = os.getloadavg()[0]
        write(record)
        print(f"{row['command']}: {row['wall_s']:.0f}s, {row['peak_rss_mib']:.0f} MiB, exit {row['exit_code']}")
        if row["exit_code"] != 0 and i == 0:
            break


if __name__ == "__main__":
    main()
