"""``rllab tune``, top to bottom: Optuna's ask-and-tell in the driver, trials run on a pool of workers.

Determinism: the sampler is seeded; trials are asked in batches of ``batch`` (not ``--jobs``); every rung
of a batch runs on the pool (a local process pool or Ray tasks, ``--jobs`` at a time), and its results are
reported, pruned and told back in trial order once the whole rung is in. So the trials, their parameters and
every number depend on the settings and the seed only, never on the backend, the job count or the order in
which workers finish. A pruner compares a trial with the finished trials of earlier batches (median) or the
trials that reached the rung before it in that order (successive halving).

Resume: ``OUT/trials.json`` keeps every rung's figures as they come in; run again with the same settings,
the driver replays the sampler (the same asks give the same parameters: checked) and runs only the rungs
not yet recorded. Failed rungs are not kept: they run again.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rllab.checkpoint import write_json
from rllab.errors import RllabError
from rllab.files import atomic_write
from rllab.sweep import POOLS
from rllab.sweep.jobs import read_json
from study.tune.report import best_trials, render_best, render_markdown
from study.tune.space import Space, decode, distributions, hyperparameters
from study.tune.trial import parse_attack, run_trial

PRUNERS = ("median", "halving", "none")
HALVING = 3  # successive halving's reduction factor: each rung trains 3x the steps of the one before


def optuna_module() -> Any:
    """Optuna, or one line naming the extra that installs it."""
    try:
        import optuna  # an optional extra: rllab[tune]
    except ModuleNotFoundError:
        raise RllabError("rllab tune needs Optuna: pip install -e .[tune]  (or: pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass
class TuneSettings:
    """What a tune's results depend on (the backend and ``--jobs`` are not part of it)."""

    algo: str
    env: str
    space: str
    trials: int = 20
    steps: int = 20_000
    rungs: int = 3
    pruner: str = "median"
    startup: int = 5  # random trials before TPE; finished trials before the median pruner prunes
    batch: int = 4
    seed: int = 0
    episodes: int = 5
    objective: str = "clean"
    weight: float = 0.5
    eps: float | None = None
    attacks: list[str] = field(default_factory=lambda: ["pgd"])
    attack_steps: int = 10

    def check(self) -> None:
        """Options that need nothing trained: one line for the first one that is wrong."""
        if self.pruner not in PRUNERS:
            raise RllabError(f"unknown pruner {self.pruner!r}; choose from {', '.join(PRUNERS)}")
        if self.objective not in ("clean", "robust"):
            raise RllabError(f"unknown objective {self.objective!r}; choose clean or robust")
        if self.objective == "robust" and self.eps is None:
            raise RllabError("--objective robust needs --eps (the budget of the worst case, in threat units)")
        if self.objective == "robust" and not self.attacks:
            raise RllabError("--objective robust needs --attacks")
        for spec in self.attacks:
            parse_attack(spec)
        least = HALVING ** (self.rungs - 1) if self.pruner == "halving" else self.rungs
        if self.steps < least:
            raise RllabError(f"--steps {self.steps} is too few for {self.rungs} {self.pruner} rungs: at least {least}")

    def rung_steps(self) -> list[int]:
        """The training steps at which each rung evaluates: evenly spaced, or 3x apart for successive halving."""
        if self.pruner == "halving":
            return [self.steps // HALVING ** (self.rungs - 1 - r) for r in range(self.rungs)]
        return [self.steps * (r + 1) // self.rungs for r in range(self.rungs)]


def _pruner(optuna: Any, settings: TuneSettings) -> Any:
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings.startup, n_warmup_steps=0)
    if settings.pruner == "halving":  # rung r is reported at step 3**r
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=HALVING)
    return optuna.pruners.NopPruner()


def _report_step(settings: TuneSettings, rung: int, steps: int) -> int:
    return HALVING**rung if settings.pruner == "halving" else steps


def _describe(res: dict[str, Any]) -> str:
    if res["status"] != "done":
        return f"failed: {res['error']}"
    if "worst" not in res:
        return f"clean {res['clean']:.4g}"
    return f"clean {res['clean']:.4g}, worst {res['worst']:.4g} ({res['worst_attack']}), score {res['score']:.4g}"


def tune(
    settings: TuneSettings,
    space: Space,
    out: str | Path,
    jobs: int = 1,
    backend: str = "local",
    fresh: bool = False,
    echo: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Run the tune (see the module) into ``out``; its record (also ``out/trials.json``)."""
    optuna = optuna_module()
    settings.check()
    if backend not in POOLS:
        raise RllabError(f"unknown backend {backend!r}; choose from {', '.join(POOLS)}")
    say = echo or (lambda s: None)
    out = Path(out)
    header = {"settings": asdict(settings), "space": space.model_dump(), "rung_steps": settings.rung_steps()}
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    previous = read_json(out / "trials.json")
    if previous is not None and {k: previous.get(k) for k in header} != json.loads(json.dumps(header)):
        raise RllabError(f"{out} holds a tune with other settings; pass --fresh to start it over, or another --name")
    kept = {t["number"]: t for t in (previous or {}).get("trials", [])}
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(n_startup_trials=settings.startup, seed=settings.seed, multivariate=True)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=_pruner(optuna, settings))
    dists, rungs = distributions(space), settings.rung_steps()
    records: dict[int, dict[str, Any]] = {}
    say(
        f"[tune] {settings.trials} trials of {settings.algo} on {settings.env} ({settings.space}), "
        f"{rungs[-1]} steps in {len(rungs)} rung(s) {rungs}, objective {settings.objective}; "
        f"batches of {settings.batch}, {jobs} at a time ({backend}) -> {out}"
    )

    def save() -> dict[str, Any]:
        record = {**header, "backend": backend, "jobs": jobs, "trials": [records[n] for n in sorted(records)]}
        record.update(best_trials(record["trials"]))
        write_json(out / "trials.json", record)
        return record

    pool = None
    try:
        for start in range(0, settings.trials, settings.batch):
            numbers = list(range(start, min(start + settings.batch, settings.trials)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                asked = {n: study.ask(dists) for n in numbers}
            for n, trial in asked.items():
                values = decode(space, trial.params)
                old = kept.get(n)
                if old is not None and json.loads(json.dumps(values)) != old["params"]:
                    raise RllabError(f"cannot resume {out}: trial {n} is sampled differently now; pass --fresh")
                records[n] = {
                    "number": n,
                    "params": values,
                    "hyperparams": hyperparameters(space, values, settings.algo, settings.env),
                    "run": str(out / "trials" / f"{n:03d}"),
                    "state": "running",
                    "rungs": [r for r in (old or {}).get("rungs", []) if r["status"] == "done"],
                }
            alive = list(numbers)
            for r, steps in enumerate(rungs):
                todo = [n for n in alive if len(records[n]["rungs"]) <= r]
                if todo:
                    pool = pool or POOLS[backend](min(jobs, settings.batch))
                    tasks = [_task(settings, records[n], r, steps) for n in todo]

                    def done(i: int, res: dict[str, Any], todo: list[int] = todo, r: int = r) -> None:
                        records[todo[i]]["rungs"].append(res)
                        took = "reused" if res.get("reused") else f"{res['wall_s']:.0f} s"
                        say(f"[tune] trial {todo[i]} rung {r + 1}/{len(rungs)} ({res['steps']} steps): "
                            f"{_describe(res)} ({took})")  # fmt: skip
                        save()  # what finished is on disk: an interrupted tune keeps it

                    pool.map(run_trial, tasks, on_result=done)
                for n in list(alive):  # in trial order, once the whole rung is in
                    res, trial = records[n]["rungs"][r], asked[n]
                    if res["status"] != "done":
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                        records[n].update(state="failed", error=res["error"])
                        alive.remove(n)
                        continue
                    trial.report(res["score"], _report_step(settings, r, steps))
                    if r < len(rungs) - 1 and trial.should_prune():
                        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                        records[n].update(state="pruned", pruned_at=r + 1, value=res["score"])
                        alive.remove(n)
                        say(f"[tune] trial {n} pruned at rung {r + 1}/{len(rungs)} (score {res['score']:.4g})")
            for n in alive:
                value = records[n]["rungs"][-1]["score"]
                study.tell(asked[n], value)
                records[n].update(state="complete", value=value)
            if start == 0 and all(records[n]["state"] == "failed" for n in numbers):
                raise RllabError(f"every trial of the first batch failed; trial 0: {records[0]['error']}")
            record = save()
            best = record.get("best")
            shown = f"best so far: trial {best['number']}, score {best['value']:.4g}" if best else "no trial finished"
            say(f"[tune] {numbers[-1] + 1}/{settings.trials} trials done; {shown}")
    except KeyboardInterrupt:
        raise RllabError("interrupted; run the same command again to continue (finished rungs are reused)") from None
    finally:
        if pool is not None:
            pool.close()
    record = save()
    atomic_write(out / "trials.md", render_markdown(record))
    if record.get("best"):
        atomic_write(out / "best.yml", render_best(record))
    return record


def _task(settings: TuneSettings, record: dict[str, Any], rung: int, steps: int) -> dict[str, Any]:
    """What a worker needs to run one rung of one trial (plain data: it travels to a process or a Ray task)."""
    s = settings
    return {
        "number": record["number"],
        "rung": rung,
        "steps": steps,
        "run": record["run"],
        "algo": s.algo,
        "env": s.env,
        "seed": s.seed,
        "hyperparams": record["hyperparams"],
        "episodes": s.episodes,
        "objective": s.objective,
        "weight": s.weight,
        "eps": s.eps,
        "attacks": list(s.attacks),
        "attack_steps": s.attack_steps,
    }
