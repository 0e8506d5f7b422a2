"""Acceptance figures of explain/ (issue 4 "must show"), written to bench/results/explain_acceptance.{json,md}.

1. PPO (small CNN, shipped hyperparameters, 200k steps, seed 0) on CatchDistractors-v0: catch
   rate over 100 episodes; on 200 visited states, relevance mass and pointing game against
   Catch's ground-truth mask for every method and a random map; deletion/insertion AUC
   against random orderings; Adebayo sanity check (cascading randomisation, Spearman).
2. PPO on CartPole-v1 (shipped defaults, seed 0): deletion/insertion AUC of every vector method
   against random orderings, on 200 states.
3. Contrast: the same numbers on Catch-v0 *without* distractors, where input-times-gradient
   methods are trivially perfect (unlit pixels get zero attribution).

Agents are trained with ``rllab.train`` into runs/bench-explain/ (reused when complete).
Run: ``python bench/explain_acceptance.py [--seed 0] [--states 200]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

import rllab
from explain.episodes import Trajectories, collect_states
from explain.faithfulness import deletion_insertion, pointing_game, relevance_mass, sanity_check
from explain.methods import make_method

RESULTS = Path(__file__).resolve().parent / "results"
IMAGE_METHODS = ["saliency", "integrated_gradients", "smoothgrad", "occlusion", "greydanus", "gradcam", "random"]
VECTOR_METHODS = [
    "saliency",
    "saliency:unit=raw",
    "integrated_gradients",
    "smoothgrad",
    "smoothgrad:unit=raw",
    "occlusion",
    "ablation",
    "random",
]
CANDIDATES = ["integrated_gradients", "occlusion", "greydanus"]


def trained(env: str, seed: int, root: Path, steps: int | None = None) -> Path:
    run = root / f"ppo-{env}-s{seed}"
    if (run / "agent.json").exists():
        try:
            if rllab.load(run).spec["training"].get("complete"):
                print(f"reusing {run}")
                return run
        except rllab.RllabError:
            pass
        import shutil

        shutil.rmtree(run)
    print(f"training PPO on {env} (seed {seed}) -> {run}")
    rllab.train("ppo", env, seed=seed, steps=steps, out=run)
    return run


def states(agent: rllab.Agent, n: int, seed: int) -> Trajectories:
    """At least ``n`` states from whole episodes, then ``n`` of them evenly spread."""
    episodes = 1
    while True:
        tr = collect_states(agent, episodes=episodes, seed=seed)
        if len(tr) >= n:
            break
        episodes = int(np.ceil(episodes * n / max(1, len(tr)))) + 1
    idx = np.linspace(0, len(tr) - 1, n).round().astype(int)
    return Trajectories(
        obs=tr.obs[idx],
        actions=tr.actions[idx],
        episode=tr.episode[idx],
        t=tr.t[idx],
        masks=None if tr.masks is None else tr.masks[idx],
        returns=tr.returns,
    )


def method_rows(agent: rllab.Agent, tr: Trajectories, methods: list[str], seed: int) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for label in methods:
        th.manual_seed(seed)
        name, _, option = label.partition(":")
        kwargs: dict[str, Any] = dict([option.split("=")]) if option else {}
        if name == "random":
            kwargs["seed"] = seed
        m = make_method(name, agent, **kwargs)
        t0 = time.perf_counter()
        attr = m.attribute(tr.obs, actions=tr.actions)
        row: dict[str, Any] = {"params": m.params(), "attribute_s": time.perf_counter() - t0}
        if tr.masks is not None:
            row["relevance_mass"] = float(relevance_mass(attr, tr.masks, agent).mean())
            row["pointing_game"] = float(pointing_game(attr, tr.masks, agent).mean())
        di = deletion_insertion(agent, tr.obs, attr, actions=tr.actions, seed=seed, random_orderings=10)
        row.update({k: v for k, v in di.items() if not k.endswith("curve")})
        row["deletion_vs_random"] = row["deletion_auc"] / row["random_deletion_auc"]
        if name != "random":
            sc = sanity_check(agent, tr.obs, m.for_agent, seed=seed)
            row["sanity_spearman_full"] = sc["spearman_full"]
            row["sanity_cascade"] = sc["steps"]
            row["sanity_region"] = f"{sc['region']} ({sc['region_size']} of {sc['positions']})"
            if agent.is_image:
                lit = sanity_check(agent, tr.obs, m.for_agent, seed=seed, region="lit")
                row["sanity_spearman_full_lit"] = lit["spearman_full"]
                row["sanity_cascade_lit"] = lit["steps"]
        rows[label] = row
        print(f"  {label:22s} " + " ".join(f"{k}={v:.3f}" for k, v in row.items() if isinstance(v, float)))
    if tr.masks is not None:
        rand = rows["random"]["relevance_mass"]
        for row in rows.values():
            row["mass_vs_random"] = row["relevance_mass"] / rand
    return rows


def catch_rate(agent: rllab.Agent, episodes: int, seed: int) -> float:
    res = rllab.evaluate(agent, episodes=episodes, seed=seed)
    return float(np.mean(np.asarray(res.returns) > 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--states", type=int, default=200)
    parser.add_argument("--runs", default="runs/bench-explain")
    args = parser.parse_args()
    th.set_num_threads(1)
    root = Path(args.runs)
    started = time.time()
    out: dict[str, Any] = {
        "seed": args.seed,
        "states": args.states,
        "machine": platform.platform(),
        "torch": th.__version__,
        "threads": th.get_num_threads(),
    }

    path = trained("CatchDistractors-v0", args.seed, root)
    agent = rllab.load(path)
    rate = catch_rate(agent, 100, seed=10_000 + args.seed)
    print(f"CatchDistractors-v0: catch rate {rate:.3f} over 100 episodes")
    tr = states(agent, args.states, seed=args.seed)
    lit_outside = float((tr.obs[:, 0][~tr.masks] > 0).mean())
    rows = method_rows(agent, tr, IMAGE_METHODS, args.seed)
    best = max(CANDIDATES, key=lambda k: rows[k]["relevance_mass"])
    best_del = min(CANDIDATES, key=lambda k: rows[k]["deletion_auc"])
    out["catch_distractors"] = {
        "run": str(path),
        "training": {k: agent.spec["training"].get(k) for k in ("timesteps", "wall_time_s", "hyperparams")},
        "catch_rate_100_episodes": rate,
        "fraction_of_non_ground_truth_pixels_lit": lit_outside,
        "methods": rows,
        "best_by_mass": best,
        "best_by_deletion": best_del,
    }

    cp_path = trained("CartPole-v1", args.seed, root)
    cp = rllab.load(cp_path)
    print("CartPole-v1:")
    cp_rows = method_rows(cp, states(cp, args.states, seed=args.seed), VECTOR_METHODS, args.seed)
    out["cartpole"] = {"run": str(cp_path), "methods": cp_rows}

    plain_path = trained("Catch-v0", args.seed, root)
    plain = rllab.load(plain_path)
    print("Catch-v0 (no distractors, contrast):")
    plain_rows = method_rows(plain, states(plain, args.states, seed=args.seed), IMAGE_METHODS, args.seed)
    out["catch_no_distractors"] = {"run": str(plain_path), "methods": plain_rows}

    cd = rows
    goals = {
        "catch rate >= 0.95": rate >= 0.95,
        f"best of IG/occlusion/Greydanus ({best}) mass >= 0.75": cd[best]["relevance_mass"] >= 0.75,
        f"best of IG/occlusion/Greydanus ({best}) pointing >= 0.85": cd[best]["pointing_game"] >= 0.85,
        "IG, occlusion and Greydanus each >= 10x random mass": all(cd[k]["mass_vs_random"] >= 10 for k in CANDIDATES),
        f"deletion AUC of the best ({best_del}) <= 0.5 x random": cd[best_del]["deletion_vs_random"] <= 0.5,
        "every CartPole method's deletion AUC < random (gradients per obs std, the default)": all(
            r["deletion_auc"] < r["random_deletion_auc"] for k, r in cp_rows.items() if k != "random" and ":" not in k
        ),
        "saliency Spearman after full randomisation < 0.3": cd["saliency"]["sanity_spearman_full"] < 0.3,
    }
    out["goals"] = goals
    out["wall_time_s"] = time.time() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / "explain_acceptance.json.tmp"
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(RESULTS / "explain_acceptance.json")

    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else "-"

    lines = [
        "# explain/ acceptance",
        "",
        f"PPO (small CNN) on CatchDistractors-v0, seed {args.seed}, {agent.spec['training'].get('timesteps')} steps: "
        f"catch rate **{rate:.2f}** over 100 episodes; {args.states} states; "
        f"{lit_outside:.1%} of non-ground-truth pixels are lit (distractors).",
        "",
        "| method | relevance mass | x random | pointing game | deletion AUC | random del. | del/random | "
        "insertion AUC | random ins. | sanity rho, varying | sanity rho, lit |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k, r in rows.items():
        lines.append(
            f"| {k} | {fmt(r['relevance_mass'])} | {r['mass_vs_random']:.1f} | {fmt(r['pointing_game'])} | "
            f"{fmt(r['deletion_auc'])} | {fmt(r['random_deletion_auc'])} | {fmt(r['deletion_vs_random'])} | "
            f"{fmt(r['insertion_auc'])} | {fmt(r['random_insertion_auc'])} | {fmt(r.get('sanity_spearman_full'))} | "
            f"{fmt(r.get('sanity_spearman_full_lit'))} |"
        )
    floor = rows[best_del]["baseline_probability"]
    lines += [
        "",
        f"Deletion ends on the all-black frame, where the agent still gives its action probability {floor:.3f} on "
        f"average (it mostly stays put on an empty frame): no ordering can get its deletion AUC much below that, "
        f"i.e. below {floor / rows[best_del]['random_deletion_auc']:.2f} x random here.",
        "",
        "Sanity rho: Spearman correlation with the trained agent's maps after re-initialising every layer, over "
        "the positions whose input varies across the states (*varying*) or, per state, over its non-zero pixels "
        "(*lit*; input-times-gradient, occlusion and blur maps are zero on unlit pixels whatever the weights, so "
        "over *varying* they stay correlated trivially).",
        "",
        f"PPO on CartPole-v1, seed {args.seed}, {args.states} states (deletion replaces features by the agent's mean "
        "observation). Saliency and SmoothGrad give gradients per standard deviation of each feature by default; "
        "`unit=raw` rows are the textbook gradients per raw unit (metres, radians, ...), which rank features by a "
        "sensitivity that ignores their scale:",
        "",
        "| method | deletion AUC | random del. | del/random | insertion AUC | random ins. | sanity rho |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, r in cp_rows.items():
        lines.append(
            f"| {k} | {fmt(r['deletion_auc'])} | {fmt(r['random_deletion_auc'])} | {fmt(r['deletion_vs_random'])} | "
            f"{fmt(r['insertion_auc'])} | {fmt(r['random_insertion_auc'])} | {fmt(r.get('sanity_spearman_full'))} |"
        )
    lines += [
        "",
        "Contrast, Catch-v0 without distractors (input-times-gradient maps are trivially on the lit pixels):",
        "",
        "| method | relevance mass | pointing game |",
        "|---|---|---|",
    ]
    for k, r in plain_rows.items():
        lines.append(f"| {k} | {fmt(r['relevance_mass'])} | {fmt(r['pointing_game'])} |")
    sal = rows["saliency"]
    lines += [
        "",
        "Sanity check (Adebayo et al. 2018): cascading re-initialisation from the output layer down, Spearman "
        f"rank correlation of plain gradient (saliency) maps with the trained agent's over {sal['sanity_region']}:",
        "",
        "| layers randomised down to | saliency rho |",
        "|---|---|",
    ]
    lines += [f"| {s['layer']} | {s['spearman']:.3f} |" for s in sal["sanity_cascade"]]
    lines += ["", "| goal | met |", "|---|---|"] + [f"| {g} | {'yes' if ok else '**no**'} |" for g, ok in goals.items()]
    lines += ["", f"Wall time {out['wall_time_s']:.0f} s, 1 torch thread; `python bench/explain_acceptance.py`"]
    tmp = RESULTS / "explain_acceptance.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(RESULTS / "explain_acceptance.md")
    print("\n".join(lines))
    print(f"results: {RESULTS / 'explain_acceptance.json'}, {RESULTS / 'explain_acceptance.md'}")


if __name__ == "__main__":
    main()
