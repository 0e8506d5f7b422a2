"""``agent.json``: the checkpoint's description, consistent with its weights file."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from rllab.errors import RllabError
from rllab.schema.base import (
    ACTIVATIONS,
    ALGOS,
    BOX_DTYPES,
    EXTRACTORS,
    FILTERS,
    MAX_ACTIONS,
    MAX_KERNEL,
    MAX_LAYERS,
    MAX_LIST,
    MAX_OBS_ELEMENTS,
    MAX_SMOOTHING_SAMPLES,
    MAX_WIDTH,
    POLICY_CLASSES,
    SCHEMA,
    Bound,
    Finite,
    Width,
    _Model,
    one_line,
    validate,
)


class BoxSpace(_Model):
    """A Box space as agent.json stores it: shape, dtype and bounds of a consistent size."""

    type: Literal["Box"]
    shape: Annotated[list[Annotated[int, Field(ge=0, le=MAX_OBS_ELEMENTS)]], Field(max_length=8)]
    dtype: Literal[BOX_DTYPES]  # type: ignore[valid-type]
    low: Bound | Annotated[list[Bound], Field(max_length=MAX_OBS_ELEMENTS)]
    high: Bound | Annotated[list[Bound], Field(max_length=MAX_OBS_ELEMENTS)]

    @field_validator("low", "high", mode="before")
    @classmethod
    def _bound(cls, value: Any) -> Any:
        if isinstance(value, list):  # validated here: a union's errors would name both alternatives
            for i, v in enumerate(value):
                if not (isinstance(v, (int, float)) and not isinstance(v, bool)) and v not in ("inf", "-inf"):
                    raise ValueError(f"[{i}]: must be a number, 'inf' or '-inf'")
            return [float(v) if isinstance(v, int) else v for v in value]
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _sizes(self) -> BoxSpace:
        n = math.prod(self.shape)
        if n > MAX_OBS_ELEMENTS:
            raise ValueError(f"shape {self.shape} holds {n} values (at most {MAX_OBS_ELEMENTS})")
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != n:
                raise ValueError(f"{name} has {len(value)} values; shape {self.shape} needs {n}")
        return self


class DiscreteSpace(_Model):
    """A Discrete space: a bounded number of actions."""

    type: Literal["Discrete"]
    n: Annotated[int, Field(ge=1, le=MAX_ACTIONS)]
    start: Annotated[int, Field(ge=-(2**31), le=2**31)] = 0


class MultiDiscreteSpace(_Model):
    """A MultiDiscrete space: a bounded list of action counts."""

    type: Literal["MultiDiscrete"]
    nvec: Annotated[list[Annotated[int, Field(ge=1, le=MAX_ACTIONS)]], Field(min_length=1, max_length=MAX_ACTIONS)]


class MultiBinarySpace(_Model):
    """A MultiBinary space."""

    type: Literal["MultiBinary"]
    n: Annotated[int, Field(ge=1, le=MAX_ACTIONS)]


Space = Annotated[BoxSpace | DiscreteSpace | MultiDiscreteSpace | MultiBinarySpace, Field(discriminator="type")]


def _layers(value: Any, what: str) -> list[int]:
    if not isinstance(value, list) or len(value) > MAX_LAYERS:
        raise ValueError(f"{what} must be a list of at most {MAX_LAYERS} layer widths")
    for i, w in enumerate(value):
        if not isinstance(w, int) or isinstance(w, bool) or not 1 <= w <= MAX_WIDTH:
            raise ValueError(f"{what}[{i}]: must be an integer from 1 to {MAX_WIDTH} (got {one_line(repr(w), 40)})")
    return value


class FeaturesExtractorKwargs(_Model):
    """Settings of a feature extractor (a bounded features_dim)."""

    features_dim: Width | None = None
    channels: Annotated[list[Width], Field(max_length=MAX_LAYERS)] | None = None


class PolicyKwargs(_Model):
    """The policy's construction settings: net_arch within the width and depth limits, a known activation."""

    net_arch: Any = None
    activation_fn: Literal[ACTIVATIONS] | None = None  # type: ignore[valid-type]
    features_extractor: Literal[EXTRACTORS] | None = None  # type: ignore[valid-type]
    features_extractor_kwargs: FeaturesExtractorKwargs | None = None
    use_sde: bool | None = None
    log_std_init: Finite | None = None
    ortho_init: bool | None = None

    @field_validator("net_arch")
    @classmethod
    def _net_arch(cls, value: Any) -> Any:
        if value is None or isinstance(value, list):
            return value if value is None else _layers(value, "")
        if isinstance(value, dict):
            for key, layers in value.items():
                if key not in ("pi", "vf", "qf"):
                    raise ValueError(f"net_arch has key {key!r}; use pi and vf")
                _layers(layers, f".{key}")
            return value
        raise ValueError("net_arch must be a list of layer widths or {pi: [...], vf: [...]}")


class Policy(_Model):
    """Which policy class builds the network, and its settings."""

    class_: Literal[POLICY_CLASSES] = Field(alias="class")  # type: ignore[valid-type]
    kwargs: PolicyKwargs = Field(default_factory=PolicyKwargs)
    has_critic: bool = False


class ObsNormalization(_Model):
    """VecNormalize statistics frozen into the agent: finite, positive variance."""

    mean: Annotated[list[Finite], Field(max_length=MAX_OBS_ELEMENTS)]
    var: Annotated[list[Annotated[float, Field(ge=0, allow_inf_nan=False)]], Field(max_length=MAX_OBS_ELEMENTS)]
    clip: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 10.0
    epsilon: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1e-8


NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class FilterParams(_Model):
    """An input filter's parameters."""

    sigma: Annotated[float, Field(ge=0, le=MAX_KERNEL / 6, allow_inf_nan=False)] | list[NonNegative] | None = None
    size: Annotated[int, Field(ge=1, le=MAX_KERNEL)] | None = None
    bits: Annotated[int, Field(ge=1, le=16)] | None = None


class Filter(_Model):
    """One input filter: a known name and its parameters."""

    name: Literal[FILTERS]  # type: ignore[valid-type]
    params: FilterParams = Field(default_factory=FilterParams)


class Smoothing(_Model):
    """Randomised smoothing: a finite positive sigma and a bounded number of samples."""

    sigma: NonNegative | Annotated[list[NonNegative], Field(max_length=MAX_OBS_ELEMENTS)]
    n: Annotated[int, Field(ge=1, le=MAX_SMOOTHING_SAMPLES)]
    mode: Literal["mean", "vote"] = "mean"


class Purifier(_Model):
    """A purifier in front of the policy: its kind, hidden widths and input centring and scale."""

    kind: Literal["conv", "mlp"]
    hidden: Annotated[list[Width], Field(max_length=MAX_LAYERS)]
    center: Annotated[list[Finite], Field(max_length=MAX_OBS_ELEMENTS)]
    scale: Annotated[list[Annotated[float, Field(gt=0, allow_inf_nan=False)]], Field(max_length=MAX_OBS_ELEMENTS)]


class Preprocessing(_Model):
    """Everything between the environment's observation and the network's input."""

    transpose_image: bool = False
    obs_normalization: ObsNormalization | None = None
    filters: Annotated[list[Filter], Field(max_length=64)] | None = None
    smoothing: Smoothing | None = None
    purifier: Purifier | None = None


class ObsStats(_Model):
    """Observation statistics that scale budgets in observation std."""

    mean: Annotated[list[Finite], Field(max_length=MAX_OBS_ELEMENTS)]
    std: Annotated[list[Annotated[float, Field(ge=0, allow_inf_nan=False)]], Field(max_length=MAX_OBS_ELEMENTS)]


ModuleName = Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*$", max_length=512)]


class Env(_Model):
    """The environment a checkpoint plays: id, kwargs, named wrappers, and the module that registers it
    (imported before the environment is made: ``ale_py``, ``minatar.gym``, or a ``module:Env-id``'s module)."""

    id: Annotated[str, Field(min_length=1, max_length=512)]
    kwargs: dict[str, Any] = Field(default_factory=dict)
    wrappers: Annotated[list[dict[str, Any]], Field(max_length=1000)] = Field(default_factory=list)
    module: ModuleName | None = None


class Weights(_Model):
    """The weights file's name and SHA-256."""

    file: Literal["weights.safetensors"] = "weights.safetensors"
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    bytes: Annotated[int, Field(ge=0)] | None = None


class Quantization(_Model):
    """Quantised layers: the storage dtype and which modules hold it."""

    dtype: str
    modules: Annotated[
        list[Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*$", max_length=512)]], Field(max_length=MAX_LIST)
    ]


class Training(_Model):
    """How the agent was trained: the step counter and whether the run completed."""

    timesteps: Annotated[int, Field(ge=0)] | None = None
    complete: bool | None = None
    config: str | dict[str, Any] | None = None  # the config's name


class LineageStep(_Model):
    """One step of lineage: the operation, its parent and its settings."""

    transform: Annotated[str, Field(min_length=1, max_length=200)]
    parent: str | None = None
    parent_sha256: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


def _count(space: BaseModel) -> int:
    """How many values one observation of ``space`` holds (what per-feature statistics have)."""
    if isinstance(space, BoxSpace):
        return math.prod(space.shape)
    if isinstance(space, MultiDiscreteSpace):
        return len(space.nvec)
    return space.n if isinstance(space, MultiBinarySpace) else 1


def _min_parameters(kwargs: PolicyKwargs, n_actions: int) -> int:
    """A lower bound on the parameters ``net_arch`` needs (hidden-to-hidden and last-to-action layers)."""
    arch = kwargs.net_arch
    if isinstance(arch, dict):
        layers = arch.get("pi") or arch.get("qf") or []
    else:
        layers = arch or []
    total = sum(a * b for a, b in zip(layers, layers[1:], strict=False))
    return total + (layers[-1] if layers else 1) * n_actions


class AgentSpec(_Model):
    """``agent.json``: every field the lab reads, bounded, with shapes consistent with each other."""

    schema_: Literal[SCHEMA] = Field(alias="schema")  # type: ignore[valid-type]
    algo: Annotated[str, Field(max_length=100)]
    env: Env
    observation_space: Space
    action_space: Space
    policy: Policy
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    obs_stats: ObsStats | None = None
    weights: Weights
    training: Training = Field(default_factory=Training)
    lineage: Annotated[list[LineageStep], Field(max_length=MAX_LIST)] = Field(default_factory=list)
    quantization: Quantization | None = None

    @field_validator("algo")
    @classmethod
    def _algo(cls, value: str) -> str:
        if value not in ALGOS and value.removeprefix("distill-") not in ALGOS:
            raise ValueError(f"unknown algorithm {value!r}; this rllab knows {', '.join(ALGOS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AgentSpec:
        obs, act, pre = self.observation_space, self.action_space, self.preprocessing
        n = _count(obs)
        if pre.transpose_image and not (isinstance(obs, BoxSpace) and obs.dtype == "uint8" and len(obs.shape) == 3):
            raise ValueError("@preprocessing.transpose_image: set, but the observations are not (H, W, C) images")
        sized = {
            "preprocessing.obs_normalization.mean": pre.obs_normalization and pre.obs_normalization.mean,
            "preprocessing.obs_normalization.var": pre.obs_normalization and pre.obs_normalization.var,
            "preprocessing.purifier.center": pre.purifier and pre.purifier.center,
            "preprocessing.purifier.scale": pre.purifier and pre.purifier.scale,
            "obs_stats.mean": self.obs_stats and self.obs_stats.mean,
            "obs_stats.std": self.obs_stats and self.obs_stats.std,
        }
        if pre.smoothing is not None and isinstance(pre.smoothing.sigma, list):
            sized["preprocessing.smoothing.sigma"] = pre.smoothing.sigma
        for name, values in sized.items():
            if values is not None and values is not False and len(values) != n:
                raise ValueError(f"@{name}: has {len(values)} values; the observation space has {n}")
        if isinstance(act, BoxSpace) and math.prod(act.shape) > MAX_ACTIONS:
            raise ValueError(f"@action_space.shape: more than {MAX_ACTIONS} action values")
        n_actions = act.n if isinstance(act, (DiscreteSpace, MultiBinarySpace)) else _count(act)
        if isinstance(act, MultiDiscreteSpace):
            n_actions = sum(act.nvec)
        needed = _min_parameters(self.policy.kwargs, n_actions)
        if self.weights.bytes is not None and needed > self.weights.bytes:  # an int8 parameter is one byte
            raise ValueError(
                f"@policy.kwargs.net_arch: needs at least {needed} parameters, but the weights file holds "
                f"{self.weights.bytes} bytes"
            )
        return self


def validate_spec(spec: Any, shown: str) -> dict[str, Any]:
    """``spec`` (parsed ``agent.json`` read from ``shown``) when it is a valid checkpoint description, else one line."""
    if not isinstance(spec, dict) or spec.get("schema") != SCHEMA:
        found = spec.get("schema") if isinstance(spec, dict) else None
        raise RllabError(f"{shown} has schema {found!r}; this rllab reads {SCHEMA!r}")
    return validate(spec, AgentSpec, shown)
