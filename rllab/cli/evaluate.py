"""``rllab eval``: a checkpoint's return over seeded episodes, optionally in a shifted domain."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rllab.agent import load
from rllab.checkpoint import check_output_path, write_json
from rllab.cli.options import episode_count
from rllab.environment import describe_domain, with_domain
from rllab.evaluation import record_video, run_episodes
from rllab.parsing import format_ci, positive_int, seed_int, yaml_arg


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``eval``."""
    p = sub.add_parser("eval", help="evaluate a checkpoint")
    p.add_argument("run", help="checkpoint folder")
    p.add_argument("--episodes", type=episode_count, default=20)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--n-envs", type=positive_int, default=8)
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--video", help="record one episode as an animated GIF here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--env-kwargs", help="evaluate in a shifted domain: YAML/JSON mapping merged into the env kwargs")
    p.add_argument(
        "--wrappers", help="evaluate in a shifted domain: YAML/JSON list of named wrappers applied after the agent's"
    )
    p.set_defaults(func=cmd_eval)


def format_summary(s: dict[str, Any]) -> str:
    """An evaluation summary as three lines: return, length, episodes and their seeds."""
    seeds = f"seed {s['seed']}" if s["episodes"] == 1 else f"seeds {s['seed']}..{s['seed'] + s['episodes'] - 1}"
    return (
        f"return  mean {s['mean_return']:.3f}  std {s['std_return']:.3f}  min {s['min_return']:.3f}  "
        f"max {s['max_return']:.3f}  95% CI {format_ci(s['ci95_return'])}\n"
        f"length  mean {s['mean_length']:.1f}  std {s['std_length']:.1f}  "
        f"min {s['min_length']}  max {s['max_length']}\n"
        f"episodes {s['episodes']} ({seeds})"
    )


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint and print (and optionally save) the summary, or record a video."""
    env_kwargs, wrappers = yaml_arg(args.env_kwargs, "--env-kwargs"), yaml_arg(args.wrappers, "--wrappers", list)
    for output in (args.json, args.video):
        if output:
            check_output_path(output)  # a folder or a path under a file fails before the episodes run
    agent = load(args.run, device=args.device)
    agent.spec["env"] = with_domain(agent.spec["env"], env_kwargs=env_kwargs, wrappers=wrappers)  # not saved
    agent.make_env().close()  # a domain the checkpoint's spaces do not fit fails here, in one line
    result = run_episodes(agent, args.episodes, seed=args.seed, n_envs=args.n_envs, deterministic=not args.stochastic)
    domain = describe_domain(agent.spec["env"])
    summary = {"run": str(args.run), "env": agent.env_id, "domain": domain, "algo": agent.algo, **result.summary()}
    print(f"{args.run}: {agent.algo} on {domain}")
    print(format_summary(summary))
    if args.json:
        write_json(Path(args.json), summary)
        print(f"results: {args.json}")
    if args.video:
        path = record_video(agent, args.video, seed=args.seed, deterministic=not args.stochastic)
        print(f"video: {path}")
    return 0
