"""Typed readers of user-given values (command-line options, ``key=value`` settings, YAML snippets).

Every command parses its numbers here, so ``0.1``, ``8/255``, ``inf`` and ``nan`` mean the same thing
(and are refused the same way) everywhere. The ``argparse`` types raise ``ArgumentTypeError`` (argparse
prints one line and exits 2); the plain readers raise ``RllabError``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

import yaml

from rllab.errors import RllabError

# Upper bounds of values that size time or memory: above them a run would not end or not fit.
MAX_STEPS = 10**10  # environment steps (1e10 steps is years of CPU time)
MAX_EPISODES = 10**6
MAX_ENVS = 4096  # environments of one vectorised run (each an object in the process)
MAX_SEED = 2**32 - 1  # NumPy's SeedSequence accepts larger, Gymnasium's spaces do not


def parse_number(text: str, option: str) -> float:
    """A finite number on the command line: ``0.1``, ``8`` or a fraction such as ``8/255``."""
    num, slash, den = str(text).strip().partition("/")
    try:
        value = float(num) / float(den) if slash else float(num)
    except ValueError:
        raise RllabError(f"{option} expects a number such as 0.1 or 8/255, got {text!r}") from None
    except ZeroDivisionError:
        raise RllabError(f"{option} divides by zero: {text!r}") from None
    if not math.isfinite(value):
        raise RllabError(f"{option} must be finite, got {text!r}")
    return value


def parse_int(text: str, option: str, low: int | None = None, high: int | None = None) -> int:
    """A whole number within ``[low, high]`` (``1e5`` is accepted as 100000; ``1.5``, ``inf`` are not)."""
    value = parse_number(text, option)
    if value != int(value):
        raise RllabError(f"{option} must be a whole number, got {text!r}")
    number = int(value)
    if low is not None and number < low:
        raise RllabError(f"{option} must be >= {low}, got {text}")
    if high is not None and number > high:
        raise RllabError(f"{option} must be <= {high:.3g}, got {text}")
    return number


def parse_float(
    text: str, option: str, low: float | None = None, high: float | None = None, open_low: bool = False
) -> float:
    """A finite number within ``[low, high]`` (``(low, high]`` with ``open_low``)."""
    value = parse_number(text, option)
    if low is not None and (value < low or (open_low and value == low)):
        raise RllabError(f"{option} must be {'>' if open_low else '>='} {low:g}, got {text}")
    if high is not None and value > high:
        raise RllabError(f"{option} must be <= {high:g}, got {text}")
    return value


def _argtype(read: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """Turn a reader raising ``RllabError`` into an argparse type (argparse prints the option itself)."""

    def convert(text: str) -> Any:
        try:
            return read(text)
        except RllabError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value ")) from None

    convert.__name__ = name  # argparse names the type in its message: "invalid positive_int value"
    return convert


def int_arg(low: int | None = None, high: int | None = None, name: str = "integer") -> Callable[[str], int]:
    """argparse type of a whole number within ``[low, high]``."""
    return _argtype(lambda t: parse_int(t, "value", low, high), name)


def float_arg(
    low: float | None = None, high: float | None = None, open_low: bool = False, name: str = "number"
) -> Callable[[str], float]:
    """argparse type of a finite number (fractions such as ``8/255`` allowed) within bounds."""
    return _argtype(lambda t: parse_float(t, "value", low, high, open_low), name)


positive_int = int_arg(1, MAX_STEPS, "positive_int")
"""argparse type of a count >= 1 (steps, episodes, samples), at most ``MAX_STEPS``."""

seed_int = int_arg(0, MAX_SEED, "seed_int")
"""argparse type of a ``--seed``: an integer >= 0 (Gymnasium and NumPy refuse negative seeds)."""

budget = float_arg(0.0, name="budget")
"""argparse type of a budget (``--eps 0.1``, ``--eps 4/255``): finite and >= 0."""

positive_float = float_arg(0.0, open_low=True, name="positive_float")
"""argparse type of a finite number > 0 (learning rates, temperatures)."""

nonneg_float = float_arg(0.0, name="nonneg_float")
"""argparse type of a finite number >= 0 (coefficients)."""


def yaml_arg(text: str | None, option: str, kind: type = dict) -> Any:
    """A YAML/JSON command-line value: a mapping (``kind=dict``: env kwargs) or a list of named wrappers
    (``kind=list``: ``[{name: ..., kwargs: {...}}]``); None if not given."""
    if not text:
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RllabError(f"{option} is not valid YAML/JSON: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise RllabError(f"{option} is nested too deeply") from None
    if not isinstance(value, kind):
        example = "'{rows: 12}'" if kind is dict else "'[{name: ObservationShift, kwargs: {offset: 60}}]'"
        raise RllabError(f"{option} must be a YAML/JSON {'mapping' if kind is dict else 'list'}, e.g. {example}")
    if kind is list and not all(isinstance(w, dict) and isinstance(w.get("name"), str) for w in value):
        raise RllabError(f"{option} entries need a name, e.g. '[{{name: ObservationShift, kwargs: {{offset: 60}}}}]'")
    return value


def plural(n: int, word: str) -> str:
    """``1 episode``, ``2 episodes``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_ci(ci: Any, digits: int = 3) -> str:
    """``[lo, hi]``, or ``n/a`` where the interval is undefined (fewer than two episodes)."""
    if not ci or ci[0] is None or ci[1] is None:
        return "n/a"
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
