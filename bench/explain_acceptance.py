"""Acceptance figures of explain/ (issue 4 "must show"), written to bench/results/explain_acceptance.{json,md}.

1. PPO (small CNN, shipped hyperparameters, 200k steps, seed 0) on CatchDistractors-v0: catch
   rate over 100 episodes; on 200 visited states, relevance mass and pointing game against
   Catch's ground-truth mask for every method and a random map; deletion/insertion AUC
   against random orderings; Adebayo sanity check (cascading randomisation, Spearman).
   Also, on the same states, deletion/insertion against each frame's Gaussian blur as the baseline.
1b. The same for a PPO agent on CatchDistractors-v0 drawn at ``scale=3`` (3x3 pixels per cell, so
   ball and paddle span 9 pixels as objects do in Atari frames; run ``ppo-CatchDistractors-v0-scale3-s0``),
   with one-cell occlusion windows and cell-sized Greydanus sigmas beside the defaults; sanity
   checks on 50 of its states (``--scaled-sanity-states``).
2. PPO on CartPole-v1 (shipped defaults, seed 0): deletion/insertion AUC of every vector method
   against random orderings, on 200 states.
3. Contrast: the same numbers on Catch-v0 *without* distractors, where input-times-gradient
   methods are trivially perfect (unlit pixels get zero attribution).

Agents are trained with ``rllab.train`` into runs/bench-explain/ (reused when complete).
Run: ``python bench/explain_acceptance.py [--seed 0] [--states 200]``; ``--render-only`` rewrites the .md
from the existing .json.
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
from explain.methods import gaussian_blur, make_method

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
BLUR_SIGMA = 1.0  # the blurred-frame deletion baseline at scale 1 (pixels = cells there)


def scaled_methods(scale: int) -> list[str]:
    """The image methods on a Catch frame drawn at ``scale``: the defaults, plus occlusion of one whole cell
    and Greydanus with the scale-1 default sigmas measured in cells."""
    methods = list(IMAGE_METHODS)
    at = methods.index("greydanus")
    methods[at + 1 : at + 1] = [f"greydanus:sigma_mask={0.5 * scale:g},sigma_blur={1.0 * scale:g}"]
    at = methods.index("occlusion")
    methods[at + 1 : at + 1] = [f"occlusion:window={scale},stride={scale}"]
    return methods


def trained(
    env: str, seed: int, root: Path, steps: int | None = None, env_kwargs: dict[str, Any] | None = None
) -> Path:
    """A complete PPO run (shipped hyperparameters) in ``root``, trained unless already there.

    ``env_kwargs`` (e.g. ``{"scale": 3}``) go into the run name (``ppo-ENV-scale3-s0``) and are
    checked against a reused run's; a reused run must also have at least ``steps`` steps.
    """
    kw = dict(env_kwargs or {})
    tag = "".join(f"-{k}{v}" for k, v in sorted(kw.items()))
    run = root / f"ppo-{env}{tag}-s{seed}"
    if (run / "agent.json").exists():
        try:
            spec = rllab.load(run).spec
            ok = (
                spec["training"].get("complete")
                and dict(spec["env"].get("kwargs") or {}) == kw
                and (steps is None or spec["training"].get("timesteps", 0) >= steps)
            )
            if ok:
                print(f"reusing {run}")
                return run
        except rllab.RllabError:
            pass
        import shutil

        shutil.rmtree(run)
    print(f"training PPO on {env} {kw or ''} (seed {seed}) -> {run}")
    rllab.train("ppo", env, seed=seed, steps=steps, out=run, env_kwargs=kw or None)
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


def _option_value(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def method_options(option: str) -> dict[str, Any]:
    """``"window=3,stride=3"`` -> ``{"window": 3, "stride": 3}`` (numbers parsed)."""
    return {k: _option_value(v) for k, v in (item.split("=") for item in option.split(",") if item)}


def method_rows(
    agent: rllab.Agent, tr: Trajectories, methods: list[str], seed: int, sanity_states: int | None = None
) -> dict[str, dict[str, Any]]:
    """One row of figures per method label (``name`` or ``name:key=value,key=value``).

    ``sanity_states``: run the (costly) sanity check on the first this-many states, spread evenly
    over ``tr`` (default: all of them).
    """
    rows: dict[str, dict[str, Any]] = {}
    sanity_obs = tr.obs
    if sanity_states is not None and sanity_states < len(tr):
        sanity_obs = tr.obs[np.linspace(0, len(tr) - 1, sanity_states).round().astype(int)]
    for label in methods:
        th.manual_seed(seed)
        name, _, option = label.partition(":")
        kwargs: dict[str, Any] = method_options(option)
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
            sc = sanity_check(agent, sanity_obs, m.for_agent, seed=seed)
            row["sanity_spearman_full"] = sc["spearman_full"]
            row["sanity_cascade"] = sc["steps"]
            row["sanity_region"] = f"{sc['region']} ({sc['region_size']} of {sc['positions']})"
            if agent.is_image:
                lit = sanity_check(agent, sanity_obs, m.for_agent, seed=seed, region="lit")
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


def blurred(obs: np.ndarray, sigma: float) -> th.Tensor:
    """Each (N, C, H, W) frame Gaussian-blurred (a per-state deletion baseline)."""
    return gaussian_blur(th.as_tensor(obs).float(), sigma)


def catch_section(
    path: Path, args: argparse.Namespace, methods: list[str], sanity_states: int | None = None
) -> dict[str, Any]:
    """Catch rate, methods x metrics rows and the Catch goals of one CatchDistractors-v0 agent."""
    agent = rllab.load(path)
    rate = catch_rate(agent, 100, seed=10_000 + args.seed)
    kwargs = agent.spec["env"].get("kwargs") or {}
    print(f"CatchDistractors-v0 {kwargs}: catch rate {rate:.3f} over 100 episodes")
    tr = states(agent, args.states, seed=args.seed)
    lit_outside = float((tr.obs[:, 0][~tr.masks] > 0).mean())
    rows = method_rows(agent, tr, methods, args.seed, sanity_states=sanity_states)
    candidates = [k for k in rows if k.partition(":")[0] in CANDIDATES]
    best = max(candidates, key=lambda k: rows[k]["relevance_mass"])
    best_del = min(candidates, key=lambda k: rows[k]["deletion_auc"])
    goals = {
        "catch rate >= 0.95": (rate >= 0.95, f"{rate:.2f}"),
        "best of IG/occlusion/Greydanus mass >= 0.75": (
            rows[best]["relevance_mass"] >= 0.75,
            f"{best}: {rows[best]['relevance_mass']:.3f}",
        ),
        "best of IG/occlusion/Greydanus pointing >= 0.85": (
            rows[best]["pointing_game"] >= 0.85,
            f"{best}: {rows[best]['pointing_game']:.3f}",
        ),
        "IG, occlusion and Greydanus each >= 10x random mass": (
            all(rows[k]["mass_vs_random"] >= 10 for k in candidates),
            f"lowest {min(rows[k]['mass_vs_random'] for k in candidates):.1f}x",
        ),
        "deletion AUC of the best <= 0.5 x random": (
            rows[best_del]["deletion_vs_random"] <= 0.5,
            f"{best_del}: {rows[best_del]['deletion_vs_random']:.3f}x",
        ),
        "saliency Spearman after full randomisation < 0.3": (
            rows["saliency"]["sanity_spearman_full"] < 0.3,
            f"{rows['saliency']['sanity_spearman_full']:.3f}",
        ),
    }
    return {
        "run": str(path),
        "env_kwargs": kwargs,
        "observation_shape": list(agent.observation_space.shape),
        "training": {k: agent.spec["training"].get(k) for k in ("timesteps", "wall_time_s", "hyperparams")},
        "catch_rate_100_episodes": rate,
        "fraction_of_non_ground_truth_pixels_lit": lit_outside,
        "sanity_states": sanity_states or args.states,
        "methods": rows,
        "best_by_mass": best,
        "best_by_deletion": best_del,
        "goals": {g: ok for g, (ok, _) in goals.items()},
        "goal_figures": {g: fig for g, (_, fig) in goals.items()},
        "_agent": agent,
        "_states": tr,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--states", type=int, default=200)
    parser.add_argument("--runs", default="runs/bench-explain")
    parser.add_argument("--scale", type=int, default=3, help="cell size in pixels of the scaled Catch agent")
    parser.add_argument("--scaled-steps", type=int, default=None, help="training steps of the scaled agent")
    parser.add_argument("--scaled-sanity-states", type=int, default=50, help="states of its sanity checks")
    parser.add_argument("--no-blur", action="store_true", help="skip the blurred-frame deletion baseline rows")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the .md from the existing .json without measuring"
    )
    args = parser.parse_args()
    if args.render_only:
        render(json.loads((RESULTS / "explain_acceptance.json").read_text()))
        return
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

    cd_sec = catch_section(trained("CatchDistractors-v0", args.seed, root), args, IMAGE_METHODS)
    agent, tr = cd_sec.pop("_agent"), cd_sec.pop("_states")
    if not args.no_blur:
        # deletion/insertion against each frame's own Gaussian blur instead of the black frame
        base = blurred(tr.obs, BLUR_SIGMA)
        blur_rows: dict[str, Any] = {}
        for label in [*CANDIDATES, "random"]:
            th.manual_seed(args.seed)
            m = make_method(label, agent, **({"seed": args.seed} if label == "random" else {}))
            attr = m.attribute(tr.obs, actions=tr.actions)
            di = deletion_insertion(
                agent, tr.obs, attr, actions=tr.actions, baseline=base, seed=args.seed, random_orderings=10
            )
            r = {k: v for k, v in di.items() if not k.endswith("curve")}
            r["deletion_vs_random"] = r["deletion_auc"] / r["random_deletion_auc"]
            blur_rows[label] = r
            print(f"  blur baseline {label:22s} del/random={r['deletion_vs_random']:.3f}")
        cd_sec["blurred_baseline"] = {"sigma": BLUR_SIGMA, "methods": blur_rows}
    out["catch_distractors"] = cd_sec

    scaled_path = trained(
        "CatchDistractors-v0", args.seed, root, steps=args.scaled_steps, env_kwargs={"scale": args.scale}
    )
    sc_sec = catch_section(scaled_path, args, scaled_methods(args.scale), sanity_states=args.scaled_sanity_states)
    sc_sec.pop("_agent"), sc_sec.pop("_states")
    out["catch_distractors_scaled"] = sc_sec

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

    cartpole_goal = "every CartPole method's deletion AUC < random (gradients per obs std, the default)"
    cartpole_ok = all(
        r["deletion_auc"] < r["random_deletion_auc"] for k, r in cp_rows.items() if k != "random" and ":" not in k
    )
    out["goals"] = {
        "CatchDistractors-v0 (scale 1)": cd_sec["goals"],
        f"CatchDistractors-v0 (scale {args.scale})": sc_sec["goals"],
        "CartPole-v1": {cartpole_goal: cartpole_ok},
    }
    out["wall_time_s"] = time.time() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / "explain_acceptance.json.tmp"
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(RESULTS / "explain_acceptance.json")

    render(out)


def render(out: dict[str, Any]) -> None:
    """Write bench/results/explain_acceptance.md from the figures of ``out`` (the JSON's content)."""
    seed, n_states = out["seed"], out["states"]
    cd_sec, sc_sec = out["catch_distractors"], out["catch_distractors_scaled"]
    scale = int(sc_sec["env_kwargs"]["scale"])
    rows, sc_rows = cd_sec["methods"], sc_sec["methods"]
    cp_rows, plain_rows = out["cartpole"]["methods"], out["catch_no_distractors"]["methods"]
    ((cartpole_goal, cartpole_ok),) = out["goals"]["CartPole-v1"].items()
    best_default3 = min(CANDIDATES, key=lambda k: sc_rows[k]["deletion_auc"])

    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else "-"

    def catch_table(rows: dict[str, dict[str, Any]]) -> list[str]:
        lines = [
            "| method | relevance mass | x random | pointing game | deletion AUC | random del. | del/random | "
            "insertion AUC | random ins. | sanity rho, varying | sanity rho, lit |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for k, r in rows.items():
            lines.append(
                f"| {k} | {fmt(r['relevance_mass'])} | {r['mass_vs_random']:.1f} | {fmt(r['pointing_game'])} | "
                f"{fmt(r['deletion_auc'])} | {fmt(r['random_deletion_auc'])} | {fmt(r['deletion_vs_random'])} | "
                f"{fmt(r['insertion_auc'])} | {fmt(r['random_insertion_auc'])} | "
                f"{fmt(r.get('sanity_spearman_full'))} | {fmt(r.get('sanity_spearman_full_lit'))} |"
            )
        return lines

    def settings(params: dict[str, Any]) -> str:
        return ", ".join(
            f"{k} {'x'.join(map(str, v)) if isinstance(v, list) else (f'{v:.2f}' if isinstance(v, float) else v)}"
            for k, v in params.items()
            if k != "baseline"
        )

    def steps_of(sec: dict[str, Any]) -> Any:
        return sec["training"].get("timesteps")

    s1, s3 = cd_sec, sc_sec
    floor = rows[s1["best_by_deletion"]]["baseline_probability"]
    floor3 = sc_rows[s3["best_by_deletion"]]["baseline_probability"]
    shape3 = "x".join(str(v) for v in s3["observation_shape"][1:])
    lines = [
        "# explain/ acceptance",
        "",
        "Two PPO agents (small CNN, shipped CatchDistractors-v0 hyperparameters, seed "
        f"{seed}) on the same game: **scale 1**, the 10x5 frame where ball and paddle are one "
        f"pixel each, and **scale {scale}**, every cell drawn as a {scale}x{scale} "
        f"block ({shape3} frame, ball and paddle {scale * scale} pixels each, as objects "
        "span several pixels in Atari frames). Which agent meets which goal is in the last table.",
        "",
        "## CatchDistractors-v0, scale 1 (10x5)",
        "",
        f"{steps_of(s1)} steps: catch rate **{s1['catch_rate_100_episodes']:.2f}** over 100 episodes; "
        f"{n_states} states; {s1['fraction_of_non_ground_truth_pixels_lit']:.1%} of non-ground-truth pixels "
        "are lit (distractors). Every method at its defaults (occlusion: 1x1 windows, stride 1; Greydanus: "
        f"sigma_mask {rows['greydanus']['params']['sigma_mask']:.2f}, sigma_blur "
        f"{rows['greydanus']['params']['sigma_blur']:.2f}, every pixel scored).",
        "",
        *catch_table(rows),
        "",
        f"Deletion ends on the all-black frame, where the agent still gives its action probability {floor:.3f} on "
        "average (it mostly stays put on an empty frame): no ordering can get its deletion AUC much below that, "
        f"i.e. below {floor / rows[s1['best_by_deletion']]['random_deletion_auc']:.2f} x random here; and a random "
        "ordering deletes one of the two one-pixel objects early, so its own AUC is low. At one pixel per object "
        "the deletion goal is bound by that floor. (The floor moves with the training run: an earlier seed-0 "
        "training by the previous version of this script, run not kept, had floor 0.380 and its best at 0.587 x "
        "random.)",
    ]
    if "blurred_baseline" in s1:
        br = s1["blurred_baseline"]["methods"]
        lines += [
            "",
            f"Extra (scale 1): deletion/insertion with each frame's own Gaussian blur (sigma "
            f"{s1['blurred_baseline']['sigma']}) as the baseline instead of the black frame; maps as above:",
            "",
            "| method | deletion AUC | random del. | del/random | insertion AUC | random ins. | "
            "p(action), all blurred |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, r in br.items():
            lines.append(
                f"| {k} | {fmt(r['deletion_auc'])} | {fmt(r['random_deletion_auc'])} | "
                f"{fmt(r['deletion_vs_random'])} | {fmt(r['insertion_auc'])} | {fmt(r['random_insertion_auc'])} | "
                f"{fmt(r['baseline_probability'])} |"
            )
        lines += [
            "",
            "A blurred one-pixel ball or paddle keeps little of its intensity, so the agent treats the all-blurred "
            "frame much as the black one (last column vs the floor above): the blurred baseline does not lift the "
            "floor at scale 1.",
        ]
    occ3 = [k for k in sc_rows if k.startswith("occlusion")]
    grey3 = [k for k in sc_rows if k.startswith("greydanus")]
    lines += [
        "",
        f"## CatchDistractors-v0, scale {scale} ({shape3})",
        "",
        f"{steps_of(s3)} steps: catch rate **{s3['catch_rate_100_episodes']:.2f}** over 100 episodes; "
        f"{n_states} states; {s3['fraction_of_non_ground_truth_pixels_lit']:.1%} of non-ground-truth pixels "
        f"are lit. Sanity checks on {s3['sanity_states']} of the states (evenly spread). Method settings: "
        + "; ".join(f"`{k}` {settings(sc_rows[k]['params'])}" for k in occ3 + grey3)
        + f". `occlusion` and `greydanus` are the defaults (scored per pixel; Greydanus's sigmas are scaled to the "
        f"frame's shorter side); `occlusion:window={scale},stride={scale}` occludes exactly one cell; "
        f"`greydanus:sigma_mask=...,sigma_blur=...` is the scale-1 default measured in cells "
        f"(times {scale}). The goals take the best of every IG/occlusion/Greydanus row.",
        "",
        *catch_table(sc_rows),
        "",
        f"Random orderings now have to delete several of an object's {scale * scale} pixels before the "
        f"agent loses it: random deletion AUC {sc_rows['random']['random_deletion_auc']:.3f} (scale 1: "
        f"{rows['random']['random_deletion_auc']:.3f}). The all-black frame gives the action probability "
        f"{floor3:.3f} on average (the deletion floor, "
        f"{floor3 / sc_rows[s3['best_by_deletion']]['random_deletion_auc']:.3f} x random; scale 1: {floor:.3f}), and "
        "the IG/occlusion/Greydanus deletion AUCs are within "
        f"{max(sc_rows[k]['deletion_auc'] for k in sc_rows if k.partition(':')[0] in CANDIDATES) - floor3:.3f} "
        "of it (their curves sit on it for almost the whole deletion), so the best ratio, "
        f"{s3['best_by_deletion']} at {sc_rows[s3['best_by_deletion']]['deletion_vs_random']:.3f} x random, sits "
        "just above the floor. At the methods' defaults only, the best is "
        f"{best_default3} at "
        f"{sc_rows[best_default3]['deletion_vs_random']:.3f} x random.",
        "",
        "Sanity rho: Spearman correlation with the trained agent's maps after re-initialising every layer, over "
        "the positions whose input varies across the states (*varying*) or, per state, over its non-zero pixels "
        "(*lit*; input-times-gradient, occlusion and blur maps are zero on unlit pixels whatever the weights, so "
        "over *varying* they stay correlated trivially).",
        "",
        "## CartPole-v1",
        "",
        f"PPO on CartPole-v1, seed {seed}, {n_states} states (deletion replaces features by the agent's mean "
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
        "## Contrast: Catch-v0 without distractors",
        "",
        "Input-times-gradient maps are trivially on the lit pixels:",
        "",
        "| method | relevance mass | pointing game |",
        "|---|---|---|",
    ]
    for k, r in plain_rows.items():
        lines.append(f"| {k} | {fmt(r['relevance_mass'])} | {fmt(r['pointing_game'])} |")
    sal = rows["saliency"]
    lines += [
        "",
        "## Sanity check cascade (scale 1)",
        "",
        "Cascading re-initialisation (Adebayo et al. 2018) from the output layer down, Spearman "
        f"rank correlation of plain gradient (saliency) maps with the trained agent's over {sal['sanity_region']}:",
        "",
        "| layers randomised down to | saliency rho |",
        "|---|---|",
    ]
    lines += [f"| {s['layer']} | {s['spearman']:.3f} |" for s in sal["sanity_cascade"]]

    def cell(sec: dict[str, Any], g: str) -> str:
        return f"{'yes' if sec['goals'][g] else '**no**'} ({sec['goal_figures'][g]})"

    lines += [
        "",
        "## Goals",
        "",
        f"| goal | scale 1 (10x5) | scale {scale} ({shape3}) |",
        "|---|---|---|",
    ]
    lines += [f"| {g} | {cell(s1, g)} | {cell(s3, g)} |" for g in s1["goals"]]
    lines += [f"| {cartpole_goal} | {'yes' if cartpole_ok else '**no**'} (CartPole agent) | |"]
    lines += ["", f"Wall time {out['wall_time_s']:.0f} s, 1 torch thread; `python bench/explain_acceptance.py`"]
    tmp = RESULTS / "explain_acceptance.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(RESULTS / "explain_acceptance.md")
    print("\n".join(lines))
    print(f"results: {RESULTS / 'explain_acceptance.json'}, {RESULTS / 'explain_acceptance.md'}")


if __name__ == "__main__":
    main()
