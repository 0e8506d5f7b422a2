"""CPU latency of compressed agents against their unpruned float parent, in one run.

The shipped CartPole PPO net (64x64) is so small that a forward pass is dominated by
Python overhead, so this bench trains a wider teacher (PPO, ``net_arch=[256, 256]``,
seed 0, rllab's CartPole defaults otherwise) and compares, on one thread:
the float teacher, structured pruning removing 50% and 75% of hidden units (fine-tuned
by distillation), and int8 dynamic quantisation. Timings are medians of interleaved
repeats (so background load hits every variant alike); the ratio is against the teacher.

Writes bench/results/compress_latency.{json,md}. Agents go to runs/compress-bench/ (reused).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

import rllab
from rllab.cli.transforms import prune_checkpoint, quantize_checkpoint
from rllab.transforms.summary import parameter_counts

ROOT = Path(__file__).resolve().parent
WORK = ROOT.parent / "runs" / "compress-bench"
SEED, EPISODES, ROUNDS = 0, 20, 15


@torch.no_grad()
def timings(agents: dict[str, rllab.Agent], batch: int, calls: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.standard_normal((batch, 4)).astype(np.float32))
    per: dict[str, list[float]] = {k: [] for k in agents}
    for a in agents.values():
        for _ in range(20):
            a.logits(x)
    for _ in range(ROUNDS):  # interleaved, so load from other processes hits every variant alike
        for name, a in agents.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                a.logits(x)
            per[name].append((time.perf_counter() - t0) / calls)
    return {k: float(np.median(v)) for k, v in per.items()}


def main() -> int:
    torch.set_num_threads(1)
    WORK.mkdir(parents=True, exist_ok=True)
    big = WORK / "cartpole-ppo-256x256"
    if not ((big / "agent.json").exists() and rllab.load(big).spec["training"].get("complete")):
        shutil.rmtree(big, ignore_errors=True)
        rllab.train("ppo", "CartPole-v1", seed=SEED, out=big, overrides={"policy_kwargs": {"net_arch": [256, 256]}})
    paths = {"float teacher 256x256": big}
    for frac in (0.5, 0.75):
        out = WORK / f"cartpole-256-structured-{int(frac * 100)}"
        shutil.rmtree(out, ignore_errors=True)
        prune_checkpoint(big, frac, out=out, structured=True, steps=10_000, epochs=10, seed=SEED, eval_episodes=1)
        paths[f"structured -{int(frac * 100)}% units"] = out
    out = WORK / "cartpole-256-int8"
    shutil.rmtree(out, ignore_errors=True)
    quantize_checkpoint(big, out=out, seed=SEED, eval_episodes=1)
    paths["int8 dynamic"] = out
    agents = {k: rllab.load(p) for k, p in paths.items()}

    lat1 = timings(agents, 1, 200)
    lat256 = timings(agents, 256, 50)
    base = "float teacher 256x256"
    rows = []
    for name, agent in agents.items():
        ret = rllab.evaluate(agent, episodes=EPISODES, seed=SEED).summary()["mean_return"]
        counts = parameter_counts(agent)
        rows.append(
            {
                "name": name,
                "path": str(paths[name].relative_to(ROOT.parent)),
                "hidden": agent.spec["policy"]["kwargs"].get("net_arch"),
                "params_total": counts["policy"]["total"],
                "file_bytes": (paths[name] / "weights.safetensors").stat().st_size,
                "latency_b1_us": lat1[name] * 1e6,
                "latency_b256_us": lat256[name] * 1e6,
                "speedup_b1": lat1[base] / lat1[name],
                "speedup_b256": lat256[base] / lat256[name],
                "mean_return": ret,
            }
        )
    result = {
        "note": "median seconds of agent.logits per call (200 calls at b=1, 50 at b=256) over "
        f"{ROUNDS} interleaved rounds; CPU, torch.set_num_threads(1); speedup vs the float teacher",
        "torch": torch.__version__,
        "episodes": EPISODES,
        "rows": rows,
        "goal_structured_b256_speedup_1_5x": max(r["speedup_b256"] for r in rows if r["name"].startswith("struct")),
    }
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "compress_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Compression latency (CPU, 1 thread, one run)",
        "",
        "| agent | hidden | params | file KiB | b=1 us | b=256 us | speed-up b=1 | speed-up b=256 | mean return |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['hidden']} | {r['params_total']:,} | {r['file_bytes'] / 1024:.1f} | "
            f"{r['latency_b1_us']:.0f} | {r['latency_b256_us']:.0f} | {r['speedup_b1']:.2f}x | "
            f"{r['speedup_b256']:.2f}x | {r['mean_return']:.1f} |"
        )
    lines.append("")
    (ROOT / "results" / "compress_latency.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {ROOT / 'results' / 'compress_latency.json'} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
