"""Building the networks a checkpoint spec describes, on a device, and filling them from safetensors bytes."""

from __future__ import annotations

import copy
from typing import Any, TypeVar

import gymnasium as gym
import torch as th
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from stable_baselines3.common.policies import BasePolicy
from torch import nn

from rllab.errors import RllabError
from rllab.nn.policies import build_policy, transposed_image_space
from rllab.spaces import space_from_json

_M = TypeVar("_M", bound=nn.Module)


def policy_observation_space(spec: dict[str, Any]) -> gym.spaces.Space:
    """The observation space the SB3 policy sees (channels-first when the agent transposes images)."""
    space = space_from_json(spec["observation_space"])
    if spec.get("preprocessing", {}).get("transpose_image"):
        return transposed_image_space(space)
    return space


def policy_from_spec(spec: dict[str, Any], device: th.device | str = "cpu") -> BasePolicy:
    """A freshly initialised SB3 policy with the architecture in ``spec["policy"]``."""
    return build_policy(
        spec["policy"]["class"],
        policy_observation_space(spec),
        space_from_json(spec["action_space"]),
        spec["policy"].get("kwargs", {}),
        device,
    )


def resolve_device(device: str) -> th.device:
    """``cpu``, ``cuda[:n]`` or ``auto`` as a torch device (a clear error when CUDA is asked for but absent)."""
    if device == "auto":
        return th.device("cuda" if th.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not th.cuda.is_available():
        raise RllabError("--device cuda was asked for, but no CUDA device is available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise RllabError(f"unknown device {device!r}; use cpu, cuda or auto")
    return th.device(device)


def load_weights(module: nn.Module, data: bytes) -> tuple[list[str], list[str]]:
    """Load the safetensors bytes ``data`` into ``module``; returns (missing, unexpected) names.

    Like ``safetensors.torch.load_model``, but from bytes already read (and hashed). A tensor
    that several names share (one feature extractor for actor and critic) is stored under one
    name; the others count as loaded.
    """
    state = load_safetensors(data)
    current = module.state_dict(keep_vars=True)
    missing, unexpected = module.load_state_dict(state, strict=False)
    loaded = {id(current[k]) for k in state if k in current}
    return [k for k in missing if id(current[k]) not in loaded], list(unexpected)


def fill_weights(module: nn.Module, data: bytes, shown: Any, quantized: bool = False) -> None:
    """Load a checkpoint's weights bytes into ``module``; one line naming checkpoint ``shown`` when they do not fit."""
    if quantized:
        try:
            missing, unexpected = load_weights(module, data)
        except (RuntimeError, SafetensorError, OSError) as exc:
            raise RllabError(f"cannot read quantised weights of {shown}: {str(exc).splitlines()[0]}") from None
        if missing or unexpected:
            raise RllabError(
                f"cannot read quantised weights of {shown}: "
                f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
            )
        return
    try:
        missing, unexpected = load_weights(module, data)
    except RuntimeError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[0])
        raise RllabError(f"weights of {shown} do not fit the architecture in agent.json ({detail})") from None
    except (SafetensorError, OSError) as exc:
        raise RllabError(f"cannot read weights of {shown}: {str(exc).splitlines()[0]}") from None
    if missing or unexpected:
        raise RllabError(
            f"weights of {shown} do not fit the architecture in agent.json "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    for name, param in module.named_parameters():  # (buffers may hold infinite observation bounds)
        if param.is_floating_point() and not bool(th.isfinite(param).all()):
            raise RllabError(f"weights of {shown} hold non-finite values ({name}): a diverged or corrupt checkpoint")


def clone_module(module: _M) -> _M:
    """A deep copy of an agent or SB3 policy that a transform can change without touching the original.

    ``copy.deepcopy`` alone fails on gSDE policies (SB3's default for PPO on Pendulum, say):
    their noise distribution keeps exploration matrices computed from ``log_std``, which are not
    graph leaves. Those are copied detached (SB3 resamples them before using them again).
    """
    held: list[tuple[object, str, th.Tensor]] = []
    seen: set[int] = set()

    def detach_in(obj: object) -> None:  # the modules and the plain objects they hold (distributions)
        if id(obj) in seen or isinstance(obj, (th.Tensor, type)) or not hasattr(obj, "__dict__"):
            return
        seen.add(id(obj))
        for name, value in list(vars(obj).items()):
            if isinstance(value, th.Tensor) and not value.is_leaf:
                held.append((obj, name, value))
                setattr(obj, name, value.detach())
            elif not isinstance(value, nn.Module):
                detach_in(value)

    for sub in module.modules():
        detach_in(sub)
    try:
        return copy.deepcopy(module)
    finally:
        for obj, name, value in held:
            setattr(obj, name, value)


def check_finite(module: nn.Module, where: str) -> None:
    """Refuse a module whose floating-point weights or buffers hold NaN or inf (a diverged training run), in one
    line naming the first such tensor: a checkpoint is never written with weights no evaluation could use."""
    bad = [k for k, v in module.state_dict().items() if v.is_floating_point() and not bool(th.isfinite(v).all())]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise RllabError(
            f"refusing to write {where}: tensor {bad[0]!r}{more} holds NaN or inf (training diverged; "
            "lower the learning rate or resume from an earlier checkpoint)"
        )
