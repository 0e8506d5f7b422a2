"""``rllab lab [STUDY.yml]``: run a study (the built-in default, or a file; ``--quick`` shrinks it), every
stage cached by its inputs, then write ``OUT/<study>/index.html`` and ``summary.md`` and say where."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rllab.cli.options import check_output_folder, episode_count
from rllab.files import atomic_write
from rllab.parsing import int_arg, seed_int
from robustness.tensorboard import SMOOTHING_OFF
from study.page import render_index, render_summary
from study.run import run_study
from study.spec import load_study


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``lab``."""
    p = sub.add_parser(
        "lab",
        help="the whole study: train, defend, compress, adapt, evaluate, attack and explain agents; one page",
    )
    p.add_argument("study", nargs="?", help="a study file (YAML); default: the built-in study (docs/sweep-lab.md)")
    p.add_argument("--quick", action="store_true", help="the same study, smaller (minutes, not a quarter hour)")
    p.add_argument("--out", help="the study's folder (default runs/<study name>)")
    p.add_argument("--seed", type=seed_int, default=None, help="run only this seed (replaces the study's seeds)")
    p.add_argument("--episodes", type=episode_count, default=None, help="clean evaluation episodes (all envs)")
    p.add_argument("--attack-episodes", type=episode_count, default=None, help="episodes per attack and eps")
    p.add_argument("--no-attack", action="store_true", help="make, evaluate and explain only")
    p.add_argument(
        "--jobs",
        type=int_arg(1, 64, "job count"),
        default=None,
        help="stages at once, one thread each (default: the CPU cores, at most 4)",
    )
    p.add_argument("--fresh", action="store_true", help="rerun every stage, even those cached")
    p.set_defaults(func=cmd_lab)


def default_jobs() -> int:
    """Stages run at once without ``--jobs``: the usable cores, at most 4 (each stage runs one torch thread)."""
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 4))


def cmd_lab(args: argparse.Namespace) -> int:
    """Run the study and write its pages."""
    study = load_study(args.study, quick=args.quick)
    if args.seed is not None:
        study.seeds = [args.seed]
    out = check_output_folder(Path(args.out) if args.out else Path("runs") / study.name)
    results = run_study(
        study,
        out,
        fresh=args.fresh,
        attack=not args.no_attack,
        episodes=args.episodes,
        attack_episodes=args.attack_episodes,
        jobs=args.jobs or default_jobs(),
    )
    atomic_write(out / "index.html", render_index(results))
    atomic_write(out / "summary.md", render_summary(results))
    ran = sum(t["status"] == "ran" for t in results["timings"])
    print(f"[lab] {ran} stages ran, {len(results['timings']) - ran} cached, {results['seconds']:.0f} s")
    print(f"[lab] results: {out / 'index.html'}  {out / 'summary.md'}")
    print(
        f"[lab] tensorboard --logdir {out}   (attack curves: the Custom Scalars tab, eps on the x axis; unsmoothed: "
        f"TensorBoard's address + {SMOOTHING_OFF})"
    )
    return 0
