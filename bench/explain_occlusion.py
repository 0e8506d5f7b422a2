"""Batched occlusion of a whole Catch episode vs a per-state captum loop, in one run.

``explain.Occlusion`` hands all states of an episode to captum's ``Occlusion`` at once, with
every sliding-window position of every state in one forward call (``perturbations_per_eval``).
The baseline is the straightforward loop: one ``captum.attr.Occlusion.attribute`` call per
state with captum's defaults (one window per forward). A second baseline keeps the per-state
loop but batches the windows, to show where the time goes. All three give the same maps
(checked). Medians over ``--repeats`` runs, 1 torch thread.

Writes bench/results/explain_occlusion.{json,md}. Run: ``python bench/explain_occlusion.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch as th
from captum.attr import Occlusion as CaptumOcclusion

import rllab
from explain.episodes import collect_states
from explain.methods import Occlusion

RESULTS = Path(__file__).resolve().parent / "results"


def median_time(fn: Callable[[], th.Tensor], repeats: int) -> tuple[float, th.Tensor]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/bench-explain/ppo-CatchDistractors-v0-s0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=1, help="episodes explained together")
    args = parser.parse_args()
    th.set_num_threads(1)
    if not (Path(args.run) / "agent.json").exists():
        print(f"training PPO on CatchDistractors-v0 (seed {args.seed}) -> {args.run}")
        rllab.train("ppo", "CatchDistractors-v0", seed=args.seed, out=args.run)
    agent = rllab.load(args.run)
    tr = collect_states(agent, episodes=args.episodes, seed=args.seed)
    obs = th.as_tensor(tr.obs).float()
    actions = th.as_tensor(tr.actions).long()
    window, stride = (1, 1, 1), (1, 1, 1)
    windows = obs[0].numel()

    batched = Occlusion(agent, window=window, stride=stride, perturbations_per_eval=windows)
    captum = CaptumOcclusion(agent.logits)

    def run_batched() -> th.Tensor:
        return batched.attribute(obs, actions=actions)

    def per_state(ppe: int) -> Callable[[], th.Tensor]:
        def loop() -> th.Tensor:
            with th.no_grad():
                return th.cat(
                    [
                        captum.attribute(
                            obs[k : k + 1],
                            sliding_window_shapes=window,
                            strides=stride,
                            target=int(actions[k]),
                            perturbations_per_eval=ppe,
                        )
                        for k in range(obs.shape[0])
                    ]
                )

        return loop

    t_batched, a_batched = median_time(run_batched, args.repeats)
    t_loop, a_loop = median_time(per_state(1), args.repeats)
    t_loop_w, a_loop_w = median_time(per_state(windows), args.repeats)
    assert th.allclose(a_batched, a_loop, atol=1e-5) and th.allclose(a_batched, a_loop_w, atol=1e-5)
    result = {
        "run": args.run,
        "env": agent.env_id,
        "states": int(obs.shape[0]),
        "episodes": args.episodes,
        "window": list(window),
        "stride": list(stride),
        "windows_per_state": windows,
        "repeats": args.repeats,
        "batched_s": t_batched,
        "per_state_captum_default_s": t_loop,
        "per_state_batched_windows_s": t_loop_w,
        "speedup_vs_per_state_captum_default": t_loop / t_batched,
        "speedup_vs_per_state_batched_windows": t_loop_w / t_batched,
        "goal_speedup": 5.0,
        "goal_met": t_loop / t_batched >= 5.0,
        "maps_equal": True,
        "machine": platform.platform(),
        "torch": th.__version__,
        "threads": th.get_num_threads(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / "explain_occlusion.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(RESULTS / "explain_occlusion.json")
    md = "\n".join(
        [
            "# Batched occlusion of a whole Catch episode",
            "",
            f"{result['states']} states ({args.episodes} episode of {agent.env_id}), 1x1 windows "
            f"({windows} per state), median of {args.repeats} runs, 1 torch thread, CPU. Maps identical.",
            "",
            "| variant | time (ms) | batched is faster by |",
            "|---|---|---|",
            f"| explain.Occlusion, whole episode in one call set | {1000 * t_batched:.1f} | 1.0x |",
            f"| per-state captum Occlusion loop (captum defaults) | {1000 * t_loop:.1f} | "
            f"**{t_loop / t_batched:.1f}x** |",
            f"| per-state captum loop, windows batched | {1000 * t_loop_w:.1f} | {t_loop_w / t_batched:.1f}x |",
            "",
            f"Goal: >= 5x faster than the per-state captum loop: {'met' if result['goal_met'] else '**not met**'}.",
            "",
        ]
    )
    tmp = RESULTS / "explain_occlusion.md.tmp"
    tmp.write_text(md)
    tmp.replace(RESULTS / "explain_occlusion.md")
    print(md)
    print(f"results: {RESULTS / 'explain_occlusion.json'}, {RESULTS / 'explain_occlusion.md'}")


if __name__ == "__main__":
    main()
