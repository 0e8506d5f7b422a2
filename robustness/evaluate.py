"""Attacked evaluation: every attack at every budget, next to the clean and the random-noise numbers.

Episodes run batched over ``n_envs`` environments: one attack call per vector step for all
active environments. Every perturbed observation is checked against the budget; a
violation stops the run (``BudgetViolation``). Episode ``j`` uses seed ``seed + j`` for every
row, so rows differ only by the attack. Attacks are driven through the hooks of
``robustness.attacks.base.Attack`` only; one that plays its episodes itself (the planning attack)
does so in ``Attack.play``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch as th
from tqdm.auto import tqdm

from rllab.agent import Agent
from rllab.errors import RllabError
from rllab.evaluation import confidence_interval, run_episodes
from robustness.attacks.base import Attack, PlayedEpisodes
from robustness.attacks.continuous import MAD, Critic, RobustSarsa
from robustness.attacks.noise import UniformNoise
from robustness.attacks.pgd import FGSM, PGD
from robustness.attacks.planning import PlanningAttack
from robustness.attacks.sarsa import SarsaSettings
from robustness.attacks.surrogate import SurrogateTransfer
from robustness.attacks.timed import StrategicallyTimed
from robustness.attacks.torchattacks_adapter import TorchAttack
from robustness.learned.attack import LearnedAttack
from robustness.report import sanity_flags
from robustness.threat import ThreatModel

ATTACK_NAMES = (
    "noise",
    "fgsm",
    "pgd",
    "torchattacks-fgsm",
    "torchattacks-pgd",
    "torchattacks-pgdl2",
    "torchattacks-apgd",
    "torchattacks-square",
    "surrogate",
    "timed",
    "learned",
    "plan",
    "random",
    "critic",
    "mad",
    "rs",
    "rs+mad",
)
GROUPS = ("all", "quick", "continuous")  # --attack names that stand for several attacks
RS_MAD_RATIO = 0.2  # RS+MAD's default weight of the action-change term (SA-PPO's --attack-sarsa-action-ratio)


def build_attack(
    name: str,
    objective: str = "action",
    steps: int = 10,
    restarts: int = 1,
    alpha: float | None = None,
    queries: int = 20_000,
    bpda: bool = False,
    eot: int = 1,
    adversary: str | None = None,
    adv_steps: int = 30_000,
    adv_seeds: int = 1,
    threshold: float = 0.5,
    max_fraction: float = 0.25,
    target: int | None = None,
    rs: SarsaSettings | None = None,
    rs_ratio: float = RS_MAD_RATIO,
    rs_seed: int | None = None,
) -> Attack:
    """An attack by its CLI name (``random``, ``critic``, ``mad``, ``rs``, ``rs+mad``: SA-PPO's names)."""
    if target is not None and name not in ("fgsm", "pgd", "timed"):
        raise RllabError(f"a fixed target action works with fgsm, pgd and timed, not {name!r}")
    if name in ("noise", "random"):
        return UniformNoise()
    if name == "critic":
        return Critic(steps=steps, restarts=restarts, alpha=alpha)
    if name == "mad":
        return MAD(steps=steps, restarts=restarts, alpha=alpha)
    if name in ("rs", "rs+mad"):
        ratio = rs_ratio if name == "rs+mad" else 0.0
        return RobustSarsa(steps=steps, restarts=restarts, alpha=alpha, ratio=ratio, rs=rs, seed=rs_seed)
    if name == "fgsm":
        return FGSM(objective, bpda=bpda, eot=eot, target=target)
    if name == "pgd":
        return PGD(objective, steps=steps, alpha=alpha, restarts=restarts, bpda=bpda, eot=eot, target=target)
    if name.startswith("torchattacks-"):
        key = {"fgsm": "FGSM", "pgd": "PGD", "pgdl2": "PGDL2", "apgd": "APGD", "square": "Square"}.get(name[13:])
        if key is None:
            raise RllabError(f"unknown attack {name!r}")
        return TorchAttack(key, steps=steps, alpha=alpha, restarts=restarts)
    if name == "surrogate":
        surrogate_objective = objective if objective != "value" else "action"  # the surrogate has no critic
        return SurrogateTransfer(queries=queries, steps=steps, objective=surrogate_objective)
    if name == "timed":
        base = PGD(objective, steps=steps, alpha=alpha, restarts=restarts, target=target)
        return StrategicallyTimed(base, threshold=threshold, max_fraction=max_fraction)
    if name == "plan":
        return PlanningAttack(steps=steps)
    if name == "learned":
        return LearnedAttack(adversary=adversary, adv_steps=adv_steps, adv_seeds=adv_seeds)
    raise RllabError(f"unknown attack {name!r}; choose from {', '.join(ATTACK_NAMES)} or a group: {', '.join(GROUPS)}")


def continuous_suite(
    agent: Agent,
    steps: int = 10,
    restarts: int = 1,
    rs: SarsaSettings | None = None,
    rs_ratio: float = RS_MAD_RATIO,
    rs_seed: int | None = None,
) -> list[Attack]:
    """``--attack continuous``: SA-PPO's attacks on a Gaussian policy (Random is the card's noise row).

    Critic (where the agent has one), MAD, Robust Sarsa and RS+MAD; RS and RS+MAD share one learned
    robust Q-function (trained once per victim, settings and ``rs_seed``, ``robustness.attacks.sarsa``;
    ``rs_seed`` None: the evaluation's seed).
    """
    if agent.is_discrete:
        raise RllabError("--attack continuous is the continuous-control suite; use quick or all for discrete agents")
    suite: list[Attack] = [Critic(steps=steps, restarts=restarts)] if agent.has_critic else []
    suite.append(MAD(steps=steps, restarts=restarts))
    suite.append(RobustSarsa(steps=steps, restarts=restarts, rs=rs, seed=rs_seed))
    if rs_ratio > 0:
        suite.append(RobustSarsa(steps=steps, restarts=restarts, ratio=rs_ratio, rs=rs, seed=rs_seed))
    return suite


FIXED_TARGET_MAX_ACTIONS = 4  # the suite adds one fixed-target PGD row per action up to this many actions


def standard_suite(
    agent: Agent,
    steps: int = 10,
    norm: str = "linf",
    queries: int = 20_000,
    restarts: int = 1,
    bpda: bool = False,
    eot: int = 1,
    threshold: float = 0.5,
    max_fraction: float = 0.25,
    library: bool = True,
) -> list[Attack]:
    """``--attack all``: every attack that applies to this agent and norm.

    ``library=False`` (``--attack quick``) leaves out torchattacks' rows: they cross-check the lab's
    own FGSM/PGD, and Square's 100 queries per step take most of the suite's time.

    ``restarts`` applies to every PGD row and to torchattacks' PGD, APGD and Square; ``queries``
    is the surrogate's victim query budget; ``threshold``/``max_fraction`` configure the timed
    attack. ``bpda``/``eot`` add adaptive PGD rows (also added automatically, with BPDA for
    non-differentiable defenses and EOT x8 for random ones; the stronger setting wins).
    """
    objectives = ["kl"] if not agent.is_discrete else ["action", "kl", "targeted"]
    if agent.has_critic or agent.has_q:
        objectives.append("value")
    suite: list[Attack] = [FGSM(objectives[0])]
    suite += [PGD(o, steps=steps, restarts=restarts) for o in objectives]
    if agent.is_discrete and agent.action_space.n <= FIXED_TARGET_MAX_ACTIONS:
        # push towards one action at every step: what topples a balancing controller, which shrugs
        # off flips (CartPole's default agent: the strongest attack of the suite)
        suite += [PGD("targeted", steps=steps, restarts=restarts, target=k) for k in range(agent.action_space.n)]
    if agent.is_discrete and library:
        suite += [
            TorchAttack("PGD" if norm == "linf" else "PGDL2", steps=steps, restarts=restarts),
            TorchAttack("APGD", steps=steps, restarts=restarts),
        ]
        if norm == "linf" or agent.is_image:  # torchattacks' l2 Square needs images
            suite.append(TorchAttack("Square", queries=100, restarts=restarts))
    if agent.is_discrete:
        suite += [
            SurrogateTransfer(queries=queries, steps=steps),
            StrategicallyTimed(
                PGD("action", steps=steps, restarts=restarts), threshold=threshold, max_fraction=max_fraction
            ),
        ]
    # Adaptive evaluation (Athalye et al. 2018): defenses that are non-differentiable get BPDA,
    # random ones EOT, added automatically so no report shows a defense only against naive attacks.
    defenses = agent.defenses
    bpda = bpda or any(not d["differentiable"] for d in defenses)
    eot = max(eot, 8 if any(d["random"] for d in defenses) else 1)
    if bpda or eot > 1:
        suite += [PGD(o, steps=steps, restarts=restarts, bpda=bpda, eot=eot) for o in objectives if o != "value"]
    if defenses:
        # the defense-unaware attacker, the baseline a defense is usually reported against
        suite += [PGD(o, steps=steps, restarts=restarts, unaware=True) for o in objectives if o != "value"]
    return suite


def _row(result: Any, extra: dict[str, Any]) -> dict[str, Any]:
    r = np.asarray(result.returns, dtype=np.float64)
    # no interval from one episode (JSON null, as in rllab's evaluation summary): never a zero-width one
    ci = confidence_interval(r) if r.size > 1 else None
    return {
        "mean_return": float(r.mean()),
        "std_return": float(r.std(ddof=1)) if r.size > 1 else 0.0,
        "ci95_return": [float(ci[0]), float(ci[1])] if ci is not None else None,
        "min_return": float(r.min()),
        "max_return": float(r.max()),
        "episodes": int(r.size),
        "seeds": [result.seed + j for j in range(r.size)],
        "returns": [float(x) for x in r],
        **extra,
    }


def attacked_run(
    agent: Agent, attack: Attack | None, threat: ThreatModel, episodes: int, seed: int, n_envs: int
) -> dict[str, Any]:
    """One row of the card: ``attack`` (None = clean) at ``threat``'s budget.

    ``action_change_rate`` and ``mean_perturbation`` are over all steps of the row;
    ``attacked_*`` over the steps the attack perturbed (all of them, except for attacks that
    leave some steps clean, such as the strategically-timed one).
    """
    changed = total = attacked = changed_attacked = 0
    sizes: list[float] = []
    attacked_sizes: list[float] = []

    def act_fn(obs: np.ndarray, ctx: dict[str, Any]) -> np.ndarray:
        nonlocal changed, total, attacked, changed_attacked
        x = agent.as_tensor(obs)
        if attack is None:
            return agent.act(x)
        attack.last_attacked = None
        adv = attack(agent, x, threat)
        step_sizes = threat.check(adv, x, attack.label).cpu().numpy()
        a_adv, a_clean = agent.act(adv), agent.act(x)
        diff = ~np.all(np.asarray(a_adv == a_clean).reshape(len(a_adv), -1), axis=1)
        hit = attack.last_attacked
        hit = np.ones(len(a_adv), dtype=bool) if hit is None else hit.cpu().numpy().astype(bool)
        sizes.extend(step_sizes.tolist())
        attacked_sizes.extend(step_sizes[hit].tolist())
        changed += int(diff.sum())
        changed_attacked += int(diff[hit].sum())
        total += len(a_adv)
        attacked += int(hit.sum())
        return a_adv

    t = time.perf_counter()
    result = run_episodes(agent, episodes, seed=seed, n_envs=n_envs, act_fn=act_fn)
    extra: dict[str, Any] = {"wall_s": round(time.perf_counter() - t, 3)}
    if attack is not None:
        extra.update(
            action_change_rate=changed / max(total, 1),
            mean_perturbation=float(np.mean(sizes)) if sizes else 0.0,
            steps=total,
            attacked_steps=attacked,
            attacked_action_change_rate=changed_attacked / max(attacked, 1),
            attacked_mean_perturbation=float(np.mean(attacked_sizes)) if attacked_sizes else 0.0,
        )
    return _row(result, extra)


def played_row(played: PlayedEpisodes, seed: int, wall_s: float) -> dict[str, Any]:
    """The row of an attack that played its episodes itself (``Attack.play``); it attacked every step."""
    steps = len(played.sizes)
    rate, size = played.action_changes / max(steps, 1), float(np.mean(played.sizes)) if steps else 0.0
    return _row(
        SimpleNamespace(returns=played.returns, seed=seed),
        {
            "wall_s": round(wall_s, 3),
            "action_change_rate": rate,
            "mean_perturbation": size,
            "steps": steps,
            "attacked_steps": steps,  # every step is attacked
            "attacked_action_change_rate": rate,
            "attacked_mean_perturbation": size,
        },
    )


def attack_row(
    agent: Agent, attack: Attack, threat: ThreatModel, episodes: int, seed: int, n_envs: int
) -> dict[str, Any]:
    """One attacked row of the card: the attack plays its episodes itself, or is called step by step."""
    attack.row_start()
    t = time.perf_counter()
    played = attack.play(agent, threat, episodes, seed)
    if played is None:
        row = attacked_run(agent, attack, threat, episodes, seed, n_envs)
    else:
        row = played_row(played, seed, time.perf_counter() - t)
    row.update(attack.row_extras(row))
    return row


def evaluate(
    agent: Agent,
    attacks: list[Attack | str] | None = None,
    eps: list[float] | tuple[float, ...] = (0.1,),
    episodes: int = 20,
    seed: int = 0,
    norm: str = "linf",
    n_envs: int = 16,
    steps: int = 10,
    objective: str = "action",
    progress: bool = True,  # shown on a terminal only
    on_row: Callable[[str, float, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The result card for ``agent`` under ``attacks`` (names or objects; None = the standard suite) at each eps."""
    if episodes <= 0:
        raise RllabError(f"episodes must be positive, got {episodes}")
    # ascending and without repeats (as keyed in the card), however they were typed: the plot, the
    # table and the "return rises with eps" flag read the card's eps list in order
    eps = sorted({f"{float(e):g}": float(e) for e in eps}.values())
    if any(e < 0 for e in eps):
        raise RllabError(f"eps must be >= 0, got {min(eps)}")
    if attacks is None:
        attack_objs = standard_suite(agent, steps=steps, norm=norm)
    else:
        attack_objs = [build_attack(a, objective=objective, steps=steps) if isinstance(a, str) else a for a in attacks]
    for a in attack_objs:  # fail early, before any episode runs
        a.check_victim(agent, norm, eps)
    # the noise row comes first, once, whatever the list held (rows are keyed by label)
    attack_objs = [UniformNoise(), *[a for a in attack_objs if a.label != UniformNoise.name]]
    for a in attack_objs:
        a.prepare(agent, seed)
    threats = [ThreatModel.for_agent(agent, e, norm) for e in eps]
    total = 1 + len(attack_objs) * len(eps)
    bar = _progress(total, progress)
    try:  # an attack that fails mid-run must not leave its progress bar on the error's line
        clean = attacked_run(agent, None, threats[0], episodes, seed, n_envs)
        bar.update(1)
        rows: dict[str, dict[str, dict[str, Any]]] = {}
        for a in attack_objs:
            rows[a.label] = {}
            for threat in threats:
                bar.set_description(f"{a.label} eps={threat.eps:g}")
                th.manual_seed(seed)
                row = attack_row(agent, a, threat, episodes, seed, n_envs)
                rows[a.label][f"{threat.eps:g}"] = row
                if on_row is not None:
                    on_row(a.label, threat.eps, row)
                bar.update(1)
    finally:
        bar.close()
    card = {
        "agent": {
            "algo": agent.algo,
            "env": agent.env_id,
            "lineage": agent.spec.get("lineage", []),
            "defenses": agent.defenses,
            "final_eval": agent.spec.get("training", {}).get("final_eval"),
        },
        "threat_model": {
            "norm": norm,
            "unit": threats[0].unit,
            "eps": eps,
            "per_eps": [t.describe() for t in threats],
            "perturbation": "of the observation the agent sees, not of the environment state",
            "image_inputs": "perturbed observations are fed as floats (not rounded to uint8)"
            if agent.is_image
            else None,
        },
        "episodes": episodes,
        "seed": seed,
        "n_envs": n_envs,
        "attacks": {a.label: a.settings() for a in attack_objs},
        "clean": clean,
        "results": rows,
    }
    card["flags"] = sanity_flags(card)  # as in the CLI's results.json
    return card


def _progress(total: int, enabled: bool):
    """A progress bar on a terminal only: redirected stderr (a log file, a pipe) gets no bar lines."""
    return tqdm(total=total, disable=not enabled or not sys.stderr.isatty(), unit="row", leave=False)
