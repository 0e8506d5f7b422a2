"""The defenses issue's figures on CartPole-v1 (PPO, shipped defaults, seed 0).

Trains (or reuses) a vanilla agent and its adversarially trained siblings (sa-reg, adv-obs,
atla, all at eps = 0.5 std), puts a noise-smoothed (majority vote) copy of the vanilla agent
beside them, attacks all five with the standard suite at eps = 0.5 std (20 episodes) and
writes the leaderboard; measures the IBP-certified fraction of vanilla vs sa-reg at
eps in {0.05, 0.1, 0.2}; trains the learned (PA-AD) adversary against the vanilla agent at
0.5 std and compares it with the best gradient attack. Writes
bench/results/defense_acceptance.{json,md}; runs go to runs/bench-defense/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

import rllab
from rllab.defend import defend
from robustness.certify import certify
from robustness.evaluate import evaluate
from robustness.learned_adversary import LearnedAttack, train_adversary
from robustness.report import leaderboard, render_leaderboard, write_report

RESULTS = Path(__file__).parent / "results"
WORK = Path("runs/bench-defense")
EPS = 0.5


def run(name: str, **kwargs) -> tuple[Path, float]:
    path = WORK / name
    if not (path / "agent.json").exists():
        rllab.train("ppo", "CartPole-v1", seed=0, out=path, progress=False, **kwargs)
    return path, float(rllab.load(path).spec["training"]["wall_time_s"])  # as recorded when it was trained


def main() -> None:
    torch.set_num_threads(1)
    out: dict = {"eps": EPS, "unit": "obs std", "train_s": {}}
    paths = {}
    paths["vanilla"], out["train_s"]["vanilla"] = run("vanilla")
    for defense, kw in (("sa-reg", {"coef": 0.5}), ("adv-obs", {}), ("atla", {})):
        paths[defense], out["train_s"][defense] = run(defense, defense=defense, defense_kwargs={"eps": EPS, **kw})
    smooth = WORK / "vanilla-smoothed"
    if not (smooth / "agent.json").exists():
        defend(paths["vanilla"], smooth, smoothing={"sigma": 0.25, "n": 8, "mode": "vote"})
    paths["smoothed (vote)"] = smooth

    cards = {}
    for name, path in paths.items():
        agent = rllab.load(path)
        card = evaluate(agent, attacks=None, eps=[EPS], episodes=10, seed=0, progress=False)
        card["agent"]["run"] = str(path)
        write_report(card, path / "attacks" / "acceptance")
        cards[name] = card
    board = leaderboard(cards)
    text = render_leaderboard(board)
    out["leaderboard"] = board["by_eps"][f"{EPS:g}"]

    def row(name: str) -> dict:
        c = cards[name]
        k = f"{EPS:g}"
        worst = min((r[k]["mean_return"], n) for n, r in c["results"].items() if n != "noise")
        return {
            "clean": c["clean"]["mean_return"],
            "noise": c["results"]["noise"][k]["mean_return"],
            "worst": worst[0],
            "worst_attack": worst[1],
        }

    out["agents"] = {name: row(name) for name in cards}
    v, s = out["agents"]["vanilla"], out["agents"]["sa-reg"]
    out["checks"] = {
        "sa-reg keeps >= 80% of clean under the strongest attack": s["worst"] >= 0.8 * s["clean"],
        "vanilla falls to <= 20%": v["worst"] <= 0.2 * v["clean"],
        "sa-reg clean >= 475": s["clean"] >= 475,
    }

    cert = {}
    for name in ("vanilla", "sa-reg"):
        rep = certify(rllab.load(paths[name]), [0.05, 0.1, 0.2], episodes=5, seed=0)
        cert[name] = {f"{r['eps']:g}": r["certified_fraction"] for r in rep.rows}
    out["certified_fraction"] = cert
    out["checks"]["sa-reg certified fraction higher at 0.05, 0.1, 0.2"] = all(
        cert["sa-reg"][k] > cert["vanilla"][k] for k in cert["vanilla"]
    )

    t = time.perf_counter()
    adv = train_adversary(paths["vanilla"], EPS, steps=30_000, seed=0, out=WORK / "learned-adversary", progress=False)
    adv_s = time.perf_counter() - t
    victim = rllab.load(paths["vanilla"])
    attack = LearnedAttack(adv)
    res = rllab.run_episodes(victim, 20, seed=0, act_fn=lambda obs, ctx: victim.act(attack(victim, obs)))
    best_grad = min(
        r[f"{EPS:g}"]["mean_return"]
        for n, r in cards["vanilla"]["results"].items()
        if cards["vanilla"]["attacks"][n].get("kind") == "white-box"
    )
    out["learned_adversary"] = {
        "train_s": round(adv_s, 1),
        "steps": 30_000,
        "victim_return": float(np.mean(res.returns)),
        "best_gradient_attack_return": best_grad,
    }
    out["checks"]["learned adversary at least as strong as the best gradient attack"] = (
        float(np.mean(res.returns)) <= best_grad
    )
    out["checks"]["learned adversary trained in < 10 min"] = adv_s < 600

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "defense_acceptance.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        f"# Defenses on CartPole-v1 (PPO, seed 0), eps = {EPS} std, linf, 10 episodes",
        "",
        "| agent | train s | clean | noise | worst case | strongest attack |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in out["agents"].items():
        lines.append(
            f"| {name} | {out['train_s'].get(name, 0):.0f} | {r['clean']:.1f} | {r['noise']:.1f} | "
            f"{r['worst']:.1f} | {r['worst_attack']} |"
        )
    lines += ["", "IBP-certified fraction of visited states:", "", "| eps | vanilla | sa-reg |", "|---|---|---|"]
    lines += [f"| {k} | {cert['vanilla'][k]:.3f} | {cert['sa-reg'][k]:.3f} |" for k in cert["vanilla"]]
    la = out["learned_adversary"]
    lines += [
        "",
        f"Learned PA-AD adversary ({la['steps']} PPO steps, {la['train_s']:.0f} s): vanilla return "
        f"{la['victim_return']:.1f} vs best gradient attack {la['best_gradient_attack_return']:.1f}.",
        "",
        "| check | passed |",
        "|---|---|",
    ]
    lines += [f"| {k} | {'yes' if v else 'NO'} |" for k, v in out["checks"].items()]
    lines += ["", text]
    (RESULTS / "defense_acceptance.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
