"""Running a study: its agents (vanilla, defended, compressed, adapted) and the stages that make, evaluate,
attack and explain each, every stage cached by its inputs (``study.stages``); then the page."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from explain.report import build_methods, explain_agent
from explain.tensorboard import ExplanationWriter
from rllab import training
from rllab.agent import load
from rllab.cli.defend import defend_checkpoint, parse_spec
from rllab.cli.transforms import adapt_checkpoint, distill_checkpoint, prune_checkpoint, quantize_checkpoint
from rllab.evaluation import evaluate as clean_evaluate
from rllab.files import read_json, write_json
from rllab.parsing import parse_number
from robustness.evaluate import build_attack, standard_suite
from robustness.evaluate import evaluate as attacked_evaluate
from robustness.learned.attack import LearnedAttack
from robustness.report import write_report
from robustness.tensorboard import write_attack_curves
from study.spec import EnvStudy, Study
from study.stages import Stage, StageRunner

ATTACK_DIR = Path("attacks") / "lab"
EXPLAIN_DIR = Path("explain") / "lab"
VERSIONED = ("rllab", "torch", "stable-baselines3", "gymnasium", "numpy", "matplotlib", "tensorboard", "pydantic")


@dataclass
class AgentPlan:
    """One agent of the study: how it is made and where it lives."""

    env: str
    algo: str
    seed: int
    name: str  # vanilla, or the defense / compression / adaptation's name
    kind: str  # vanilla | defense | compression | adaptation
    folder: Path
    parent: Path | None
    settings: dict[str, Any]

    @property
    def label(self) -> str:
        """``ENV-ALGO-sSEED-NAME``: the agent's folder name and stage ids."""
        return self.folder.name


def plan_agents(study: Study, out: Path) -> list[AgentPlan]:
    """Every agent the study makes, parents first."""
    plans = []
    for env_id, env in study.envs.items():
        for algo in env.algos:
            for seed in study.seeds:
                base = f"{env_id}-{algo}-s{seed}"
                vanilla = out / "agents" / f"{base}-vanilla"
                plans.append(AgentPlan(env_id, algo, seed, "vanilla", "vanilla", vanilla, None, {"steps": env.steps}))
                for d in env.defenses:
                    parent = None if d.train else vanilla
                    settings = {**d.model_dump(), "steps": env.steps}
                    plans.append(
                        AgentPlan(
                            env_id, algo, seed, d.name, "defense", out / "agents" / f"{base}-{d.name}", parent, settings
                        )
                    )
                for c in env.compressions:
                    plans.append(
                        AgentPlan(
                            env_id,
                            algo,
                            seed,
                            c.name,
                            "compression",
                            out / "agents" / f"{base}-{c.name}",
                            vanilla,
                            c.model_dump(),
                        )
                    )
                for a in env.adaptations:
                    plans.append(
                        AgentPlan(
                            env_id,
                            algo,
                            seed,
                            a.name,
                            "adaptation",
                            out / "agents" / f"{base}-{a.name}",
                            vanilla,
                            a.model_dump(),
                        )
                    )
    return plans


def make_agent(plan: AgentPlan, episodes: int) -> dict[str, Any]:
    """Train, defend, compress or adapt the agent into ``plan.folder``; the record says what it is."""
    s = plan.settings
    steps = {"steps": s["steps"]} if s.get("steps") else {}
    if plan.kind == "vanilla":
        training.train(plan.algo, plan.env, seed=plan.seed, out=plan.folder, progress=False, **steps)
    elif plan.kind == "defense" and s.get("train"):
        kw = dict(s["train"])
        defense = kw.pop("defense")
        steps = {"steps": kw.pop("steps")} if kw.get("steps") else steps
        training.train(
            plan.algo,
            plan.env,
            seed=plan.seed,
            out=plan.folder,
            progress=False,
            defense=defense,
            defense_kwargs=kw,
            **steps,
        )
    elif plan.kind == "defense":
        smoothing = parse_spec("smooth:" + s["smooth"], "smooth")["params"] if s.get("smooth") else None
        defend_checkpoint(plan.parent, plan.folder, filters=[parse_spec(f) for f in s["filters"]], smoothing=smoothing)
    elif plan.kind == "compression":
        make = {"distill": distill_checkpoint, "prune": prune_checkpoint, "quantize": quantize_checkpoint}
        options = dict(s["settings"])
        if s["transform"] != "quantize":
            options["progress"] = False
        make[s["transform"]](plan.parent, out=plan.folder, seed=plan.seed, eval_episodes=episodes, **options)
    else:
        adapt_checkpoint(
            plan.parent,
            plan.folder,
            target_env_kwargs=s["target_env_kwargs"] or None,
            target_wrappers=s["target_wrappers"] or None,
            seed=plan.seed,
            eval_episodes=episodes,
            progress=False,
            **s["settings"],
        )
    spec = load(plan.folder).spec
    record: dict[str, Any] = {"lineage": [step.get("transform") for step in spec.get("lineage", [])]}
    if "compression" in spec:
        record["compression"] = spec["compression"]
    if "adaptation" in spec:
        record["adaptation"] = {k: v for k, v in spec["adaptation"].items() if k != "history"}
    return record


def attack_list(plan: AgentPlan, env: EnvStudy, agent: Any) -> list[Any]:
    """The attacks of ``env.attacks`` for this agent: the standard suite for quick / all, or the names given
    plus an adaptive (BPDA and/or EOT) PGD row for a defended agent."""
    spec = env.attacks
    assert spec is not None
    out: list[Any] = []
    objective = "action" if agent.is_discrete else "kl"
    for n in spec.names:
        if n in ("quick", "all"):
            out += standard_suite(agent, steps=spec.steps, library=n == "all")
        else:
            out.append(build_attack(n, objective=objective, steps=spec.steps))
    # named attacks get the suite's adaptive rows too: BPDA past non-differentiable defenses, EOT over random ones
    bpda = any(not d["differentiable"] for d in agent.defenses)
    eot = 8 if any(d["random"] for d in agent.defenses) else 1
    if (bpda or eot > 1) and not {"quick", "all"} & set(spec.names):
        out.append(build_attack("pgd", objective=objective, steps=spec.steps, bpda=bpda, eot=eot))
    return out


def add_learned_row(card: dict[str, Any], plan: AgentPlan, env: EnvStudy, agent: Any) -> None:
    """The learned adversary's row, at the study's ``learned_eps`` only (it trains one adversary per eps, the
    costliest row of the suite), evaluated on the same episodes and added to ``card``."""
    spec = env.attacks
    assert spec is not None
    budgets = [parse_number(str(e), "learned_eps") for e in (spec.learned_eps or spec.eps)]
    learned = attacked_evaluate(
        agent,
        attacks=[LearnedAttack(adv_steps=spec.learned_steps)],
        eps=budgets,
        episodes=spec.episodes,
        seed=plan.seed,
        steps=spec.steps,
        progress=False,
    )
    for label, settings in learned["attacks"].items():
        if label != "noise":
            card["attacks"][label] = settings
            card["results"][label] = learned["results"][label]


def attack_agent(plan: AgentPlan, env: EnvStudy, tb_root: Path) -> dict[str, Any]:
    """The agent's attack card and report (``AGENT/attacks/lab``), with TensorBoard curves whose step is eps."""
    spec = env.attacks
    assert spec is not None
    agent = load(plan.folder)
    eps = [parse_number(str(e), "eps") for e in spec.eps]
    card = attacked_evaluate(
        agent,
        attacks=attack_list(plan, env, agent),
        eps=eps,
        episodes=spec.episodes,
        seed=plan.seed,
        steps=spec.steps,
        progress=False,
    )
    if spec.learned_steps and plan.name in spec.learned_on:
        add_learned_row(card, plan, env, agent)
    card["agent"]["run"] = str(plan.folder)
    paths = write_report(card, plan.folder / ATTACK_DIR)
    # the curves `rllab attack` writes: step = eps in the unit's ticks (named in the tags), a custom-scalars layout
    write_attack_curves(tb_root / plan.label / "attack", card)
    return {"card": str(ATTACK_DIR / paths["json"].name), "report": str(ATTACK_DIR / paths["html"].name)}


def explain_one(plan: AgentPlan, env: EnvStudy, tb_root: Path) -> dict[str, Any]:
    """Attribution maps (and faithfulness metrics) of the agent, to TensorBoard and ``AGENT/explain/lab``."""
    spec = env.explain
    assert spec is not None
    agent = load(plan.folder)
    png = plan.folder / EXPLAIN_DIR
    png.mkdir(parents=True, exist_ok=True)
    masked = [d["name"] for d in agent.defenses if not d.get("differentiable", True)]
    if masked:  # the gradient of a vote or a median is zero or undefined: no map would mean anything
        (tb_root / plan.label / "explain").mkdir(parents=True, exist_ok=True)
        return {"skipped": f"not explained: non-differentiable defense ({', '.join(masked)})", "images": []}
    writer = ExplanationWriter(tb_root / plan.label / "explain", png)
    try:
        result = explain_agent(
            agent,
            build_methods(agent, spec.methods),
            writer,
            episodes=spec.episodes,
            every=spec.every,
            metrics=spec.metrics,
            seed=plan.seed,
            progress=False,
            activation_max=spec.activation_maximisation,
        )
    finally:
        writer.close()
    images = sorted(str(p.relative_to(plan.folder)) for p in png.glob("*.png"))  # paths in the agent's folder
    return {"metrics": result["metrics"], "columns": result["columns"], "states": result["states"], "images": images}


def versions() -> dict[str, str]:
    """Python and the versions of the packages the numbers depend on."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_study(
    study: Study,
    out: Path,
    fresh: bool = False,
    attack: bool = True,
    episodes: int | None = None,
    attack_episodes: int | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Run every stage of ``study`` into ``out`` (cached ones are read back), ``jobs`` at a time; returns the
    results the page shows."""
    if episodes is not None or attack_episodes is not None:
        for env in study.envs.values():
            env.episodes = episodes or env.episodes
            if env.attacks is not None and attack_episodes:
                env.attacks.episodes = attack_episodes
    plans = plan_agents(study, out)
    tb_root = out / "tb"
    stages: list[tuple[AgentPlan, str, Stage]] = []
    for p in plans:
        env = study.envs[p.env]
        stages.append(
            (
                p,
                "make",
                Stage(
                    f"make/{p.label}",
                    {**p.settings, "kind": p.kind, "episodes": env.episodes},
                    lambda p=p, n=env.episodes: make_agent(p, n),
                    [p.parent] if p.parent else [],
                    [p.folder],
                ),
            )
        )
        stages.append(
            (
                p,
                "eval",
                Stage(
                    f"eval/{p.label}",
                    {"episodes": env.episodes, "seed": p.seed},
                    lambda p=p, n=env.episodes: clean_evaluate(load(p.folder), episodes=n, seed=p.seed).summary(),
                    [p.folder],
                ),
            )
        )
        if attack and env.attacks is not None:
            stages.append(
                (
                    p,
                    "attack",
                    Stage(
                        f"attack/{p.label}",
                        {**env.attacks.model_dump(), "name": p.name},
                        lambda p=p, env=env: attack_agent(p, env, tb_root),
                        [p.folder],
                        [p.folder / ATTACK_DIR, tb_root / p.label / "attack"],
                    ),
                )
            )
        if env.explain is not None:
            stages.append(
                (
                    p,
                    "explain",
                    Stage(
                        f"explain/{p.label}",
                        env.explain.model_dump(),
                        lambda p=p, env=env: explain_one(p, env, tb_root),
                        [p.folder],
                        [p.folder / EXPLAIN_DIR, tb_root / p.label / "explain"],
                    ),
                )
            )
    runner = StageRunner(out, len(stages), fresh=fresh)
    found: dict[str, dict[str, Any]] = {p.label: {"plan": p} for p in plans}
    done = runner.run_all([stage for _, _, stage in stages], jobs=jobs)
    for p, what, stage in stages:
        found[p.label][what] = done[stage.id]
    for p in plans:
        attack_record = found[p.label].get("attack")
        if attack_record:
            found[p.label]["card_data"] = read_json(p.folder / attack_record["card"])
    results = {
        "name": study.name,
        "out": str(out),
        "study": study.model_dump(),
        "written": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": versions(),
        "timings": runner.timings,
        "seconds": float(np.sum([t["seconds"] for t in runner.timings])),
        "agents": found,
    }
    write_json(out / "timings.json", {"timings": runner.timings, "seconds": results["seconds"]})
    return results
