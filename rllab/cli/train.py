"""``rllab train``: train an agent into a checkpoint folder."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rllab.cli.options import check_output_folder, episode_count, fraction, step_count, thread_count
from rllab.environment import check_env_id
from rllab.errors import RllabError
from rllab.parsing import budget, format_ci, nonneg_float, plural, positive_int, seed_int, yaml_arg
from rllab.training import default_run_dir, train

DEFENSE_DEFAULTS = {"eps": 0.1, "defense_coef": 0.1, "defense_steps": 10, "defense_ramp": 0.5}
DEFENSE_OPTIONS = {  # option (argparse dest) -> the installer's keyword
    "eps": "eps",
    "defense_coef": "coef",
    "defense_steps": "steps",
    "defense_ramp": "ramp",
    "defense_solver": "solver",
    "defense_adv_every": "adv_every",
    "defense_adv_steps": "adv_steps",
}
DEFENSE_TAKES = {  # the options each training defense uses; another one given is refused, not ignored
    "sa-reg": ("eps", "defense_coef", "defense_steps", "defense_ramp", "defense_solver"),
    "adv-obs": ("eps", "defense_steps", "defense_ramp"),
    "atla": ("eps", "defense_steps", "defense_adv_every", "defense_adv_steps"),
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train``."""
    p = sub.add_parser("train", help="train an agent into a checkpoint folder")
    p.add_argument("--algo", required=True, choices=["reinforce", "a2c", "ppo", "dqn"])
    p.add_argument(
        "--env",
        required=True,
        help="a Gymnasium id, e.g. CartPole-v1, Catch-v0, ALE/Pong-v5 (extra atari), MinAtar/Breakout-v1 "
        "(extra minatar), Hopper-v5 (extra mujoco), or module:Env-id (the module is imported first)",
    )
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument(
        "--steps", type=positive_int, help="environment steps (default: the hyperparameter file's n_timesteps)"
    )
    p.add_argument("--n-envs", type=positive_int)
    p.add_argument("--hyperparams", help="YAML file overriding the shipped defaults")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one hyperparameter")
    p.add_argument("--env-kwargs", default=None, help="YAML/JSON mapping passed to gymnasium.make")
    p.add_argument(
        "--wrappers",
        default=None,
        help="YAML/JSON list of named wrappers, recorded in the checkpoint, e.g. "
        "'[{name: ResizeObservation, kwargs: {shape: [42, 42]}}]' (default: the hyperparameters' preset: "
        "for ALE ids AtariWrapper + a 4-frame stack; '[]' for none)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument(
        "--threads",
        type=thread_count,
        help="PyTorch CPU threads while training (default: OMP_NUM_THREADS if set, else 1, or min(cores // 2, 4) "
        "for ALE ids; a resumed run: its recorded count); the same seed gives the same weights only with the "
        "same thread count, recorded in agent.json",
    )
    p.add_argument("--out", help="run folder (default runs/ALGO-ENV-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--eval-freq", type=step_count, help="evaluate every N steps (default steps/10; 0: never)")
    p.add_argument("--eval-episodes", type=episode_count, default=5, help="episodes per periodic evaluation")
    p.add_argument(
        "--save-freq", type=step_count, help="checkpoint every N steps (default steps/10; 0: only at the end)"
    )
    p.add_argument(
        "--defense",
        help="adversarial training: sa-reg (SA-PPO regulariser), adv-obs, or atla (alternating learned adversary)",
    )
    p.add_argument(
        "--eps",
        type=budget,
        help="with --defense: budget in pixel/255 (e.g. 4/255) or obs-std units (default 0.1)",
    )
    p.add_argument("--defense-coef", type=nonneg_float, help="sa-reg: weight of the KL regulariser (default 0.1)")
    p.add_argument("--defense-steps", type=positive_int, help="PGD steps of the inner maximisation (default 10)")
    p.add_argument("--defense-ramp", type=fraction, help="fraction of training over which eps ramps up (default 0.5)")
    p.add_argument(
        "--defense-solver",
        choices=["pgd", "ibp"],
        help="sa-reg: inner maximisation by PGD (default) or the IBP upper bound of the KL (SA-PPO convex variant)",
    )
    p.add_argument(
        "--defense-adv-every",
        type=positive_int,
        help="atla: victim updates between two trainings of the adversary (default 8; ATLA's alternation: 1)",
    )
    p.add_argument(
        "--defense-adv-steps",
        type=positive_int,
        help="atla: PPO steps the adversary trains each time (default 2048; at least one adversary rollout)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """Train one agent and print where its checkpoint and TensorBoard logs are."""
    check_env_id(args.env)  # an unknown id or bad kwargs fail before the "training ..." line
    defense_kwargs = _defense_kwargs(args)
    env_kwargs = yaml_arg(args.env_kwargs, "--env-kwargs") or {}
    wrappers = yaml_arg(args.wrappers, "--wrappers", list) if args.wrappers is not None else None
    out = Path(args.out) if args.out else default_run_dir(args.algo, args.env, args.seed)
    check_output_folder(out)  # a file, or a folder that cannot be made, fails before training, not after it
    print(f"training {args.algo} on {args.env} (seed {args.seed}) -> {out}")
    agent = train(
        algo=args.algo,
        env=args.env,
        seed=args.seed,
        steps=args.steps,
        n_envs=args.n_envs,
        hyperparams=args.hyperparams,
        overrides=args.set,
        device=args.device,
        out=out,
        resume=args.resume,
        env_kwargs=env_kwargs,
        wrappers=wrappers,
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        save_freq=args.save_freq,
        progress=False if args.no_progress else None,
        defense=args.defense,
        defense_kwargs=defense_kwargs,
        verbose=args.verbose,
        threads=args.threads,
    )
    fe = agent.spec["training"]["final_eval"]
    print(
        f"done: {agent.spec['training']['timesteps']} steps in {agent.spec['training']['wall_time_s']:.1f}s; "
        f"mean return {fe['mean_return']:.2f} (std {fe['std_return']:.2f}, "
        f"95% CI {format_ci(fe.get('ci95_return'), 2)}) "
        f"over {plural(fe['episodes'], 'episode')}"
    )
    print(f"checkpoint: {out}   tensorboard: tensorboard --logdir {out / 'tb'}")
    return 0


def _flags(dests: Iterable[str]) -> str:
    return ", ".join(f"--{d.replace('_', '-')}" for d in dests)


def _defense_kwargs(args: argparse.Namespace) -> dict[str, Any] | None:
    """The chosen defense's settings: those given, the defaults for the rest; one it does not use is refused."""
    given = [d for d in DEFENSE_OPTIONS if getattr(args, d) is not None]
    if not args.defense:
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise RllabError(f"{_flags(given)} only {verb} with --defense (sa-reg, adv-obs or atla)")
        return None
    takes = DEFENSE_TAKES.get(args.defense, tuple(DEFENSE_OPTIONS))  # an unknown name: the installer says so
    unused = [d for d in given if d not in takes]
    if unused:
        verb = "does" if len(unused) == 1 else "do"
        raise RllabError(f"{_flags(unused)} {verb} not apply to --defense {args.defense} (it takes {_flags(takes)})")
    values = {d: getattr(args, d) if getattr(args, d) is not None else DEFENSE_DEFAULTS.get(d) for d in takes}
    return {DEFENSE_OPTIONS[d]: v for d, v in values.items() if v is not None}
