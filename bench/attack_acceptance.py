"""The attacks issue's "must show" figures, on agents trained with the foundation's defaults (seed 0).

- CartPole-v1 PPO: the strongest attack of the suite at eps = 0.5 std (linf) brings the mean
  return to <= 20% of clean, while noise of the same budget keeps >= 90%.
- Catch-v0 PPO (pixels): the breaking budget, the smallest eps in {1,2,4,8,16,32}/255 at which
  the strongest attack brings the catch rate below 20%, must be <= 32/255 while noise keeps
  >= 90% of the clean catch rate at that budget (64/255 is added to locate the break when it
  lies beyond the issue's grid).
- Surrogate transfer on the CartPole agent: queries, held-out agreement (>= 90% with <= 20k
  queries) and the step-level transfer rate.

Full reports go to runs/bench-attack/*/attacks/acceptance/; the figures to
bench/results/attack_acceptance.{json,md}.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import rllab
from robustness.attacks.pgd import FGSM, PGD
from robustness.attacks.planning import PlanningAttack
from robustness.evaluate import evaluate, standard_suite
from robustness.learned.attack import LearnedAttack
from robustness.report import write_report
from robustness.threat import ThreatModel

# PPO training is bit-reproducible on one machine but not across CPUs, and the CartPole figure
# depends on the agent: stated with every run of this script.
MACHINE_NOTE = (
    "Agents are trained on the machine that runs this script. PPO training is bit-reproducible on one "
    "machine but not across CPUs, so the seed-0 agents, and how brittle they are, depend on the machine: "
    "on the machine of the first figures (2026-11-23, earlier session) the strongest attack on the seed-0 "
    "CartPole agent at 0.5 std was pgd-10:kl at 70.1 (14% of clean 500). The seed table at the end shows "
    "how much of each figure belongs to one agent rather than to the defaults."
)
RESULTS = Path(__file__).parent / "results"
WORK = Path("runs/bench-attack")


SPREAD_SEEDS = (0, 1, 2)
LEARNED_STEPS = {"cartpole": 200_000, "catch": 150_000}  # PPO steps of the PA-AD adversary


def trained(algo: str, env: str, seed: int = 0) -> Path:
    run = WORK / f"{algo}-{env}-s{seed}"
    if not (run / "agent.json").exists():
        rllab.train(algo, env, seed=seed, out=run, progress=False)
    return run


def seed_spread(env: str, eps: list[float], episodes: int, score, planning: bool = False) -> list[dict]:
    """The gradient attacks of the suite (FGSM, PGD-10 with every objective) on seeds 0, 1, 2.

    The must-show names seed 0; the other seeds show how much the figure owes to one agent.
    """
    rows = []
    for seed in SPREAD_SEEDS:
        agent = rllab.load(trained("ppo", env, seed))
        attacks = [a for a in standard_suite(agent) if type(a) in (FGSM, PGD)]
        card = evaluate(agent, attacks=attacks, eps=eps, episodes=episodes, seed=0, progress=False)
        row = {"seed": seed, "clean": score(card["clean"]["mean_return"]), "eps": {}}
        for e in eps:
            k = f"{e:g}"
            attacked = {n: score(r[k]["mean_return"]) for n, r in card["results"].items()}
            name = min(attacked, key=attacked.get)
            row["eps"][k] = {"strongest": name, "score": attacked[name]}
            if planning:
                row["eps"][k]["planning"] = catch_planning_attack(agent, e, episodes=episodes)["catch_rate_on_episodes"]
        rows.append(row)
    return rows


def catch_planning_attack(agent, eps: float, steps: int = 200, restarts: int = 5, episodes: int = 100) -> dict:
    """The best any observation attacker within ``eps`` can do on Catch, found by exhaustive planning.

    Catch is deterministic once the ball's column is drawn, and small: 9 decision rows x ball column
    x paddle column. For every such state, PGD (``steps`` steps, ``restarts`` starts, the margin of each
    action in turn as its objective) finds which actions the adversary can force within the linf
    ball; dynamic programming over the game's dynamics then picks, state by state, the forceable
    action that leads to a miss wherever one exists. The result is the catch rate of an attacker that
    knows the dynamics and plans ahead, over the equally likely ball columns (``catch_rate``) and over
    the ball columns of the ``episodes`` evaluation episodes the attacks are run on (seeds 0, 1, ...;
    ``catch_rate_on_episodes``, the figure to compare them with): a floor for every attack of the
    suite and for the learned adversary, up to actions PGD fails to find.
    """
    from envs.catch import CatchEnv

    env = CatchEnv(**agent.spec["env"]["kwargs"])
    rows, cols = env.rows, env.columns
    states = [(r, c, p) for r in range(rows - 1) for c in range(cols) for p in range(cols)]
    frames = []
    for r, c, p in states:
        env._ball[:], env._paddle = (r, c), p
        frames.append(env._obs())
    x0 = torch.as_tensor(np.stack(frames), dtype=torch.float32)
    with torch.no_grad():
        clean = agent.logits(x0).argmax(-1)
    threat = ThreatModel.for_agent(agent, eps)
    lo, hi = threat.linf_box(x0)
    forceable = torch.zeros(len(states), 3, dtype=torch.bool)
    forceable[torch.arange(len(states)), clean] = True
    gen = torch.Generator().manual_seed(0)
    for a in range(3):
        for restart in range(restarts):
            x = x0.clone() if restart == 0 else lo + (hi - lo) * torch.rand(x0.shape, generator=gen)
            for it in range(steps):
                x.requires_grad_(True)
                z = agent.logits(x)
                others = z.clone()
                others[:, a] = -torch.inf
                (g,) = torch.autograd.grad((z[:, a] - others.max(-1).values).sum(), x)
                alpha = (2.5 if it < 0.75 * steps else 0.5) * eps / (0.25 * steps)  # coarse, then fine
                with torch.no_grad():
                    x = torch.clamp(x + alpha * threat.scale * g.sign(), lo, hi)
            threat.check(x, x0, "planning")
            with torch.no_grad():
                forceable[:, a] |= agent.logits(x).argmax(-1) == a
    index = {s: i for i, s in enumerate(states)}
    value: dict[tuple[int, int, int], int] = {}  # 1 if the ball is caught under the best attack
    for r in range(rows - 2, -1, -1):
        for c in range(cols):
            for p in range(cols):
                outcomes = []
                for a in np.flatnonzero(forceable[index[(r, c, p)]].numpy()):
                    q = int(np.clip(p + a - 1, 0, cols - 1))
                    outcomes.append(int(q == c) if r + 1 == rows - 1 else value[(r + 1, c, q)])
                value[(r, c, p)] = min(outcomes)
    columns = []
    for j in range(episodes):  # the ball's column in evaluation episode j (reset with seed j)
        env.reset(seed=j)
        columns.append(int(env._ball[1]))
    return {
        "eps_255": round(eps * 255),
        "catch_rate": float(np.mean([value[(0, c, cols // 2)] for c in range(cols)])),
        "catch_rate_on_episodes": float(np.mean([value[(0, c, cols // 2)] for c in columns])),
        "states_with_a_forceable_other_action": float((forceable.sum(-1) > 1).float().mean()),
        "pgd": {"steps": steps, "restarts": restarts, "objective": "margin of each action"},
    }


def catch_rate(mean_return: float) -> float:
    return (mean_return + 1.0) / 2.0  # Catch returns +1 or -1 per episode


def main() -> None:
    torch.set_num_threads(1)
    out: dict = {}
    cp_path = trained("ppo", "CartPole-v1")
    cp = rllab.load(cp_path)
    card = evaluate(cp, attacks=None, eps=[0.5], episodes=20, seed=0, progress=False)
    clean = card["clean"]["mean_return"]
    # The learned adversary (PA-AD) and the planning attack are not in --attack all (they take
    # minutes); here they are, on the same 20 episodes.
    planner = PlanningAttack()
    extra = evaluate(
        cp,
        attacks=[LearnedAttack(adv_steps=LEARNED_STEPS["cartpole"]), planner],
        eps=[0.5],
        episodes=20,
        seed=0,
        progress=False,
    )
    card["results"].update({n: r for n, r in extra["results"].items() if n != "noise"})
    card["attacks"].update(extra["attacks"])
    write_report(card, cp_path / "attacks" / "acceptance")
    rows = {n: r["0.5"] for n, r in card["results"].items()}
    strongest = min((n for n in rows if n != "noise"), key=lambda n: rows[n]["mean_return"])
    sur = next(n for n in rows if n.startswith("surrogate"))
    out["cartpole"] = {
        "clean": clean,
        "noise": rows["noise"]["mean_return"],
        "strongest_attack": strongest,
        "strongest_return": rows[strongest]["mean_return"],
        "strongest_fraction_of_clean": rows[strongest]["mean_return"] / clean,
        "noise_fraction_of_clean": rows["noise"]["mean_return"] / clean,
        "passed": rows[strongest]["mean_return"] <= 0.2 * clean and rows["noise"]["mean_return"] >= 0.9 * clean,
        "all": {n: r["mean_return"] for n, r in rows.items()},
    }
    # how far the per-step attacks are from an attacker that plans whole episodes
    plan = rows[planner.label]
    out["cartpole"]["planning"] = {
        "settings": card["attacks"][planner.label],
        "best_plan_mean": plan["mean_return"],
        "best_steady_push_mean": plan["mean_return"] + plan["gain_over_steady_push"],
        "returns": plan["returns"],
    }
    settings = card["attacks"][sur]
    out["surrogate"] = {
        "queries": settings["queries_used"],
        "heldout_agreement": settings["heldout_agreement"],
        "transfer_rate": rows[sur]["transfer_rate"],
        "return": rows[sur]["mean_return"],
        "passed": settings["queries_used"] <= 20_000 and settings["heldout_agreement"] >= 0.9,
    }

    catch_path = trained("ppo", "Catch-v0")
    catch = rllab.load(catch_path)
    grid = [k / 255 for k in (1, 2, 4, 8, 16, 32, 64)]  # 64/255 beyond the grid, to locate the break
    card = evaluate(catch, attacks=None, eps=grid, episodes=100, seed=0, progress=False)
    learned = evaluate(
        catch,
        attacks=[LearnedAttack(adv_steps=LEARNED_STEPS["catch"]), PlanningAttack()],
        eps=[32 / 255],
        episodes=100,
        seed=0,
        progress=False,
    )
    write_report(card, catch_path / "attacks" / "acceptance")
    write_report(learned, catch_path / "attacks" / "acceptance-32")  # learned and planning, one eps: own report
    card["results"].update({n: r for n, r in learned["results"].items() if n != "noise"})
    clean_rate = catch_rate(card["clean"]["mean_return"])
    table = []
    breaking = None
    for e in grid:
        k = f"{e:g}"
        attacked = {n: catch_rate(r[k]["mean_return"]) for n, r in card["results"].items() if n != "noise" and k in r}
        low = min(attacked.values())
        name = ", ".join(n for n, v in attacked.items() if v == low and n.split(":")[0] in ("learned", "plan-cem"))
        name = name or min(attacked, key=attacked.get)  # a tie of suite attacks: the first of them
        noise = catch_rate(card["results"]["noise"][k]["mean_return"])
        plan = catch_planning_attack(catch, e, episodes=100)
        table.append(
            {
                "eps_255": round(e * 255),
                "strongest": name,
                "catch_rate": low,
                "noise": noise,
                "planning": plan["catch_rate_on_episodes"],
                "planning_uniform": plan["catch_rate"],
                "forceable_states": plan["states_with_a_forceable_other_action"],
            }
        )
        if breaking is None and low < 0.2:
            breaking = {"eps_255": round(e * 255), "attack": name, "catch_rate": low, "noise": noise}
    out["catch"] = {
        "clean_catch_rate": clean_rate,
        "grid": table,
        "breaking_budget": breaking,
        "passed": breaking is not None and breaking["eps_255"] <= 32 and breaking["noise"] >= 0.9 * clean_rate,
    }
    out["seed_spread"] = {
        "cartpole": seed_spread("CartPole-v1", [0.5, 1.0], 20, lambda r: r),
        "catch": seed_spread("Catch-v0", [32 / 255, 64 / 255], 100, catch_rate, planning=True),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "attack_acceptance.json").write_text(json.dumps(out, indent=2) + "\n")
    c, s, k = out["cartpole"], out["surrogate"], out["catch"]
    lines = [
        "# Attack acceptance (PPO agents with the shipped defaults, seed 0)",
        "",
        "| check | measured | goal | passed |",
        "|---|---|---|---|",
        f"| CartPole strongest at 0.5 std | {c['strongest_attack']}: {c['strongest_return']:.1f} "
        f"({c['strongest_fraction_of_clean']:.0%} of clean {c['clean']:.0f}) | <= 20% | "
        f"{'yes' if c['strongest_fraction_of_clean'] <= 0.2 else 'NO'} |",
        f"| CartPole noise at 0.5 std | {c['noise']:.1f} ({c['noise_fraction_of_clean']:.0%}) | >= 90% | "
        f"{'yes' if c['noise_fraction_of_clean'] >= 0.9 else 'NO'} |",
        f"| Surrogate | {s['queries']} queries, agreement {s['heldout_agreement']:.3f}, transfer rate "
        f"{s['transfer_rate']:.3f}, return {s['return']:.1f} | <= 20k queries, >= 0.90 | "
        f"{'yes' if s['passed'] else 'NO'} |",
    ]
    if k["breaking_budget"]:
        b = k["breaking_budget"]
        lines.append(
            f"| Catch breaking budget | {b['eps_255']}/255 ({b['attack']}: catch rate {b['catch_rate']:.2f}, "
            f"noise {b['noise']:.2f}, clean {k['clean_catch_rate']:.2f}) | <= 32/255, noise >= 90% | "
            f"{'yes' if k['passed'] else 'NO'} |"
        )
    else:
        lines.append("| Catch breaking budget | not reached up to 64/255 | <= 32/255 | NO |")
    lines += [
        "",
        MACHINE_NOTE,
        "",
        "Catch grid (catch rate of the strongest attack of the suite, or at 32/255 also of the learned adversary "
        "and of `--attack plan`, the searched whole-episode plans; of noise; and of the exhaustive planning "
        "optimum of `catch_planning_attack`: an attacker that knows the dynamics and, in each of the 225 states, "
        "forces any action PGD-200 x 5 restarts can force, on the same 100 episodes: no attack within the budget "
        "does better on them, up to actions PGD misses):",
        "",
        "| eps | strongest attack | catch rate | noise | planning optimum | states where another action is forceable |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['eps_255']}/255 | {r['strongest']} | {r['catch_rate']:.2f} | {r['noise']:.2f} | {r['planning']:.2f} | "
        f"{r['forceable_states']:.2f} |"
        for r in table
    ]
    lines += [
        "",
        "CartPole at 0.5 std, every attack (mean return over 20 episodes):",
        "",
        "| attack | return |",
        "|---|---|",
    ] + [f"| {n} | {v:.1f} |" for n, v in c["all"].items()]
    q = c["planning"]
    lines += [
        "",
        "Planning attack on CartPole at 0.5 std (`--attack plan`, the same 20 episodes): an "
        "attacker that knows the dynamics searches whole-episode plans of target actions (cross-entropy method, "
        f"{q['settings']['population']} plans x {q['settings']['rounds']} rounds per episode, each step forced "
        f"with PGD-10 where it can be). Best plan found: mean return {q['best_plan_mean']:.1f} "
        f"({q['best_plan_mean'] / c['clean']:.0%} of clean); best steady push on the same episodes: "
        f"{q['best_steady_push_mean']:.1f} ({q['best_steady_push_mean'] / c['clean']:.0%}). Planning ahead gains "
        f"{1 - q['best_plan_mean'] / q['best_steady_push_mean']:.0%} over the steady push on this agent.",
    ]
    sp = out["seed_spread"]
    lines += [
        "",
        "Seeds 0, 1, 2 (same defaults; FGSM and PGD-10 with every objective; strongest attack per eps):",
        "",
        "| agent | clean | 0.5 std | 1.0 std |",
        "|---|---|---|---|",
    ]
    for r in sp["cartpole"]:
        cells = [f"{v['score']:.1f} ({v['score'] / r['clean']:.0%}, {v['strongest']})" for v in r["eps"].values()]
        lines.append(f"| CartPole seed {r['seed']} | {r['clean']:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "| agent | clean catch rate | 32/255 | 64/255 |", "|---|---|---|---|"]
    for r in sp["catch"]:
        cells = [f"{v['score']:.2f} ({v['strongest']}); planning {v['planning']:.2f}" for v in r["eps"].values()]
        lines.append(f"| Catch seed {r['seed']} | {r['clean']:.2f} | " + " | ".join(cells) + " |")
    (RESULTS / "attack_acceptance.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
