"""Acceptance figures of the compression transforms (issue 5), on CPU with one thread.

- CartPole-v1 PPO teacher (rllab defaults, seed 0) -> distilled student with <= 10% of the
  actor's parameters keeps >= 95% of the teacher's mean return over 20 episodes;
- Catch-v0 PPO teacher -> student with <= 25% of the parameters keeps >= 95% of its catch rate;
- unstructured global magnitude pruning to 90% sparsity, 3 prune/fine-tune rounds, keeps >= 95%;
- structured pruning removing 50% / 75% of hidden units: file size (latency: compress_latency.py);
- int8 dynamic quantisation: return within 5% of float, size and latency against float.

Writes bench/results/compress_acceptance.{json,md}. Agents go to runs/compress-bench/ (reused).
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
from rllab.cli.transforms import distill_checkpoint, prune_checkpoint, quantize_checkpoint
from rllab.transforms.summary import compression_summary, parameter_counts

ROOT = Path(__file__).resolve().parent
WORK = ROOT.parent / "runs" / "compress-bench"
EPISODES, SEED = 20, 0


def teacher(name: str, **kwargs) -> Path:
    run = WORK / name
    if (run / "agent.json").exists() and rllab.load(run).spec["training"].get("complete"):
        return run
    shutil.rmtree(run, ignore_errors=True)
    rllab.train(out=run, progress=True, **kwargs)
    return run


def fresh(name: str) -> Path:
    out = WORK / name
    shutil.rmtree(out, ignore_errors=True)
    return out


def catch_rate(agent: rllab.Agent) -> float:
    returns = np.asarray(rllab.evaluate(agent, episodes=EPISODES, seed=SEED).returns)
    return float((returns > 0).mean())


def row(name: str, agent: rllab.Agent, path: Path, parent: dict, score: float, parent_score: float, extra=None):
    s = compression_summary(agent, path, episodes=EPISODES, seed=SEED)
    p = parameter_counts(agent)
    return {
        "name": name,
        "path": str(path.relative_to(ROOT.parent)),
        "params_total": p["policy"]["total"],
        "params_nonzero": p["policy"]["nonzero"],
        "actor_params": p["actor"]["total"],
        "actor_fraction": p["actor"]["total"] / parent["actor"]["total"],
        "nonzero_fraction": p["policy"]["nonzero"] / parent["policy"]["nonzero"],
        "file_bytes": s["file_bytes"],
        "latency_b1_us": s["latency_s"]["batch_1"] * 1e6,
        "latency_b256_us": s["latency_s"]["batch_256"] * 1e6,
        "score": score,
        "score_fraction": score / parent_score,
        **(extra or {}),
    }


def main() -> int:
    torch.set_num_threads(1)
    started = time.time()
    WORK.mkdir(parents=True, exist_ok=True)
    rows, checks = [], {}

    # ---------------------------------------------------------------- CartPole
    cp = teacher("cartpole-ppo", algo="ppo", env="CartPole-v1", seed=0)
    t = rllab.load(cp)
    t_ret = rllab.evaluate(t, episodes=EPISODES, seed=SEED).summary()["mean_return"]
    t_counts = parameter_counts(t)
    rows.append(row("CartPole teacher (PPO 64x64)", t, cp, t_counts, t_ret, t_ret))

    out = fresh("cartpole-distill-8x8")
    s = distill_checkpoint(cp, [8, 8], out=out, steps=20_000, rounds=5, epochs=10, seed=SEED, eval_episodes=EPISODES)
    rows.append(row("distilled student 8x8", s, out, t_counts, s.spec["compression"]["mean_return"], t_ret))
    checks["distill_cartpole"] = rows[-1]["actor_fraction"] <= 0.10 and rows[-1]["score_fraction"] >= 0.95

    out = fresh("cartpole-prune-unstructured-90")
    # 10k fine-tuning steps per round kept 0.872 of the teacher; 30k per round keep all of it
    s = prune_checkpoint(cp, 0.9, out=out, iterative=3, steps=30_000, epochs=10, seed=SEED, eval_episodes=EPISODES)
    sparsity = s.spec["lineage"][-1]["result"]["weight_sparsity"]
    rows.append(
        row(
            "unstructured 90%, 3 rounds x 30k steps + distill",
            s,
            out,
            t_counts,
            s.spec["compression"]["mean_return"],
            t_ret,
            {"weight_sparsity": sparsity},
        )
    )
    checks["unstructured_90"] = sparsity >= 0.9 - 1e-3 and rows[-1]["score_fraction"] >= 0.95

    for frac in (0.5, 0.75):
        out = fresh(f"cartpole-prune-structured-{int(frac * 100)}")
        s = prune_checkpoint(
            cp, frac, out=out, structured=True, steps=10_000, epochs=10, seed=SEED, eval_episodes=EPISODES
        )
        widths = s.spec["lineage"][-1]["result"]["widths"]
        rows.append(
            row(
                f"structured {int(frac * 100)}% units {widths['pi']}",
                s,
                out,
                t_counts,
                s.spec["compression"]["mean_return"],
                t_ret,
                {
                    "file_fraction": (out / "weights.safetensors").stat().st_size
                    / (cp / "weights.safetensors").stat().st_size
                },
            )
        )
        checks[f"structured_{int(frac * 100)}_smaller"] = rows[-1]["file_fraction"] <= 1 - frac + 0.05

    out = fresh("cartpole-int8")
    quantize_checkpoint(cp, out=out, seed=SEED, eval_episodes=EPISODES)
    q = rllab.load(out)
    q_ret = rllab.evaluate(q, episodes=EPISODES, seed=SEED).summary()["mean_return"]
    rows.append(row("int8 dynamic quantisation", q, out, t_counts, q_ret, t_ret))
    checks["int8_within_5pct"] = abs(q_ret - t_ret) <= 0.05 * t_ret

    # ------------------------------------------------------------------ Catch
    ct = teacher("catch-ppo", algo="ppo", env="Catch-v0", seed=0)
    c = rllab.load(ct)
    c_rate = catch_rate(c)
    c_counts = parameter_counts(c)
    rows.append(row("Catch teacher (PPO small CNN)", c, ct, c_counts, c_rate, c_rate))
    out = fresh("catch-distill")
    cs = distill_checkpoint(
        ct,
        [32],
        out=out,
        steps=20_000,
        rounds=5,
        epochs=10,
        seed=SEED,
        eval_episodes=EPISODES,
        policy_kwargs={"features_extractor_kwargs": {"features_dim": 32, "channels": [8]}},
    )
    cs_row = row("Catch student (CNN 8ch, 32 features, 32)", cs, out, c_counts, catch_rate(cs), c_rate)
    cs_row["params_fraction"] = cs_row["params_total"] / c_counts["policy"]["total"]
    rows.append(cs_row)
    checks["distill_catch"] = cs_row["actor_fraction"] <= 0.25 and cs_row["score_fraction"] >= 0.95

    result = {
        "note": "score = mean return over 20 episodes (CartPole) or catch rate (Catch); CPU, 1 thread; "
        "latency = median of agent.logits on a batch",
        "episodes": EPISODES,
        "seed": SEED,
        "torch": torch.__version__,
        "rows": rows,
        "checks": checks,
        "seconds": time.time() - started,
    }
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "compress_acceptance.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Compression acceptance (CPU, 1 thread)",
        "",
        "| agent | params (non-zero) | actor params (x teacher) | file KiB | b=1 us | b=256 us | score (x teacher) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['params_total']:,} ({r['params_nonzero']:,}) | {r['actor_params']:,} "
            f"({r['actor_fraction']:.3f}) | {r['file_bytes'] / 1024:.1f} | {r['latency_b1_us']:.0f} | "
            f"{r['latency_b256_us']:.0f} | {r['score']:.3f} ({r['score_fraction']:.3f}) |"
        )
    lines += [
        "",
        f"Unstructured pruning: {sparsity:.3f} of all linear weights are zero (biases are not pruned).",
        "Structured-pruning and int8 latency on this tiny 64x64 net is dominated by per-call overhead; "
        "see compress_latency.md for a 256x256 teacher.",
    ]
    lines += ["", "Checks: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in checks.items()), ""]
    (ROOT / "results" / "compress_acceptance.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {ROOT / 'results' / 'compress_acceptance.json'} and .md")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
