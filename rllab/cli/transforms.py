"""``rllab distill | prune | quantize``: compression transforms from checkpoint to checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch as th

from rllab.agent import Agent
from rllab.checkpoint import new_output, removed_on_failure
from rllab.errors import RllabError
from rllab.parsing import seed_int


def default_out(parent: Path, transform: str) -> Path:
    return parent.parent / f"{parent.name}-{transform}"


def output_for(out: str | Path | None, parent_path: str | Path, transform: str) -> Path:
    """The checkpoint a transform will write, checked before it starts (``--out`` or ``PARENT-transform``)."""
    return new_output(out if out is not None else default_out(Path(parent_path), transform), parent_path)


def finish(
    agent: Agent, out: str | Path | None, parent: Agent, parent_path: Path, transform: str, seed: int, episodes: int
) -> Agent:
    """Save a transformed agent with its compression summary and its parent's (same episodes and seeds),
    then say where and what both are, so that what the transform cost is read off two lines."""
    from rllab.agent import load
    from rllab.transforms.summary import compression_summary, summary_line

    out = output_for(out, parent_path, transform)
    with removed_on_failure(out):
        agent.save(out)
        summary = compression_summary(agent, out, episodes=episodes, seed=seed)
        # the parent as stored (a transform may have changed the object it was handed)
        summary["parent"] = {
            "path": str(parent_path),
            **compression_summary(load(parent_path), parent_path, episodes=episodes, seed=seed),
        }
        agent.spec["compression"] = summary
        agent.spec["lineage"][-1]["summary"] = {
            k: summary[k] for k in ("parameters", "file_bytes", "latency_s", "mean_return")
        }
        agent.save(out)
    print(f"rllab {transform}: wrote {out}")
    print(f"  new     {summary_line(summary)}")
    print(f"  parent  {summary_line(summary['parent'])}  ({parent_path})")
    return agent


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars only on a terminal (as train): a redirected stderr gets no bar frames."""
    import sys

    return not args.no_progress and sys.stderr.isatty()


def _json_arg(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RllabError(f"--policy-kwargs must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise RllabError("--policy-kwargs must be a JSON object")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="distil one or more teachers into a smaller student (new checkpoint)")
    p.add_argument("teacher", nargs="+", help="teacher checkpoint folder(s); several form an averaged ensemble")
    p.add_argument("--arch", default="16,16", help="student hidden layers, e.g. 16,16")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (Hinton et al. 2015)")
    p.add_argument("--data", default="mixed", choices=["teacher", "student", "mixed"], help="who visits the states")
    p.add_argument("--steps", type=int, default=20_000, help="states gathered in total")
    p.add_argument("--rounds", type=int, default=5, help="data-gathering rounds (DAgger iterations)")
    p.add_argument("--epochs", type=int, default=10, help="passes over the aggregated data after each round")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--critic", action="store_true", help="also distil the state-value critic")
    p.add_argument(
        "--policy-kwargs", help='JSON overrides, e.g. \'{"features_extractor_kwargs": {"features_dim": 32}}\''
    )
    p.add_argument("--episodes", type=int, default=20, help="evaluation episodes for the summary")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", help="output checkpoint (default TEACHER-distill)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("prune", help="prune an agent's weights or hidden units, with fine-tuning (new checkpoint)")
    p.add_argument("run", help="checkpoint folder")
    p.add_argument("--sparsity", type=float, default=0.9, help="fraction of weights (or hidden units) removed")
    p.add_argument("--structured", action="store_true", help="remove whole hidden units (smaller, faster network)")
    p.add_argument("--importance", default="magnitude", choices=["magnitude", "gradient"])
    p.add_argument("--iterative", type=int, default=1, help="prune-then-fine-tune rounds")
    p.add_argument("--finetune", default="distill", choices=["distill", "rl", "none"])
    p.add_argument(
        "--steps", type=int, default=10_000, help="states (distill) or environment steps (rl) per fine-tuning round"
    )
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--episodes", type=int, default=20, help="evaluation episodes for the summary")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", help="output checkpoint (default RUN-prune)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("quantize", help="post-training dynamic int8 quantisation (new checkpoint)")
    p.add_argument("run", help="checkpoint folder")
    p.add_argument("--dtype", default="int8", choices=["int8"])
    p.add_argument(
        "--min-features", type=int, default=16, help="layers with fewer inputs or outputs than this stay float"
    )
    p.add_argument("--episodes", type=int, default=20, help="evaluation episodes for the summary")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", help="output checkpoint (default RUN-quantize)")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser(
        "adapt", help="domain-adversarial adaptation to a shifted domain, without its rewards (new checkpoint)"
    )
    p.add_argument("run", help="checkpoint folder (the source domain is its environment)")
    p.add_argument("--target-env", help="target Gymnasium id (same observation and action spaces)")
    p.add_argument("--target-env-kwargs", help="YAML/JSON mapping merged into the source's env kwargs")
    p.add_argument(
        "--target-wrappers",
        help="YAML/JSON list of named wrappers applied after the source's, "
        "e.g. '[{name: ObservationShift, kwargs: {offset: 60}}]'",
    )
    p.add_argument(
        "--loss", default="confusion", choices=["confusion", "grl"], help="domain confusion or gradient reversal"
    )
    p.add_argument(
        "--align",
        default="auto",
        choices=["auto", "first", "extractor", "latent"],
        help="where features are aligned (auto: the first hidden layer)",
    )
    p.add_argument("--coef", type=float, default=1.0, help="weight of the domain loss (reached by the end)")
    p.add_argument("--steps", type=int, default=2000, help="gradient steps (the learning rate decays to 0 over them)")
    p.add_argument(
        "--states",
        type=int,
        default=10_000,
        help="states visited in each domain (80%% train, 20%% measure the domain gap)",
    )
    p.add_argument(
        "--explore",
        type=float,
        default=0.3,
        help="share of random actions while the agent visits source states (task loss)",
    )
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--episodes", type=int, default=50, help="evaluation episodes in each domain for the summary")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", help="output checkpoint (default RUN-adapt)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_adapt)


def cmd_distill(args: argparse.Namespace) -> int:
    from rllab.transforms.distill import distill

    th.manual_seed(args.seed)
    distill(
        args.teacher,
        args.arch,
        args.out,
        args.temperature,
        args.data,
        args.steps,
        args.rounds,
        args.epochs,
        args.lr,
        critic=args.critic,
        policy_kwargs=_json_arg(args.policy_kwargs),
        seed=args.seed,
        eval_episodes=args.episodes,
        progress=_progress(args),
    )
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from rllab.transforms.prune import prune

    prune(
        args.run,
        args.sparsity,
        args.out,
        structured=args.structured,
        importance=args.importance,
        iterative=args.iterative,
        finetune=args.finetune,
        steps=args.steps,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        eval_episodes=args.episodes,
        progress=_progress(args),
    )
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from rllab.transforms.quantize import quantize

    quantize(
        args.run, args.dtype, args.out, seed=args.seed, eval_episodes=args.episodes, min_features=args.min_features
    )
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from rllab.parsing import yaml_arg
    from rllab.transforms.adapt import adapt

    adapt(
        args.run,
        args.out,
        target_env=args.target_env,
        target_env_kwargs=yaml_arg(args.target_env_kwargs, "--target-env-kwargs"),
        target_wrappers=yaml_arg(args.target_wrappers, "--target-wrappers", list),
        steps=args.steps,
        coef=args.coef,
        loss=args.loss,
        align=args.align,
        states=args.states,
        explore=args.explore,
        lr=args.lr,
        seed=args.seed,
        eval_episodes=args.episodes,
        progress=_progress(args),
    )
    return 0
