"""The schema's foundations: the names the code knows, the size limits, and one-line validation errors."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError

from rllab.errors import RllabError

SCHEMA = "rllab.agent/1"
# the names the code knows (tests/test_schema.py keeps them equal to the tables they mirror)
ALGOS = ("reinforce", "a2c", "ppo", "dqn")  # rllab.algos.ALGOS; a distilled DQN is "distill-dqn"
POLICY_CLASSES = ("ActorCriticPolicy", "DQNPolicy")  # rllab.nn.policies.POLICY_CLASSES
ACTIVATIONS = ("tanh", "relu", "elu", "leaky_relu", "gelu", "silu")  # rllab.nn.policies.ACTIVATIONS
EXTRACTORS = ("flatten", "small_cnn", "nature_cnn", "minatar_cnn")  # rllab.nn.policies.EXTRACTORS
FILTERS = ("gaussian_blur", "median", "bit_depth", "gaussian_noise")  # rllab.nn.filters.FILTERS
SPACE_TYPES = ("Box", "Discrete", "MultiDiscrete", "MultiBinary")
BOX_DTYPES = ("float16", "float32", "float64", "uint8", "uint16", "uint32", "int8", "int16", "int32", "int64", "bool")

MAX_WIDTH = 65_536  # units of one layer
MAX_LAYERS = 64  # hidden layers of one network
MAX_ACTIONS = 100_000  # actions of a Discrete space, entries of a vector action
MAX_OBS_ELEMENTS = 1 << 24  # values in one observation (a raw 210x160x3 Atari frame holds 100,800)
MAX_SMOOTHING_SAMPLES = 100_000  # noisy copies per forward pass of a smoothed agent
MAX_KERNEL = 255  # pixels across an input filter's kernel
MAX_JSON_DEPTH = 64  # nesting of any JSON file the lab reads (agent.json needs about 8)
MAX_LIST = 1_000_000  # items of any list not sized by a space (lineage steps, module names, stages)

Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
Finite = FiniteFloat
Bound = float | Literal["inf", "-inf"]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


# ------------------------------------------------------------------ error lines
def one_line(text: str, limit: int = 200) -> str:
    """One line of at most ``limit`` characters: whitespace collapsed, the rest cut with '...'."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in SPACE_TYPES and not part.startswith(_BRANCH) and part not in ("int", "float", "str"):
            out += f".{part}" if out else str(part)  # (not a union's branch, not a space's type tag)
    return out


_MESSAGES = {kind: "must be an integer" for kind in ("int_type", "int_from_float")} | {
    kind: "must be an object" for kind in ("dict_type", "model_type", "model_attributes_type")
}
_MESSAGES |= {"missing": "missing", "float_type": "must be a number", "finite_number": "must be a finite number"}
_MESSAGES |= {"bool_type": "must be true or false", "string_type": "must be a string", "list_type": "must be a list"}
_BRANCH = ("constrained-", "function-", "list[", "dict[", "nullable[", "literal[")  # a union member's label


def _message(err: dict[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _MESSAGES:
        text = _MESSAGES[kind]
    elif kind in ("less_than_equal", "less_than", "greater_than_equal", "greater_than"):
        op, key = {"less_than_equal": ("<=", "le"), "less_than": ("<", "lt"), "greater_than_equal": (">=", "ge")}.get(
            kind, (">", "gt")
        )
        text = f"must be {op} {ctx.get(key)}"
    elif kind in ("too_long", "too_short"):
        bound = ctx.get("max_length") if kind == "too_long" else ctx.get("min_length")
        text = f"must hold {'at most' if kind == 'too_long' else 'at least'} {bound} items"
    elif kind == "literal_error":
        text = f"must be one of {ctx.get('expected')}"
    elif kind == "union_tag_invalid":
        text = f"unknown type {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    elif kind == "union_tag_not_found":
        text = "missing 'type'"
    elif kind == "value_error":
        text = str(ctx.get("error", err["msg"]))
    else:
        text = err["msg"]
    value = err.get("input")
    if kind not in ("missing", "value_error") and (value is None or isinstance(value, (bool, int, float, str))):
        text += f" (got {one_line(repr(value), 40)})"
    return one_line(text)


def validate(data: Any, model: type[BaseModel], shown: str) -> Any:
    """``data`` (parsed JSON read from ``shown``) unchanged when ``model`` accepts it, else one ``RllabError``
    line: ``shown: field.path[i]: what is wrong``."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        err = errors[0]
        text = _message(err)
        where = _location(tuple(err["loc"]))
        if text.startswith("@"):  # a cross-field check names its own field
            where, _, text = text[1:].partition(": ")
        elif text.startswith(("[", ".")) and ": " in text:  # a validator names the item within its field
            inner, _, text = text.partition(": ")
            where += inner
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise RllabError(f"{shown}: {where}: {text}{more}" if where else f"{shown}: {text}{more}") from None
    except RecursionError:
        raise RllabError(f"{shown}: nested too deeply") from None
    return data
