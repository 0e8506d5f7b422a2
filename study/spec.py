"""The study file ``rllab lab`` runs: environments, algorithms, seeds, steps, attacks and budgets, defenses,
compressions, adaptations and explanations; checked by pydantic (one line naming the field), plus the
built-in default study and its ``--quick`` preset."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rllab.errors import RllabError
from rllab.files import read_regular_file
from rllab.parsing import MAX_EPISODES, MAX_SEED, MAX_STEPS, parse_number
from rllab.schema import ALGOS, validate

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")]
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]
Episodes = Annotated[int, Field(ge=1, le=MAX_EPISODES)]
MAX_STUDY_BYTES = 1 << 20
QUICK_STEPS = 8192  # --quick: training steps per agent (a smoke run of every stage, not a robustness figure)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Defense(_Strict):
    """A defended agent: trained with a training-time defense (``train``), or the vanilla agent behind input
    ``filters`` or noise ``smooth``-ing (``rllab defend``'s spellings)."""

    name: Name
    train: dict[str, Any] | None = None  # {defense: atla, eps: 0.5, steps: 100000, ...} (rllab train --defense)
    filters: list[str] = []  # ["median:size=3"]
    smooth: str | None = None  # "sigma=0.25,n=8,mode=vote"

    @model_validator(mode="after")
    def _one_kind(self) -> Defense:
        kinds = [k for k in ("train", "filters", "smooth") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("give exactly one of train, filters, smooth")
        if self.train is not None and not isinstance(self.train.get("defense"), str):
            raise ValueError("train needs the defense's name, e.g. {defense: atla}")
        return self


class Compression(_Strict):
    """A compressed copy of the vanilla agent (``rllab distill | prune | quantize`` options as settings)."""

    name: Name
    transform: Literal["distill", "prune", "quantize"]
    settings: dict[str, Any] = {}


class Adaptation(_Strict):
    """The vanilla agent adapted to a shifted domain (``rllab adapt`` options), evaluated and attacked there."""

    name: Name
    target_env_kwargs: dict[str, Any] = {}
    target_wrappers: list[dict[str, Any]] = []
    settings: dict[str, Any] = {}  # steps, states, coef, loss, align, explore, lr

    @model_validator(mode="after")
    def _a_shift(self) -> Adaptation:
        if not self.target_env_kwargs and not self.target_wrappers:
            raise ValueError("give target_env_kwargs or target_wrappers: the shifted domain")
        return self


class Attacks(_Strict):
    """What every agent of an environment is attacked with, at which budgets, over how many episodes."""

    eps: list[str | float] = Field(min_length=1, max_length=16)  # threat units: 8/255 for images, std else
    names: list[str] = ["quick"]  # rllab attack --attack names; quick / all = the standard suite
    episodes: Episodes = 10
    steps: Annotated[int, Field(ge=1, le=1000)] = 10  # PGD steps
    learned_steps: Annotated[int, Field(ge=0, le=MAX_STEPS)] = 0  # PPO steps per eps of the learned adversary
    learned_on: list[Name] = ["vanilla"]  # agents attacked by the learned adversary too (it trains per eps) ...
    learned_eps: list[str | float] = []  # ... at these budgets (default: every eps)

    @field_validator("eps", "learned_eps")
    @classmethod
    def _budgets(cls, value: list[str | float]) -> list[str | float]:
        for i, e in enumerate(value):
            try:
                number = parse_number(str(e), "eps")
            except RllabError as exc:
                raise ValueError(f"[{i}]: {exc}") from None
            if number < 0:
                raise ValueError(f"[{i}]: must be >= 0, got {e}")
        return value


class Explanation(_Strict):
    """Attribution maps of every agent, with faithfulness metrics, into TensorBoard and the page."""

    methods: list[str] = ["saliency"]
    episodes: Episodes = 1
    every: Annotated[int, Field(ge=1)] = 10
    metrics: bool = True
    activation_maximisation: bool = False  # the input that most raises each action's score: on request only


class EnvStudy(_Strict):
    """One environment's part of the study."""

    algos: list[Literal[ALGOS]] = Field(default=["ppo"], min_length=1)  # type: ignore[valid-type]
    steps: Steps | None = None  # training steps (None: the shipped hyperparameters' budget)
    episodes: Episodes = 20  # clean evaluation episodes
    attacks: Attacks | None = None
    defenses: list[Defense] = []
    compressions: list[Compression] = []
    adaptations: list[Adaptation] = []
    explain: Explanation | None = None

    @model_validator(mode="after")
    def _distinct_names(self) -> EnvStudy:
        names = ["vanilla"] + [x.name for x in [*self.defenses, *self.compressions, *self.adaptations]]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"agent names must differ (vanilla is the undefended agent): {', '.join(repeated)}")
        return self


class Study(_Strict):
    """A whole study: written to ``OUT/<name>/``."""

    name: Name = "lab"
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] = Field(default=[0], min_length=1, max_length=100)
    envs: dict[str, EnvStudy] = Field(min_length=1, max_length=32)


DEFAULT_STUDY: dict[str, Any] = {
    "name": "lab",
    "seeds": [0],
    "envs": {
        "CartPole-v1": {
            "algos": ["ppo"],
            "steps": 100_000,
            "episodes": 20,
            # bench/results/defense_acceptance.md: ATLA holds best (500 at 0.5 and 1 std); the vote-smoothed
            # agent looks robust at 0.5 std and falls to 88 at 1 std under the EOT attack: the contrast
            "defenses": [
                {"name": "atla", "train": {"defense": "atla", "eps": 0.5, "steps": 100_000}},
                {"name": "smoothed", "smooth": "sigma=0.25,n=8,mode=vote"},
            ],
            "compressions": [
                {"name": "distill", "transform": "distill", "settings": {"arch": [16, 16]}},
                {"name": "prune", "transform": "prune", "settings": {"sparsity": 0.8}},
            ],
            "attacks": {
                "eps": [0.25, 0.5, 1],
                "names": ["quick"],
                "episodes": 10,
                "learned_steps": 10_000,
                "learned_on": ["vanilla"],
                "learned_eps": [0.5],
            },
            "explain": {"methods": ["saliency"], "episodes": 1, "every": 10, "metrics": True},
        },
        "Catch-v0": {
            "algos": ["ppo"],
            "steps": 60_000,
            "episodes": 20,
            # the same bench, Catch: bit depth 3 holds against plain PGD at 16/255 (BPDA breaks it at 32/255);
            # a 3x3 median loses catches to plain PGD already
            "defenses": [
                {"name": "bit-depth-3", "filters": ["bit_depth:bits=3"]},
                {"name": "median-3", "filters": ["median:size=3"]},
            ],
            "adaptations": [
                {
                    "name": "adapt-brighter",
                    "target_wrappers": [{"name": "ObservationShift", "kwargs": {"offset": 60}}],
                    "settings": {"steps": 2000, "states": 4000},
                }
            ],
            "attacks": {"eps": ["8/255", "16/255", "32/255"], "names": ["quick"], "episodes": 10},
            "explain": {"methods": ["saliency"], "episodes": 1, "every": 5, "metrics": True},
        },
    },
}


def quick_study(study: dict[str, Any]) -> dict[str, Any]:
    """``--quick``: the same study, smaller: 1 seed, short trainings, few episodes, PGD and noise only, no
    learned adversary, adaptation and distillation with fewer steps; named ``NAME-quick``."""
    q = copy.deepcopy(study)
    q["name"] = f"{q.get('name', 'lab')}-quick"
    q["seeds"] = q.get("seeds", [0])[:1]
    for env in q.get("envs", {}).values():
        env["steps"] = min(env.get("steps") or QUICK_STEPS, QUICK_STEPS)
        env["episodes"] = min(env.get("episodes", 20), 5)
        for d in env.get("defenses", []):
            if d.get("train"):  # adversarial training trains an adversary beside the agent: fewer steps
                d["train"] = {**d["train"], "steps": min(d["train"].get("steps", QUICK_STEPS), QUICK_STEPS // 4)}
        for c in env.get("compressions", []):
            if c.get("transform") in ("distill", "prune"):
                c["settings"] = {**c.get("settings", {}), "steps": 2000}
        for a in env.get("adaptations", []):
            a["settings"] = {**a.get("settings", {}), "steps": 300, "states": 1000}
        if env.get("attacks"):
            env["attacks"] = {**env["attacks"], "names": ["pgd", "fgsm"], "episodes": 3, "learned_steps": 0}
        if env.get("explain"):
            env["explain"] = {**env["explain"], "metrics": False}
    return q


def load_study(path: str | Path | None = None, quick: bool = False) -> Study:
    """The study in ``path`` (YAML), or the built-in default; ``quick`` shrinks it (``quick_study``)."""
    if path is None:
        data: Any = copy.deepcopy(DEFAULT_STUDY)
        shown = "the default study"
    else:
        shown = str(path)
        try:
            text = read_regular_file(path, MAX_STUDY_BYTES, "study file").decode("utf-8", errors="replace")
        except FileNotFoundError:
            raise RllabError(f"no such study file {path} (run `rllab lab` without one for the default study)") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RllabError(f"{shown} is not valid YAML: {' '.join(str(exc).split())}") from None
        if not isinstance(data, dict):
            raise RllabError(f"{shown}: must be a YAML mapping with at least 'envs'")
    validate(data, Study, shown)  # one line naming the field
    if quick:
        data = quick_study(data)
        validate(data, Study, f"{shown} (--quick)")
    return Study.model_validate(data)
