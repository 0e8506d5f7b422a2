"""``rllab.sweep.sweep``: a whole sweep — check the plan, run its jobs on a backend, write the summary."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rllab.algos import ALGOS
from rllab.checkpoint import atomic_write, write_json
from rllab.environment import check_env_id
from rllab.errors import RllabError
from rllab.sweep.backends import BACKENDS
from rllab.sweep.jobs import read_json
from rllab.sweep.markdown import render_markdown
from rllab.sweep.plan import EVAL_FILE, check_plan, parse_grid, parse_seeds, plan
from rllab.sweep.stats import summarise


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
    """Run the sweep (see ``rllab.sweep``) and return its summary (also written to ``out``)."""
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
    n_runs = check_plan(algos, envs, seeds, grid)
    out = Path(out)

    def todo():  # the jobs, made afresh on each pass: never a list of them all
        return plan(algos, envs, seeds, out, grid, train_args, eval_episodes, eval_seed, attack_args, threads)

    if fresh:
        for j in todo():
            shutil.rmtree(j.run, ignore_errors=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RllabError(f"cannot write {out}: {exc.strerror or exc}") from None
    say = echo or (lambda s: None)
    say(
        f"[sweep] {n_runs} runs ({n_runs // len(seeds)} configs x {len(seeds)} seeds), {jobs} at a time "
        f"({backend}), {threads} thread(s) each -> {out}"
    )
    results: dict[tuple[str, int], dict[str, Any]] = {}
    stop: list[dict[str, Any]] = []

    def on_done(res: dict[str, Any]) -> bool:
        results[(res["config"], res["seed"])] = res
        n = len(results)
        ev = read_json(Path(res["run"]) / EVAL_FILE)
        if res["status"] == "done":
            what = "reused" if not res["ran"] else f"{res['wall_s']:.0f}s"
            figure = f"mean return {ev['mean_return']:.4g}" if ev else ""
            say(f"[sweep] {n}/{n_runs} {res['config']} s{res['seed']}: {figure} ({what})")
            return True
        say(f"[sweep] {n}/{n_runs} {res['config']} s{res['seed']}: {res['stage']} failed: {res['error']}")
        if res.get("returncode") == 2 and not any(r["status"] == "done" and r["ran"] for r in results.values()):
            stop.append(res)  # a user error on the first job to finish: every job would repeat it
            return False
        return True

    try:
        BACKENDS[backend](todo(), jobs, threads, on_done)
    except KeyboardInterrupt:
        raise RllabError("interrupted; run the same command again to continue (finished stages are reused)") from None
    if stop:
        raise RllabError(f"{stop[0]['stage']} failed for {stop[0]['config']} s{stop[0]['seed']}: {stop[0]['error']}")
    summary = summarise(todo(), results)
    header = {
        "n_jobs": n_runs,
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
    atomic_write(out / "sweep.md", lambda tmp: tmp.write_text(text))
    return {**header, **summary, "markdown": text}
