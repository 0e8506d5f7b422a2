"""Planning a sweep: the seeds and grid read from the command line, the configs' folder names, and the jobs
— one per (algorithm, environment, grid point, seed), each a list of ``rllab`` command lines.

The jobs are generated, never listed: a sweep holds the jobs that run and the results that came back,
not the whole plan, and its size is capped (``MAX_SEEDS``, ``MAX_RUNS``) before anything is made.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rllab.errors import RllabError
from rllab.parsing import MAX_SEED

MAX_SEEDS = 10_000  # seeds of one sweep (each is a training run per config)
MAX_RUNS = 100_000  # runs of one sweep: configs x seeds
RECORD = "sweep-job.json"
ATTACK_DIR = Path("attacks") / "sweep"
EVAL_FILE = "sweep-eval.json"  # training writes its own eval.json (its final evaluation)


@dataclass
class Job:
    """One run of a sweep: a config at a seed, as the ``rllab`` command lines that make it."""

    config: str  # the config's name (folder under OUT)
    params: dict[str, Any]  # algo, env and the grid's hyperparameters
    seed: int
    run: str  # absolute run folder
    stages: list[list[str]]  # rllab command lines (without "rllab"), in order
    threads: int = 1
    log: str = ""


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> 0..4, ``"0,3,7"`` -> those, ``"2"`` -> [2]; duplicates are an error, and so are more
    than ``MAX_SEEDS`` seeds (counted before a range is expanded)."""
    parts: list[tuple[int, int]] = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)", part)
        try:
            lo, hi = (int(m.group(1)), int(m.group(2))) if m else (int(part), int(part))
            if hi < lo:
                raise ValueError
        except ValueError:
            raise RllabError(f"--seeds must be integers or ranges like 0-4 or 0,1,5; got {text!r}") from None
        parts.append((lo, hi))
    if any(lo < 0 for lo, _ in parts):
        raise RllabError(f"--seeds must be >= 0; got {text!r}")
    if any(hi > MAX_SEED for _, hi in parts):
        raise RllabError(f"--seeds must be <= {MAX_SEED}; got {text!r}")
    count = sum(hi - lo + 1 for lo, hi in parts)
    if count > MAX_SEEDS:
        raise RllabError(f"--seeds names {count} seeds; a sweep runs at most {MAX_SEEDS}")
    seeds = [s for lo, hi in parts for s in range(lo, hi + 1)]
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


def value_text(v: Any) -> str:
    """A grid value as ``--set`` and folder names spell it (flow-style YAML)."""
    return yaml.safe_dump(v, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def config_name(params: dict[str, Any], grid_keys: list[str], multi: bool) -> str:
    """``ppo-CartPole-v1`` (+ ``_learning_rate=0.001`` per grid key); readable and safe as a folder name."""
    parts = [f"{params['algo']}-{params['env'].replace('/', '_')}"] if multi or not grid_keys else []
    parts += [f"{k}={value_text(params[k])}" for k in grid_keys]
    name = "_".join(parts)
    safe = re.sub(r"[^A-Za-z0-9._=+-]", "", name.replace(" ", ""))
    if safe != name.replace(" ", "") or len(safe) > 120:  # lists or mappings: keep it short and unique
        safe = f"{safe[:80]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return safe


def configs(algos: list[str], envs: list[str], grid: dict[str, list[Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The sweep's configs in order, as (folder name, params); two configs sharing a folder are an error."""
    keys = list(grid)
    multi = len(algos) > 1 or len(envs) > 1
    names: set[str] = set()
    for algo, env, values in itertools.product(algos, envs, itertools.product(*grid.values())):
        params = {"algo": algo, "env": env, **dict(zip(keys, values, strict=True))}
        name = config_name(params, keys, multi)
        if name in names:
            raise RllabError(f"two configs of the sweep would share the folder {name!r}; make the grid values distinct")
        names.add(name)
        yield name, params


def count_configs(algos: list[str], envs: list[str], grid: dict[str, list[Any]]) -> int:
    """How many configs ``configs`` yields, without making them."""
    return len(algos) * len(envs) * math.prod(len(v) for v in grid.values())


def check_plan(algos: list[str], envs: list[str], seeds: list[int], grid: dict[str, list[Any]]) -> int:
    """The number of runs, refused above ``MAX_RUNS`` or when two configs would share a folder."""
    runs = count_configs(algos, envs, grid) * len(seeds)
    if runs > MAX_RUNS:
        raise RllabError(f"the sweep would make {runs} runs; it makes at most {MAX_RUNS} (fewer seeds or grid values)")
    for _ in configs(algos, envs, grid):  # a clash of folder names fails here, before any job runs
        pass
    return runs


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
) -> Iterator[Job]:
    """The jobs of a sweep, one at a time: one per (algo, env, grid point, seed), each a list of ``rllab``
    command lines (``check_plan`` first refuses a plan too large or with clashing folders)."""
    grid = grid or {}
    for name, params in configs(algos, envs, grid):
        sets = [arg for k in grid for arg in ("--set", f"{k}={value_text(params[k])}")]
        for seed in seeds:
            run = (out / name / f"s{seed}").resolve()
            train = ["train", "--algo", params["algo"], "--env", params["env"], "--seed", str(seed), "--out", str(run)]
            train += ["--threads", str(threads), "--no-progress", *(train_args or []), *sets]
            stages = [train]
            evaluation = ["eval", str(run), "--episodes", str(eval_episodes), "--seed", str(eval_seed)]
            stages.append([*evaluation, "--json", str(run / EVAL_FILE)])
            if attack_args is not None:
                stages.append(["attack", str(run), *attack_args, "--out", str(run / ATTACK_DIR), "--no-progress"])
            log = str((out / "logs" / f"{name}-s{seed}.log").resolve())
            yield Job(name, params, seed, str(run), stages, threads, log)
