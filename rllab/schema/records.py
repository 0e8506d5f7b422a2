"""The other files the lab reads back: the resume state, sweep job records and attack result cards."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from rllab.schema.base import (
    MAX_LIST,
    Finite,
    _Model,
)


class ReturnStats(_Model):
    """VecNormalize's return statistics and observation count at the saved step."""

    mean: Finite
    var: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    count: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    obs_count: Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ParamGroup(_Model):
    """One optimizer parameter group: the indices of its parameters (and its settings)."""

    params: Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=MAX_LIST)]


class ResumeState(_Model):
    """``resume/state.<step>.json``: the optimizer's non-tensor state and the step counters of a training run."""

    param_groups: Annotated[list[ParamGroup], Field(min_length=1, max_length=1000)]
    scalars: dict[Annotated[str, Field(pattern=r"^\d+\.\w+$")], bool | int | float | None]
    num_timesteps: Annotated[int, Field(ge=0)]
    n_updates: Annotated[int, Field(ge=0)] = 0
    ret_rms: ReturnStats | None = None
    defense: dict[str, Any] | None = None  # a defense's own metadata (its installer checks it on load)


class StoredDefense(_Model):
    """The adversarial-training defense a run's config records (its settings beside its name)."""

    name: Annotated[str, Field(min_length=1, max_length=100)]


class RunConfig(_Model):
    """``training.config`` in the agent.json of a run ``rllab train`` wrote: what ``--resume`` reads back."""

    algo: Annotated[str, Field(max_length=100)]
    env: Annotated[str, Field(min_length=1, max_length=512)]
    seed: Annotated[int, Field(ge=0)]
    steps: Annotated[int, Field(ge=1)]
    n_envs: Annotated[int, Field(ge=1)]
    env_kwargs: dict[str, Any]
    wrappers: Annotated[list[dict[str, Any]], Field(max_length=1000)]
    hyperparams: dict[str, Any]
    defense: StoredDefense | None = None


class SweepRecord(_Model):
    """``sweep-job.json``: the stages of one sweep job and how they went."""

    stages: Annotated[list[Annotated[list[str], Field(max_length=1000)]], Field(max_length=1000)]
    status: Literal["running", "done", "failed"]
    started: Finite | None = None
    seed: Annotated[int, Field(ge=0)] | None = None
    run: str | None = None
    config: str | dict[str, Any] | None = None  # the config's name
    reused: list[str] | None = None
    ran: list[str] | None = None
    stage: str | None = None
    returncode: int | None = None
    error: str | None = None
    wall_s: Finite | None = None


class ResultRow(_Model):
    """One row of a result card: a mean return over episodes and its 95% CI."""

    mean_return: float
    episodes: Annotated[int, Field(ge=0)] | None = None
    ci95_return: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None


class CardAgent(_Model):
    """The attacked agent, as a result card names it."""

    algo: str
    env: str


class ThreatModelCard(_Model):
    """The threat model of a result card: norm, unit and budgets."""

    norm: str
    unit: str
    eps: float | list[float]
    per_eps: list[dict[str, Any]] = Field(default_factory=list)


class ResultCard(_Model):
    """``results.json`` of ``rllab attack``: the attacked-evaluation card reports and leaderboards read."""

    agent: CardAgent
    threat_model: ThreatModelCard
    episodes: Annotated[int, Field(ge=1)]
    seed: Annotated[int, Field(ge=0)]
    attacks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    clean: ResultRow
    results: dict[str, dict[str, ResultRow]]
    flags: list[str] = Field(default_factory=list)
