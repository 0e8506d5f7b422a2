"""``rllab sweep``: many runs (algorithms x environments x a hyperparameter grid x seeds), in parallel,
reported across seeds.

Each run is a job: the ``rllab`` command line, run as subprocesses, stage after stage — ``train``,
``eval`` and, when asked, ``attack`` — into ``OUT/<config>/s<seed>/``. Jobs run on a local pool of
``--jobs`` workers or as Ray tasks (``--backend ray``; a local Ray instance, or the cluster that
``RAY_ADDRESS`` names, whose nodes must all see ``OUT``). Every job trains with a pinned PyTorch thread
count (``--threads``, 1 by default), so a run's weights do not depend on how many jobs ran beside it or
on the backend: the same seed gives the same checkpoint as ``rllab train --threads 1``.

A job records what it ran in ``RUN/sweep-job.json``. Run again, the sweep reuses finished stages of jobs
whose commands are unchanged, resumes an interrupted training from its last checkpoint, and starts over
a job whose commands changed. The summary (``OUT/sweep.json``, ``OUT/sweep.md``) reports each config
across its seeds — mean, Student-t 95% CI, median, interquartile mean, min, max, and every seed's value
— because one seed's figure says little about an algorithm or a setting (Henderson et al. 2018;
Agarwal et al. 2021). The sweep imports nothing from ``robustness``: it runs ``rllab attack`` and reads
its ``results.json``.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rllab.checkpoint import write_json
from rllab.errors import RllabError

RECORD = "sweep-job.json"
ATTACK_DIR = Path("attacks") / "sweep"
EVAL_FILE = "sweep-eval.json"  # training writes its own eval.json (its final evaluation)


@dataclass
class Job:
    config: str  # the config's name (folder under OUT)
    params: dict[str, Any]  # algo, env and the grid's hyperparameters
    seed: int
    run: str  # absolute run folder
    stages: list[list[str]]  # rllab command lines (without "rllab"), in order
    threads: int = 1
    log: str = ""


# ---------------------------------------------------------------- planning
def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> 0..4, ``"0,3,7"`` -> those, ``"2"`` -> [2]; duplicates are an error."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)", part)
        try:
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                if hi < lo:
                    raise ValueError
                seeds += list(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise RllabError(f"--seeds must be integers or ranges like 0-4 or 0,1,5; got {text!r}") from None
    if any(s < 0 for s in seeds):
        raise RllabError(f"--seeds must be >= 0; got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise RllabError(f"--seeds lists a seed twice: {text!r}")
    return seeds


def parse_grid(text: str | None) -> dict[str, list[Any]]:
    """A YAML/JSON mapping of hyperparameter -> list of values (a scalar is a one-value list)."""
    if not text:
        return {}
    try:
        grid = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RllabError(f"--grid is not valid YAML/JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(grid, dict) or not grid:
        raise RllabError(
            "--grid must be a YAML/JSON mapping of hyperparameter to values, e.g. '{learning_rate: [1e-3, 3e-4]}'"
        )
    out = {}
    for key, values in grid.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise RllabError(f"--grid: {key} has no values")
        out[str(key)] = values
    return out


def _value_text(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def config_name(params: dict[str, Any], grid_keys: list[str], multi: bool) -> str:
    """``ppo-CartPole-v1`` (+ ``_learning_rate=0.001`` per grid key); readable and safe as a folder name."""
    parts = [f"{params['algo']}-{params['env'].replace('/', '_')}"] if multi or not grid_keys else []
    parts += [f"{k}={_value_text(params[k])}" for k in grid_keys]
    name = "_".join(parts)
    safe = re.sub(r"[^A-Za-z0-9._=+-]", "", name.replace(" ", ""))
    if safe != name.replace(" ", "") or len(safe) > 120:  # lists or mappings: keep it short and unique
        import hashlib

        safe = f"{safe[:80]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return safe


def plan(
    algos: list[str],
    envs: list[str],
    seeds: list[int],
    out: Path,
    grid: dict[str, list[Any]] | None = None,
    train_args: list[str] | None = None,
    eval_episodes: int = 20,
    eval_seed: int = 0,
    attack_args: list[str] | None = None,
    threads: int = 1,
) -> list[Job]:
    """The jobs of a sweep: one per (algo, env, grid point, seed), each a list of ``rllab`` command lines."""
    grid = grid or {}
    keys = list(grid)
    multi = len(algos) > 1 or len(envs) > 1
    jobs, names = [], set()
    for algo, env, values in itertools.product(algos, envs, itertools.product(*grid.values())):
        params = {"algo": algo, "env": env, **dict(zip(keys, values, strict=True))}
        name = config_name(params, keys, multi)
        if name in names:
            raise RllabError(f"two configs of the sweep would share the folder {name!r}; make the grid values distinct")
        names.add(name)
        sets = [arg for k in keys for arg in ("--set", f"{k}={_value_text(params[k])}")]
        for seed in seeds:
            run = (out / name / f"s{seed}").resolve()
            train = ["train", "--algo", algo, "--env", env, "--seed", str(seed), "--out", str(run)]
            train += ["--threads", str(threads), "--no-progress", *(train_args or []), *sets]
            stages = [train]
            evaluation = ["eval", str(run), "--episodes", str(eval_episodes), "--seed", str(eval_seed)]
            stages.append([*evaluation, "--json", str(run / EVAL_FILE)])
            if attack_args is not None:
                stages.append(["attack", str(run), *attack_args, "--out", str(run / ATTACK_DIR), "--no-progress"])
            log = str((out / "logs" / f"{name}-s{seed}.log").resolve())
            jobs.append(Job(name, params, seed, str(run), stages, threads, log))
    return jobs


# ---------------------------------------------------------------- one job (runs in a worker or a Ray task)
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _training_state(run: Path) -> str:
    spec = _read_json(run / "agent.json")
    if spec is None:
        return "none"
    return "complete" if spec.get("training", {}).get("complete") else "partial"


def _stage_done(run: Path, stage: list[str]) -> bool:
    verb = stage[0]
    if verb == "train":
        return _training_state(run) == "complete"
    if verb == "eval":
        return (run / EVAL_FILE).exists()
    if verb == "attack":
        return (run / ATTACK_DIR / "results.json").exists()
    return False


def _invalidate(run: Path, verb: str) -> None:
    if verb == "eval":
        (run / EVAL_FILE).unlink(missing_ok=True)
    elif verb == "attack":
        shutil.rmtree(run / ATTACK_DIR, ignore_errors=True)


FAILED_MARK = "@@rllab-sweep-stage-failed"


def run_stages(stages: list[list[str]]) -> int:
    """Run ``rllab`` command lines one after another in this process (one interpreter per job, not per
    stage: importing torch and SB3 costs seconds); stop at the first that fails."""
    from rllab.cli import main

    for i, argv in enumerate(stages):
        print(f"$ rllab {' '.join(argv)}", flush=True)
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse refused the command line
            code = exc.code if isinstance(exc.code, int) else 2
        sys.stdout.flush()
        if code:
            print(f"{FAILED_MARK} {i} {code}", file=sys.stderr, flush=True)
            return code
    return 0


def run_job(job: Job | dict[str, Any]) -> dict[str, Any]:
    """Run the job's stages that are not done yet; returns ``{config, seed, run, status, ...}``.

    The stages run in one ``python`` subprocess with ``OMP_NUM_THREADS`` pinned, its output appended to
    the job's log. A stage that fails stops the job; the command's one-line error is returned with its
    exit status.
    """
    job = Job(**job) if isinstance(job, dict) else job
    run, log_path = Path(job.run), Path(job.log)
    started = time.time()
    record = _read_json(run / RECORD)
    before = (record or {}).get("stages") or []
    if record is None or not before or before[0] != job.stages[0]:
        if run.exists():  # another training command, another sweep's job or an unknown folder: start over
            shutil.rmtree(run)
    else:  # same training: redo the stages whose command changed (evaluation and attack depend on the weights only)
        for stage in job.stages[1:]:
            if stage not in before:
                _invalidate(run, stage[0])
    run.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(run / RECORD, {"stages": job.stages, "status": "running", "started": time.time()})
    todo = []
    for stage in job.stages:
        if _stage_done(run, stage):
            continue
        if stage[0] == "train" and _training_state(run) == "partial":
            # train --algo A --env E --seed S --out RUN, continued with its stored settings
            stage = [*stage[:9], "--resume", "--threads", str(job.threads), "--no-progress"]
        todo.append(stage)
    result: dict[str, Any] = {"config": job.config, "seed": job.seed, "run": job.run, "status": "done"}
    result["reused"] = [st[0] for st in job.stages if st[0] not in {t[0] for t in todo}]
    result["ran"] = []
    if todo:
        env = dict(os.environ, OMP_NUM_THREADS=str(job.threads), MKL_NUM_THREADS=str(job.threads))
        code = "import json, sys; from rllab.sweep import run_stages; sys.exit(run_stages(json.loads(sys.argv[1])))"
        with open(log_path, "a") as log:
            proc = subprocess.run(
                [sys.executable, "-c", code, json.dumps(todo)],
                stdout=log,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                check=False,
            )
            log.write(proc.stderr)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        failed = [ln.split() for ln in lines if ln.startswith(FAILED_MARK)]
        if proc.returncode != 0:
            index = int(failed[-1][1]) if failed else 0
            errors = [ln for ln in lines if not ln.startswith(FAILED_MARK)]
            error = re.sub(r"^rllab \S+: error: ", "", errors[-1]) if errors else f"exit status {proc.returncode}"
            stage = todo[index][0]
            result.update(status="failed", stage=stage, returncode=proc.returncode, error=error)
            result["ran"] = [t[0] for t in todo[:index]]
        else:
            result["ran"] = [t[0] for t in todo]
    result["wall_s"] = time.time() - started
    write_json(run / RECORD, {"stages": job.stages, **result})
    return result


# ---------------------------------------------------------------- backends
def _run_local(jobs: list[Job], workers: int, on_done: Callable[[dict[str, Any]], bool]) -> None:
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:  # the work is in subprocesses
        pending = [pool.submit(run_job, j) for j in jobs]
        try:
            for fut in cf.as_completed(pending):
                if not on_done(fut.result()):
                    break  # the jobs already running finish; the queued ones never start
        finally:
            for f in pending:
                f.cancel()


def _run_ray(jobs: list[Job], workers: int, on_done: Callable[[dict[str, Any]], bool]) -> None:
    try:
        import ray
    except ModuleNotFoundError:
        raise RllabError("--backend ray needs Ray: pip install 'rllab[ray]' (or: pip install ray)") from None
    started_here = not ray.is_initialized()
    if started_here:
        address = os.environ.get("RAY_ADDRESS")
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if not address:  # a local instance with room for `workers` jobs at a time
            kwargs["num_cpus"] = workers * max(j.threads for j in jobs)
        ray.init(address=address, **kwargs)
    try:
        remote = ray.remote(num_cpus=max(j.threads for j in jobs))(run_job)
        refs = [remote.remote(asdict(j)) for j in jobs]
        while refs:
            ready, refs = ray.wait(refs, num_returns=1)
            if not on_done(ray.get(ready[0])):
                for r in refs:
                    ray.cancel(r)
                break
    finally:
        if started_here:
            ray.shutdown()


BACKENDS = {"local": _run_local, "ray": _run_ray}


# ---------------------------------------------------------------- summary
def seed_stats(values: list[float]) -> dict[str, Any] | None:
    """Across seeds: mean, sample std, Student-t 95% CI (None for one seed), median, IQM, min, max."""
    from scipy import stats

    from rllab.evaluation import confidence_interval

    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n == 0:
        return None
    ci = confidence_interval(x)  # Student-t; None for one seed
    return {
        "n": int(n),
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)) if n > 1 else 0.0,
        "ci95": list(ci) if ci is not None else None,
        "median": float(np.median(x)),
        "iqm": float(stats.trim_mean(x, 0.25)),
        "min": float(x.min()),
        "max": float(x.max()),
        "values": [float(v) for v in x],
    }


def attack_summary(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per eps: the worst case (lowest mean return over every row, uniform noise included: it is an
    adversary within the same budget), the attack that reached it, and noise's return."""
    out = {}
    for e in card["threat_model"]["eps"]:
        key = f"{float(e):g}"
        rows = {n: r[key] for n, r in card["results"].items() if key in r}
        if not rows:
            continue
        name, row = min(rows.items(), key=lambda kv: kv[1]["mean_return"])
        out[key] = {"worst_case": row["mean_return"], "by": name, "noise": rows.get("noise", {}).get("mean_return")}
    return out


def summarise(jobs: list[Job], results: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    configs: dict[str, dict[str, Any]] = {}
    for job in jobs:
        c = configs.setdefault(job.config, {"params": job.params, "runs": [], "failed": []})
        res = results.get((job.config, job.seed))
        ev = _read_json(Path(job.run) / EVAL_FILE)
        if res is None or res.get("status") != "done" or ev is None:
            if res is not None:
                c["failed"].append({"seed": job.seed, "log": job.log, "error": res.get("error", "not run")})
            continue
        entry: dict[str, Any] = {"seed": job.seed, "run": job.run, "mean_return": ev["mean_return"], "log": job.log}
        spec = _read_json(Path(job.run) / "agent.json") or {}
        entry["train_wall_s"] = spec.get("training", {}).get("wall_time_s")
        card = _read_json(Path(job.run) / ATTACK_DIR / "results.json")
        if card is not None:
            entry["attack"] = attack_summary(card)
            entry["attack_unit"] = card["threat_model"].get("unit")
        c["runs"].append(entry)
    for c in configs.values():
        runs = c["runs"]
        c["clean"] = seed_stats([r["mean_return"] for r in runs]) if runs else None
        eps_keys = sorted({k for r in runs for k in r.get("attack", {})}, key=float)
        c["attacked"] = {}
        for k in eps_keys:
            with_k = [r["attack"][k] for r in runs if k in r.get("attack", {})]
            c["attacked"][k] = {
                "worst_case": seed_stats([a["worst_case"] for a in with_k]),
                "noise": seed_stats([a["noise"] for a in with_k if a["noise"] is not None]),
                "reached_by": [a["by"] for a in with_k],
            }
        c["attack_unit"] = next((r["attack_unit"] for r in runs if r.get("attack_unit")), None)
    ranked = sorted(configs, key=lambda n: -(configs[n]["clean"] or {"mean": -math.inf})["mean"])
    return {"configs": configs, "ranking": ranked}


def _fmt(s: dict[str, Any] | None) -> str:
    if not s:
        return "—"
    text = f"{s['mean']:.4g}"
    if s["ci95"] is not None:
        text += f" [{s['ci95'][0]:.4g}, {s['ci95'][1]:.4g}]"
    return text


def render_markdown(summary: dict[str, Any], header: dict[str, Any]) -> str:
    configs = summary["configs"]
    eps_keys = sorted({k for c in configs.values() for k in c["attacked"]}, key=float)
    unit = next((c["attack_unit"] for c in configs.values() if c["attack_unit"]), "")
    lines = [
        f"# Sweep: {header['n_jobs']} runs, seeds {', '.join(map(str, header['seeds']))}",
        "",
        f"Clean return: each run's mean over {header['eval_episodes']} evaluation episodes (seeds "
        f"{header['eval_seed']}..{header['eval_seed'] + header['eval_episodes'] - 1}); across seeds: mean "
        "[Student-t 95% CI], median, interquartile mean, min-max. Sorted by mean clean return.",
    ]
    if eps_keys:
        lines.append(
            f"Attacked: each run's worst case per eps over every attack, noise included (eps in {unit}; `rllab attack "
            f"{' '.join(header.get('attack_args') or [])}`), noise of the same budget beside it."
        )
    cols = ["config", "seeds", "clean mean [95% CI]", "median", "IQM", "min-max"]
    for k in eps_keys:
        cols += [f"worst case eps {k}", f"noise eps {k}"]
    lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name in summary["ranking"]:
        c = configs[name]
        s = c["clean"]
        seeds = f"{s['n'] if s else 0}" + (f" ({len(c['failed'])} failed)" if c["failed"] else "")
        row = [name, seeds, _fmt(s)]
        row += [f"{s['median']:.4g}", f"{s['iqm']:.4g}", f"{s['min']:.4g}-{s['max']:.4g}"] if s else ["—"] * 3
        for k in eps_keys:
            a = c["attacked"].get(k)
            row += [_fmt(a["worst_case"]) if a else "—", _fmt(a["noise"]) if a else "—"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Per seed (clean mean return; worst case per eps and the attack that reached it):", ""]
    for name in summary["ranking"]:
        for r in configs[name]["runs"]:
            att = "; ".join(f"eps {k}: {a['worst_case']:.4g} ({a['by']})" for k, a in r.get("attack", {}).items())
            lines.append(f"- {name} s{r['seed']}: {r['mean_return']:.4g}" + (f"; {att}" if att else ""))
        for f in configs[name]["failed"]:
            lines.append(f"- {name} s{f['seed']}: FAILED: {f['error']} (log: {f['log']})")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the sweep
def sweep(
    algos: list[str] | str,
    envs: list[str] | str,
    seeds: list[int] | str,
    out: str | Path,
    grid: dict[str, list[Any]] | str | None = None,
    train_args: list[str] | None = None,
    eval_episodes: int = 20,
    eval_seed: int = 0,
    attack_args: list[str] | None = None,
    jobs: int = 1,
    threads: int = 1,
    backend: str = "local",
    fresh: bool = False,
    echo: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Run the sweep (see the module docstring) and return its summary (also written to ``out``)."""
    from rllab.environment import check_env_id
    from rllab.training import ALGOS

    algos = [a.strip() for a in algos.split(",")] if isinstance(algos, str) else list(algos)
    envs = [e.strip() for e in envs.split(",")] if isinstance(envs, str) else list(envs)
    seeds = parse_seeds(seeds) if isinstance(seeds, str) else list(seeds)
    grid = parse_grid(grid) if isinstance(grid, str) or grid is None else grid
    for a in algos:
        if a not in ALGOS:
            raise RllabError(f"unknown algorithm {a!r}; choose from {', '.join(ALGOS)}")
    for e in envs:
        check_env_id(e)
    if jobs < 1 or threads < 1 or eval_episodes < 1:
        raise RllabError("--jobs, --threads and --episodes must be positive")
    if backend not in BACKENDS:
        raise RllabError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if not seeds:
        raise RllabError("--seeds is empty")
    out = Path(out)
    todo = plan(algos, envs, seeds, out, grid, train_args, eval_episodes, eval_seed, attack_args, threads)
    if fresh:
        for j in todo:
            shutil.rmtree(j.run, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    say = echo or (lambda s: None)
    say(
        f"[sweep] {len(todo)} runs ({len(todo) // len(seeds)} configs x {len(seeds)} seeds), {jobs} at a time "
        f"({backend}), {threads} thread(s) each -> {out}"
    )
    results: dict[tuple[str, int], dict[str, Any]] = {}
    stop: list[dict[str, Any]] = []

    def on_done(res: dict[str, Any]) -> bool:
        results[(res["config"], res["seed"])] = res
        n = len(results)
        ev = _read_json(Path(res["run"]) / EVAL_FILE)
        if res["status"] == "done":
            what = "reused" if not res["ran"] else f"{res['wall_s']:.0f}s"
            figure = f"mean return {ev['mean_return']:.4g}" if ev else ""
            say(f"[sweep] {n}/{len(todo)} {res['config']} s{res['seed']}: {figure} ({what})")
            return True
        say(f"[sweep] {n}/{len(todo)} {res['config']} s{res['seed']}: {res['stage']} failed: {res['error']}")
        if res.get("returncode") == 2 and not any(r["status"] == "done" and r["ran"] for r in results.values()):
            stop.append(res)  # a user error on the first job to finish: every job would repeat it
            return False
        return True

    try:
        BACKENDS[backend](todo, jobs, on_done)
    except KeyboardInterrupt:
        raise RllabError("interrupted; run the same command again to continue (finished stages are reused)") from None
    if stop:
        raise RllabError(f"{stop[0]['stage']} failed for {stop[0]['config']} s{stop[0]['seed']}: {stop[0]['error']}")
    summary = summarise(todo, results)
    header = {
        "n_jobs": len(todo),
        "seeds": seeds,
        "algos": algos,
        "envs": envs,
        "grid": grid,
        "train_args": train_args or [],
        "eval_episodes": eval_episodes,
        "eval_seed": eval_seed,
        "attack_args": attack_args,
        "threads": threads,
        "backend": backend,
    }
    write_json(out / "sweep.json", {**header, **summary})
    text = render_markdown(summary, header)
    from rllab.checkpoint import atomic_write

    atomic_write(out / "sweep.md", lambda tmp: tmp.write_text(text))
    return {**header, **summary, "markdown": text}


# ---------------------------------------------------------------- command line
def register(sub: Any) -> None:
    from rllab.parsing import positive_int, seed_int

    p = sub.add_parser(
        "sweep",
        help="train many runs (algorithms x envs x a hyperparameter grid x seeds) in parallel; report across seeds",
    )
    p.add_argument("--algo", required=True, help="one algorithm or a comma list (reinforce, a2c, ppo, dqn)")
    p.add_argument("--env", required=True, help="one Gymnasium id or a comma list")
    p.add_argument("--seeds", default="0-2", help="seeds: a range 0-4 or a list 0,1,5 (default 0-2)")
    p.add_argument("--grid", help="YAML/JSON mapping hyperparameter -> values, e.g. '{learning_rate: [1e-3, 3e-4]}'")
    p.add_argument("--steps", type=positive_int, help="environment steps per run (default: the shipped n_timesteps)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a hyperparameter for every run")
    p.add_argument("--hyperparams", help="YAML file overriding the shipped defaults, for every run")
    p.add_argument("--env-kwargs", help="YAML/JSON mapping passed to gymnasium.make, for every run")
    p.add_argument("--n-envs", type=positive_int)
    p.add_argument(
        "--save-freq", type=int, help="checkpoint every N steps (default steps/10): what a resume restarts from"
    )
    p.add_argument("--episodes", type=positive_int, default=20, help="evaluation episodes per run")
    p.add_argument("--eval-seed", type=seed_int, default=0, help="evaluation episode j is seeded eval-seed + j")
    p.add_argument("--attack", help="also attack every run: `rllab attack --attack` names (or 'all')")
    p.add_argument("--eps", default="0.1", help="with --attack: comma list of budgets (pixel/255 or obs std)")
    p.add_argument("--objective", help="with --attack: action | kl | value | targeted | margin")
    p.add_argument(
        "--attack-episodes", type=positive_int, help="with --attack: episodes per eps (default: --episodes, same seeds)"
    )
    default_jobs = max(1, (os.cpu_count() or 1))
    p.add_argument("--jobs", type=positive_int, default=default_jobs, help=f"runs at a time (default {default_jobs})")
    p.add_argument("--threads", type=positive_int, default=1, help="PyTorch threads per run (default 1)")
    p.add_argument("--backend", choices=sorted(BACKENDS), default="local", help="local worker pool, or Ray tasks")
    p.add_argument("--fresh", action="store_true", help="delete the runs and start over")
    p.add_argument("--out", help="sweep folder (default runs/sweep-ALGO-ENV)")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: Any) -> int:
    from rllab.parsing import yaml_arg

    yaml_arg(args.env_kwargs, "--env-kwargs")  # fails here, in one line, not in every job
    train_args: list[str] = []
    if args.steps:
        train_args += ["--steps", str(args.steps)]
    if args.n_envs:
        train_args += ["--n-envs", str(args.n_envs)]
    if args.save_freq is not None:
        train_args += ["--save-freq", str(args.save_freq)]
    if args.hyperparams:
        if not Path(args.hyperparams).is_file():
            raise RllabError(f"no such hyperparameter file {args.hyperparams}")
        train_args += ["--hyperparams", str(Path(args.hyperparams).resolve())]
    if args.env_kwargs:
        train_args += ["--env-kwargs", args.env_kwargs]
    for s in args.set:
        train_args += ["--set", s]
    attack_args = None
    if args.attack:
        episodes = args.attack_episodes or args.episodes
        attack_args = ["--attack", args.attack, "--eps", args.eps, "--episodes", str(episodes)]
        attack_args += ["--seed", str(args.eval_seed)]
        if args.objective:
            attack_args += ["--objective", args.objective]
    out = args.out or f"runs/sweep-{args.algo.replace(',', '+')}-{args.env.replace(',', '+').replace('/', '_')}"
    result = sweep(
        args.algo,
        args.env,
        args.seeds,
        out,
        grid=args.grid,
        train_args=train_args,
        eval_episodes=args.episodes,
        eval_seed=args.eval_seed,
        attack_args=attack_args,
        jobs=args.jobs,
        threads=args.threads,
        backend=args.backend,
        fresh=args.fresh,
    )
    print(result["markdown"], end="")
    print(f"[sweep] summary: {out}/sweep.md  {out}/sweep.json; runs: {out}/<config>/s<seed>; logs: {out}/logs")
    failed = sum(len(c["failed"]) for c in result["configs"].values())
    if failed:
        print(f"rllab sweep: {failed} of {result['n_jobs']} runs failed (see FAILED in the summary)", file=sys.stderr)
        return 1
    return 0
