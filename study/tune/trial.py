"""One rung of one trial of ``rllab tune``, run in a worker process (local pool or Ray task): train the trial's
agent to the rung's steps (a new run, or its last rung's checkpoint resumed), evaluate it clean and, for the
robust objective, under the attacks at eps; return the figures as plain data.

Everything a rung computes is seeded and runs on one PyTorch thread, so its numbers do not depend on which
worker, backend or neighbour ran it. The rung's record is kept in the trial's folder: a tune run again
returns it instead of training again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch as th

from rllab.agent import load
from rllab.checkpoint import SPEC_FILE, write_json
from rllab.errors import RllabError
from rllab.files import atomic_write
from rllab.sweep.jobs import read_json
from rllab.training import train
from rllab.units import check_budget
from robustness.attacks.base import Attack
from robustness.attacks.objectives import OBJECTIVES
from robustness.evaluate import ATTACK_NAMES, build_attack, standard_suite
from robustness.evaluate import evaluate as attacked_evaluate
from study.tune.space import hyperparameter_file

EVAL_SEED_OFFSET = 20_000  # rllab train's final evaluation seeds (seed + 20000 + j): the clean return is that one
EVAL_ENVS = 8  # rllab.evaluate's default: the clean row of the attacked card equals the final evaluation


def parse_attack(spec: str) -> tuple[str, str, int | None]:
    """``pgd`` / ``pgd:kl`` / ``pgd:targeted=1`` -> (name, objective, target action or None)."""
    name, _, objective = spec.strip().partition(":")
    objective, _, target = (objective or "action").partition("=")
    if name not in (*ATTACK_NAMES, "quick"):
        raise RllabError(f"unknown attack {name!r} in --attacks; choose from {', '.join(ATTACK_NAMES)} or quick")
    if objective not in OBJECTIVES:
        raise RllabError(f"unknown objective {objective!r} in --attacks {spec!r}; use one of {', '.join(OBJECTIVES)}")
    if target and not target.isdigit():
        raise RllabError(f"--attacks {spec!r}: a target action is a whole number, e.g. pgd:targeted=0")
    if (objective == "targeted") != bool(target):
        raise RllabError(f"--attacks {spec!r}: a targeted attack names its action (pgd:targeted=0), others none")
    return name, objective, int(target) if target else None


def build_attacks(agent: Any, specs: list[str], steps: int) -> list[Attack]:
    """The attacks ``--attacks`` names, for ``agent`` (``quick``: the standard suite without torchattacks)."""
    attacks: list[Attack] = []
    for spec in specs:
        name, objective, target = parse_attack(spec)
        if name == "quick":
            attacks += standard_suite(agent, steps=steps, library=False)
        else:
            attacks.append(build_attack(name, objective=objective, steps=steps, target=target))
    return list({a.label: a for a in attacks}.values())


def robust_score(clean: float, worst: float, weight: float) -> float:
    """The robustness-aware objective: ``clean - weight * (clean - worst)``."""
    return clean - weight * (clean - worst)


def _train_to(task: dict[str, Any], run: Path) -> None:
    """Train the trial's agent to the rung's steps: a new run, or the run so far resumed; nothing if there."""
    spec = read_json(run / SPEC_FILE)
    options = dict(eval_freq=0, save_freq=0, progress=False, threads=1, final_eval_episodes=task["episodes"])
    if spec is None:
        hp_file = run / "hyperparameters.yml"
        run.mkdir(parents=True, exist_ok=True)
        atomic_write(hp_file, hyperparameter_file(task["hyperparams"], task["env"]))
        algo, env, seed, steps = task["algo"], task["env"], task["seed"], task["steps"]
        train(algo, env, seed=seed, steps=steps, hyperparams=hp_file, out=run, **options)
        return
    done = spec.get("training", {})
    if done.get("complete") and done.get("timesteps", 0) >= task["steps"]:
        return  # SB3 trains whole rollouts: the last rung's may have reached this one; or its record was not written
    train(task["algo"], task["env"], seed=task["seed"], steps=task["steps"], out=run, resume=True, **options)


def run_trial(task: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one trial to one rung (see the module); its figures, or its one-line error."""
    run = Path(task["run"])
    record = run / f"rung-{task['rung']}.json"
    cached = read_json(record)
    if cached is not None and cached.get("task") == task:
        return {**cached["result"], "reused": True}
    started = time.perf_counter()
    th.set_num_threads(1)
    result: dict[str, Any] = {"number": task["number"], "rung": task["rung"], "steps": task["steps"]}
    try:
        _train_to(task, run)
        agent = load(run)
        final = agent.spec["training"]["final_eval"]
        clean = float(final["mean_return"])
        result.update(status="done", timesteps=agent.spec["training"]["timesteps"], clean=clean, score=clean)
        if task["objective"] == "robust":
            eps = float(task["eps"])
            check_budget(eps, agent.is_image, "--eps", "--eps {v}")
            card = attacked_evaluate(
                agent,
                build_attacks(agent, task["attacks"], task["attack_steps"]),
                eps=[eps],
                episodes=task["episodes"],
                seed=int(final["seed"]),
                n_envs=EVAL_ENVS,
                progress=False,
            )
            rows = {label: by_eps[f"{eps:g}"]["mean_return"] for label, by_eps in card["results"].items()}
            worst_attack = min(rows, key=lambda k: rows[k])  # the first of equals, in the card's row order
            result.update(
                attacks=rows,
                worst=rows[worst_attack],
                worst_attack=worst_attack,
                score=robust_score(clean, rows[worst_attack], task["weight"]),
            )
    except RllabError as exc:
        if str(exc).startswith("interrupted"):  # Ctrl-C in training (its checkpoint is saved): the tune stops
            raise KeyboardInterrupt from None
        result.update(status="failed", error=str(exc))
    except (TypeError, ValueError) as exc:  # a hyperparameter the algorithm refuses (a typo in the space, say)
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0])
    result["wall_s"] = round(time.perf_counter() - started, 2)
    if result["status"] == "done":
        write_json(record, {"task": task, "result": result})
    return result
