"""explain/ on a CUDA device: same maps as on the CPU, and batched occlusion timed there too.

Loads the CatchDistractors-v0 agent of bench/explain_acceptance.py on the CPU and on CUDA, explains
the same 200 states with every image method on both, and reports the largest difference
relative to the map's scale; then times batched occlusion of one episode against a
per-state captum loop on the GPU. Writes bench/results/explain_gpu.{json,md}.
Run: ``python bench/explain_gpu.py`` (needs CUDA).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch as th
from captum.attr import Occlusion as CaptumOcclusion

import rllab
from explain.episodes import collect_states
from explain.faithfulness import deletion_insertion, pointing_game, relevance_mass
from explain.methods import Occlusion, make_method

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ["saliency", "integrated_gradients", "smoothgrad", "occlusion", "greydanus", "gradcam"]


def timed(fn, repeats: int) -> float:
    fn()
    th.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        th.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/bench-explain/ppo-CatchDistractors-v0-s0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if not th.cuda.is_available():
        raise SystemExit("explain_gpu.py needs a CUDA device")
    th.backends.cudnn.deterministic = True
    th.backends.cuda.matmul.allow_tf32 = False
    th.backends.cudnn.allow_tf32 = False
    cpu, gpu = rllab.load(args.run), rllab.load(args.run, device="cuda")
    tr = collect_states(cpu, episodes=23, seed=args.seed)
    obs, acts, masks = tr.obs[:200], tr.actions[:200], tr.masks[:200]
    rows = {}
    for name in METHODS:
        maps = []
        for agent in (cpu, gpu):
            th.manual_seed(args.seed)
            maps.append(make_method(name, agent).attribute(obs, actions=acts).cpu())
        scale = float(maps[0].abs().max())
        rel = float((maps[0] - maps[1]).abs().max()) / scale if scale > 0 else 0.0
        g = maps[1]
        di = deletion_insertion(gpu, obs, g, actions=acts, seed=args.seed)
        rows[name] = {
            "max_abs_diff_over_scale": rel,
            "relevance_mass_gpu": float(relevance_mass(g, masks, gpu).mean()),
            "relevance_mass_cpu": float(relevance_mass(maps[0], masks, cpu).mean()),
            "pointing_game_gpu": float(pointing_game(g, masks, gpu).mean()),
            "deletion_auc_gpu": di["deletion_auc"],
        }
        print(name, rows[name])

    ep = collect_states(gpu, episodes=1, seed=args.seed)
    x = th.as_tensor(ep.obs, device="cuda").float()
    a = th.as_tensor(ep.actions, device="cuda").long()
    windows = x[0].numel()
    batched = Occlusion(gpu, perturbations_per_eval=windows)
    captum = CaptumOcclusion(gpu.logits)

    def loop() -> th.Tensor:
        with th.no_grad():
            return th.cat(
                [
                    captum.attribute(x[k : k + 1], sliding_window_shapes=(1, 1, 1), target=int(a[k]))
                    for k in range(x.shape[0])
                ]
            )

    t_b = timed(lambda: batched.attribute(x, actions=a), args.repeats)
    t_l = timed(loop, args.repeats)
    assert th.allclose(batched.attribute(x, actions=a), loop(), atol=1e-4)
    out = {
        "device": th.cuda.get_device_name(0),
        "torch": th.__version__,
        "machine": platform.platform(),
        "states": len(obs),
        "methods": rows,
        "occlusion_episode_states": int(x.shape[0]),
        "occlusion_batched_s": t_b,
        "occlusion_per_state_loop_s": t_l,
        "occlusion_speedup": t_l / t_b,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "explain_gpu.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        f"# explain/ on {out['device']} (torch {out['torch']}, TF32 off)",
        "",
        f"{len(obs)} CatchDistractors-v0 states; maps computed on CPU and on CUDA (SmoothGrad draws its noise from "
        "each device's own generator, so its maps differ by that noise).",
        "",
        "| method | max abs diff / map scale | mass CPU | mass GPU | pointing GPU | deletion AUC GPU |",
        "|---|---|---|---|---|---|",
    ]
    for k, r in rows.items():
        lines.append(
            f"| {k} | {r['max_abs_diff_over_scale']:.1e} | {r['relevance_mass_cpu']:.3f} | "
            f"{r['relevance_mass_gpu']:.3f} | {r['pointing_game_gpu']:.3f} | {r['deletion_auc_gpu']:.3f} |"
        )
    lines += [
        "",
        f"Occlusion of one episode ({out['occlusion_episode_states']} states) on the GPU: batched "
        f"{1000 * t_b:.2f} ms vs per-state captum loop {1000 * t_l:.2f} ms: **{t_l / t_b:.1f}x**.",
        "",
    ]
    (RESULTS / "explain_gpu.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"results: {RESULTS / 'explain_gpu.json'}, {RESULTS / 'explain_gpu.md'}")


if __name__ == "__main__":
    main()
