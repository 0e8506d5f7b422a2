"""``rllab attack``, ``rllab report`` and ``rllab certify``: parse, load, call robustness, write, print."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from rllab.agent import Agent, load
from rllab.checkpoint import atomic_write, check_output_path, write_json
from rllab.errors import RllabError
from rllab.parsing import MAX_EPISODES, float_arg, int_arg, nonneg_float, positive_int, seed_int
from rllab.units import check_budget, default_eps, format_budget, unit_name
from robustness.attacks.sarsa import SarsaSettings
from robustness.certify import certify, default_sigma
from robustness.evaluate import RS_MAD_RATIO, build_attack, continuous_suite, evaluate, standard_suite
from robustness.report import eps_label, leaderboard, load_card, render_leaderboard, write_report
from robustness.tensorboard import SMOOTHING_OFF, AttackCurves, chart_title
from robustness.threat import parse_eps, warn_fraction_on_vectors

MAX_ATTACK_STEPS = 100_000  # PGD steps, restarts or EOT draws: each multiplies the work per observation
attack_steps = int_arg(1, MAX_ATTACK_STEPS, "attack_steps")
episode_count = int_arg(1, MAX_EPISODES, "episode_count")


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ``attack``, ``report`` and ``certify`` to the ``rllab`` command line."""
    p = sub.add_parser("attack", help="evaluate a checkpoint under observation attacks; writes a report")
    p.add_argument("run", help="checkpoint folder")
    p.add_argument(
        "--attack",
        default="pgd",
        help="comma list of noise, fgsm, pgd, torchattacks-{fgsm,pgd,pgdl2,apgd,square}, surrogate, "
        "timed, learned, plan (searches whole-episode plans; slow), SA-PPO's random, critic, mad, rs, rs+mad; "
        "or 'all' for the standard suite, 'quick' for it without torchattacks' cross-check rows, 'continuous' "
        "for SA-PPO's suite on a Gaussian policy (critic, mad, rs, rs+mad; groups mix with names: continuous,learned)",
    )
    p.add_argument(
        "--objective", default=None, help="action | kl | value | targeted | margin (default: action, kl if continuous)"
    )
    p.add_argument(
        "--eps",
        default=None,
        help="comma list; pixel/255 for images (default 2/255), obs-std units for vectors (default 0.1), "
        "absolute units for [0, 1]-bounded observations such as MinAtar's (default 0.1)",
    )
    p.add_argument(
        "--target-action",
        type=int,
        default=None,
        help="fgsm/pgd/timed: push towards this action at every step (implies --objective targeted)",
    )
    p.add_argument("--norm", choices=["linf", "l2"], default="linf")
    p.add_argument("--steps", type=attack_steps, default=10, help="PGD steps")
    p.add_argument("--restarts", type=attack_steps, default=1)
    p.add_argument("--queries", type=int, default=20_000, help="surrogate: victim query budget")
    p.add_argument("--bpda", action="store_true", help="pass gradients through non-differentiable defenses")
    p.add_argument("--eot", type=attack_steps, default=1, help="average gradients over N draws of random defenses")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="timed: attack where max-min action probability exceeds this (DQN: softmax of Q)",
    )
    p.add_argument("--max-fraction", type=float, default=0.25, help="timed: cap on the fraction of attacked steps")
    p.add_argument("--adversary", help="learned: a trained adversary checkpoint")
    p.add_argument(
        "--adv-steps", type=positive_int, default=30_000, help="learned: PPO steps to train one adversary per eps"
    )
    p.add_argument(
        "--adv-seeds",
        type=positive_int,
        default=1,
        help="learned: train this many adversaries per eps (training seeds SEED..SEED+N-1) and attack with the "
        "strongest by their own closing evaluation (ATLA keeps the strongest of several)",
    )
    p.add_argument(
        "--rs-steps", type=positive_int, default=30_000, help="rs, rs+mad: rollout steps to learn the robust Q (cached)"
    )
    p.add_argument("--rs-epochs", type=positive_int, default=30, help="rs, rs+mad: passes over those rollouts")
    p.add_argument(
        "--rs-eps", type=nonneg_float, default=0.02, help="rs, rs+mad: Q's robustness radius, action half-range units"
    )
    p.add_argument("--rs-reg", type=nonneg_float, default=0.1, help="rs, rs+mad: weight of Q's robustness term")
    p.add_argument(
        "--rs-seed",
        type=seed_int,
        default=None,
        help="rs, rs+mad: seed of the robust Q's rollouts and training (default: --seed); a scan that screens "
        "settings on other episodes (another --seed) keeps the same Q with this",
    )
    p.add_argument(
        "--rs-ratio",
        type=float_arg(0.0, 1.0, name="ratio"),
        default=RS_MAD_RATIO,
        help="rs+mad: weight in [0, 1] of the action-change (MAD) term",
    )
    p.add_argument("--episodes", type=episode_count, default=20)
    p.add_argument("--n-envs", type=int, default=16)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="report folder (default RUN/attacks/<time>)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser("report", help="put several agents' attack results side by side (leaderboard)")
    p.add_argument("runs", nargs="+", help="run folders (their latest attack results) or results.json files")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "certify",
        help="fraction of visited states whose action provably cannot change within eps "
        "(continuous actions: a bound on the mean action's change)",
    )
    p.add_argument("run")
    p.add_argument(
        "--eps",
        default=None,
        help="comma list; pixel/255 for images (default 1/255,2/255,4/255), std units for vectors, absolute "
        "units for [0, 1]-bounded observations (default 0.05,0.1,0.2 for both)",
    )
    p.add_argument("--method", choices=["ibp", "smoothing"], default="ibp")
    p.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="smoothing noise, threat-model units (default: a smoothed agent's own sigma, else 0.25)",
    )
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--alpha", type=float, default=0.001)
    p.add_argument("--episodes", type=episode_count, default=5)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--json", help="write the result here")
    p.set_defaults(func=cmd_certify)


def cmd_attack(args: argparse.Namespace) -> int:
    """``rllab attack``: the result card of a checkpoint under the chosen attacks, as a report."""
    agent = load(args.run, device=args.device)
    args.eps = args.eps or default_eps(unit_name(agent.is_image, agent.observation_space))
    eps = parse_eps(args.eps)
    for e in eps:  # train's and defend's rule: finite, bounded, and pixel budgets above 1 are a k/255 slip
        check_budget(e, agent.is_image, "--eps", "--eps {v}")
    warn_fraction_on_vectors(args.eps, agent)
    if args.episodes <= 0 or args.steps <= 0 or args.n_envs <= 0:
        raise RllabError("--episodes, --steps and --n-envs must be positive")
    if args.eot < 1:
        raise RllabError(f"--eot must be >= 1, got {args.eot}")
    args.bpda, args.eot = _adaptive_settings(agent, args.bpda, args.eot)
    default_objective = "targeted" if args.target_action is not None else "action"
    objective = args.objective or (default_objective if agent.is_discrete else "kl")
    names = [a.strip() for a in args.attack.split(",") if a.strip()]
    rs = SarsaSettings(steps=args.rs_steps, epochs=args.rs_epochs, eps=args.rs_eps, reg=args.rs_reg)
    rs.check()  # before any episode
    attacks = []
    for n in names:
        if n in ("all", "quick"):
            if args.target_action is not None:
                raise RllabError(
                    f"--target-action picks one attack; --attack {n} already pushes towards every action "
                    "(agents with at most 4 actions)"
                )
            attacks += standard_suite(
                agent,
                steps=args.steps,
                norm=args.norm,
                queries=args.queries,
                restarts=args.restarts,
                bpda=args.bpda,
                eot=args.eot,
                threshold=args.threshold,
                max_fraction=args.max_fraction,
                library=n == "all",
            )
        elif n == "continuous":
            attacks += continuous_suite(
                agent, steps=args.steps, restarts=args.restarts, rs=rs, rs_ratio=args.rs_ratio, rs_seed=args.rs_seed
            )
        else:
            attacks.append(
                build_attack(
                    n,
                    objective=objective,
                    steps=args.steps,
                    restarts=args.restarts,
                    queries=args.queries,
                    bpda=args.bpda,
                    eot=args.eot,
                    adversary=args.adversary,
                    adv_steps=args.adv_steps,
                    adv_seeds=args.adv_seeds,
                    threshold=args.threshold,
                    max_fraction=args.max_fraction,
                    target=args.target_action,
                    rs=rs,
                    rs_ratio=args.rs_ratio,
                    rs_seed=args.rs_seed,
                )
            )
    unique = {a.label: a for a in attacks}  # a name given twice (or in a group and alone) is one row
    attacks = list(unique.values())
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path(args.run) / "attacks" / stamp
    for name in ("results.json", "report.md", "report.html"):
        check_output_path(out / name)  # an unwritable --out fails before any episode, not after all of them
    tb_dir = Path(args.run) / "tb" / f"attack-{stamp}"
    # curves against eps (step = eps in the unit's ticks, named in each tag), each row as soon as it is measured
    with AttackCurves(tb_dir, unit_name(agent.is_image, agent.observation_space), eps) as curves:
        card = evaluate(
            agent,
            attacks=attacks,
            eps=eps,
            episodes=args.episodes,
            seed=args.seed,
            norm=args.norm,
            n_envs=args.n_envs,
            steps=args.steps,
            objective=objective,
            progress=not args.no_progress,
            on_row=curves.row,
        )
        card["agent"]["run"] = str(args.run)
        curves.clean(card["clean"])
        curves.writer.add_text("attack/settings", "```\n" + json.dumps(card["attacks"], indent=2) + "\n```")
    paths = write_report(card, out)
    _print_summary(card)
    print(f"report: {paths['html']}  {paths['md']}  card: {paths['json']}")
    print(
        f"tensorboard: {tb_dir} (Custom Scalars tab: {chart_title('mean return', curves.ticks)}; "
        f"unsmoothed: TensorBoard's address + {SMOOTHING_OFF})"
    )
    return 0


def _adaptive_settings(agent: Agent, bpda: bool, eot: int) -> tuple[bool, int]:
    """--bpda / --eot where they change something; a note line where they are dropped for this agent."""
    defenses = agent.defenses
    if bpda and all(d.get("differentiable", True) for d in defenses):
        print(
            "note: --bpda changes nothing for this agent (it has no non-differentiable defense); attacking without it",
            file=sys.stderr,
        )
        bpda = False
    if eot > 1 and not any(d.get("random") for d in defenses):
        print(
            f"note: --eot {eot} changes nothing for this agent (it has no random defense); attacking without it",
            file=sys.stderr,
        )
        eot = 1
    return bpda, eot


def _print_summary(card: dict) -> None:
    tm = card["threat_model"]
    print(
        f"{card['agent']['algo']} on {card['agent']['env']}: clean {card['clean']['mean_return']:.3g} "
        f"({tm['norm']}, eps in {tm['unit']}, {card['episodes']} episodes)"
    )
    for name, by_eps in card["results"].items():
        cells = "  ".join(f"eps {eps_label(card, k)}: {r['mean_return']:.3g}" for k, r in by_eps.items())
        print(f"  {name:<28} {cells}")
    for f in card.get("flags", []):
        print(f"  ! {f}")


def cmd_report(args: argparse.Namespace) -> int:
    """``rllab report``: several agents' latest attack results side by side."""
    cards = {}
    for run in args.runs:
        path = Path(run)
        if not path.exists():
            raise RllabError(f"no such run or file {path}")
        cards[str(path)] = load_card(path)
    board = leaderboard(cards)
    out = Path(args.out)
    check_output_path(out / "leaderboard.json")
    atomic_write(out / "leaderboard.json", json.dumps(board, indent=2) + "\n")
    text = render_leaderboard(board)
    atomic_write(out / "leaderboard.md", text)
    print(text)
    print(f"leaderboard: {out / 'leaderboard.md'}  {out / 'leaderboard.json'}")
    return 0


def cmd_certify(args: argparse.Namespace) -> int:
    """``rllab certify``: the certified fraction of visited states at each eps."""
    if args.json:
        check_output_path(args.json)  # before any state is visited
    agent = load(args.run)
    if args.episodes <= 0:
        raise RllabError("--episodes must be positive")
    sigma = args.sigma if args.sigma is not None else default_sigma(agent)
    args.eps = args.eps or default_eps(unit_name(agent.is_image, agent.observation_space), sweep=True)
    eps = parse_eps(args.eps)
    for e in eps:  # train's and defend's rule: finite, bounded, and pixel budgets above 1 are a k/255 slip
        check_budget(e, agent.is_image, "--eps", "--eps {v}")
    warn_fraction_on_vectors(args.eps, agent)
    report = certify(
        agent,
        eps,
        episodes=args.episodes,
        seed=args.seed,
        method=args.method,
        sigma=sigma,
        n=args.samples,
        alpha=args.alpha,
    )
    norm = report.settings["norm"]
    sig = f", sigma {report.settings['sigma']:g}" if report.method == "smoothing" else ""
    print(
        f"{args.run}: {report.method} certification over {report.states} visited states "
        f"({norm}, unit {report.unit}{sig})"
    )
    if "certified" in report.settings:  # a Gaussian policy: a bound on the mean action, not a fraction
        print(f"  certified: {report.settings['certified']}")
    for row in report.rows:
        budget = format_budget(row["eps"], report.unit)
        if "mean_bound" in row:
            print(
                f"  eps {budget}: ||mu(s') - mu(s)||_inf <= {row['mean_bound']:.4g} on average over states "
                f"(median {row['median_bound']:.4g}, max {row['max_bound']:.4g}); executed action "
                f"<= {row['mean_action_bound']:.4g} on average"
            )
        else:
            print(f"  eps {budget}: certified {row['certified_fraction']:.3f}")
    if args.json:
        path = write_json(args.json, {"run": str(args.run), **report.to_dict()})
        print(f"results: {path}")
    return 0
