"""SA-PPO's Hopper table (issue 16, must-show 1): vanilla PPO, the lab's SA-PPO (``--defense sa-reg``) and ATLA (at the
lab's default cadence and at ATLA's own 1:1 alternation, ``atla-1to1``) on Hopper-v5 with the shipped defaults (the
PPO paper's MuJoCo settings, observation and reward normalisation), 3 seeds each, attacked at eps 0.075 in
observation-std units (SA-PPO's normalised-state budget) by Random (the card's noise row), Critic, MAD, Robust
Sarsa, RS+MAD and the learned (PA-AD) adversary, 50 episodes per row; the median agent of each method (by its
strongest-attack return, as SA-PPO's README reports medians) beside the paper's numbers.

Everything is resumable across sessions, one step at a time: each agent is trained, then attacked (its row
is in before the next agent trains), then the table is written:

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/hopper_sappo.py --minutes 150   # work for 2.5 h, then stop

- training: ``rllab train ... --out bench/agents/hopper/<method>-s<seed>``; an unfinished one is continued with
  ``--resume`` (its resume state is in the checkpoint folder, committed with it); at the deadline the running
  training is sent Ctrl-C, which saves a checkpoint to resume from;
- attacks: ``rllab attack`` per finished agent into ``runs/bench-hopper/<agent>/`` (report and card), the card
  copied to ``bench/agents/hopper/<agent>/attack-card.json`` and committed (rerun only when missing);
- the Robust Sarsa scan (``attack-rs-scan.json``): RS_GRID's settings screened on other episodes, the best one's
  RS and RS+MAD rows on the table's; and, for a card whose learned adversary trained on raw states (before
  adversaries normalised), the learned row again (``attack-learned.json``); both committed beside the agent;
- with ``--learned-seeds N``: the learned row again with the strongest of N adversaries (``rllab attack
  --adv-seeds N``, picked on the adversaries' own evaluations), ``attack-learned-bestN.json`` beside the agent;
- the table, from whatever is finished: bench/results/hopper_sappo.{md,json}, listing what is missing.

``--steps 4096 --episodes 2 --adv-steps 2048 --agents runs/bench-hopper-smoke`` runs the whole pipeline at
smoke-test budgets (a few minutes) without touching bench/agents.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
RLLAB = [sys.executable, "-m", "rllab.cli"]
EPS = 0.075
#: the lab's command line for each method; SA-PPO with the PGD (SGLD-like) solver, ATLA with its learned adversary
METHODS = {
    "ppo": [],
    "sa-ppo": ["--defense", "sa-reg", "--eps", str(EPS)],
    "atla": ["--defense", "atla", "--eps", str(EPS)],
    # ATLA's own cadence (ATLA_robust_RL's Hopper config: adv_policy_steps = adv_adversary_steps = 1, t = 2048):
    # the adversary trains one rollout of 2048 steps after every victim update, 8x the default's adversary work
    "atla-1to1": ["--defense", "atla", "--eps", str(EPS), "--defense-adv-every", "1", "--defense-adv-steps", "2048"],
}
DEFAULT_SEEDS = (0, 1, 2)
CARD = "attack-card.json"  # the attack card, committed beside each checkpoint
LEARNED = "attack-learned.json"  # the learned adversary rerun, for cards whose adversary did not normalise
SCAN = "attack-rs-scan.json"  # the Robust Sarsa scan: its screening and the best setting's 50-episode rows
#: SA-PPO's scan_attacks.sh runs RS over sarsa-eps {0.02, 0.05, 0.1, 0.15, 0.2, 0.3} x sarsa-reg {0.1, 0.3, 1, 3, 10}
#: and reports the lowest return; here a 3 x 3 subset of that grid, screened on other episodes (SCREEN_SEED, 10
#: each), and only the best setting is run on the table's 50 episodes (no minimum over rows of the same episodes)
RS_GRID = [(e, r) for e in (0.02, 0.1, 0.3) for r in (0.1, 1.0, 10.0)]
SCREEN_SEED, SCREEN_EPISODES = 1000, 10
#: SA-PPO's README, Hopper, median agents, eps 0.075: (natural return, return under the strongest attack)
#: and ATLA_robust_RL's README, Hopper-v2: its strongest ATLA (LSTM policy + SA-Reg); the lab's is the MLP ATLA
PAPER = {
    "ppo": (3167.6, 733.0),
    "sa-ppo (convex)": (3704.1, 1224.2),
    "sa-ppo (sgld)": (3523.1, 1403.3),
    "atla-ppo (lstm + sa-reg)": (3291.2, 1771.9),
}


def finished_steps(folder: Path) -> int:
    """Training steps a checkpoint folder holds (0 when there is none)."""
    try:
        return int(json.loads((folder / "agent.json").read_text())["training"]["timesteps"])
    except (OSError, KeyError, ValueError, TypeError):
        return 0


def run(argv: list[str], deadline: float, log: Path) -> str:
    """Run one rllab command until it ends or the deadline (then Ctrl-C: a training saves a checkpoint);
    'done', 'stopped' or 'failed: <last line>'."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"\n$ rllab {' '.join(argv)}\n")
        out.flush()
        # Ctrl-C restored in the child: a shell's background job (nohup ... &) starts with SIGINT ignored
        restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
        proc = subprocess.Popen(RLLAB + argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, preexec_fn=restore)
        while proc.poll() is None:
            if time.time() > deadline:
                proc.send_signal(signal.SIGINT)
                proc.wait()
                return "stopped"
            time.sleep(2)
    if proc.returncode == 0:
        return "done"
    tail = [ln for ln in log.read_text().splitlines() if ln.strip()][-1:]
    return f"failed: {tail[0] if tail else proc.returncode}"


def train_one(args: argparse.Namespace, folder: Path, method: str, seed: int, deadline: float) -> None:
    """Train (or continue) one agent that has fewer than ``--steps`` steps."""
    if finished_steps(folder) >= args.steps or time.time() > deadline:
        return
    resume = ["--resume"] if (folder / "resume").is_dir() else []
    argv = ["train", "--algo", "ppo", "--env", "Hopper-v5", "--seed", str(seed), "--steps", str(args.steps)]
    argv += [*METHODS[method], "--out", str(folder), "--no-progress", "--threads", "1", *resume]
    print(f"[hopper] train {folder.name} ({'resumed' if resume else 'from scratch'})", flush=True)
    print(f"[hopper]   {run(argv, deadline, args.work / 'logs' / f'train-{folder.name}.log')}", flush=True)


def card_of(args: argparse.Namespace, folder: Path) -> Path:
    """The agent's attack card: the committed copy beside its checkpoint, else the one in --work."""
    kept = folder / CARD
    return kept if kept.is_file() else args.work / folder.name / "results.json"


def attack_one(args: argparse.Namespace, folder: Path, deadline: float) -> None:
    """Attack one fully trained agent that has no card yet; the card is kept beside the checkpoint."""
    card = args.work / folder.name / "results.json"
    if card_of(args, folder).is_file():
        if card.is_file() and not (folder / CARD).is_file() and args.write:  # attacked by a --no-write instance
            shutil.copyfile(card, folder / CARD)
        return
    if finished_steps(folder) < args.steps or time.time() > deadline:
        return
    argv = ["attack", str(folder), "--attack", "continuous,learned", "--eps", str(EPS)]
    argv += ["--episodes", str(args.episodes), "--adv-steps", str(args.adv_steps), "--threads", "1"]
    argv += ["--out", str(card.parent), "--no-progress"]
    print(f"[hopper] attack {folder.name}", flush=True)
    print(f"[hopper]   {run(argv, deadline, args.work / 'logs' / f'attack-{folder.name}.log')}", flush=True)
    if card.is_file() and args.write:  # committed with the agent: the table survives a fresh clone
        shutil.copyfile(card, folder / CARD)


def normalised_adversary(card: dict) -> bool:
    """Whether a card's learned adversary normalised its observations and rewards (the lab's default since
    its adversaries follow the victim's normalisation; older ones, trained on raw states, are named without -norm)."""
    trained = card.get("attacks", {}).get("learned", {}).get("trained_adversaries") or {}
    return bool(trained) and all(str(p).endswith("-norm") for p in trained.values())


def learned_one(args: argparse.Namespace, folder: Path, deadline: float) -> None:
    """An agent whose card's learned adversary trained on raw states gets the learned row again, with the
    normalised adversary (the older row is kept in the table, labelled)."""
    kept = folder / LEARNED
    if kept.is_file() or not card_of(args, folder).is_file() or time.time() > deadline:
        return
    if normalised_adversary(json.loads(card_of(args, folder).read_text())):
        return
    learned_rows(args, folder, deadline, kept, "learned", [], "learned adversary (normalised)")


def learned_rows(
    args: argparse.Namespace, folder: Path, deadline: float, kept: Path, name: str, extra: list[str], what: str
) -> None:
    """``rllab attack --attack learned`` (and ``extra``) on the table's episodes into ``--work/<agent>/<name>``
    (reused when there), its card copied to ``kept``."""
    out = args.work / folder.name / name
    if not (out / "results.json").is_file():
        argv = ["attack", str(folder), "--attack", "learned", "--eps", str(EPS), "--adv-steps", str(args.adv_steps)]
        argv += [*extra, "--episodes", str(args.episodes), "--threads", "1", "--no-progress", "--out", str(out)]
        print(f"[hopper] {what} {folder.name}", flush=True)
        status = run(argv, deadline, args.work / "logs" / f"{name}-{folder.name}.log")
        print(f"[hopper]   {status}", flush=True)
        if status != "done":
            return
    if args.write:
        shutil.copyfile(out / "results.json", kept)


def best_of_one(args: argparse.Namespace, folder: Path, deadline: float) -> None:
    """The learned row again with the strongest of ``--learned-seeds`` adversaries (``rllab attack --adv-seeds``:
    picked on each adversary's own closing evaluation, reported on the table's episodes); the seed-0 adversary
    is the cached one of the base card."""
    kept = folder / f"attack-learned-best{args.learned_seeds}.json"
    if args.learned_seeds < 2 or kept.is_file() or not card_of(args, folder).is_file() or time.time() > deadline:
        return
    n = args.learned_seeds
    learned_rows(args, folder, deadline, kept, f"learned-best{n}", ["--adv-seeds", str(n)], f"learned, best of {n}:")


def scan_one(args: argparse.Namespace, folder: Path, deadline: float) -> None:
    """The RS scan of one attacked agent (resumable setting by setting): screen every RS_GRID setting on
    SCREEN_EPISODES episodes of other seeds, then RS and RS+MAD with the best one on the table's episodes."""
    kept = folder / SCAN
    if kept.is_file() or not card_of(args, folder).is_file():
        return
    work = args.work / folder.name / "rs-scan"
    common = ["--eps", str(EPS), "--rs-seed", "0", "--threads", "1", "--no-progress"]
    screen = {}
    for e, r in RS_GRID:
        out = work / f"eps{e:g}-reg{r:g}"
        if not (out / "results.json").is_file():
            if time.time() > deadline:
                return
            argv = ["attack", str(folder), "--attack", "rs", "--rs-eps", str(e), "--rs-reg", str(r), *common]
            argv += ["--episodes", str(min(SCREEN_EPISODES, args.episodes)), "--seed", str(SCREEN_SEED)]
            print(f"[hopper] rs scan {folder.name} eps {e:g} reg {r:g}", flush=True)
            status = run([*argv, "--out", str(out)], deadline, args.work / "logs" / f"scan-{folder.name}.log")
            if status != "done":
                print(f"[hopper]   {status}", flush=True)
                return
        screen[f"{e:g},{r:g}"] = json.loads((out / "results.json").read_text())["results"]["rs"][f"{EPS:g}"][
            "mean_return"
        ]
    best = min(screen, key=screen.get)
    e, r = best.split(",")
    out = work / "best"
    if not (out / "results.json").is_file():
        if time.time() > deadline:
            return
        argv = ["attack", str(folder), "--attack", "rs,rs+mad", "--rs-eps", e, "--rs-reg", r, *common]
        argv += ["--episodes", str(args.episodes), "--seed", "0", "--out", str(out)]
        print(f"[hopper] rs scan {folder.name}: best eps {e} reg {r}, on the table's episodes", flush=True)
        status = run(argv, deadline, args.work / "logs" / f"scan-{folder.name}.log")
        print(f"[hopper]   {status}", flush=True)
        if status != "done":
            return
    card = json.loads((out / "results.json").read_text())
    result = {
        "grid": [list(g) for g in RS_GRID],
        "screen": {"seed": SCREEN_SEED, "episodes": min(SCREEN_EPISODES, args.episodes), "mean_return": screen},
        "best": {"rs_eps": float(e), "rs_reg": float(r)},
        "card": card,
    }
    if args.write:
        kept.write_text(json.dumps(result, indent=2) + "\n")


def training_note(folder: Path) -> str:
    """What sets an agent's training apart from the method's current recipe (ATLA before its adversary normalised)."""
    try:
        defense = json.loads((folder / "agent.json").read_text())["training"]["config"].get("defense") or {}
    except (OSError, KeyError, ValueError, TypeError):
        return ""
    if defense.get("name") != "atla":
        return ""
    notes = []
    if not defense.get("adversary_normalized"):
        notes.append("ATLA's adversary trained on raw states: before it normalised")
    if defense.get("unit") == "random-action obs std":
        notes.append("budget in random-action obs std: 0.15-1.9x the attacks' unit per feature")
    return "; ".join(notes)


def agent_row(card: dict, scan: dict | None = None, learned: dict | None = None, best_of: dict | None = None) -> dict:
    """Clean, every attack's mean return with its CI at EPS (the RS scan's rows, the rerun learned adversary and
    the best-of-N learned adversaries added), and the strongest attack."""
    key = next(iter(next(iter(card["results"].values()))))
    rows = {name: by_eps[key] for name, by_eps in card["results"].items()}
    if "learned" in rows and not normalised_adversary(card):
        rows["learned (adversary on raw states)"] = rows.pop("learned")
    if learned is not None:
        rows["learned"] = learned["results"]["learned"][key]
    if scan is not None:
        best = scan["best"]
        tag = f"scan best: rs-eps {best['rs_eps']:g}, rs-reg {best['rs_reg']:g}"
        for name in ("rs", "rs+mad"):
            rows[f"{name} ({tag})"] = scan["card"]["results"][name][key]
    for n, other in sorted((best_of or {}).items()):
        rows[f"learned (best of {n} adversaries)"] = other["results"]["learned"][key]
    strongest = min(rows, key=lambda n: rows[n]["mean_return"])
    return {
        "clean": card["clean"]["mean_return"],
        "clean_ci": card["clean"].get("ci95_return"),
        "attacks": {n: {"mean": r["mean_return"], "ci95": r.get("ci95_return")} for n, r in rows.items()},
        "strongest": strongest,
        "strongest_return": rows[strongest]["mean_return"],
        "random": rows.get("noise", {}).get("mean_return"),
    }


def ci(value: float, interval: list | None) -> str:
    """``v [lo, hi]``."""
    return f"{value:.0f}" + (f" [{interval[0]:.0f}, {interval[1]:.0f}]" if interval else "")


def goal_checks(per: dict[str, dict[int, dict]], medians: dict[str, int]) -> list[dict]:
    """The issue's goals on the median agents, for the methods that have one."""
    checks = []
    if "ppo" in medians:
        v = per["ppo"][medians["ppo"]]
        worst = v["strongest_return"]
        checks += [
            {"goal": "vanilla PPO clean >= 2000", "measured": f"{v['clean']:.0f}", "passed": v["clean"] >= 2000},
            {
                "goal": "vanilla strongest attack <= 35% of clean",
                "measured": f"{v['strongest']} {worst:.0f} ({worst / v['clean']:.0%})",
                "passed": worst <= 0.35 * v["clean"],
            },
            {
                "goal": "vanilla Random >= 80% of clean",
                "measured": f"{v['random']:.0f} ({v['random'] / v['clean']:.0%})",
                "passed": v["random"] >= 0.8 * v["clean"],
            },
        ]
        if "sa-ppo" in medians:
            sa = per["sa-ppo"][medians["sa-ppo"]]
            checks += [
                {
                    "goal": "SA-PPO strongest attack >= 1.5x vanilla's",
                    "measured": f"{sa['strongest_return']:.0f} vs {worst:.0f} ({sa['strongest_return'] / worst:.2f}x)",
                    "passed": sa["strongest_return"] >= 1.5 * worst,
                },
                {
                    "goal": "SA-PPO clean >= 80% of vanilla's",
                    "measured": f"{sa['clean']:.0f} vs {v['clean']:.0f} ({sa['clean'] / v['clean']:.0%})",
                    "passed": sa["clean"] >= 0.8 * v["clean"],
                },
            ]
    return checks


def table(args: argparse.Namespace, agents: Path) -> dict:
    """The figures of whatever is finished, with the missing work listed; written to bench/results."""
    per: dict[str, dict[int, dict]] = {}
    missing = []
    # every method and seed, whichever this instance worked on: instances side by side write one table
    methods = list(METHODS)

    def seeds_of(method: str) -> list[int]:
        """The default seeds, this run's, and any other with a checkpoint folder (finished or not)."""
        found = {p.name.removeprefix(f"{method}-s") for p in agents.glob(f"{method}-s*")}
        return sorted(set(args.seeds) | set(DEFAULT_SEEDS) | {int(s) for s in found if s.isdigit()})

    for method in methods:
        for seed in seeds_of(method):
            folder = agents / f"{method}-s{seed}"
            card = card_of(args, folder)
            if card.is_file():
                scan = json.loads((folder / SCAN).read_text()) if (folder / SCAN).is_file() else None
                learned = json.loads((folder / LEARNED).read_text()) if (folder / LEARNED).is_file() else None
                base = json.loads(card.read_text())
                if scan is None:
                    missing.append(f"{folder.name}: attacked, the Robust Sarsa scan not done yet")
                if learned is None and not normalised_adversary(base):
                    missing.append(f"{folder.name}: the learned adversary with normalisation not run yet")
                row = {"steps": finished_steps(folder), "note": training_note(folder)}
                best = {
                    int(f.stem.removeprefix("attack-learned-best")): json.loads(f.read_text())
                    for f in folder.glob("attack-learned-best*.json")
                }
                per.setdefault(method, {})[seed] = row | agent_row(base, scan, learned, best)
            else:
                have = finished_steps(folder)
                missing.append(
                    f"{folder.name}: "
                    + (
                        f"trained {have:,} of {args.steps:,} steps"
                        if have < args.steps
                        else "trained, not attacked yet"
                    )
                )
    medians, pools = {}, {}
    for method, seeds in per.items():
        # the median of the agents trained with the method's current recipe, where there are any
        pool = [s for s in seeds if not seeds[s]["note"]] or list(seeds)
        order = sorted(pool, key=lambda s: seeds[s]["strongest_return"])
        medians[method], pools[method] = order[(len(order) - 1) // 2], order
    result = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "eps": EPS,
        "unit": "obs std (SA-PPO's normalised-state budget)",
        "steps": args.steps,
        "episodes": args.episodes,
        "adv_steps": args.adv_steps,
        "agents": {m: {str(s): r for s, r in seeds.items()} for m, seeds in per.items()},
        "median_seed": medians,
        "median_of": pools,
        "paper": PAPER,
        "missing": missing,
    }
    lines = [
        "# Hopper-v5: vanilla PPO, SA-PPO and ATLA under SA-PPO's attacks (eps 0.075, obs std)",
        "",
        f"{result['date']}; training {args.steps:,} steps per agent (shipped Hopper-v5 defaults: the PPO paper's "
        f"MuJoCo settings with RL Zoo's observation and reward normalisation), {args.episodes} episodes per attack "
        f"row. Reproduce/resume: `OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/hopper_sappo.py --minutes M`; "
        "agents in bench/agents/hopper/.",
        "",
        f"The attacks, every one PGD-10 unless said: Random (`noise`), Critic, MAD; Robust Sarsa (`rs`) and RS+MAD "
        f"with SA-PPO's default Q setting, and again with the best of a scan over rs-eps x rs-reg "
        f"{sorted({e for e, _ in RS_GRID})} x {sorted({r for _, r in RS_GRID})} (a 3 x 3 subset of SA-PPO's "
        f"scan_attacks.sh grid), chosen on {SCREEN_EPISODES} screening episodes of other seeds ({SCREEN_SEED}+) and "
        f"reported on the table's {args.episodes}; `learned`: the PA-AD adversary, PPO {args.adv_steps:,} steps "
        "normalising its states and rewards as the victims' training did (rows labelled 'adversary on raw states' "
        "are the earlier, unnormalised adversary of the same budget, kept). The strongest attack is the lowest "
        "of these rows. The median agent (by strongest-attack return; the lower of two) is taken over the agents "
        "trained with the method's current recipe where there are any; an agent trained otherwise says how in "
        "the table of every agent.",
        "",
        "| method | median agent | clean [95% CI] | strongest attack | its return [95% CI] | Random | "
        "paper: clean / strongest |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    paper = {
        "ppo": "3167.6 / 733",
        "sa-ppo": "convex 3704.1 / 1224.2; SGLD 3523.1 / 1403.3",
        "atla": "ATLA-PPO with LSTM + SA-Reg (ATLA's README): 3291.2 / 1771.9",
        "atla-1to1": "as atla",
    }
    for method in methods:
        if method not in medians:
            lines.append(f"| {method} | not finished | | | | | {paper.get(method, '-')} |")
            continue
        s = medians[method]
        r = per[method][s]
        worst = r["attacks"][r["strongest"]]
        of = "" if len(pools[method]) == len(per[method]) else f"; median of the {len(pools[method])} of today's recipe"
        lines.append(
            f"| {method} | s{s} ({len(per[method])} of {len(seeds_of(method))} seeds done{of}) | "
            f"{ci(r['clean'], r['clean_ci'])}"
            f" | {r['strongest']} | {ci(worst['mean'], worst['ci95'])} ({worst['mean'] / r['clean']:.0%}) | "
            f"{r['random']:.0f} ({r['random'] / r['clean']:.0%}) | {paper.get(method, '-')} |"
        )
    checks = goal_checks(per, medians)
    result["checks"] = checks
    if checks:
        lines += ["", "| goal (median agents) | measured | passed |", "| --- | --- | --- |"]
        lines += [f"| {c['goal']} | {c['measured']} | {'yes' if c['passed'] else 'NO'} |" for c in checks]
    lines += [
        "",
        "## Every agent",
        "",
        "| agent | steps | clean | " + "attack: mean [95% CI] |",
        "| --- | --- | --- | --- |",
    ]
    for method, seeds in per.items():
        for s, r in sorted(seeds.items()):
            rows = ", ".join(f"{n} {ci(a['mean'], a['ci95'])}" for n, a in r["attacks"].items())
            name = f"{method}-s{s}" + (f" ({r['note']})" if r.get("note") else "")
            lines.append(f"| {name} | {r['steps']:,} | {ci(r['clean'], r['clean_ci'])} | {rows} |")
    if missing:
        lines += ["", "## Not finished yet", "", *[f"- {m}" for m in missing]]
    if args.write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "hopper_sappo.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "hopper_sappo.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


def main() -> None:
    """Train, attack and tabulate, each step resumable, until done or ``--minutes`` have passed."""
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--steps", type=int, default=1_000_000, help="training steps per agent")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--episodes", type=int, default=50, help="episodes per attack row")
    p.add_argument("--adv-steps", type=int, default=200_000, help="PPO steps of the learned adversary")
    p.add_argument("--minutes", type=float, default=24 * 60, help="stop starting work after this long")
    p.add_argument("--agents", default="bench/agents/hopper", help="checkpoint folders")
    p.add_argument("--work", default="runs/bench-hopper", help="attack cards and logs")
    p.add_argument("--no-scan", dest="scan", action="store_false", help="skip the Robust Sarsa scan")
    p.add_argument(
        "--no-learned", dest="learned", action="store_false", help="skip rerunning raw-state learned adversaries"
    )
    p.add_argument(
        "--learned-seeds",
        type=int,
        default=1,
        help="N > 1: also the learned row with the strongest of N adversaries (rllab attack --adv-seeds N)",
    )
    p.add_argument("--no-write", dest="write", action="store_false", help="print the table, write no results")
    args = p.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.methods = [m for m in args.methods.split(",") if m]
    if set(args.methods) - set(METHODS):
        p.error(f"--methods: choose from {', '.join(METHODS)}")
    args.work = ROOT / args.work
    agents = ROOT / args.agents
    if args.agents != "bench/agents/hopper":
        args.write = False  # smoke runs never overwrite the committed figures
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    deadline = time.time() + 60 * args.minutes
    for method in args.methods:  # each agent attacked as soon as it is trained: its row comes first
        for seed in args.seeds:
            folder = agents / f"{method}-s{seed}"
            train_one(args, folder, method, seed, deadline)
            attack_one(args, folder, deadline)
            if args.scan:
                scan_one(args, folder, deadline)
            if args.learned:
                learned_one(args, folder, deadline)
            best_of_one(args, folder, deadline)
    table(args, agents)


if __name__ == "__main__":
    main()
