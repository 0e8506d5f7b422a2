"""Per-algorithm, per-environment default hyperparameters (YAML shipped in this folder).

Read with ``yaml.safe_load`` only; values are data, never evaluated as code.
Precedence: shipped defaults < ``--hyperparams FILE.yml`` < ``--set key=value``.
A shipped file's block is found by the exact id, then by the id's family (``atari`` for ``ALE/`` ids,
``minatar`` for ``MinAtar/`` ids, as in RL Zoo), then ``default``. Besides SB3's arguments a block may set
the lab's keys: ``env_kwargs`` and ``wrappers`` (the environment preset, recorded in the checkpoint),
``train_wrapper_kwargs`` (wrapper kwargs for the training envs only, e.g. Atari's episodic life),
``normalize``, ``policy_kwargs``, ``n_envs`` and ``n_timesteps``.
"""

from __future__ import annotations

import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from stable_baselines3.common.utils import LinearSchedule

from rllab.errors import RllabError
from rllab.files import read_regular_file

MAX_FILE_BYTES = 1 << 20  # a --hyperparams file (the shipped tables are a few KiB)
LAB_KEYS = {"n_envs", "n_timesteps", "normalize", "policy_kwargs", "env_kwargs", "wrappers", "train_wrapper_kwargs"}
FAMILIES = {"ALE/": "atari", "MinAtar/": "minatar"}  # id prefix -> the block shared by the family


def family(env_id: str) -> str | None:
    """The shipped block shared by ``env_id``'s family (``atari``, ``minatar``), or None."""
    bare = env_id.partition(":")[2] if ":" in env_id else env_id
    return next((name for prefix, name in FAMILIES.items() if bare.startswith(prefix)), None)


def _read_yaml(text: str, origin: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RllabError(f"cannot parse {origin}: {exc}".splitlines()[0]) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise RllabError(f"cannot parse {origin}: nested too deeply") from None


def shipped_defaults(algo: str, env_id: str) -> dict[str, Any]:
    """The shipped block for ``env_id`` (else its family's, else ``default``) of ``algo``'s YAML file."""
    try:
        text = resources.files(__package__).joinpath(f"{algo}.yml").read_text()
    except FileNotFoundError:
        raise RllabError(f"no hyperparameters shipped for algorithm {algo!r}") from None
    table = _read_yaml(text, f"{algo}.yml") or {}
    bare = env_id.partition(":")[2] if ":" in env_id else env_id
    return dict(table.get(bare) or table.get(family(bare) or "default") or table["default"])


def read_file(path: str | Path, env_id: str) -> dict[str, Any]:
    """A user's YAML: either a flat mapping, or one keyed by env id (like the shipped files)."""
    path = Path(path)
    try:  # a regular file of bounded size only: a FIFO would block the read, /dev/zero fill memory
        raw = read_regular_file(path, MAX_FILE_BYTES, "hyperparameter file")
    except FileNotFoundError:
        raise RllabError(f"hyperparameter file {path} not found") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RllabError(f"cannot parse {path}: not UTF-8 text ({exc.reason})") from None
    data = _read_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise RllabError(f"{path} must hold a mapping of hyperparameters")
    if env_id in data and isinstance(data[env_id], dict):
        return dict(data[env_id])
    if "default" in data and isinstance(data["default"], dict):
        return dict(data["default"])
    keyed = [k for k, v in data.items() if isinstance(v, dict) and _looks_like_env_id(k)]
    if keyed:
        raise RllabError(
            f"{path} holds hyperparameters for {', '.join(map(str, keyed))}, not {env_id}; "
            f"add a '{env_id}:' or 'default:' block (or write the settings unkeyed)"
        )
    return data


def _looks_like_env_id(key: Any) -> bool:
    """A Gymnasium id (registered, or shaped like ``[namespace/]Name-vN``)."""
    return isinstance(key, str) and (
        key in gym.envs.registry or re.fullmatch(r"([\w.-]+/)?[\w.:-]+-v\d+", key) is not None
    )


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["gamma=0.9", "policy_kwargs={net_arch: [32]}"]`` -> dict, values parsed as YAML scalars/flow."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise RllabError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = _read_yaml(value, f"--set {key}")
    return out


def resolve(
    algo: str,
    env_id: str,
    file: str | Path | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
) -> dict[str, Any]:
    """``algo``'s hyperparameters for ``env_id``: shipped defaults, then ``file``, then ``overrides``."""
    hp = shipped_defaults(algo, env_id)
    if file is not None:
        hp.update(read_file(file, env_id))
    if overrides:
        hp.update(parse_overrides(overrides) if isinstance(overrides, list) else overrides)
    for key in ("n_timesteps", "buffer_size", "learning_starts", "n_steps", "batch_size", "n_envs"):
        if key in hp and isinstance(hp[key], float):
            if not math.isfinite(hp[key]) or hp[key] != int(hp[key]):
                raise RllabError(f"hyperparameter {key} must be a whole number, got {hp[key]}")
            hp[key] = int(hp[key])
    return hp


def to_schedule(value: Any, name: str = "hyperparameter") -> Any:
    """``"lin_0.001"`` -> a linear schedule from 0.001 to 0; numbers pass through."""
    if isinstance(value, str) and value.startswith("lin_"):
        try:
            start = float(value[4:])
        except ValueError:
            raise RllabError(f"bad schedule {value!r}; expected lin_<number>") from None
        if not math.isfinite(start):
            raise RllabError(f"bad schedule {name}={value!r}: its start must be finite")
        return LinearSchedule(start, 0.0, 1.0)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise RllabError(f"bad number {value!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise RllabError(f"{name} must be finite, got {value}")
    return value


def split(hp: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(lab keys, SB3 algorithm kwargs with schedules resolved)."""
    lab = {k: hp[k] for k in LAB_KEYS if k in hp}
    algo_kwargs = {k: v for k, v in hp.items() if k not in LAB_KEYS}
    for key in ("learning_rate", "clip_range", "clip_range_vf"):
        if key in algo_kwargs:
            algo_kwargs[key] = to_schedule(algo_kwargs[key], key)
    return lab, algo_kwargs
