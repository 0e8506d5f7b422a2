"""Checks of the options a user gives an attribution method (one-line errors), and of the actions it explains."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch as th

from rllab.errors import RllabError


def as_index_tensor(values: Any, device: th.device) -> th.Tensor:
    """Actions (numpy, list or a tensor on any device) as a flat ``long`` tensor on ``device``."""
    if isinstance(values, th.Tensor):
        return values.detach().to(device).long().reshape(-1)
    return th.as_tensor(np.asarray(values), device=device).long().reshape(-1)


def int_option(method: str, key: str, value: Any, minimum: int = 1) -> int:
    """A whole-number option of a method, at least ``minimum`` (one-line error otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise RllabError(f"{method}: {key} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def float_option(method: str, key: str, value: Any, minimum: float = 0.0, strict: bool = False) -> float:
    """A number option of a method, ``>= minimum`` (``> minimum`` when ``strict``)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and math.isfinite(float(value)) and (value > minimum if strict else value >= minimum):
        return float(value)
    raise RllabError(f"{method}: {key} must be a number {'>' if strict else '>='} {minimum:g}, got {value!r}")


def bool_option(method: str, key: str, value: Any) -> bool:
    """A true/false option of a method (a YAML ``maybe`` is refused, not read as truthy)."""
    if not isinstance(value, bool):
        raise RllabError(f"{method}: {key} must be true or false, got {value!r}")
    return value
