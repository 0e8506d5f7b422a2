"""Search spaces of ``rllab tune``: a YAML file (checked by pydantic: one line naming the field) or a shipped
space by algorithm name, modelled on RL Zoo's samplers but small enough for CartPole and Catch; and what a
trial's sampled parameters make of the hyperparameter file ``rllab train --hyperparams`` reads.

A space file::

    algo: ppo                      # optional: the algorithm it is for (checked against --algo)
    fixed: {n_envs: 8}             # hyperparameters every trial gets
    params:                        # what the sampler chooses, per trial
      learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
      n_epochs: {type: int, low: 4, high: 20, step: 4}
      gamma: {type: categorical, choices: [0.95, 0.98, 0.99]}
      policy_kwargs.net_arch: {type: categorical, choices: [[32, 32], [64, 64]]}   # a dotted name: nested
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rllab import hyperparams as hp_lib
from rllab.errors import RllabError
from rllab.files import read_regular_file
from rllab.parsing import parse_number
from rllab.schema import ALGOS, validate

MAX_SPACE_BYTES = 1 << 20
ParamName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")]
NOT_TUNED = {"n_timesteps"}  # the tune's --steps is every trial's budget
SCALARS = (type(None), bool, int, float, str)  # what Optuna stores as a categorical choice as it is


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Param(_Strict):
    """One sampled hyperparameter: a float or int range (``log`` scale, ``step``), or a list of choices."""

    type: Literal["float", "int", "categorical"]
    low: float | int | str | None = None
    high: float | int | str | None = None
    log: bool = False
    step: float | int | None = None
    choices: list[Any] | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("low", "high")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return parse_number(value, "bound")
        except RllabError as exc:
            raise ValueError(str(exc).removeprefix("bound ")) from None

    @model_validator(mode="after")
    def _consistent(self) -> Param:
        if self.type == "categorical":
            if self.choices is None or self.low is not None or self.high is not None:
                raise ValueError("a categorical parameter gives choices (and no low/high)")
            return self
        if self.choices is not None or self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter gives low and high (and no choices)")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ValueError(f"needs finite low <= high, got {self.low} and {self.high}")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("a log-scale range needs low > 0 and no step")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("an int parameter needs whole-number low and high")
        if self.step is not None and self.step <= 0:
            raise ValueError("step must be > 0")
        return self


class Space(_Strict):
    """A search space: the algorithm it is for, fixed hyperparameters, and the sampled ones."""

    algo: Literal[ALGOS] | None = None  # type: ignore[valid-type]
    fixed: dict[str, Any] = {}
    params: dict[ParamName, Param] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _not_the_budget(self) -> Space:
        for key in [*self.fixed, *self.params]:
            if key.split(".")[0] in NOT_TUNED:
                raise ValueError(f"@params.{key}: the budget is rllab tune's --steps, not a hyperparameter")
        return self


_NET = {"type": "categorical", "choices": [[32, 32], [64, 64]]}
SPACES: dict[str, dict[str, Any]] = {
    # RL Zoo's sample_ppo_params, narrowed to what trains CartPole or Catch in tens of thousands of steps
    "ppo": {
        "algo": "ppo",
        "fixed": {"n_envs": 8},
        "params": {
            "learning_rate": {"type": "float", "low": 1.0e-4, "high": 3.0e-3, "log": True},
            "n_steps": {"type": "categorical", "choices": [32, 64, 128]},
            "batch_size": {"type": "categorical", "choices": [64, 128, 256]},
            "n_epochs": {"type": "categorical", "choices": [4, 10, 20]},
            "gamma": {"type": "categorical", "choices": [0.95, 0.98, 0.99]},
            "gae_lambda": {"type": "categorical", "choices": [0.8, 0.9, 0.95]},
            "clip_range": {"type": "categorical", "choices": [0.1, 0.2, 0.3]},
            "ent_coef": {"type": "float", "low": 1.0e-8, "high": 1.0e-2, "log": True},
            "policy_kwargs.net_arch": _NET,
        },
    },
    # sample_a2c_params
    "a2c": {
        "algo": "a2c",
        "fixed": {"n_envs": 8},
        "params": {
            "learning_rate": {"type": "float", "low": 1.0e-4, "high": 3.0e-3, "log": True},
            "n_steps": {"type": "categorical", "choices": [5, 8, 16, 32]},
            "gamma": {"type": "categorical", "choices": [0.95, 0.98, 0.99]},
            "gae_lambda": {"type": "categorical", "choices": [0.9, 0.95, 1.0]},
            "ent_coef": {"type": "float", "low": 1.0e-8, "high": 1.0e-2, "log": True},
            "vf_coef": {"type": "float", "low": 0.25, "high": 1.0},
            "max_grad_norm": {"type": "categorical", "choices": [0.5, 1.0, 5.0]},
            "policy_kwargs.net_arch": _NET,
        },
    },
    # sample_dqn_params
    "dqn": {
        "algo": "dqn",
        "fixed": {"n_envs": 1},
        "params": {
            "learning_rate": {"type": "float", "low": 1.0e-4, "high": 3.0e-3, "log": True},
            "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
            "buffer_size": {"type": "categorical", "choices": [10_000, 50_000]},
            "learning_starts": {"type": "categorical", "choices": [0, 1000]},
            "gamma": {"type": "categorical", "choices": [0.95, 0.98, 0.99]},
            "target_update_interval": {"type": "categorical", "choices": [10, 100, 1000]},
            "train_freq": {"type": "categorical", "choices": [4, 16, 64]},
            "gradient_steps": {"type": "categorical", "choices": [1, -1]},
            "exploration_fraction": {"type": "float", "low": 0.05, "high": 0.5},
            "exploration_final_eps": {"type": "float", "low": 0.0, "high": 0.1},
            "policy_kwargs.net_arch": {"type": "categorical", "choices": [[64, 64], [256, 256]]},
        },
    },
    # the lab's REINFORCE (no RL Zoo sampler): the step size, batch, horizon and baseline
    "reinforce": {
        "algo": "reinforce",
        "fixed": {"n_envs": 8},
        "params": {
            "learning_rate": {"type": "float", "low": 3.0e-4, "high": 1.0e-2, "log": True},
            "n_steps": {"type": "categorical", "choices": [64, 128, 256]},
            "gamma": {"type": "categorical", "choices": [0.95, 0.98, 0.99]},
            "ent_coef": {"type": "float", "low": 1.0e-8, "high": 1.0e-2, "log": True},
            "use_baseline": {"type": "categorical", "choices": [True, False]},
            "policy_kwargs.net_arch": _NET,
        },
    },
}


def load_space(name_or_path: str | Path | None, algo: str) -> tuple[Space, str]:
    """The space a name (a shipped one; None: ``algo``'s) or a YAML file gives, and how to name it."""
    name = algo if name_or_path is None else str(name_or_path)
    if name in SPACES:
        data: Any = copy.deepcopy(SPACES[name])
    else:
        if not Path(name).exists():
            raise RllabError(f"no search space {name!r}: give a shipped one ({', '.join(SPACES)}) or a YAML file")
        raw = read_regular_file(Path(name), MAX_SPACE_BYTES, "search space file")
        try:
            data = yaml.safe_load(raw.decode("utf-8", errors="replace"))
        except yaml.YAMLError as exc:
            raise RllabError(f"{name} is not valid YAML: {' '.join(str(exc).split())}") from None
        except RecursionError:
            raise RllabError(f"{name}: nested too deeply") from None
        if not isinstance(data, dict):
            raise RllabError(f"{name}: must be a YAML mapping with 'params'")
    validate(data, Space, name)  # one line naming the field
    space = Space.model_validate(data)
    if space.algo is not None and space.algo != algo:
        raise RllabError(f"{name} is a search space for {space.algo}, not {algo}")
    return space, name


def space_yaml(space: Space) -> str:
    """The space as YAML (``rllab tune --show-space``: a file to start from)."""
    data = space.model_dump(exclude_defaults=True)
    params = data.pop("params")
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None) + "params:\n"
    for name, p in params.items():  # one parameter a line
        text += f"  {name}: {yaml.safe_dump(p, sort_keys=False, default_flow_style=True, width=1 << 16).strip()}\n"
    return text


def _optuna_choices(choices: list[Any]) -> list[Any]:
    """Choices as Optuna stores them: scalars as they are, lists and mappings as their JSON text."""
    return [c if isinstance(c, SCALARS) else json.dumps(c) for c in choices]


def distributions(space: Space) -> dict[str, Any]:
    """Optuna distributions of the space's parameters (what ``study.ask`` samples)."""
    import optuna  # an optional extra: rllab[tune]; the command checks it first

    out: dict[str, Any] = {}
    for name, p in space.params.items():
        if p.type == "categorical":
            out[name] = optuna.distributions.CategoricalDistribution(_optuna_choices(p.choices or []))
        elif p.type == "int":
            step = int(p.step or 1)
            out[name] = optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log, step=step)
        else:
            out[name] = optuna.distributions.FloatDistribution(float(p.low), float(p.high), log=p.log, step=p.step)
    return out


def decode(space: Space, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as the values they stand for (a categorical list back from its JSON text)."""
    out = {}
    for name, value in params.items():
        p = space.params[name]
        if p.type == "categorical" and p.choices is not None:
            value = p.choices[_optuna_choices(p.choices).index(value)]
        out[name] = value
    return out


def hyperparameters(space: Space, values: dict[str, Any], algo: str, env: str) -> dict[str, Any]:
    """The hyperparameters of a trial: the space's fixed ones, then its sampled ``values`` (dotted names set a
    key inside a mapping, merged over the shipped block's mapping, e.g. its ``policy_kwargs``)."""
    hp = copy.deepcopy(space.fixed)
    shipped = hp_lib.shipped_defaults(algo, env)
    for name, value in values.items():
        top, _, inner = name.partition(".")
        if not inner:
            hp[top] = value
            continue
        base = hp.get(top, shipped.get(top))
        hp[top] = {**(copy.deepcopy(base) if isinstance(base, dict) else {}), inner: value}
    return hp


def hyperparameter_file(hp: dict[str, Any], env: str, header: str = "") -> str:
    """A YAML file ``rllab train --hyperparams`` reads: ``hp`` under the environment id."""
    lines = "".join(f"# {line}\n" for line in header.splitlines())
    return lines + yaml.safe_dump({env: hp}, sort_keys=False, default_flow_style=None)
