"""Domain adaptation figures (`rllab adapt`), on CPU with one thread.

Catch-v0 PPO agents (rllab defaults, seeds 0, 1, 2; the same agents as attack_acceptance.py)
meet three target domains they were not trained in, and are adapted without target rewards by

- ``no adversary``: the same training with the domain loss switched off (``coef 0``): what
  fine-tuning on source states alone does to the target (the baseline DANN must beat);
- ``grl``: DANN's gradient-reversal layer (Ganin et al. 2016), aligned at the first layer;
- ``confusion, extractor``: the default loss, aligned at the CNN's output instead;
- ``confusion``: the classifier's output pushed to 1/2 (Tzeng et al. 2015) at the first
  hidden layer: the defaults.

Each row: catch rate in the target before and after, in the source after, and the held-out
accuracy of a fresh domain classifier on the features before and after, over 100 episodes.
Writes bench/results/adapt_acceptance.{json,md}; adapted agents go to runs/bench-adapt/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from attack_acceptance import trained

import rllab
from rllab.cli.transforms import adapt_checkpoint
from robustness import evaluate

ROOT = Path(__file__).resolve().parent
WORK = ROOT.parent / "runs" / "bench-adapt"
SEEDS = (0, 1, 2)
EPISODES = 100
ATTACK_EPS, ATTACK_EPISODES = 8 / 255, 50  # how brittle the adapted agent is, in its new domain
SHIFTS = {
    "brighter (offset 60)": {"target_wrappers": [{"name": "ObservationShift", "kwargs": {"offset": 60}}]},
    "dimmer + offset (scale 0.5, offset 60)": {
        "target_wrappers": [{"name": "ObservationShift", "kwargs": {"scale": 0.5, "offset": 60}}]
    },
    "3 distractors at 200/255": {"target_env_kwargs": {"distractors": 3, "distractor_intensity": 200}},
}
METHODS = {
    "no adversary": {"coef": 0.0},
    "grl": {"loss": "grl"},
    "confusion, extractor": {"align": "extractor"},
    "confusion": {},
}


def rate(mean_return: float) -> float:
    return (mean_return + 1) / 2  # Catch: +1 catch, -1 miss


def attacked(agent) -> dict[str, float]:
    """Catch rate under uniform noise and the strongest of PGD-10 (action, targeted) at ATTACK_EPS."""
    card = evaluate(agent, attacks=["noise", "pgd"], eps=[ATTACK_EPS], episodes=ATTACK_EPISODES, progress=False)
    card_t = evaluate(
        agent, attacks=["pgd"], objective="targeted", eps=[ATTACK_EPS], episodes=ATTACK_EPISODES, progress=False
    )
    k = f"{ATTACK_EPS:g}"
    rows = {**card["results"], **card_t["results"]}
    return {
        "noise": rate(rows["noise"][k]["mean_return"]),
        "pgd": rate(min(r[k]["mean_return"] for n, r in rows.items() if n != "noise")),
    }


def reference(seed: int) -> dict:
    torch.set_num_threads(1)
    agent = rllab.load(trained("ppo", "Catch-v0", seed))
    return {"agent_seed": seed, **{f"source_{k}": v for k, v in attacked(agent).items()}}


def one(shift: str, seed: int, method: str) -> dict:
    torch.set_num_threads(1)
    run = trained("ppo", "Catch-v0", seed)
    out = WORK / f"s{seed}-{list(SHIFTS).index(shift)}-{method.replace(' ', '-').replace(',', '')}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    agent = adapt_checkpoint(
        run, out, **SHIFTS[shift], **METHODS[method], seed=0, eval_episodes=EPISODES, progress=False
    )
    s = agent.spec["adaptation"]
    r = s["mean_return"]
    row = {
        "shift": shift,
        "agent_seed": seed,
        "method": method,
        "target_before": rate(r["target_before"]),
        "target_after": rate(r["target_after"]),
        "source_after": rate(r["source_after"]),
        "gap_before": s["domain_gap_before"]["accuracy"],
        "gap_after": s["domain_gap_after"]["accuracy"],
        "seconds": time.time() - t0,
        **{f"target_{k}": v for k, v in attacked(agent).items()},
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    for seed in SEEDS:
        trained("ppo", "Catch-v0", seed)  # trained here once, not by two workers at once
    tasks = [(shift, seed, method) for shift in SHIFTS for seed in SEEDS for method in METHODS]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(one, *zip(*tasks, strict=True)))
        references = list(pool.map(reference, SEEDS))

    summary = []
    for shift in SHIFTS:
        for method in METHODS:
            sel = [r for r in rows if r["shift"] == shift and r["method"] == method]
            summary.append(
                {
                    "shift": shift,
                    "method": method,
                    "target_before": sum(r["target_before"] for r in sel) / len(sel),
                    "target_after": sum(r["target_after"] for r in sel) / len(sel),
                    "source_after": sum(r["source_after"] for r in sel) / len(sel),
                    "target_noise": sum(r["target_noise"] for r in sel) / len(sel),
                    "target_pgd": sum(r["target_pgd"] for r in sel) / len(sel),
                }
            )
    result = {
        "device": "cpu, 1 thread per run, --jobs runs at once",
        "torch": torch.__version__,
        "episodes": EPISODES,
        "settings": "rllab adapt defaults (2000 steps, 10k states per domain, coef 1, explore 0.3, lr 1e-3, seed 0)",
        "attack": f"uniform noise and PGD-10 (the stronger of the action and targeted objectives) at "
        f"{ATTACK_EPS * 255:g}/255, {ATTACK_EPISODES} episodes, in the agent's own domain",
        "rows": rows,
        "source_agents_in_source_domain": references,
        "mean_over_seeds": summary,
        "wall_s": time.time() - started,
    }
    out = ROOT / "results"
    (out / "adapt_acceptance.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# rllab adapt on Catch-v0 (PPO, seeds 0-2): catch rate in the shifted target domain",
        "",
        f"{EPISODES} evaluation episodes per domain; {result['settings']}; CPU, 1 thread; "
        f"{result['wall_s'] / 60:.0f} min in all. Gap: held-out accuracy of a fresh domain classifier on the "
        "aligned features (0.5 = the domains cannot be told apart).",
        "",
        "## Mean over the three agents",
        "",
        f"Last two columns: the adapted agent in the target under {result['attack']}. The source agents in "
        "their own domain under the same attacks: "
        + ", ".join(f"s{r['agent_seed']} noise {r['source_noise']:.2f} / PGD {r['source_pgd']:.2f}" for r in references)
        + ".",
        "",
        "| target domain | method | target before | target after | source after | target, noise | target, PGD |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in summary:
        lines.append(
            f"| {s['shift']} | {s['method']} | {s['target_before']:.2f} | **{s['target_after']:.2f}** "
            f"| {s['source_after']:.2f} | {s['target_noise']:.2f} | {s['target_pgd']:.2f} |"
        )
    lines += [
        "",
        "## Every run",
        "",
        "| target domain | agent | method | target before | target after | source after | gap before | gap after "
        "| noise | PGD |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['shift']} | s{r['agent_seed']} | {r['method']} | {r['target_before']:.2f} | {r['target_after']:.2f} "
            f"| {r['source_after']:.2f} | {r['gap_before']:.2f} | {r['gap_after']:.2f} | {r['target_noise']:.2f} "
            f"| {r['target_pgd']:.2f} |"
        )
    (out / "adapt_acceptance.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
