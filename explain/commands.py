"""``rllab explain RUN --method saliency,occlusion,greydanus [...]``."""

from __future__ import annotations

import argparse

from rllab.parsing import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    from explain.methods import METHODS

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


def cmd_explain(args: argparse.Namespace) -> int:
    from explain.report import explain_run, metrics_table

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
