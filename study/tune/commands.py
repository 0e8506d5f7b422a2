"""``rllab tune``: parse, check, tune, say where the results are."""

from __future__ import annotations

import argparse
from pathlib import Path

from rllab.cli.options import check_output_folder, episode_count, thread_count
from rllab.environment import check_env_id
from rllab.errors import RllabError
from rllab.parsing import budget, int_arg, nonneg_float, positive_int, seed_int
from rllab.schema import ALGOS
from rllab.sweep import POOLS
from study.tune.run import PRUNERS, TuneSettings, optuna_module, tune
from study.tune.space import SPACES, load_space, space_yaml

trial_count = int_arg(1, 10_000, "trial_count")
rung_count = int_arg(1, 10, "rung_count")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``tune``."""
    p = sub.add_parser("tune", help="tune hyperparameters with Optuna (pruning, local or Ray, robust objective)")
    p.add_argument("--algo", required=True, choices=ALGOS)
    p.add_argument("--env", required=True, help="environment id")
    p.add_argument("--space", help=f"search space: {', '.join(SPACES)} or a YAML file (default: the algorithm's)")
    p.add_argument("--show-space", action="store_true", help="print the search space as YAML and exit")
    p.add_argument("--trials", type=trial_count, default=20)
    p.add_argument("--steps", type=positive_int, default=20_000, help="training steps per trial (its last rung)")
    p.add_argument("--rungs", type=rung_count, default=3, help="evaluations during training, where pruning decides")
    p.add_argument("--pruner", choices=PRUNERS, default="median", help="median (RL Zoo's), halving, none")
    p.add_argument("--startup", type=int_arg(0, 10_000, "count"), default=5, help="random trials before TPE/pruning")
    p.add_argument("--batch", type=thread_count, default=4, help="trials asked at once (results depend on it)")
    p.add_argument("--seed", type=seed_int, default=0, help="the sampler's seed and every trial's training seed")
    p.add_argument("--episodes", type=episode_count, default=5, help="evaluation episodes (clean and per attack)")
    p.add_argument("--objective", choices=["clean", "robust"], default="clean")
    p.add_argument("--weight", type=nonneg_float, default=0.5, help="robust: w in clean - w * (clean - worst)")
    p.add_argument("--eps", type=budget, default=None, help="robust: the budget, in threat units (8/255, 0.5 std)")
    p.add_argument(
        "--attacks", default="pgd", help="robust: comma list, NAME[:OBJECTIVE], e.g. pgd,pgd:kl,pgd:targeted=0"
    )
    p.add_argument("--attack-steps", type=int_arg(1, 1000, "attack_steps"), default=10, help="PGD steps")
    p.add_argument("--jobs", type=thread_count, default=1, help="trials at a time (results do not depend on it)")
    p.add_argument("--backend", choices=sorted(POOLS), default="local", help="local worker processes, or Ray tasks")
    p.add_argument("--name", help="the tune's folder name (default ALGO-ENV-OBJECTIVE)")
    p.add_argument("--out", default=str(Path("runs") / "tune"), help="where tunes go (default runs/tune)")
    p.add_argument("--fresh", action="store_true", help="start over, discarding the tune's earlier trials")
    p.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    """Run the tune and say where its trials table and best hyperparameters are."""
    space, shown = load_space(args.space, args.algo)
    if args.show_space:
        print(space_yaml(space), end="")
        return 0
    check_env_id(args.env)
    optuna_module()  # a missing extra is one line before anything else
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    if args.objective == "clean" and args.eps is not None:
        raise RllabError("--eps is for --objective robust (the clean objective attacks nothing)")
    settings = TuneSettings(
        algo=args.algo,
        env=args.env,
        space=shown,
        trials=args.trials,
        steps=args.steps,
        rungs=args.rungs,
        pruner=args.pruner,
        startup=args.startup,
        batch=args.batch,
        seed=args.seed,
        episodes=args.episodes,
        objective=args.objective,
        weight=args.weight,
        eps=args.eps,
        attacks=attacks if args.objective == "robust" else [],
        attack_steps=args.attack_steps,
    )
    settings.check()
    name = args.name or f"{args.algo}-{args.env.replace('/', '_').replace(':', '_')}-{args.objective}"
    out = check_output_folder(Path(args.out) / name)
    record = tune(settings, space, out, jobs=args.jobs, backend=args.backend, fresh=args.fresh)
    best = record.get("best")
    if best:
        print(f"[tune] best trial {best['number']}: {args.objective} {best['value']:.4g}; {out / 'best.yml'}")
        print(f"[tune] train it: rllab train --algo {args.algo} --env {args.env} --hyperparams {out / 'best.yml'}")
    else:
        print("[tune] no trial finished; see the errors above")
    print(f"[tune] trials: {out / 'trials.md'}  {out / 'trials.json'}")
    return 0
