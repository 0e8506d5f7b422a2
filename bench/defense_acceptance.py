"""The defenses issue's figures on CartPole-v1 (PPO, shipped defaults, seed 0).

Trains (or reuses) a vanilla agent and its adversarially trained siblings, all at eps = 0.5 std:
sa-reg with the IBP solver (coef 0.1, 200k steps), sa-reg with the PGD solver (coef 0.5, the
default 100k steps), adv-obs and atla; puts a noise-smoothed (majority vote) copy of the vanilla
agent beside them, attacks all of them with the standard suite at eps = 0.5 std (10 episodes)
and writes the leaderboard; measures the IBP-certified fraction of vanilla vs sa-reg at eps in
{0.05, 0.1, 0.2}; trains the learned (PA-AD) adversary against the vanilla agent at 0.5 std and
compares it with the best gradient attack. On Catch (scale 3: each cell a 3x3 block, so a 3x3
median keeps the ball), puts a median filter and a 3-bit depth reduction in front of a vanilla
PPO agent and attacks both with plain PGD, defense-unaware PGD and BPDA PGD. Writes
bench/results/defense_acceptance.{json,md}; runs go to runs/bench-defense/.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

import rllab
from rllab.cli.defend import defend_checkpoint
from robustness.attacks import PGD
from robustness.certify import certify
from robustness.evaluate import evaluate
from robustness.learned.attack import LearnedAttack
from robustness.learned.train import train_adversary
from robustness.report import leaderboard, render_leaderboard, write_report
from robustness.threat import ThreatModel

RESULTS = Path(__file__).parent / "results"
WORK = Path("runs/bench-defense")
EPS = 0.5
EPS_WIDE = 1.0  # where this machine's seed-0 vanilla agent breaks (see the note in the results)


def run(name: str, env: str = "CartPole-v1", **kwargs) -> tuple[Path, float]:
    path = WORK / name
    if not (path / "agent.json").exists() or not rllab.load(path).spec["training"].get("complete"):
        rllab.train("ppo", env, seed=0, out=path, progress=False, **kwargs)
    return path, float(rllab.load(path).spec["training"]["wall_time_s"])  # as recorded when it was trained


def main() -> None:
    torch.set_num_threads(1)
    out: dict = {"eps": EPS, "unit": "obs std", "train_s": {}}
    paths = {}
    paths["vanilla"], out["train_s"]["vanilla"] = run("vanilla")
    trained = (
        ("sa-reg", "sa-reg", {"coef": 0.1, "solver": "ibp"}, 200_000),
        ("sa-reg (pgd)", "sa-reg", {"coef": 0.5, "solver": "pgd"}, None),
        ("adv-obs", "adv-obs", {}, None),
        ("atla", "atla", {}, None),
    )
    out["training"] = {name: {"defense": d, **kw, "steps": n or 100_000} for name, d, kw, n in trained}
    for name, defense, kw, n in trained:
        paths[name], out["train_s"][name] = run(
            name.replace(" (", "-").rstrip(")"),
            defense=defense,
            defense_kwargs={"eps": EPS, **kw},
            **({"steps": n} if n else {}),
        )
    smooth = WORK / "vanilla-smoothed"
    if not (smooth / "agent.json").exists():
        defend_checkpoint(paths["vanilla"], smooth, smoothing={"sigma": 0.25, "n": 8, "mode": "vote"})
    paths["smoothed (vote)"] = smooth

    cards = {}
    for name, path in paths.items():
        agent = rllab.load(path)
        card = evaluate(agent, attacks=None, eps=[EPS, EPS_WIDE], episodes=10, seed=0, progress=False)
        card["agent"]["run"] = str(path)
        write_report(card, path / "attacks" / "acceptance")
        cards[name] = card
    board = leaderboard(cards)
    text = render_leaderboard(board)
    out["leaderboard"] = board["by_eps"]

    def row(name: str, eps: float = EPS) -> dict:
        c = cards[name]
        k = f"{eps:g}"
        worst = min((r[k]["mean_return"], n) for n, r in c["results"].items() if n != "noise")
        return {
            "clean": c["clean"]["mean_return"],
            "noise": c["results"]["noise"][k]["mean_return"],
            "worst": worst[0],
            "worst_attack": worst[1],
        }

    out["agents"] = {name: row(name) for name in cards}
    out["agents_wide"] = {name: row(name, EPS_WIDE) for name in cards}
    v, s = out["agents"]["vanilla"], out["agents"]["sa-reg"]
    vw, sw = out["agents_wide"]["vanilla"], out["agents_wide"]["sa-reg"]
    out["checks"] = {
        "sa-reg keeps >= 80% of clean under the strongest attack (and noise)": min(s["worst"], s["noise"])
        >= 0.8 * s["clean"],
        "vanilla falls to <= 20%": v["worst"] <= 0.2 * v["clean"],
        "sa-reg clean >= 475": s["clean"] >= 475,
        f"at {EPS_WIDE:g} std: vanilla falls to <= 20%": vw["worst"] <= 0.2 * vw["clean"],
        f"at {EPS_WIDE:g} std: sa-reg (trained at {EPS:g}) keeps >= 75%": min(sw["worst"], sw["noise"])
        >= 0.75 * sw["clean"],
    }

    cert = {}
    for name in ("vanilla", "sa-reg", "sa-reg (pgd)"):
        rep = certify(rllab.load(paths[name]), [0.05, 0.1, 0.2], episodes=5, seed=0)
        cert[name] = {f"{r['eps']:g}": r["certified_fraction"] for r in rep.rows}
    out["certified_fraction"] = cert
    out["checks"]["sa-reg certified fraction higher at 0.05, 0.1, 0.2"] = all(
        cert["sa-reg"][k] > cert["vanilla"][k] for k in cert["vanilla"]
    )

    shutil.rmtree(WORK / "learned-adversary", ignore_errors=True)  # retrained every run: its time is a figure
    t = time.perf_counter()
    adv = train_adversary(paths["vanilla"], EPS, steps=30_000, seed=0, out=WORK / "learned-adversary", progress=False)
    adv_s = time.perf_counter() - t
    victim = rllab.load(paths["vanilla"])
    attack, threat = LearnedAttack(adv), ThreatModel.for_agent(victim, EPS)
    res = rllab.run_episodes(
        victim, 20, seed=0, act_fn=lambda obs, ctx: victim.act(attack(victim, victim.as_tensor(obs), threat))
    )
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

    out["catch"] = catch_filters()
    out["checks"]["Catch: a filter looks robust to plain PGD and BPDA breaks it, flagged"] = any(
        r["looks_robust_breaks_under_bpda"] for r in out["catch"]["filters"].values()
    )

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
    lines += [
        "",
        "Training is bit-reproducible on one machine (two runs, identical weights) but not across CPUs: "
        "the seed-0 vanilla agent of the first figures, trained on another machine, fell to 65.3 "
        f"(13% of clean) at {EPS:g} std under pgd-10:kl; this machine's seed-0 agent falls to "
        f"{v['worst']:.1f} ({v['worst'] / v['clean']:.0%} of clean) under {v['worst_attack']}, and further at a wider "
        "budget:",
        "",
        f"The same agents at eps = {EPS_WIDE:g} std (all trained at {EPS:g}):",
        "",
        "| agent | clean | noise | worst case | strongest attack |",
        "|---|---|---|---|---|",
    ]
    for name, r in out["agents_wide"].items():
        lines.append(f"| {name} | {r['clean']:.1f} | {r['noise']:.1f} | {r['worst']:.1f} | {r['worst_attack']} |")
    lines += ["", "Training settings (eps 0.5 std, PPO shipped defaults otherwise):", ""]
    lines += [f"- {name}: {json.dumps(cfg)}" for name, cfg in out["training"].items()]
    lines += [
        "",
        "IBP-certified fraction of visited states (5 episodes):",
        "",
        "| eps | vanilla | sa-reg | sa-reg (pgd) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {k} | {cert['vanilla'][k]:.3f} | {cert['sa-reg'][k]:.3f} | {cert['sa-reg (pgd)'][k]:.3f} |"
        for k in cert["vanilla"]
    ]
    lines += catch_lines(out["catch"])
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


CATCH_EPS = (16, 32, 48)


def catch_filters() -> dict:
    """Median filter and bit-depth reduction in front of a vanilla Catch agent, non-adaptive vs adaptive PGD."""
    base, train_s = run("catch-s3", env="Catch-v0", env_kwargs={"scale": 3})
    filters = {
        "median 3x3": {"name": "median", "params": {"size": 3}},
        "bit depth 3": {"name": "bit_depth", "params": {"bits": 3}},
    }
    eps = [e / 255 for e in CATCH_EPS]
    out: dict = {
        "env": "Catch-v0 (scale 3)",
        "eps_255": list(CATCH_EPS),
        "episodes": 20,
        "train_s": train_s,
        "filters": {},
    }
    for label, spec in {"none": None, **filters}.items():
        path = WORK / f"catch-s3-{spec['name']}" if spec else base
        if spec and not (path / "agent.json").exists():
            defend_checkpoint(base, path, filters=[spec])
        agent = rllab.load(path)
        attacks = [PGD("action"), PGD("targeted")]
        if spec:
            attacks += [PGD(o, unaware=True) for o in ("action", "targeted")]
            attacks += [PGD(o, bpda=True) for o in ("action", "targeted")]
        card = evaluate(agent, attacks=attacks, eps=eps, episodes=20, seed=0, progress=False)
        card["agent"]["run"] = str(path)
        write_report(card, path / "attacks" / "acceptance")
        rate = {n: [(r[f"{e:g}"]["mean_return"] + 1) / 2 for e in eps] for n, r in card["results"].items()}
        looks = False
        if spec:
            for j in range(len(eps)):
                plain = min(rate["pgd-10:action"][j], rate["pgd-10:targeted"][j])
                adaptive = min(rate["pgd-10:action+bpda"][j], rate["pgd-10:targeted+bpda"][j])
                looks |= plain >= 0.9 and adaptive <= 0.7 and bool(card["flags"])
        out["filters"][label] = {
            "clean_catch_rate": (card["clean"]["mean_return"] + 1) / 2,
            "catch_rate": rate,
            "flags": card["flags"],
            "report": str(path / "attacks" / "acceptance" / "report.md"),
            "looks_robust_breaks_under_bpda": looks,
        }
    return out


def catch_lines(c: dict) -> list[str]:
    head = " | ".join(f"{e}/255" for e in c["eps_255"])
    lines = [
        "",
        f"## Input filters on {c['env']}: plain, defense-unaware and BPDA PGD ({c['episodes']} episodes, catch rate)",
        "",
        f"| filter | attack | {head} |",
        "|---|---|" + "---|" * len(c["eps_255"]),
    ]
    for label, r in c["filters"].items():
        lines.append(f"| {label} | clean | " + " | ".join(f"{r['clean_catch_rate']:.2f}" for _ in c["eps_255"]) + " |")
        for name, rates in r["catch_rate"].items():
            lines.append(f"| {label} | {name} | " + " | ".join(f"{x:.2f}" for x in rates) + " |")
    for label, r in c["filters"].items():
        if r["flags"]:
            lines += ["", f"Flags raised in the {label} report:", ""] + [f"- {f}" for f in r["flags"]]
    return lines


if __name__ == "__main__":
    main()
