"""``rllab defend``: put input filters, noise smoothing or a purifier in front of an agent (a new checkpoint),
then say what the defense costs on clean episodes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rllab.agent import Agent, load
from rllab.checkpoint import SPEC_FILE, removed_on_failure
from rllab.cli.evaluate import format_summary
from rllab.cli.options import check_output_folder, episode_count
from rllab.defend import defend
from rllab.errors import RllabError
from rllab.evaluation import evaluate
from rllab.parsing import budget, parse_number, positive_int, seed_int

TEXT_SETTINGS = {"mode"}  # settings that are words, not numbers
INTEGER_SETTINGS = {"size", "bits", "n"}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``defend``."""
    p = sub.add_parser("defend", help="put input filters or noise smoothing in front of an agent (new checkpoint)")
    p.add_argument("run", help="checkpoint folder")
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="NAME[:k=v,...]",
        help="gaussian_blur:sigma=1 | median:size=3 | bit_depth:bits=4 | gaussian_noise:sigma=0.05 "
        "(noise in pixel/255 for images, obs-std multiples for vectors); repeat to chain",
    )
    p.add_argument(
        "--smooth",
        metavar="sigma=S,n=N,mode=vote|mean",
        help="test-time noise smoothing over N noisy copies (Cohen et al. 2019 style)",
    )
    p.add_argument("--purifier", choices=["dae"], help="train a denoising autoencoder in front of the agent")
    p.add_argument(
        "--purifier-sigma", type=budget, default=0.1, help="corruption scale (pixel/255, e.g. 8/255, or obs std)"
    )
    p.add_argument("--purifier-episodes", type=episode_count, default=20)
    p.add_argument("--purifier-epochs", type=positive_int, default=30)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the evaluation printed at the end")
    p.add_argument("--episodes", type=episode_count, default=10)
    p.set_defaults(func=cmd_defend)


def parse_spec(text: str, option: str = "--filter") -> dict[str, Any]:
    """``"median:size=3"`` -> ``{"name": "median", "params": {"size": 3}}``.

    Values are numbers (fractions such as ``8/255`` allowed; ``size``, ``bits`` and ``n`` integers)
    except the word-valued ``mode``; anything else is a one-line error naming ``option``.
    """
    name, _, rest = text.partition(":")
    name = name.strip()
    label = f"{option} {name}:" if option == "--filter" else option
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise RllabError(f"{label} bad setting {item!r}; expected key=value")
        if key in TEXT_SETTINGS:
            params[key] = value
            continue
        if key in INTEGER_SETTINGS:
            try:
                number = int(value)
            except ValueError:
                raise RllabError(f"{label} {key} must be an integer, got {value!r}") from None
            params[key] = number
            continue
        number = parse_number(value, f"{label} {key}")
        if "/" not in value and value.lstrip("+-").isdigit():
            number = int(number)
        params[key] = number
    return {"name": name, "params": params}


def defend_checkpoint(
    run: str | Path,
    out: str | Path,
    filters: list[dict[str, Any]] | None = None,
    smoothing: dict[str, Any] | None = None,
    purifier: dict[str, Any] | None = None,
) -> Agent:
    """Write a defended copy of the checkpoint ``run`` to ``out`` (see ``rllab.defend.defend``) and load it."""
    out = Path(out)
    if (out / SPEC_FILE).exists():
        raise RllabError(f"{out} already holds a checkpoint")
    check_output_folder(out)  # before a purifier trains, not after
    defended = defend(load(run), filters=filters, smoothing=smoothing, purifier=purifier)
    with removed_on_failure(out):
        defended.save(out)
    return load(out)


def cmd_defend(args: argparse.Namespace) -> int:
    """Defend a checkpoint, evaluate it, and warn when the defense costs much clean return."""
    smoothing = parse_spec("smooth:" + args.smooth, "--smooth")["params"] if args.smooth else None
    filters = [parse_spec(f) for f in args.filter]
    purifier = None
    if args.purifier:
        purifier = {
            "sigma": args.purifier_sigma,
            "episodes": args.purifier_episodes,
            "epochs": args.purifier_epochs,
            "seed": args.seed,
        }
    agent = defend_checkpoint(args.run, args.out, filters=filters, smoothing=smoothing, purifier=purifier)
    summary = evaluate(agent, episodes=args.episodes, seed=args.seed).summary()
    names = ", ".join(d["name"] for d in agent.defenses)
    print(f"defended {args.run} with {names} -> {args.out}")
    print(format_summary(summary))
    # what the defense costs when nobody attacks: same episodes, same seeds, without it
    parent = evaluate(load(args.run), episodes=args.episodes, seed=args.seed).summary()["mean_return"]
    mean = summary["mean_return"]
    print(f"clean mean return: {parent:.4g} undefended -> {mean:.4g} defended")
    if parent - mean > 0.1 * max(abs(parent), 1e-9):
        hints = []
        if any(f["name"] in ("gaussian_blur", "median") for f in filters):
            hints.append("a filter wider than the objects it should keep erases them")
        if any(f["name"] == "bit_depth" for f in filters):
            hints.append("too few bits merge values the agent tells apart")
        if smoothing is not None or any(f["name"] == "gaussian_noise" for f in filters):
            hints.append("noise this large hides what the agent needs: try a smaller sigma")
        hint = f" ({'; '.join(hints)})" if hints else ""
        print(f"warning: the defense costs {(parent - mean) / max(abs(parent), 1e-9):.0%} of the clean return{hint}")
    return 0
