"""Build environments from a checkpoint's plain-JSON env description."""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym

import envs  # noqa: F401  (registers the lab's environments)
from envs.wrappers import apply_wrappers
from rllab.errors import RllabError

# Environments that other packages register on import, found by id prefix (rllab never imports them itself).
ENV_PROVIDERS = {"rllab/Attacked": "robustness.learned.env"}


def check_env_id(env_id: str) -> None:
    """Refuse an environment id Gymnasium does not know (registering providers of ``ENV_PROVIDERS`` first)."""
    for prefix, module in ENV_PROVIDERS.items():
        if env_id.startswith(prefix) and env_id not in gym.registry:
            try:
                importlib.import_module(module).register()
            except ModuleNotFoundError:
                pass
    try:
        gym.spec(env_id)
    except gym.error.Error as exc:
        raise RllabError(f"unknown environment id {env_id!r}: {exc}") from None


def make_env(
    env_id: str,
    kwargs: dict[str, Any] | None = None,
    wrappers: list[dict[str, Any]] | None = None,
    render_mode: str | None = None,
) -> gym.Env:
    """The environment ``env_id`` with ``kwargs`` and the named ``wrappers`` (one line when it cannot be made)."""
    check_env_id(env_id)
    kwargs = dict(kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        env = gym.make(env_id, **kwargs)
        return apply_wrappers(env, wrappers or [])
    except (TypeError, ValueError, gym.error.Error) as exc:
        raise RllabError(f"cannot make {env_id!r} with kwargs {kwargs} and wrappers {wrappers}: {exc}") from None


def env_factory(env_id: str, kwargs: dict[str, Any] | None = None, wrappers: list[dict[str, Any]] | None = None):
    """A zero-argument callable, as SB3's vector envs want."""

    def _make() -> gym.Env:
        return make_env(env_id, kwargs, wrappers)

    return _make


def with_domain(
    env_spec: dict[str, Any],
    env: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    wrappers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A checkpoint's env description moved to another domain: ``env`` replaces the id,
    ``env_kwargs`` are merged into its kwargs, ``wrappers`` are applied after its own."""
    return {
        **env_spec,
        "id": env if env is not None else env_spec["id"],
        "kwargs": {**env_spec.get("kwargs", {}), **(env_kwargs or {})},
        "wrappers": [*env_spec.get("wrappers", []), *(wrappers or [])],
    }


def describe_domain(env_spec: dict[str, Any]) -> str:
    """``Catch-v0 + distractors=3 + ObservationShift(offset=60)``."""
    parts = [env_spec["id"]]
    if env_spec.get("kwargs"):
        parts.append(", ".join(f"{k}={v}" for k, v in env_spec["kwargs"].items()))
    for w in env_spec.get("wrappers", []):
        kw = ", ".join(f"{k}={v}" for k, v in w.get("kwargs", {}).items())
        parts.append(f"{w['name']}({kw})")
    return " + ".join(parts)
