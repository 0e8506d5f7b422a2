"""``rllab sweep``: the command line of ``rllab.sweep``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rllab.cli.options import check_output_folder, episode_count, step_count, thread_count
from rllab.errors import RllabError
from rllab.parsing import positive_int, seed_int, yaml_arg
from rllab.sweep import BACKENDS, sweep


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``sweep``."""
    p = sub.add_parser(
        "sweep",
        help="train many runs (algorithms x envs x a hyperparameter grid x seeds) in parallel; report across seeds",
    )
    p.add_argument("--algo", required=True, help="one algorithm or a comma list (reinforce, a2c, ppo, dqn)")
    p.add_argument("--env", required=True, help="one Gymnasium id or a comma list")
    p.add_argument("--seeds", default="0-2", help="seeds: a range 0-4 or a list 0,1,5 (default 0-2)")
    p.add_argument("--grid", help="YAML/JSON mapping hyperparameter -> values, e.g. '{learning_rate: [1e-3, 3e-4]}'")
    p.add_argument("--steps", type=positive_int, help="environment steps per run (default: the shipped n_timesteps)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a hyperparameter for every run")
    p.add_argument("--hyperparams", help="YAML file overriding the shipped defaults, for every run")
    p.add_argument("--env-kwargs", help="YAML/JSON mapping passed to gymnasium.make, for every run")
    p.add_argument("--n-envs", type=positive_int)
    p.add_argument(
        "--save-freq", type=step_count, help="checkpoint every N steps (default steps/10): what a resume restarts from"
    )
    p.add_argument("--episodes", type=episode_count, default=20, help="evaluation episodes per run")
    p.add_argument("--eval-seed", type=seed_int, default=0, help="evaluation episode j is seeded eval-seed + j")
    p.add_argument("--attack", help="also attack every run: `rllab attack --attack` names (or 'all')")
    p.add_argument("--eps", default="0.1", help="with --attack: comma list of budgets (pixel/255 or obs std)")
    p.add_argument("--objective", help="with --attack: action | kl | value | targeted | margin")
    p.add_argument(
        "--attack-episodes",
        type=episode_count,
        help="with --attack: episodes per eps (default: --episodes, same seeds)",
    )
    default_jobs = max(1, (os.cpu_count() or 1))
    p.add_argument("--jobs", type=thread_count, default=default_jobs, help=f"runs at a time (default {default_jobs})")
    p.add_argument("--threads", type=thread_count, default=1, help="PyTorch threads per run (default 1)")
    p.add_argument("--backend", choices=sorted(BACKENDS), default="local", help="local worker pool, or Ray tasks")
    p.add_argument("--fresh", action="store_true", help="delete the runs and start over")
    p.add_argument("--out", help="sweep folder (default runs/sweep-ALGO-ENV)")
    p.set_defaults(func=cmd_sweep)


def train_arguments(args: argparse.Namespace) -> list[str]:
    """The ``rllab train`` options every run of the sweep gets."""
    train_args: list[str] = []
    if args.steps:
        train_args += ["--steps", str(args.steps)]
    if args.n_envs:
        train_args += ["--n-envs", str(args.n_envs)]
    if args.save_freq is not None:
        train_args += ["--save-freq", str(args.save_freq)]
    if args.hyperparams:
        if not Path(args.hyperparams).is_file():
            raise RllabError(f"no such hyperparameter file {args.hyperparams}")
        train_args += ["--hyperparams", str(Path(args.hyperparams).resolve())]
    if args.env_kwargs:
        train_args += ["--env-kwargs", args.env_kwargs]
    for s in args.set:
        train_args += ["--set", s]
    return train_args


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep, print its Markdown summary; exit 1 when some runs failed."""
    yaml_arg(args.env_kwargs, "--env-kwargs")  # fails here, in one line, not in every job
    train_args = train_arguments(args)
    attack_args = None
    if args.attack:
        episodes = args.attack_episodes or args.episodes
        attack_args = ["--attack", args.attack, "--eps", args.eps, "--episodes", str(episodes)]
        attack_args += ["--seed", str(args.eval_seed)]
        if args.objective:
            attack_args += ["--objective", args.objective]
    out = args.out or f"runs/sweep-{args.algo.replace(',', '+')}-{args.env.replace(',', '+').replace('/', '_')}"
    check_output_folder(out)
    result = sweep(
        args.algo,
        args.env,
        args.seeds,
        out,
        grid=args.grid,
        train_args=train_args,
        eval_episodes=args.episodes,
        eval_seed=args.eval_seed,
        attack_args=attack_args,
        jobs=args.jobs,
        threads=args.threads,
        backend=args.backend,
        fresh=args.fresh,
    )
    print(result["markdown"], end="")
    print(f"[sweep] summary: {out}/sweep.md  {out}/sweep.json; runs: {out}/<config>/s<seed>; logs: {out}/logs")
    failed = sum(len(c["failed"]) for c in result["configs"].values())
    if failed:
        print(f"rllab sweep: {failed} of {result['n_jobs']} runs failed (see FAILED in the summary)", file=sys.stderr)
        return 1
    return 0
