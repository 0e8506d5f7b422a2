"""Build environments from a checkpoint's plain-JSON env description.

Third-party environments register themselves with Gymnasium when their package is imported; the lab imports
that package on demand: by id prefix (``ALE/`` -> ``ale_py``, ``MinAtar/`` -> ``minatar``), by Gymnasium's
``module:Env-id`` syntax, or from the module a checkpoint recorded (``env.module``), so any command on a
checkpoint rebuilds its environment in a new process. A missing optional package is one line naming the
extra that installs it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

import envs  # noqa: F401  (registers the lab's environments)
from envs.wrappers import apply_wrappers
from rllab.errors import RllabError


@dataclass(frozen=True)
class Provider:
    """A package that registers environments: the module to import, its registering function (None: importing
    registers), and the pip extra that installs it (None: part of the lab)."""

    module: str
    register: str | None = None
    extra: str | None = None


# Environments that other packages register, found by id prefix (rllab never imports them at module level).
ENV_PROVIDERS: dict[str, Provider] = {
    "rllab/Attacked": Provider("robustness.learned.env", "register"),
    "ALE/": Provider("ale_py", None, "atari"),
    "MinAtar/": Provider("minatar.gym", "register_envs", "minatar"),
}
# Vector-env classes for ids whose copies step faster together (a DummyVecEnv subclass; the provider module
# registers it): the attacked MDP runs its victim's PGD once for all copies.
VEC_ENV_CLASSES: dict[str, type] = {}
# Gymnasium registers these itself, but making one imports optional packages (entry-point prefix -> needs).
ENTRY_POINT_NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "gymnasium.envs.mujoco": (("mujoco", "imageio"), "mujoco"),
}
EXTRA_OF_MODULE = {p.module.split(".")[0]: p.extra for p in ENV_PROVIDERS.values() if p.extra}


def missing_extra(extra: str, module: str) -> RllabError:
    """The one-line error of an optional package that is not installed."""
    return RllabError(
        f"{module} is not installed: install the {extra!r} extra (pip install -e '.[{extra}]', "
        "or bash scripts/setup.sh, which installs every extra)"
    )


def split_env_id(env_id: str) -> tuple[str | None, str]:
    """``("mod", "Env-v0")`` for Gymnasium's ``mod:Env-v0`` syntax, ``(None, env_id)`` otherwise."""
    if ":" in env_id:
        module, _, bare = env_id.partition(":")
        return module, bare
    return None, env_id


def env_module(env_id: str) -> str | None:
    """The module that registers ``env_id`` (its ``module:`` part, or its provider by prefix), else None."""
    module, bare = split_env_id(env_id)
    if module:
        return module
    provider = next((p for prefix, p in ENV_PROVIDERS.items() if bare.startswith(prefix)), None)
    return provider.module if provider is not None else None


def installed(module: str) -> bool:
    """Whether ``module``'s top-level package is found without the current folder that ``python -m`` and
    ``python -c`` put first on ``sys.path``: a checkpoint names its module, and the folder of a downloaded
    checkpoint, run from inside, may ship a .py of that name."""
    top = module.partition(".")[0]
    if top in sys.modules:
        return True
    first = sys.path[0] if sys.path and not sys.flags.safe_path else None
    implicit = first is not None and os.path.abspath(first or ".") == os.getcwd()
    path = sys.path[1:] if implicit else sys.path
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is not None and find(top, path if finder is importlib.machinery.PathFinder else None) is not None:
            return True
    return False


def import_env_module(module: str) -> None:
    """Import ``module`` so it registers its environments (a known provider's register function is called);
    never one found only in the current folder (a downloaded checkpoint's folder may ship a .py)."""
    provider = next((p for p in ENV_PROVIDERS.values() if p.module == module), None)
    if not installed(module) and importlib.util.find_spec(module.partition(".")[0]) is not None:
        raise RllabError(
            f"refusing to import {module!r} from the current folder {os.getcwd()}: rllab imports environment "
            "modules that are installed or on PYTHONPATH, never one that is only beside the command"
        )
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = (exc.name or module).split(".")[0]
        extra = (provider.extra if provider else None) or EXTRA_OF_MODULE.get(top)
        if provider is not None and provider.extra is None:
            return  # a part of the lab that is not installed: the id stays unknown
        if extra:
            raise missing_extra(extra, top) from None
        raise RllabError(f"cannot import {module!r}, the module that registers this environment: {exc}") from None
    if provider is not None and provider.register:
        getattr(mod, provider.register)()


def check_env_id(env_id: str, module: str | None = None) -> None:
    """Refuse an environment id Gymnasium does not know, importing its registering module first (``module``:
    the one a checkpoint recorded), and one whose optional packages are missing (naming the extra)."""
    id_module, bare = split_env_id(env_id)
    for name in dict.fromkeys(m for m in (module, id_module or env_module(bare)) if m):
        if bare not in gym.registry:
            import_env_module(name)
    try:
        spec = gym.spec(bare)
    except gym.error.Error as exc:
        raise RllabError(f"unknown environment id {env_id!r}: {exc}") from None
    entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
    for prefix, (needs, extra) in ENTRY_POINT_NEEDS.items():
        if entry.startswith(prefix):
            for name in needs:
                try:
                    importlib.import_module(name)
                except ModuleNotFoundError:
                    raise missing_extra(extra, name) from None


def make_env(
    env_id: str,
    kwargs: dict[str, Any] | None = None,
    wrappers: list[dict[str, Any]] | None = None,
    render_mode: str | None = None,
    module: str | None = None,
) -> gym.Env:
    """The environment ``env_id`` with ``kwargs`` and the named ``wrappers`` (one line when it cannot be made);
    ``module`` is imported first (the registering module a checkpoint recorded)."""
    check_env_id(env_id, module)
    kwargs = dict(kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        env = gym.make(split_env_id(env_id)[1], **kwargs)
        return apply_wrappers(env, wrappers or [])
    except (TypeError, ValueError, gym.error.Error) as exc:
        raise RllabError(f"cannot make {env_id!r} with kwargs {kwargs} and wrappers {wrappers}: {exc}") from None


def env_factory(
    env_id: str,
    kwargs: dict[str, Any] | None = None,
    wrappers: list[dict[str, Any]] | None = None,
    module: str | None = None,
):
    """A zero-argument callable, as SB3's vector envs want."""

    def _make() -> gym.Env:
        return make_env(env_id, kwargs, wrappers, module=module)

    return _make


def with_domain(
    env_spec: dict[str, Any],
    env: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    wrappers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A checkpoint's env description moved to another domain: ``env`` replaces the id,
    ``env_kwargs`` are merged into its kwargs, ``wrappers`` are applied after its own."""
    out = {
        **env_spec,
        "id": env if env is not None else env_spec["id"],
        "kwargs": {**env_spec.get("kwargs", {}), **(env_kwargs or {})},
        "wrappers": [*env_spec.get("wrappers", []), *(wrappers or [])],
    }
    if env is not None and env != env_spec["id"]:
        out["module"] = env_module(env)
    return out


def describe_domain(env_spec: dict[str, Any]) -> str:
    """``Catch-v0 + distractors=3 + ObservationShift(offset=60)``."""
    parts = [env_spec["id"]]
    if env_spec.get("kwargs"):
        parts.append(", ".join(f"{k}={v}" for k, v in env_spec["kwargs"].items()))
    for w in env_spec.get("wrappers", []):
        kw = ", ".join(f"{k}={v}" for k, v in w.get("kwargs", {}).items())
        parts.append(f"{w['name']}({kw})")
    return " + ".join(parts)
