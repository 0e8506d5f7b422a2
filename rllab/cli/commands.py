"""``rllab train | eval | import-sb3 | lab``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rllab.checkpoint import write_json
from rllab.errors import RllabError
from rllab.parsing import budget, format_ci, parse_number, plural, positive_int, seed_int, yaml_arg

DEFENSE_DEFAULTS = {"eps": 0.1, "defense_coef": 0.1, "defense_steps": 10, "defense_ramp": 0.5}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an agent into a checkpoint folder")
    p.add_argument("--algo", required=True, choices=["reinforce", "a2c", "ppo", "dqn"])
    p.add_argument("--env", required=True, help="any registered Gymnasium id, e.g. CartPole-v1 or Catch-v0")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument(
        "--steps", type=positive_int, help="environment steps (default: the hyperparameter file's n_timesteps)"
    )
    p.add_argument("--n-envs", type=positive_int)
    p.add_argument("--hyperparams", help="YAML file overriding the shipped defaults")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one hyperparameter")
    p.add_argument("--env-kwargs", default=None, help="YAML/JSON mapping passed to gymnasium.make")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument(
        "--threads",
        type=positive_int,
        help="PyTorch CPU threads while training (default: PyTorch's); the same seed gives the same "
        "weights only with the same thread count, recorded in agent.json",
    )
    p.add_argument("--out", help="run folder (default runs/ALGO-ENV-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--eval-freq", type=int, help="evaluate every N steps (default steps/10; 0: never)")
    p.add_argument("--eval-episodes", type=positive_int, default=5, help="episodes per periodic evaluation")
    p.add_argument("--save-freq", type=int, help="checkpoint every N steps (default steps/10; 0: only at the end)")
    p.add_argument(
        "--defense",
        help="adversarial training: sa-reg (SA-PPO regulariser), adv-obs, or atla (alternating learned adversary)",
    )
    p.add_argument(
        "--eps",
        type=budget,
        help="with --defense: budget in pixel/255 (e.g. 4/255) or obs-std units (default 0.1)",
    )
    p.add_argument("--defense-coef", type=float, help="sa-reg: weight of the KL regulariser (default 0.1)")
    p.add_argument("--defense-steps", type=positive_int, help="PGD steps of the inner maximisation (default 10)")
    p.add_argument("--defense-ramp", type=float, help="fraction of training over which eps ramps up (default 0.5)")
    p.add_argument(
        "--defense-solver",
        choices=["pgd", "ibp"],
        help="sa-reg: inner maximisation by PGD (default) or the IBP upper bound of the KL (SA-PPO convex variant)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint")
    p.add_argument("run", help="checkpoint folder")
    p.add_argument("--episodes", type=positive_int, default=20)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--n-envs", type=positive_int, default=8)
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--video", help="record one episode as an animated GIF here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--env-kwargs", help="evaluate in a shifted domain: YAML/JSON mapping merged into the env kwargs")
    p.add_argument(
        "--wrappers", help="evaluate in a shifted domain: YAML/JSON list of named wrappers applied after the agent's"
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("import-sb3", help="import a Stable-Baselines3 .zip without unpickling it")
    p.add_argument("model", help="PPO, A2C or DQN .zip saved by Stable-Baselines3")
    p.add_argument("--env", required=True, help="the Gymnasium id the model was trained on")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--algo", choices=["ppo", "a2c", "dqn"], help="override the detected algorithm")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the rollouts that gather observation statistics")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("defend", help="put input filters or noise smoothing in front of an agent (new checkpoint)")
    p.add_argument("run", help="checkpoint folder")
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="NAME[:k=v,...]",
        help="gaussian_blur:sigma=1 | median:size=3 | bit_depth:bits=4 | gaussian_noise:sigma=0.05 "
        "(noise in pixel/255 for images, obs-std multiples for vectors); repeat to chain",
    )
    p.add_argument(
        "--smooth",
        metavar="sigma=S,n=N,mode=vote|mean",
        help="test-time noise smoothing over N noisy copies (Cohen et al. 2019 style)",
    )
    p.add_argument("--purifier", choices=["dae"], help="train a denoising autoencoder in front of the agent")
    p.add_argument(
        "--purifier-sigma", type=budget, default=0.1, help="corruption scale (pixel/255, e.g. 8/255, or obs std)"
    )
    p.add_argument("--purifier-episodes", type=positive_int, default=20)
    p.add_argument("--purifier-epochs", type=positive_int, default=30)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the evaluation printed at the end")
    p.add_argument("--episodes", type=positive_int, default=10)
    p.set_defaults(func=cmd_defend)

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
    p.add_argument("--episodes", type=positive_int, default=20)
    p.add_argument("--attack-episodes", type=positive_int, default=10, help="episodes per attack and eps")
    p.add_argument("--no-attack", action="store_true", help="train and evaluate only")
    p.add_argument("--fresh", action="store_true", help="retrain even if the runs exist")
    p.set_defaults(func=cmd_lab)


def cmd_train(args: argparse.Namespace) -> int:
    from rllab.environment import check_env_id
    from rllab.training import default_run_dir, train

    check_env_id(args.env)  # an unknown id or bad kwargs fail before the "training ..." line
    given = [f"--{k.replace('_', '-')}" for k in (*DEFENSE_DEFAULTS, "defense_solver") if getattr(args, k) is not None]
    if given and not args.defense:
        verb = "applies" if len(given) == 1 else "apply"
        raise RllabError(f"{', '.join(given)} only {verb} with --defense (sa-reg, adv-obs or atla)")
    for key, default in DEFENSE_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    env_kwargs = yaml_arg(args.env_kwargs, "--env-kwargs") or {}
    out = Path(args.out) if args.out else default_run_dir(args.algo, args.env, args.seed)
    print(f"training {args.algo} on {args.env} (seed {args.seed}) -> {out}")
    agent = train(
        algo=args.algo,
        env=args.env,
        seed=args.seed,
        steps=args.steps,
        n_envs=args.n_envs,
        hyperparams=args.hyperparams,
        overrides=args.set,
        device=args.device,
        out=out,
        resume=args.resume,
        env_kwargs=env_kwargs,
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        save_freq=args.save_freq,
        progress=False if args.no_progress else None,
        defense=args.defense,
        defense_kwargs={
            "eps": args.eps,
            "coef": args.defense_coef,
            "steps": args.defense_steps,
            "ramp": args.defense_ramp,
            **({"solver": args.defense_solver} if args.defense_solver else {}),
        }
        if args.defense
        else None,
        verbose=args.verbose,
        threads=args.threads,
    )
    fe = agent.spec["training"]["final_eval"]
    print(
        f"done: {agent.spec['training']['timesteps']} steps in {agent.spec['training']['wall_time_s']:.1f}s; "
        f"mean return {fe['mean_return']:.2f} (std {fe['std_return']:.2f}, "
        f"95% CI {format_ci(fe.get('ci95_return'), 2)}) "
        f"over {plural(fe['episodes'], 'episode')}"
    )
    print(f"checkpoint: {out}   tensorboard: tensorboard --logdir {out / 'tb'}")
    return 0


def format_summary(s: dict[str, Any]) -> str:
    seeds = f"seed {s['seed']}" if s["episodes"] == 1 else f"seeds {s['seed']}..{s['seed'] + s['episodes'] - 1}"
    return (
        f"return  mean {s['mean_return']:.3f}  std {s['std_return']:.3f}  min {s['min_return']:.3f}  "
        f"max {s['max_return']:.3f}  95% CI {format_ci(s['ci95_return'])}\n"
        f"length  mean {s['mean_length']:.1f}  std {s['std_length']:.1f}  "
        f"min {s['min_length']}  max {s['max_length']}\n"
        f"episodes {s['episodes']} ({seeds})"
    )


def cmd_eval(args: argparse.Namespace) -> int:
    from rllab.agent import load
    from rllab.checkpoint import check_output_path
    from rllab.environment import describe_domain, with_domain
    from rllab.evaluation import record_video, run_episodes

    env_kwargs, wrappers = yaml_arg(args.env_kwargs, "--env-kwargs"), yaml_arg(args.wrappers, "--wrappers", list)
    for output in (args.json, args.video):
        if output:
            check_output_path(output)  # a folder or a path under a file fails before the episodes run
    agent = load(args.run, device=args.device)
    agent.spec["env"] = with_domain(agent.spec["env"], env_kwargs=env_kwargs, wrappers=wrappers)  # not saved
    agent.make_env().close()  # a domain the checkpoint's spaces do not fit fails here, in one line
    result = run_episodes(agent, args.episodes, seed=args.seed, n_envs=args.n_envs, deterministic=not args.stochastic)
    domain = describe_domain(agent.spec["env"])
    summary = {"run": str(args.run), "env": agent.env_id, "domain": domain, "algo": agent.algo, **result.summary()}
    print(f"{args.run}: {agent.algo} on {domain}")
    print(format_summary(summary))
    if args.json:
        write_json(Path(args.json), summary)
        print(f"results: {args.json}")
    if args.video:
        path = record_video(agent, args.video, seed=args.seed, deterministic=not args.stochastic)
        print(f"video: {path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from rllab.sb3_import import import_sb3

    agent = import_sb3(args.model, args.env, args.out, algo=args.algo, seed=args.seed)
    print(f"imported {agent.algo} for {agent.env_id} from {args.model} -> {args.out} (nothing was unpickled)")
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    from rllab.agent import load
    from rllab.checkpoint import read_spec
    from rllab.evaluation import evaluate
    from rllab.training import train

    out = Path(args.out)
    rows = []
    for env_id in ("CartPole-v1", "Catch-v0"):
        run = out / f"ppo-{env_id}-s{args.seed}"
        done = (run / "agent.json").exists() and not args.fresh
        if done:
            try:
                training = read_spec(run)["training"]
            except RllabError:
                training = {}
            done = bool(training.get("complete"))
            seed = training.get("config", {}).get("seed")
            if done and seed != args.seed:
                raise RllabError(
                    f"{run} holds a run trained with seed {seed}, not --seed {args.seed}; move it away or pass --fresh"
                )
        if not done:
            if run.exists():
                import shutil

                shutil.rmtree(run)
            print(f"[lab] training PPO on {env_id} -> {run}")
            train("ppo", env_id, seed=args.seed, out=run)
        else:
            print(f"[lab] reusing the finished run {run} (--fresh retrains)")
        agent = load(run)
        summary = evaluate(agent, episodes=args.episodes, seed=args.seed).summary()
        write_json(run / "eval.json", {"run": str(run), "env": env_id, "algo": "ppo", **summary})
        print(f"[lab] {env_id}:")
        print("  " + format_summary(summary).replace("\n", "\n  "))
        card = None if args.no_attack else _lab_attack(run, LAB_ATTACK_EPS[env_id], args)
        rows.append((env_id, run, summary, card))
    lines = ["| env | run | mean return | std | 95% CI | episodes |", "|---|---|---|---|---|---|"]
    for env_id, run, s, _ in rows:
        lines.append(
            f"| {env_id} | {run} | {s['mean_return']:.3f} | {s['std_return']:.3f} | "
            f"{format_ci(s['ci95_return'])} | {s['episodes']} |"
        )
    attacked = [(env_id, run, card) for env_id, run, _, card in rows if card is not None]
    if attacked:
        lines += [
            "",
            f"Under attack (linf, `rllab attack --attack quick`: the standard suite without torchattacks' rows, "
            f"{plural(args.attack_episodes, 'episode')}; "
            "eps in pixel/255 for Catch, in per-feature observation std for CartPole):",
            "",
            "| env | eps | clean | noise | worst case | reached by | report |",
            "|---|---|---|---|---|---|---|",
        ]
        from rllab.sweep import attack_summary

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
    from rllab.checkpoint import atomic_write

    atomic_write(out / "summary.md", lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    print("\n".join(lines))
    print(f"[lab] results: {out}/summary.md, {out}/*/eval.json; checkpoints: {', '.join(str(r[1]) for r in rows)}")
    if attacked:
        print(f"[lab] attack reports: {', '.join(str(r / LAB_ATTACK_DIR / 'report.html') for _, r, _ in attacked)}")
    print(f"[lab] tensorboard --logdir {out}")
    return 0


LAB_ATTACK_EPS = {"CartPole-v1": "0.25,0.5,1", "Catch-v0": "8/255,32/255,64/255"}
LAB_ATTACK_DIR = Path("attacks") / "lab"


def _lab_attack(run: Path, eps: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """``rllab attack RUN --attack quick`` (reused when done with these settings); None without robustness/."""
    import importlib.util

    if importlib.util.find_spec("robustness") is None:
        print("[lab] robustness/ is not installed: no attack stage")
        return None
    from rllab.cli import main  # `attack` is robustness's command, reached by name: rllab never imports it

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
    argv = ["attack", str(run), "--attack", "quick", "--eps", eps, "--episodes", str(args.attack_episodes)]
    code = main([*argv, "--seed", str(args.seed), "--out", str(folder)])
    if code != 0:
        raise RllabError(f"the attack stage failed for {run}")
    return json.loads(cached.read_text())


def _read_card(path: Path) -> dict[str, Any] | None:
    """An attack card, or None when it is missing, unreadable or not a card (then it is made again)."""
    try:
        card = json.loads(path.read_text())
        card["threat_model"]["eps"], card["episodes"], card["seed"], card["results"]  # noqa: B018
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return card


def cmd_defend(args: argparse.Namespace) -> int:
    from rllab.agent import load
    from rllab.defend import defend, parse_spec
    from rllab.evaluation import evaluate

    smoothing = parse_spec("smooth:" + args.smooth, "--smooth")["params"] if args.smooth else None
    filters = [parse_spec(f) for f in args.filter]
    purifier = None
    if args.purifier:
        purifier = {
            "sigma": args.purifier_sigma,
            "episodes": args.purifier_episodes,
            "epochs": args.purifier_epochs,
            "seed": args.seed,
        }
    agent = defend(args.run, args.out, filters=filters, smoothing=smoothing, purifier=purifier)
    summary = evaluate(agent, episodes=args.episodes, seed=args.seed).summary()
    names = ", ".join(d["name"] for d in agent.defenses)
    print(f"defended {args.run} with {names} -> {args.out}")
    print(format_summary(summary))
    # what the defense costs when nobody attacks: same episodes, same seeds, without it
    parent = evaluate(load(args.run), episodes=args.episodes, seed=args.seed).summary()["mean_return"]
    mean = summary["mean_return"]
    print(f"clean mean return: {parent:.4g} undefended -> {mean:.4g} defended")
    if parent - mean > 0.1 * max(abs(parent), 1e-9):
        hints = []
        if any(f["name"] in ("gaussian_blur", "median") for f in filters):
            hints.append("a filter wider than the objects it should keep erases them")
        if any(f["name"] == "bit_depth" for f in filters):
            hints.append("too few bits merge values the agent tells apart")
        if smoothing is not None or any(f["name"] == "gaussian_noise" for f in filters):
            hints.append("noise this large hides what the agent needs: try a smaller sigma")
        hint = f" ({'; '.join(hints)})" if hints else ""
        print(f"warning: the defense costs {(parent - mean) / max(abs(parent), 1e-9):.0%} of the clean return{hint}")
    return 0
