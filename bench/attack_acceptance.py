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
from robustness.evaluate import evaluate, standard_suite
from robustness.learned_adversary import LearnedAttackAdapter
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


def sequence_search_attack(
    agent, eps: float, episodes: int = 10, population: int = 64, iters: int = 30, elites: int = 8
) -> dict:
    """The shortest episodes a planning attacker finds on CartPole, by searching over forced-action plans.

    CartPole is deterministic once reset with a seed, so an attacker that knows the dynamics can
    plan a whole episode: a sequence of target actions, one per step, each pushed for with PGD-10
    (``PGD.towards``, no random start, so a plan always plays out the same way; where the target
    cannot be forced within eps the agent takes its own action). For each evaluation episode
    (reset seed j, as in ``evaluate``) the cross-entropy method searches the plans: ``population``
    plans per round drawn from per-step action frequencies, the ``elites`` shortest episodes so far
    kept and refitted, ``iters`` rounds, the constant plans (one steady push per action) in the first.
    The result is the best plan found per episode, beside the best steady push: how much an
    attacker that plans ahead gains over the strongest attack of the suite on these episodes.
    """
    threat = ThreatModel.for_agent(agent, eps)
    pgd = PGD("targeted", steps=10, random_start=False)
    n = int(agent.action_space.n)
    envs = [agent.make_env() for _ in range(population)]
    horizon = int(envs[0].spec.max_episode_steps)
    rng = np.random.default_rng(0)

    def play(plans: np.ndarray, seed: int) -> np.ndarray:
        obs = np.stack([env.reset(seed=seed)[0] for env in envs]).astype(np.float32)
        returns = np.zeros(len(plans))
        alive = np.ones(len(plans), dtype=bool)
        for t in range(horizon):
            live = np.flatnonzero(alive)
            if not len(live):
                break
            x = agent.as_tensor(obs[live])
            adv = pgd.towards(agent, x, threat, torch.as_tensor(plans[live, t]))
            threat.check(adv, x, "sequence search")
            for k, i in zip(live, agent.act(adv), strict=True):
                o, r, term, trunc, _ = envs[k].step(i)
                obs[k], returns[k] = o, returns[k] + r
                alive[k] = not (term or trunc)
        return returns

    rows = []
    for seed in range(episodes):
        probs = np.full((horizon, n), 1.0 / n)
        best_plans = np.zeros((0, horizon), dtype=np.int64)
        best_returns = np.zeros(0)
        constant = {}
        for it in range(iters):
            u = rng.random((population - len(best_plans), horizon, 1))
            fresh = (u > probs.cumsum(-1)[None]).sum(-1).clip(max=n - 1)
            if it == 0:
                fresh[:n] = np.arange(n)[:, None]
            returns = play(fresh, seed)
            if it == 0:
                constant = {k: float(returns[k]) for k in range(n)}
            plans = np.concatenate([best_plans, fresh])
            scores = np.concatenate([best_returns, returns])
            order = np.argsort(scores, kind="stable")[:elites]
            best_plans, best_returns = plans[order], scores[order]
            freq = np.stack([(best_plans == a).mean(0) for a in range(n)], -1)
            probs = np.clip(0.7 * freq + 0.3 * probs, 0.02, None)
            probs /= probs.sum(-1, keepdims=True)
        rows.append({"seed": seed, "best_plan": float(best_returns[0]), "steady_push": constant})
    push = {k: float(np.mean([r["steady_push"][k] for r in rows])) for k in range(n)}
    return {
        "eps": eps,
        "episodes": episodes,
        "best_plan_mean": float(np.mean([r["best_plan"] for r in rows])),
        "best_steady_push_mean": min(push.values()),
        "steady_push_mean": push,
        "per_episode": rows,
        "search": {"population": population, "iters": iters, "elites": elites, "pgd": "10 steps, no random start"},
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
    # The learned adversary (PA-AD) is not in --attack all (it trains for minutes); here it is.
    learned = evaluate(
        cp,
        attacks=[LearnedAttackAdapter(adv_steps=LEARNED_STEPS["cartpole"])],
        eps=[0.5],
        episodes=20,
        seed=0,
        progress=False,
    )
    card["results"].update({n: r for n, r in learned["results"].items() if n != "noise"})
    card["attacks"].update(learned["attacks"])
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
    # how far the strongest attack is from an attacker that plans whole episodes (first 10 episodes)
    out["cartpole"]["sequence_search"] = sequence_search_attack(cp, 0.5, episodes=10)
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
        attacks=[LearnedAttackAdapter(adv_steps=LEARNED_STEPS["catch"])],
        eps=[32 / 255],
        episodes=100,
        seed=0,
        progress=False,
    )
    write_report(card, catch_path / "attacks" / "acceptance")
    write_report(learned, catch_path / "attacks" / "acceptance-learned")  # one eps: its own report
    card["results"].update({n: r for n, r in learned["results"].items() if n != "noise"})
    clean_rate = catch_rate(card["clean"]["mean_return"])
    table = []
    breaking = None
    for e in grid:
        k = f"{e:g}"
        attacked = {n: catch_rate(r[k]["mean_return"]) for n, r in card["results"].items() if n != "noise" and k in r}
        name = min(attacked, key=attacked.get)
        noise = catch_rate(card["results"]["noise"][k]["mean_return"])
        plan = catch_planning_attack(catch, e, episodes=100)
        table.append(
            {
                "eps_255": round(e * 255),
                "strongest": name,
                "catch_rate": attacked[name],
                "noise": noise,
                "planning": plan["catch_rate_on_episodes"],
                "planning_uniform": plan["catch_rate"],
                "forceable_states": plan["states_with_a_forceable_other_action"],
            }
        )
        if breaking is None and attacked[name] < 0.2:
            breaking = {"eps_255": round(e * 255), "attack": name, "catch_rate": attacked[name], "noise": noise}
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
        "Catch grid (catch rate of the strongest attack of the suite or the learned adversary, of noise, and of "
        "the exhaustive planning attack of `catch_planning_attack`: an attacker that knows the dynamics and, in "
        "each of the 225 states, forces any action PGD-200 x 5 restarts can force, on the same 100 episodes: no "
        "attack within the budget does better on them, up to actions PGD misses):",
        "",
        "| eps | strongest attack | catch rate | noise | planning attack | states where another action is forceable |",
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
    q = c["sequence_search"]
    lines += [
        "",
        f"Planning attack on CartPole at 0.5 std (`sequence_search_attack`, episodes 0-{q['episodes'] - 1}): an "
        "attacker that knows the dynamics searches whole-episode plans of target actions (cross-entropy method, "
        f"{q['search']['population']} plans x {q['search']['iters']} rounds per episode, each step forced with "
        f"PGD-10 where it can be). Best plan found: mean return {q['best_plan_mean']:.1f} "
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
