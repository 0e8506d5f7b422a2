"""The options of one training run (``TrainConfig``) and what they resolve to (``RunSettings``).

A resumed run takes its seed, environment, hyperparameters and defense from the checkpoint it
continues; a new one reads the shipped hyperparameters, a ``--hyperparams`` file and ``--set``
overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch as th
from gymnasium import spaces

from envs.wrappers import wrappers_to_json
from rllab import hyperparams as hp_lib
from rllab.algos import ALGOS
from rllab.checkpoint import SPEC_FILE, read_spec
from rllab.environment import check_env_id
from rllab.errors import RllabError
from rllab.nn.build import resolve_device
from rllab.parsing import MAX_ENVS
from rllab.schema import RunConfig, validate
from rllab.spec import now, spec_skeleton
from rllab.training.build import ModelRecipe, model_recipe, split_hyperparams

# the user's settings a resumed defense keeps
DEFENSE_SETTINGS = ("eps", "coef", "steps", "ramp", "solver", "adv_every", "adv_steps")


def default_run_dir(algo: str, env_id: str, seed: int) -> Path:
    """``runs/ALGO-ENV-sSEED``: where a run goes without ``--out``."""
    return Path("runs") / f"{algo}-{env_id.replace('/', '_')}-s{seed}"


@dataclass
class TrainConfig:
    """Every option of a training run, as ``rllab.train`` and ``rllab train`` take them.

    ``steps`` defaults to the hyperparameter file's ``n_timesteps``; ``resume=True`` continues the run
    in ``out`` from its last checkpoint, with its stored settings. ``eval_freq``/``save_freq`` default
    to a tenth of the steps (at least 1000; 0 turns them off). ``threads`` pins PyTorch's CPU thread
    count while training (the summation order of its kernels depends on it).
    """

    algo: str
    env: str
    seed: int = 0
    steps: int | None = None
    n_envs: int | None = None
    hyperparams: str | Path | None = None
    overrides: dict[str, Any] | list[str] | None = None
    device: str = "cpu"
    out: str | Path | None = None
    resume: bool = False
    env_kwargs: dict[str, Any] | None = None
    wrappers: list[dict[str, Any]] | None = None
    eval_freq: int | None = None
    eval_episodes: int = 5
    final_eval_episodes: int = 20
    save_freq: int | None = None
    progress: bool | None = None
    verbose: int = 0
    defense: str | None = None
    defense_kwargs: dict[str, Any] | None = None
    threads: int | None = None

    @property
    def run_dir(self) -> Path:
        """The run folder (``out``, or the default one for the algorithm, environment and seed asked for)."""
        return Path(self.out) if self.out is not None else default_run_dir(self.algo, self.env, self.seed)

    def check(self) -> None:
        """The checks that need nothing read: thread count and seed."""
        if self.threads is not None and self.threads < 1:
            raise RllabError(f"--threads must be positive, got {self.threads}")
        if self.seed < 0:
            raise RllabError(f"--seed must be >= 0, got {self.seed}")

    def torch_threads(self) -> int | None:
        """The thread count to train with: the one asked for, else a resumed run's recorded one, else None."""
        if self.threads is None and self.resume and (self.run_dir / SPEC_FILE).exists():
            return read_spec(self.run_dir)["training"]["config"].get("torch_threads")
        return self.threads


@dataclass
class RunSettings:
    """A run's settings once resolved: a resumed run's stored ones, hyperparameters split and checked."""

    algo: str
    env: str
    seed: int
    steps: int
    n_envs: int
    env_kwargs: dict[str, Any]
    wrappers: list[dict[str, Any]]
    hp: dict[str, Any]
    lab: dict[str, Any]
    algo_kwargs: dict[str, Any]
    device: th.device
    defense: str | None = None
    defense_kwargs: dict[str, Any] | None = None
    stored: dict[str, Any] | None = field(default=None, repr=False)  # the resumed run's agent.json

    def recipe(self, obs_space: spaces.Space) -> ModelRecipe:
        """The model recipe these settings give for ``obs_space``."""
        return model_recipe(
            self.algo, self.env, self.env_kwargs, self.wrappers, self.n_envs, self.lab, self.algo_kwargs, obs_space
        )

    def new_spec(self, recipe: ModelRecipe, obs_space: spaces.Space, act_space: spaces.Space) -> dict[str, Any]:
        """The agent.json of the run before training (its config recorded, its statistics still to come)."""
        spec = spec_skeleton(
            self.algo,
            self.env,
            self.env_kwargs,
            self.wrappers,
            obs_space,
            act_space,
            recipe.policy_class,
            recipe.spec_policy_kwargs,
            recipe.has_critic,
            transpose_image=recipe.transpose,
        )
        spec["training"] = {"config": self.record(), "started": now()}
        return spec

    def record(self) -> dict[str, Any]:
        """The ``training.config`` block of agent.json (what a resumed run reads back)."""
        return {
            "algo": self.algo,
            "env": self.env,
            "seed": self.seed,
            "steps": self.steps,
            "n_envs": self.n_envs,
            "env_kwargs": self.env_kwargs,
            "wrappers": self.wrappers,
            "hyperparams": self.hp,
            "device": str(self.device),
            "torch_threads": th.get_num_threads(),
        }


def preset_env(
    lab: dict[str, Any], env_kwargs: dict[str, Any] | None, wrappers: list[dict[str, Any]] | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(env kwargs, wrappers) of a new run: the user's kwargs over the preset's (``env_kwargs`` of the
    hyperparameters), and the user's wrappers if given (None), else the preset's ``wrappers``."""
    preset_kwargs, preset_wrappers = lab.get("env_kwargs") or {}, lab.get("wrappers") or []
    if not isinstance(preset_kwargs, dict) or not isinstance(preset_wrappers, list):
        raise RllabError("hyperparameters: env_kwargs must be a mapping and wrappers a list of {name, kwargs}")
    return {**preset_kwargs, **(env_kwargs or {})}, wrappers_to_json(preset_wrappers if wrappers is None else wrappers)


def resolve_run(config: TrainConfig, run_dir: Path) -> RunSettings:
    """``config`` resolved: a resumed run's stored settings, or a new run's hyperparameters; all checked."""
    algo, env, seed, steps, n_envs = config.algo, config.env, config.seed, config.steps, config.n_envs
    env_kwargs, wrappers = config.env_kwargs, config.wrappers
    defense, defense_kwargs = config.defense, config.defense_kwargs
    stored = None
    if config.resume:
        stored = read_spec(run_dir)
        # a hand-edited or foreign agent.json: one line naming the field, not a KeyError mid-resume
        saved = validate(stored["training"].get("config"), RunConfig, f"{run_dir / SPEC_FILE}: training.config")
        if saved["algo"] != algo or saved["env"] != env:
            raise RllabError(
                f"{run_dir} is a {saved['algo']} run on {saved['env']}; cannot resume it as {algo} on {env}"
            )
        done = stored["training"].get("timesteps")
        if not isinstance(done, int):
            raise RllabError(f"cannot resume {run_dir}: its {SPEC_FILE} records no training.timesteps")
        if stored["training"].get("complete") and (steps is None or steps <= done):
            raise RllabError(
                f"{run_dir} finished training already ({done} steps); to train it further, resume with "
                f"--steps N above {done}"
            )
        seed, n_envs, env_kwargs, wrappers = saved["seed"], saved["n_envs"], saved["env_kwargs"], saved["wrappers"]
        steps = saved["steps"] if steps is None else steps
        hp = saved["hyperparams"]
        if saved.get("defense"):
            defense = saved["defense"]["name"]
            defense_kwargs = {k: saved["defense"][k] for k in DEFENSE_SETTINGS if k in saved["defense"]}
    else:
        if algo not in ALGOS:
            raise RllabError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
        check_env_id(env)
        if (run_dir / SPEC_FILE).exists():
            raise RllabError(
                f"{run_dir} already holds a checkpoint; pass --resume to continue it or choose another --out"
            )
        hp = hp_lib.resolve(algo, env, config.hyperparams, config.overrides)
    lab, algo_kwargs = split_hyperparams(algo, hp)
    if stored is None:  # a new run: the hyperparameters' environment preset under the user's settings
        env_kwargs, wrappers = preset_env(lab, env_kwargs, wrappers)
    steps = int(lab.get("n_timesteps", 100_000) if steps is None else steps)
    if steps <= 0:
        raise RllabError(f"--steps must be positive, got {steps}")
    n_envs = int(n_envs or lab.get("n_envs", 1))
    if not 1 <= n_envs <= MAX_ENVS:  # each is an environment object in this process
        raise RllabError(f"--n-envs must be from 1 to {MAX_ENVS}, got {n_envs}")
    return RunSettings(
        algo=algo,
        env=env,
        seed=seed,
        steps=steps,
        n_envs=n_envs,
        env_kwargs=dict(env_kwargs or {}),
        wrappers=list(wrappers or []),
        hp=hp,
        lab=lab,
        algo_kwargs=algo_kwargs,
        device=resolve_device(config.device),
        defense=defense,
        defense_kwargs=defense_kwargs,
        stored=stored,
    )
