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
from rllab.agent import Agent, load
from rllab.parsing import MAX_EPISODES, MAX_STEPS, int_arg, positive_int, seed_int

BIG_SIDE = 36  # frames at least this big on both sides (NatureCNN's minimum) are explained every BIG_EVERY steps
BIG_EVERY = 10
DEFAULT_MAX_IMAGES = 200
image_count = int_arg(0, MAX_STEPS, "image_count")


DEFAULT_METHODS = "saliency,occlusion,greydanus"
OCCLUSION_BATCH, OCCLUSION_PER_EVAL = 8, 16  # big frames: 128 occluded copies per forward call (14 MB at 84x84x4)


def _big_frame(agent: Agent) -> tuple[int, int, int, bool] | None:
    """(channels, height, width, channels_last) of an image agent's frames of ``BIG_SIDE`` pixels or more."""
    if not agent.is_image:
        return None
    shape = agent.observation_space.shape
    (h, w, c), last = (shape, True) if agent.transpose_image else ((*shape[1:], shape[0]), False)
    return (c, h, w, last) if min(h, w) >= BIG_SIDE else None


def default_methods(agent: Agent) -> str:
    """The methods run without ``--method``: saliency, occlusion and Greydanus; on big frames occlusion hides
    8x8-pixel windows of every channel at once (single pixels of an 84x84x4 stack are 28,224 forward passes
    per state), in small chunks (memory)."""
    big = _big_frame(agent)
    if big is None:
        return DEFAULT_METHODS
    c, _, _, last = big
    window = f"[8,8,{c}]" if last else f"[{c},8,8]"
    # captum expands batch_size x perturbations_per_eval frames at once: 256 x 64 stacks of 84x84x4 are 1.8 GB
    chunks = f"batch_size={OCCLUSION_BATCH},perturbations_per_eval={OCCLUSION_PER_EVAL}"
    return f"saliency,occlusion(window={window},stride={window},{chunks}),greydanus"


def default_every(agent: Agent) -> int:
    """Steps between logged images when ``--every`` is not given: 1, or ``BIG_EVERY`` for big image frames (an
    84x84x4 Atari agent explained at every step of a 2,000-step episode wrote thousands of PNGs)."""
    return BIG_EVERY if _big_frame(agent) is not None else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``explain`` subcommand."""
    p = sub.add_parser("explain", help="attribution maps of an agent's episodes, in TensorBoard and as PNGs")
    p.add_argument("run", help="checkpoint folder")
    p.add_argument(
        "--method",
        default=None,
        help=f"comma-separated methods: {', '.join(METHODS)} (ig = integrated_gradients); default "
        f"{DEFAULT_METHODS}, with 8x8-pixel occlusion windows on frames of {BIG_SIDE}x{BIG_SIDE} or more",
    )
    p.add_argument("--episodes", type=int_arg(1, MAX_EPISODES, "episode_count"), default=1)
    p.add_argument("--target", choices=["action", "value"], default="action", help="explain the action score or V(s)")
    p.add_argument(
        "--every",
        type=positive_int,
        default=None,
        help=f"log images every K steps (default 1; {BIG_EVERY} for frames of {BIG_SIDE}x{BIG_SIDE} pixels or more, "
        "e.g. Atari's 84x84)",
    )
    p.add_argument(
        "--max-images",
        type=image_count,
        default=DEFAULT_MAX_IMAGES,
        help=f"per-step PNG files written at most (default {DEFAULT_MAX_IMAGES}); the rest stay in TensorBoard, and "
        "each episode's animated GIF and grid show every logged step",
    )
    p.add_argument("--metrics", action="store_true", help="measure faithfulness and print a methods x metrics table")
    p.add_argument(
        "--activation-max",
        action="store_true",
        help="also log activation maximisation: the input that most raises each action's score (or V), per action",
    )
    p.add_argument("--seed", type=seed_int, default=0, help="episode j is reset with seed SEED + j")
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
    methods: str | Sequence[str] | None = None,
    episodes: int = 1,
    target: str = "action",
    every: int | None = None,
    metrics: bool = False,
    seed: int = 0,
    device: str = "cpu",
    fps: float = 4.0,
    progress: bool = True,
    max_images: int | None = DEFAULT_MAX_IMAGES,
    activation_max: bool = False,
) -> dict[str, Any]:
    """Explain ``episodes`` episodes of the checkpoint in ``run`` into its ``tb/`` and ``explain/`` folders
    (``methods`` default ``default_methods``; images every ``every`` steps, default ``default_every``, and only
    those states explained unless ``metrics``; at most ``max_images`` per-step PNG files; ``activation_max``: the
    activation maximisation view too); returns what ran, the metrics and the paths written."""
    check_counts(episodes, every or 1)
    run = Path(run)
    agent = load(run, device=device)
    every = every or default_every(agent)
    methods = methods or default_methods(agent)
    built = build_methods(agent, methods, target)  # a method that cannot apply fails before anything is written
    name = _free_name(run, f"explain-{target}-s{seed}")
    tb_dir, png_dir = run / "tb" / name, run / "explain" / name
    tb_tmp, png_tmp = run / "tb" / f".{name}.tmp", run / "explain" / f".{name}.tmp"
    for d in (tb_tmp, png_tmp):
        shutil.rmtree(d, ignore_errors=True)
    new_folder = not png_tmp.parent.exists()
    png_tmp.mkdir(parents=True)
    w = ExplanationWriter(tb_tmp, png_tmp, max_files=max_images)
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
            activation_max=activation_max,
        )
        w.close()
        result = {
            "run": str(run),
            "name": name,
            **explained,
            "every": every,
            "image_files": {"written": w.files_written, "tensorboard_only": w.files_skipped},
        }
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
        max_images=args.max_images,
        activation_max=args.activation_max,
    )
    print(
        f"explained {result['states']} states of {result['episodes']} episode(s) of {result['algo']} on "
        f"{result['env']} (target {result['target']}, seed {result['seed']}), images every {result['every']} steps"
    )
    if result["image_files"]["tensorboard_only"]:
        print(
            f"{result['image_files']['written']} per-step PNG files written (--max-images); "
            f"{result['image_files']['tensorboard_only']} more in TensorBoard only, every step in the GIFs"
        )
    if result["metrics"]:
        print(metrics_table(result["metrics"]))
    print(f"tensorboard events: {result['tb_dir']}")
    print(f"images and metrics.json: {result['png_dir']}")
    print(f"view: {result['tensorboard']}")
    return 0
