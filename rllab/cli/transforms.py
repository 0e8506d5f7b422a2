"""``rllab distill | prune | quantize | adapt``: load checkpoints, run a transform (``rllab.transforms``),
check and save the new checkpoint with its summary, and say where.

The ``*_checkpoint`` functions are the commands from Python: paths in, the saved agent out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch as th

from rllab.agent import Agent, load
from rllab.checkpoint import new_output, removed_on_failure
from rllab.errors import RllabError
from rllab.parsing import MAX_EPISODES, float_arg, int_arg, positive_float, positive_int, seed_int, yaml_arg
from rllab.spec import last_step
from rllab.transforms import adapt, check_finite, distill, prune, quantize
from rllab.transforms.adapt import summary_line as adapt_line
from rllab.transforms.summary import compression_summary, summary_line

episodes_int = int_arg(0, MAX_EPISODES, "episodes")
"""argparse type of a compression summary's ``--episodes`` (0: not evaluated)."""

number = float_arg(name="number")
"""argparse type of a finite number whose range the transform checks (``--sparsity``, ``--coef``, ``--explore``)."""


def default_out(parent: Path, transform: str) -> Path:
    """``PARENT-transform`` beside the parent checkpoint."""
    return parent.parent / f"{parent.name}-{transform}"


def output_for(out: str | Path | None, parent_path: str | Path, transform: str) -> Path:
    """The checkpoint a transform will write, checked before it starts (``--out`` or ``PARENT-transform``)."""
    return new_output(out if out is not None else default_out(Path(parent_path), transform), parent_path)


def finish(agent: Agent, out: Path, parent_path: Path, transform: str, seed: int, episodes: int) -> Agent:
    """Save a transformed agent with its compression summary and its parent's (same episodes and seeds),
    then say where and what both are, so that what the transform cost is read off two lines."""
    check_finite(agent)
    with removed_on_failure(out):
        agent.save(out)
        summary = compression_summary(agent, out, episodes=episodes, seed=seed)
        # the parent as stored (a transform may have changed the object it was handed)
        summary["parent"] = {
            "path": str(parent_path),
            **compression_summary(load(parent_path), parent_path, episodes=episodes, seed=seed),
        }
        agent.spec["compression"] = summary
        # measured on the saved file, so added to the transform's lineage step after the first save
        last_step(agent.spec)["summary"] = {
            k: summary[k] for k in ("parameters", "file_bytes", "latency_s", "mean_return")
        }
        agent.save(out)
    print(f"rllab {transform}: wrote {out}")
    print(f"  new     {summary_line(summary)}")
    print(f"  parent  {summary_line(summary['parent'])}  ({parent_path})")
    return agent


def distill_checkpoint(
    teachers: str | Path | Sequence[str | Path],
    arch: str | Sequence[int] = (16, 16),
    out: str | Path | None = None,
    *,
    seed: int = 0,
    eval_episodes: int = 20,
    **options: Any,
) -> Agent:
    """``rllab distill``: distil the teacher checkpoint(s) into a student saved to ``out`` (``TEACHER-distill``);
    ``options`` are those of :func:`rllab.transforms.distill`."""
    paths = [Path(teachers)] if isinstance(teachers, (str, Path)) else [Path(t) for t in teachers]
    if not paths:
        raise RllabError("give at least one teacher checkpoint")
    out = output_for(out, paths[0], "distill")  # an --out that cannot be written fails now, not after training
    student, _ = distill([load(p) for p in paths], arch, seed=seed, **options)
    return finish(student, out, paths[0], "distill", seed, eval_episodes)


def prune_checkpoint(
    run: str | Path,
    sparsity: float = 0.9,
    out: str | Path | None = None,
    *,
    seed: int = 0,
    eval_episodes: int = 20,
    **options: Any,
) -> Agent:
    """``rllab prune``: prune checkpoint ``run`` and save it to ``out`` (default ``RUN-prune``); ``options`` are
    those of :func:`rllab.transforms.prune`."""
    run = Path(run)
    out = output_for(out, run, "prune")  # an --out that cannot be written fails now, not after fine-tuning
    agent, _ = prune(load(run), sparsity, seed=seed, **options)
    return finish(agent, out, run, "prune", seed, eval_episodes)


def quantize_checkpoint(
    run: str | Path,
    dtype: str = "int8",
    out: str | Path | None = None,
    seed: int = 0,
    eval_episodes: int = 20,
    min_features: int = 16,
) -> Agent:
    """``rllab quantize``: int8 quantisation of checkpoint ``run``, saved to ``out`` (default ``RUN-quantize``)."""
    run = Path(run)
    out = output_for(out, run, "quantize")
    q, _ = quantize(load(run), dtype, min_features=min_features, seed=seed)
    return finish(q, out, run, "quantize", seed, eval_episodes)


def adapt_checkpoint(run: str | Path, out: str | Path | None = None, **options: Any) -> Agent:
    """``rllab adapt``: adapt checkpoint ``run`` to a target domain; save it to ``out`` (default ``RUN-adapt``)
    with its training curves in ``tb/adapt``; ``options`` are those of :func:`rllab.transforms.adapt`."""
    path = Path(run)
    out = output_for(out, path, "adapt")
    adapted, result = adapt(load(path), **options)
    check_finite(adapted)
    with removed_on_failure(out):
        adapted.save(out)
        log_tensorboard(out / "tb" / "adapt", result.summary)
    print(f"rllab adapt: wrote {out}")
    print(f"  {adapt_line(result.summary)}")
    for warning in result.summary["warnings"]:
        print(f"  warning: {warning}")
    print(f"  tensorboard --logdir {out / 'tb'}")
    return adapted


def log_tensorboard(tb_dir: Path, summary: dict[str, Any]) -> None:
    """Adaptation's training curves (task loss, domain loss, classifier accuracy) and before/after returns,
    domain gap and paired action agreement."""
    from torch.utils.tensorboard import SummaryWriter  # third-party and slow to import: only when written

    with SummaryWriter(str(tb_dir)) as writer:
        for h in summary["history"]:
            writer.add_scalar("adapt/task_loss", h["task"], h["step"])
            writer.add_scalar("adapt/domain_loss", h["domain"], h["step"])
            writer.add_scalar("adapt/classifier_accuracy", h["classifier_accuracy"], h["step"])
            if "consistency" in h:
                writer.add_scalar("adapt/consistency_loss", h["consistency"], h["step"])
        last = summary["history"][-1]["step"] if summary["history"] else 0
        for when in ("before", "after"):
            step = 0 if when == "before" else last
            for domain in ("source", "target"):
                writer.add_scalar(f"adapt/{domain}_mean_return", summary["mean_return"][f"{domain}_{when}"], step)
            writer.add_scalar("adapt/domain_gap_accuracy", summary[f"domain_gap_{when}"]["accuracy"], step)
            writer.add_scalar("adapt/paired_agreement", summary["paired_agreement"][when], step)
        writer.add_text("adapt/domains", f"source: {summary['source_env']}  \ntarget: {summary['target_env']}", last)


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars only on a terminal (as train): a redirected stderr gets no bar frames."""
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
    """Add ``distill``, ``prune``, ``quantize`` and ``adapt`` to the ``rllab`` command line."""
    p = sub.add_parser("distill", help="distil one or more teachers into a smaller student (new checkpoint)")
    p.add_argument("teacher", nargs="+", help="teacher checkpoint folder(s); several form an averaged ensemble")
    p.add_argument("--arch", default="16,16", help="student hidden layers, e.g. 16,16")
    p.add_argument("--temperature", type=positive_float, default=1.0, help="softmax temperature (Hinton et al. 2015)")
    p.add_argument("--data", default="mixed", choices=["teacher", "student", "mixed"], help="who visits the states")
    p.add_argument("--steps", type=positive_int, default=20_000, help="states gathered in total")
    p.add_argument("--rounds", type=positive_int, default=5, help="data-gathering rounds (DAgger iterations)")
    p.add_argument("--epochs", type=positive_int, default=10, help="passes over the aggregated data after each round")
    p.add_argument("--lr", type=positive_float, default=3e-3)
    p.add_argument("--critic", action="store_true", help="also distil the state-value critic")
    p.add_argument(
        "--policy-kwargs", help='JSON overrides, e.g. \'{"features_extractor_kwargs": {"features_dim": 32}}\''
    )
    p.add_argument("--episodes", type=episodes_int, default=20, help="evaluation episodes for the summary")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", help="output checkpoint (default TEACHER-distill)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("prune", help="prune an agent's weights or hidden units, with fine-tuning (new checkpoint)")
    p.add_argument("run", help="checkpoint folder")
    p.add_argument("--sparsity", type=number, default=0.9, help="fraction of weights (or hidden units) removed")
    p.add_argument("--structured", action="store_true", help="remove whole hidden units (smaller, faster network)")
    p.add_argument("--importance", default="magnitude", choices=["magnitude", "gradient"])
    p.add_argument("--iterative", type=positive_int, default=1, help="prune-then-fine-tune rounds")
    p.add_argument("--finetune", default="distill", choices=["distill", "rl", "none"])
    p.add_argument(
        "--steps",
        type=positive_int,
        default=10_000,
        help="states (distill) or environment steps (rl) per fine-tuning round",
    )
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--episodes", type=episodes_int, default=20, help="evaluation episodes for the summary")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", help="output checkpoint (default RUN-prune)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("quantize", help="post-training dynamic int8 quantisation (new checkpoint)")
    p.add_argument("run", help="checkpoint folder")
    p.add_argument("--dtype", default="int8", choices=["int8"])
    p.add_argument(
        "--min-features", type=positive_int, default=16, help="layers with fewer inputs or outputs than this stay float"
    )
    p.add_argument("--episodes", type=episodes_int, default=20, help="evaluation episodes for the summary")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", help="output checkpoint (default RUN-quantize)")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("adapt", help="adaptation to a shifted domain, without its rewards (new checkpoint)")
    p.add_argument("run", help="checkpoint folder (the source domain is its environment)")
    p.add_argument("--target-env", help="target Gymnasium id (same observation and action spaces)")
    p.add_argument("--target-env-kwargs", help="YAML/JSON mapping merged into the source's env kwargs")
    p.add_argument(
        "--target-wrappers",
        help="YAML/JSON list of named wrappers applied after the source's, "
        "e.g. '[{name: ObservationShift, kwargs: {offset: 60}}]'",
    )
    p.add_argument(
        "--method",
        default="consistency",
        choices=["consistency", "dann", "entropy"],
        help="consistency: the source agent's actions taught on paired target states (default); dann: domain "
        "alignment alone; entropy: dann plus entropy minimisation on target predictions",
    )
    p.add_argument(
        "--loss", default="confusion", choices=["confusion", "grl"], help="domain loss: confusion or gradient reversal"
    )
    p.add_argument(
        "--align",
        default="auto",
        choices=["auto", "first", "extractor", "latent"],
        help="where features are aligned (auto: the first hidden layer)",
    )
    p.add_argument(
        "--coef",
        type=number,
        default=None,
        help="weight of the domain loss, reached by the end (default: 0 with consistency, 1 with dann and entropy)",
    )
    p.add_argument(
        "--steps", type=positive_int, default=2000, help="gradient steps (the learning rate decays to 0 over them)"
    )
    p.add_argument(
        "--states",
        type=positive_int,
        default=10_000,
        help="states visited in each domain (80%% train, 20%% measure the domain gap)",
    )
    p.add_argument(
        "--explore",
        type=number,
        default=0.3,
        help="share of random actions while the agent visits source states (task loss)",
    )
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument(
        "--episodes", type=positive_int, default=50, help="evaluation episodes in each domain for the summary"
    )
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", help="output checkpoint (default RUN-adapt)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_adapt)


def cmd_distill(args: argparse.Namespace) -> int:
    """``rllab distill``."""
    th.manual_seed(args.seed)
    distill_checkpoint(
        args.teacher,
        args.arch,
        args.out,
        temperature=args.temperature,
        data=args.data,
        steps=args.steps,
        rounds=args.rounds,
        epochs=args.epochs,
        lr=args.lr,
        critic=args.critic,
        policy_kwargs=_json_arg(args.policy_kwargs),
        seed=args.seed,
        eval_episodes=args.episodes,
        progress=_progress(args),
    )
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    """``rllab prune``."""
    prune_checkpoint(
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
    """``rllab quantize``."""
    quantize_checkpoint(
        args.run, args.dtype, args.out, seed=args.seed, eval_episodes=args.episodes, min_features=args.min_features
    )
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    """``rllab adapt``."""
    adapt_checkpoint(
        args.run,
        args.out,
        target_env=args.target_env,
        target_env_kwargs=yaml_arg(args.target_env_kwargs, "--target-env-kwargs"),
        target_wrappers=yaml_arg(args.target_wrappers, "--target-wrappers", list),
        method=args.method,
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
