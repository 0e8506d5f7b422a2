"""``rllab lab``: the lab's main job — train PPO on CartPole-v1 and Catch-v0, evaluate both, attack both,
and write one summary table."""

from __future__ import annotations

import argparse
import importlib.util
import shutil
from pathlib import Path
from typing import Any

from rllab import training
from rllab.agent import load
from rllab.checkpoint import atomic_write, read_json, read_spec, write_json
from rllab.cli import main
from rllab.cli.evaluate import format_summary
from rllab.cli.options import check_output_folder, episode_count
from rllab.errors import RllabError
from rllab.evaluation import evaluate
from rllab.parsing import format_ci, parse_number, plural, seed_int
from rllab.schema import ResultCard
from rllab.sweep.stats import attack_summary

LAB_ATTACK_EPS = {"CartPole-v1": "0.25,0.5,1", "Catch-v0": "8/255,32/255,64/255"}
LAB_ATTACK_DIR = Path("attacks") / "lab"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``lab``."""
    p = sub.add_parser(
        "lab", help="the lab's main job: train PPO on CartPole-v1 and Catch-v0, evaluate both, attack both (report)"
    )
    p.add_argument("--out", default="runs/lab")
    p.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        help="training and evaluation seed; runs are kept per seed (OUT/ppo-ENV-sSEED) and reused only for it",
    )
    p.add_argument("--episodes", type=episode_count, default=20)
    p.add_argument("--attack-episodes", type=episode_count, default=10, help="episodes per attack and eps")
    p.add_argument("--no-attack", action="store_true", help="train and evaluate only")
    p.add_argument("--fresh", action="store_true", help="retrain even if the runs exist")
    p.set_defaults(func=cmd_lab)


def _finished_run(run: Path, seed: int, fresh: bool) -> bool:
    """Whether ``run`` holds a finished training with ``seed`` (another seed there is an error)."""
    if not (run / "agent.json").exists() or fresh:
        return False
    try:
        record = read_spec(run)["training"]
    except RllabError:
        record = {}
    done = bool(record.get("complete"))
    trained_seed = record.get("config", {}).get("seed")
    if done and trained_seed != seed:
        raise RllabError(
            f"{run} holds a run trained with seed {trained_seed}, not --seed {seed}; move it away or pass --fresh"
        )
    return done


def cmd_lab(args: argparse.Namespace) -> int:
    """Train (or reuse), evaluate and attack both lab agents; print and save the summary table."""
    out = check_output_folder(Path(args.out))
    rows = []
    for env_id in ("CartPole-v1", "Catch-v0"):
        run = out / f"ppo-{env_id}-s{args.seed}"
        if not _finished_run(run, args.seed, args.fresh):
            if run.exists():
                shutil.rmtree(run)
            print(f"[lab] training PPO on {env_id} -> {run}")
            training.train("ppo", env_id, seed=args.seed, out=run)  # looked up here: tests replace it
        else:
            print(f"[lab] reusing the finished run {run} (--fresh retrains)")
        agent = load(run)
        summary = evaluate(agent, episodes=args.episodes, seed=args.seed).summary()
        write_json(run / "eval.json", {"run": str(run), "env": env_id, "algo": "ppo", **summary})
        print(f"[lab] {env_id}:")
        print("  " + format_summary(summary).replace("\n", "\n  "))
        card = None if args.no_attack else _lab_attack(run, LAB_ATTACK_EPS[env_id], args)
        rows.append((env_id, run, summary, card))
    lines = _summary_table(rows, args.attack_episodes)
    atomic_write(out / "summary.md", lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    print("\n".join(lines))
    print(f"[lab] results: {out}/summary.md, {out}/*/eval.json; checkpoints: {', '.join(str(r[1]) for r in rows)}")
    attacked = [run for _, run, _, card in rows if card is not None]
    if attacked:
        print(f"[lab] attack reports: {', '.join(str(r / LAB_ATTACK_DIR / 'report.html') for r in attacked)}")
    print(f"[lab] tensorboard --logdir {out}")
    return 0


def _summary_table(rows: list[tuple[str, Path, dict[str, Any], dict[str, Any] | None]], episodes: int) -> list[str]:
    """The lab's Markdown summary: clean returns, then each eps's worst case where the agents were attacked."""
    lines = ["| env | run | mean return | std | 95% CI | episodes |", "|---|---|---|---|---|---|"]
    for env_id, run, s, _ in rows:
        lines.append(
            f"| {env_id} | {run} | {s['mean_return']:.3f} | {s['std_return']:.3f} | "
            f"{format_ci(s['ci95_return'])} | {s['episodes']} |"
        )
    attacked = [(env_id, run, card) for env_id, run, _, card in rows if card is not None]
    if not attacked:
        return lines
    lines += [
        "",
        f"Under attack (linf, `rllab attack --attack quick`: the standard suite without torchattacks' rows, "
        f"{plural(episodes, 'episode')}; "
        "eps in pixel/255 for Catch, in per-feature observation std for CartPole):",
        "",
        "| env | eps | clean | noise | worst case | reached by | report |",
        "|---|---|---|---|---|---|---|",
    ]
    for env_id, run, card in attacked:
        for key, w in attack_summary(card).items():  # worst case over every row, noise included
            e = float(key)
            pixels = e * 255
            whole = card["threat_model"]["unit"] == "pixel/255" and abs(pixels - round(pixels)) < 1e-3
            label = f"{round(pixels)}/255" if whole else key
            lines.append(
                f"| {env_id} | {label} | {card['clean']['mean_return']:.3g} | {w['noise']:.3g} | "
                f"{w['worst_case']:.3g} | {w['by']} | {run / LAB_ATTACK_DIR / 'report.html'} |"
            )
    return lines


def _lab_attack(run: Path, eps: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """``rllab attack RUN --attack quick`` (reused when done with these settings); None without robustness/."""
    if importlib.util.find_spec("robustness") is None:
        print("[lab] robustness/ is not installed: no attack stage")
        return None
    folder = run / LAB_ATTACK_DIR
    cached = folder / "results.json"
    card = _read_card(cached)
    if card is not None:
        wanted = [parse_number(e, "--eps") for e in eps.split(",")]
        same_eps = len(card["threat_model"]["eps"]) == len(wanted) and all(
            abs(a - b) < 1e-9 for a, b in zip(card["threat_model"]["eps"], wanted, strict=True)
        )
        if same_eps and card["episodes"] == args.attack_episodes and card["seed"] == args.seed:
            print(f"[lab] reusing the attack results in {folder}")
            return card
    print(
        f"[lab] attacking {run} at eps {eps} ({plural(args.attack_episodes, 'episode')}; rllab attack --attack quick)"
    )
    # `attack` is robustness's command, reached by name through the command line: rllab never imports it
    argv = ["attack", str(run), "--attack", "quick", "--eps", eps, "--episodes", str(args.attack_episodes)]
    code = main([*argv, "--seed", str(args.seed), "--out", str(folder)])
    if code != 0:
        raise RllabError(f"the attack stage failed for {run}")
    return read_json(cached, ResultCard)


def _read_card(path: Path) -> dict[str, Any] | None:
    """An attack card, or None when it is missing, unreadable or not a card (then it is made again)."""
    try:
        return read_json(path, ResultCard)
    except RllabError:
        return None
