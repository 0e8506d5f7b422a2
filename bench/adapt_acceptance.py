"""Domain adaptation across agents (`rllab adapt`), on CPU with one thread per run.

Ten Catch-v0 PPO agents (seeds 0-4, each trained with two budgets: 60k steps, the shipped default for
ppo Catch-v0, and 30k) meet three target domains they were not trained in and are adapted without
target rewards by

- ``consistency`` (the default): the source agent's actions on each source state taught on its target
  twin, visited in lockstep from the same reset seeds with the same actions;
- ``dann``: domain confusion at the first hidden layer beside the source task loss (the former default);
- ``grl``, ``entropy``: DANN's gradient-reversal layer; DANN plus entropy minimisation (``--methods``).

Each row is one (agent, shift, method): catch rate in the target before and after, in the source before
and after (100 episodes each), the share of the source-target gap closed, the held-out accuracy of a fresh
domain classifier after, and the paired action agreement after. Must show, for the default method: mean
gap closed >= 80% per shift, every agent >= 50%, every agent's source return kept >= 95%.

Resumable: agents are trained once into runs/bench-adapt/agents/, every finished row is kept in
runs/bench-adapt/rows/ and a re-run only does the missing ones; bench/results/adapt_acceptance.{json,md}
are rewritten after every row, saying which rows are still missing.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/adapt_acceptance.py --jobs 2
"""

from __future__ import annotations

import argparse
import fcntl
import json
import platform
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path

import stable_baselines3
import torch

import rllab
from rllab.transforms import adapt

ROOT = Path(__file__).resolve().parent
WORK = ROOT.parent / "runs" / "bench-adapt"
SEEDS = (0, 1, 2, 3, 4)
BUDGETS = (60_000, 30_000)  # the shipped default for ppo Catch-v0 (rllab/hyperparams/ppo.yml), and half of it
EPISODES = 100
SHIFTS = {
    "brighter (offset 60)": {"target_wrappers": [{"name": "ObservationShift", "kwargs": {"offset": 60}}]},
    "dimmer + offset (scale 0.5, offset 60)": {
        "target_wrappers": [{"name": "ObservationShift", "kwargs": {"scale": 0.5, "offset": 60}}]
    },
    "3 distractors at 200/255": {"target_env_kwargs": {"distractors": 3, "distractor_intensity": 200}},
}
METHODS = {
    "consistency": {"method": "consistency"},
    "dann": {"method": "dann"},
    "grl": {"method": "dann", "loss": "grl"},
    "entropy": {"method": "entropy"},
}
DEFAULT = "consistency"
MUST = {"mean_gap_closed": 0.8, "agent_gap_closed": 0.5, "source_kept": 0.95}


def rate(mean_return: float) -> float:
    """Catch rate from a mean return (+1 catch, -1 miss)."""
    return (mean_return + 1) / 2


def agent_path(seed: int, steps: int) -> Path:
    """Where the agent of ``seed`` trained for ``steps`` is kept (trained here the first time)."""
    return WORK / "agents" / f"ppo-Catch-v0-{steps // 1000}k-s{seed}"


def train(seed: int, steps: int) -> Path:
    """Train the agent once (a partial folder from an interrupted run is trained again); a second worker
    asking for the same agent waits for the first."""
    run = agent_path(seed, steps)
    run.parent.mkdir(parents=True, exist_ok=True)
    with open(run.parent / f"{run.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (run / "agent.json").exists():
            shutil.rmtree(run, ignore_errors=True)
            rllab.train("ppo", "Catch-v0", seed=seed, steps=steps, out=run, progress=False, threads=1)
    return run


def key(seed: int, steps: int, shift: str, method: str) -> str:
    """The file name of one row."""
    return f"s{seed}-{steps // 1000}k-shift{list(SHIFTS).index(shift)}-{method}"


def one(seed: int, steps: int, shift: str, method: str) -> dict:
    """Adapt one agent to one shift with one method; the row is kept in runs/bench-adapt/rows/."""
    torch.set_num_threads(1)
    t0 = time.time()
    agent = rllab.load(train(seed, steps))
    _, result = adapt(agent, **SHIFTS[shift], **METHODS[method], seed=0, eval_episodes=EPISODES, progress=False)
    s, r = result.summary, result.summary["mean_return"]
    row = {
        "agent": f"s{seed} {steps // 1000}k",
        "agent_seed": seed,
        "train_steps": steps,
        "shift": shift,
        "method": method,
        "target_before": rate(r["target_before"]),
        "target_after": rate(r["target_after"]),
        "source_before": rate(r["source_before"]),
        "source_after": rate(r["source_after"]),
        "gap_closed": s["gap_closed"],
        "source_kept": r["source_after"] / r["source_before"] if r["source_before"] > 0 else None,
        "classifier_after": s["domain_gap_after"]["accuracy"],
        "agreement_before": s["paired_agreement"]["before"],
        "agreement_after": s["paired_agreement"]["after"],
        "warnings": s["warnings"],
        "episodes": EPISODES,
        "seconds": time.time() - t0,
    }
    out = WORK / "rows" / f"{key(seed, steps, shift, method)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=1) + "\n")
    print(json.dumps(row), flush=True)
    return row


def verdict(rows: list[dict], shift: str) -> dict:
    """The must-show figures of the default method on one shift (over the rows done so far)."""
    sel = [r for r in rows if r["shift"] == shift and r["method"] == DEFAULT]
    gaps = [r["gap_closed"] for r in sel if r["gap_closed"] is not None]
    kept = [r["source_kept"] for r in sel if r["source_kept"] is not None]
    mean_gap = sum(gaps) / len(gaps) if gaps else None
    return {
        "shift": shift,
        "rows": len(sel),
        "agents_with_a_gap": len(gaps),
        "mean_gap_closed": mean_gap,
        "min_gap_closed": min(gaps) if gaps else None,
        "min_source_kept": min(kept) if kept else None,
        "pass": bool(
            gaps
            and mean_gap >= MUST["mean_gap_closed"]
            and min(gaps) >= MUST["agent_gap_closed"]
            and min(kept) >= MUST["source_kept"]
        ),
    }


def fmt(x: float | None, pct: bool = False) -> str:
    """A figure, or "no gap" where the target was no worse than the source."""
    if x is None:
        return "no gap" if pct else "-"
    return f"{x:.0%}" if pct else f"{x:.2f}"


def write(rows: list[dict], tasks: list[tuple], started: float, methods: list[str]) -> None:
    """bench/results/adapt_acceptance.{json,md} from the rows done so far, naming the missing ones."""
    done = {key(r["agent_seed"], r["train_steps"], r["shift"], r["method"]) for r in rows}
    missing = [t for t in tasks if key(*t) not in done]
    order = {key(*t): i for i, t in enumerate(tasks)}
    rows = sorted(rows, key=lambda r: order.get(key(r["agent_seed"], r["train_steps"], r["shift"], r["method"]), 1e9))
    verdicts = [verdict(rows, shift) for shift in SHIFTS]
    command = "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/adapt_acceptance.py --jobs 2"
    result = {
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "stable_baselines3": stable_baselines3.__version__,
        },
        "device": "cpu, 1 thread per run",
        "episodes": EPISODES,
        "settings": "rllab adapt defaults (2000 steps, 10k states per domain, explore 0.3, lr 1e-3, seed 0)",
        "must_show": MUST,
        "verdicts_for_default_method": verdicts,
        "rows": rows,
        "missing_rows": [{"agent": f"s{t[0]} {t[1] // 1000}k", "shift": t[2], "method": t[3]} for t in missing],
        "wall_s_this_run": time.time() - started,
    }
    out = ROOT / "results"
    (out / "adapt_acceptance.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# rllab adapt on Catch-v0: ten PPO agents, three shifted target domains",
        "",
        f"Agents: seeds 0-4, each trained for 60k steps (the shipped default) and 30k. {EPISODES} evaluation "
        f"episodes per domain; {result['settings']}; CPU, 1 thread per run. Rates are catch rates; gap closed "
        "= (target after - target before) / (source before - target before); source kept = source return after "
        "/ before; classifier: held-out accuracy of a fresh domain classifier on the adapted features (0.5: the "
        "domains cannot be told apart); agreement: share of held-out paired target states where the adapted "
        "agent takes the source agent's action on the source twin.",
        "",
        f"Reproduce: `{command}` (resumable: finished rows are kept in runs/bench-adapt/rows/). "
        f"Written {result['date']}; python {result['versions']['python']}, torch {result['versions']['torch']}, "
        f"stable-baselines3 {result['versions']['stable_baselines3']}.",
        "",
    ]
    missing_default = [t for t in missing if t[3] == DEFAULT]
    if missing_default:
        lines += [
            f"**Incomplete: {len(missing)} of {len(tasks)} rows missing** (listed at the end); the verdicts "
            "below cover the rows done.",
            "",
        ]
    elif missing:
        lines += [
            f"Every row of the default method (`{DEFAULT}`) is done; {len(missing)} of the {len(tasks)} rows, all of "
            "the comparison methods, are not run yet (listed at the end).",
            "",
        ]
    lines += [
        f"## Must show (method `{DEFAULT}`, the default)",
        "",
        "Mean gap closed >= 80% per shift, every agent >= 50%, source kept >= 95%.",
        "",
        "| target domain | rows | agents with a gap | mean gap closed | lowest | lowest source kept | pass |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for v in verdicts:
        lines.append(
            f"| {v['shift']} | {v['rows']} | {v['agents_with_a_gap']} | {fmt(v['mean_gap_closed'], True)} "
            f"| {fmt(v['min_gap_closed'], True)} | {fmt(v['min_source_kept'], True)} "
            f"| {'yes' if v['pass'] else 'no'} |"
        )
    lines += ["", "## Mean gap closed by method", "", "| target domain | " + " | ".join(methods) + " |"]
    lines.append("| --- |" + " --- |" * len(methods))
    for shift in SHIFTS:
        cells = []
        for m in methods:
            g = [
                r["gap_closed"]
                for r in rows
                if r["shift"] == shift and r["method"] == m and r["gap_closed"] is not None
            ]
            n = len([r for r in rows if r["shift"] == shift and r["method"] == m])
            cells.append(f"{sum(g) / len(g):.0%} (min {min(g):.0%}, {n} rows)" if g else f"- ({n} rows)")
        lines.append(f"| {shift} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Every agent",
        "",
        "| target domain | agent | method | target before | target after | gap closed | source before "
        "| source after | classifier | agreement before | agreement after | warning |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    notes = sorted({r["note"] for r in rows if r.get("note")})
    for r in rows:
        mark = "*" * (notes.index(r["note"]) + 1) if r.get("note") else ""
        lines.append(
            f"| {r['shift']} | {r['agent']}{mark} | {r['method']} | {r['target_before']:.2f} "
            f"| **{r['target_after']:.2f}** "
            f"| {fmt(r['gap_closed'], True)} | {r['source_before']:.2f} | {r['source_after']:.2f} "
            f"| {r['classifier_after']:.2f} | {r['agreement_before']:.2f} | {r['agreement_after']:.2f} "
            f"| {'yes' if r['warnings'] else ''} |"
        )
    lines += [f"\n{'*' * (i + 1)} {note}." for i, note in enumerate(notes)]
    if missing:
        lines += ["", "## Missing rows (not run yet)", ""]
        lines += [f"- {m['agent']}, {m['shift']}, {m['method']}" for m in result["missing_rows"]]
    (out / "adapt_acceptance.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    parser.add_argument(
        "--methods", default="consistency,dann", help=f"comma-separated, from {', '.join(METHODS)} (default first)"
    )
    parser.add_argument("--report-only", action="store_true", help="write the report from the rows done; run nothing")
    args = parser.parse_args()
    methods = args.methods.split(",")
    torch.set_num_threads(1)
    started = time.time()
    agents = [(seed, steps) for steps in BUDGETS for seed in SEEDS]
    tasks = [(seed, steps, shift, m) for m in methods for seed, steps in agents for shift in SHIFTS]
    if set(methods) - set(METHODS):
        parser.error(f"--methods: choose from {', '.join(METHODS)}")
    rows = [json.loads(p.read_text()) for p in sorted((WORK / "rows").glob("*.json"))]
    rows = [r for r in rows if r["method"] in methods]
    done = {key(r["agent_seed"], r["train_steps"], r["shift"], r["method"]) for r in rows}
    todo = [t for t in tasks if key(*t) not in done]
    write(rows, tasks, started, methods)
    if args.report_only:
        todo = []
    with ProcessPoolExecutor(args.jobs) as pool:
        pending = {pool.submit(one, *t) for t in todo}  # in order: the default method first, agent by agent
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            rows += [f.result() for f in finished]
            write(rows, tasks, started, methods)
    write(rows, tasks, started, methods)
    print((ROOT / "results" / "adapt_acceptance.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
