"""``rllab explain RUN --method saliency,occlusion,greydanus [...]``: load a checkpoint, explain it, save, print.

``explain_run`` writes, for a run folder RUN and an explanation named NAME (``explain-TARGET-sSEED``, with a
counter when it exists already):

* ``RUN/tb/NAME/``: the TensorBoard events ``explain.report.explain_agent`` logs;
* ``RUN/explain/NAME/``: the same images as PNG/GIF files, and ``metrics.json``.

Both folders are written under temporary names and renamed at the end, so an interrupted run leaves no
half-written explanation behind.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from explain.methods import METHODS
from explain.report import build_methods, check_counts, explain_agent, metrics_table
from explain.tensorboard import ExplanationWriter, tensorboard_command
from rllab.agent import load
from rllab.parsing import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``explain`` subcommand."""
    p = sub.add_parser("explain", help="attribution maps of an agent's episodes, in TensorBoard and as PNGs")
    p.add_argument("run", help="checkpoint folder")
    p.add_argument(
        "--method",
        default="saliency,occlusion,greydanus",
        help=f"comma-separated methods: {', '.join(METHODS)} (ig = integrated_gradients)",
    )
    p.add_argument("--episodes", type=positive_int, default=1)
    p.add_argument("--target", choices=["action", "value"], default="action", help="explain the action score or V(s)")
    p.add_argument("--every", type=positive_int, default=1, help="log images every K steps")
    p.add_argument("--metrics", action="store_true", help="measure faithfulness and print a methods x metrics table")
    p.add_argument("--seed", type=int, default=0, help="episode j is reset with seed SEED + j")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_explain)


def _free_name(run: Path, base: str) -> str:
    name, k = base, 1
    while (run / "tb" / name).exists() or (run / "explain" / name).exists():
        k += 1
        name = f"{base}-{k}"
    return name


def explain_run(
    run: str | Path,
    methods: str | Sequence[str] = ("saliency", "occlusion", "greydanus"),
    episodes: int = 1,
    target: str = "action",
    every: int = 1,
    metrics: bool = False,
    seed: int = 0,
    device: str = "cpu",
    fps: float = 4.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Explain ``episodes`` episodes of the checkpoint in ``run`` into its ``tb/`` and ``explain/`` folders;
    returns what ran, the metrics and the paths written."""
    check_counts(episodes, every)
    run = Path(run)
    agent = load(run, device=device)
    built = build_methods(agent, methods, target)  # a method that cannot apply fails before anything is written
    name = _free_name(run, f"explain-{target}-s{seed}")
    tb_dir, png_dir = run / "tb" / name, run / "explain" / name
    tb_tmp, png_tmp = run / "tb" / f".{name}.tmp", run / "explain" / f".{name}.tmp"
    for d in (tb_tmp, png_tmp):
        shutil.rmtree(d, ignore_errors=True)
    new_folder = not png_tmp.parent.exists()
    png_tmp.mkdir(parents=True)
    w = ExplanationWriter(tb_tmp, png_tmp)
    try:
        explained = explain_agent(
            agent,
            built,
            w,
            episodes=episodes,
            target=target,
            every=every,
            metrics=metrics,
            seed=seed,
            fps=fps,
            progress=progress,
        )
        w.close()
        result = {"run": str(run), "name": name, **explained}
        (png_tmp / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        tb_tmp.rename(tb_dir)
        png_tmp.rename(png_dir)
    except BaseException:
        w.close()
        shutil.rmtree(tb_tmp, ignore_errors=True)
        shutil.rmtree(png_tmp, ignore_errors=True)
        if new_folder and not any(png_tmp.parent.iterdir()):
            png_tmp.parent.rmdir()
        raise
    result.update({"tb_dir": str(tb_dir), "png_dir": str(png_dir), "tensorboard": tensorboard_command(run / "tb")})
    return result


def cmd_explain(args: argparse.Namespace) -> int:
    """Run ``rllab explain`` and print where everything went."""
    result = explain_run(
        args.run,
        methods=args.method,
        episodes=args.episodes,
        target=args.target,
        every=args.every,
        metrics=args.metrics,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    print(
        f"explained {result['states']} states of {result['episodes']} episode(s) of {result['algo']} on "
        f"{result['env']} (target {result['target']}, seed {result['seed']})"
    )
    if result["metrics"]:
        print(metrics_table(result["metrics"]))
    print(f"tensorboard events: {result['tb_dir']}")
    print(f"images and metrics.json: {result['png_dir']}")
    print(f"view: {result['tensorboard']}")
    return 0
