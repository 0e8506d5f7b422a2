"""Gymnasium spaces <-> plain JSON, so a checkpoint never needs pickle to describe them."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rllab.errors import RllabError


def _bound_to_json(arr: np.ndarray) -> Any:
    flat = arr.reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        return _scalar(flat[0])
    return [_scalar(v) for v in flat]


def _scalar(v: Any) -> Any:
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, bool):  # a boolean Box's bounds (MinAtar's frames) as the numbers 0 and 1
        return int(v)
    if isinstance(v, float) and not np.isfinite(v):
        return "inf" if v > 0 else "-inf"
    return v


def _bound_from_json(value: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if isinstance(value, list):
        arr = np.array([float(v) for v in value], dtype=np.float64).reshape(shape)
    else:
        arr = np.full(shape, float(value), dtype=np.float64)
    return arr.astype(dtype)


def space_to_json(space: spaces.Space) -> dict[str, Any]:
    """A space as plain JSON (Box bounds collapsed to one number when they are all equal)."""
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": _bound_to_json(space.low),
            "high": _bound_to_json(space.high),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": [int(v) for v in space.nvec.reshape(-1)]}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": int(np.prod(space.shape))}
    raise RllabError(f"unsupported space {space!r}: rllab handles Box, Discrete, MultiDiscrete and MultiBinary")


def space_from_json(data: dict[str, Any]) -> spaces.Space:
    """The space a ``space_to_json`` description stands for (a one-line error when it is malformed)."""
    try:
        kind = data["type"]
        if kind == "Box":
            shape = tuple(int(s) for s in data["shape"])
            dtype = np.dtype(data["dtype"])
            low = _bound_from_json(data["low"], shape, dtype)
            high = _bound_from_json(data["high"], shape, dtype)
            return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
        if kind == "Discrete":
            return spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
        if kind == "MultiDiscrete":
            return spaces.MultiDiscrete([int(v) for v in data["nvec"]])
        if kind == "MultiBinary":
            return spaces.MultiBinary(int(data["n"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise RllabError(f"malformed space description {data!r}: {exc}") from None
    raise RllabError(f"unknown space type {data.get('type')!r}")


def spaces_match(a: spaces.Space, b: spaces.Space) -> bool:
    """Same kind, shape, dtype and bounds (what a policy's weights depend on)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, spaces.Box):
        return (
            a.shape == b.shape
            and a.dtype == b.dtype
            and np.allclose(a.low, b.low, equal_nan=True)
            and np.allclose(a.high, b.high, equal_nan=True)
        )
    return a == b


def is_bounded_frame(space: spaces.Space) -> bool:
    """A 3-d Box of non-pixel frames bounded in [0, 1] (MinAtar's 10x10xC booleans), not a uint8 image."""
    return (
        isinstance(space, spaces.Box)
        and len(space.shape) == 3
        and space.dtype != np.uint8
        and bool(np.all(space.low >= 0))
        and bool(np.all(space.high <= 1))
    )


def is_unit_box(space: spaces.Space) -> bool:
    """A Box (not uint8 pixels) whose every feature lies in [0, 1]: budgets are absolute in the box's range."""
    return (
        isinstance(space, spaces.Box)
        and space.dtype != np.uint8
        and bool(np.all(space.low == 0))
        and bool(np.all(space.high == 1))
    )


def frame_layout(space: spaces.Space) -> str | None:
    """``hwc`` or ``chw`` for bounded non-pixel frames (channels first only when the first axis is the
    shortest: MinAtar's (10, 10, C) frames, C up to 10, read channels last), None otherwise."""
    if not is_bounded_frame(space):
        return None
    c, h, w = space.shape
    return "chw" if c < min(h, w) else "hwc"


def describe(space: spaces.Space) -> str:
    """A space in a few words for messages: ``Box(4,) float32``."""
    if isinstance(space, spaces.Box):
        return f"Box{tuple(space.shape)} {space.dtype}"
    return repr(space)


def check_spaces(env: gym.Env, obs_space: spaces.Space, act_space: spaces.Space, env_id: str) -> None:
    """Refuse an environment whose spaces are not the checkpoint's (one line naming both)."""
    if not spaces_match(env.observation_space, obs_space) or not spaces_match(env.action_space, act_space):
        raise RllabError(
            f"checkpoint spaces ({describe(obs_space)}, {describe(act_space)}) do not match environment {env_id!r} "
            f"({describe(env.observation_space)}, {describe(env.action_space)})"
        )
