"""Saving a run so that ``--resume`` continues it exactly, and restoring it.

The run folder is the checkpoint; ``resume/`` beside it holds, per saved step N, the optimizer state
(``optimizer.N.safetensors``) and the step and update counters with the return-normalisation statistics
(``state.N.json``); a defense that trains a model of its own (ATLA's adversary) adds ``defense.N.safetensors``
and its metadata in ``state.N.json``. Restored weights, optimizer and counters make a resumed run's weights
bit-identical to an uninterrupted one's (for the defenses without a model of their own).

Crash consistency: a save writes the resume state of step N, then the checkpoint, and only then removes
the resume state of earlier steps. A run killed (or out of disk) at any point therefore still holds the
resume state of the step its checkpoint is at, and resumes from that last good checkpoint.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from rllab.agent import Agent, agent_from_spec, load
from rllab.checkpoint import atomic_write, read_json, write_json
from rllab.errors import RllabError
from rllab.files import read_regular_file
from rllab.schema import ResumeState
from rllab.spec import now
from rllab.training.defenses import DEFENSE_STATE_ATTR, DefenseState

RESUME_DIR = "resume"
MAX_OPTIMIZER_BYTES = 1 << 32  # Adam keeps two moments per parameter: 4 GiB is a 500M-parameter float32 policy


def _state_file(resume: Path, step: int) -> Path:
    return resume / f"state.{step}.json"


def _optimizer_file(resume: Path, step: int) -> Path:
    return resume / f"optimizer.{step}.safetensors"


def _defense_file(resume: Path, step: int) -> Path:
    return resume / f"defense.{step}.safetensors"


def optimizer_to_files(optimizer: th.optim.Optimizer) -> tuple[dict[str, th.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, th.Tensor] = {}
    meta: dict[str, Any] = {"param_groups": state["param_groups"], "scalars": {}}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            name = f"{idx}.{key}"
            if isinstance(value, th.Tensor):
                tensors[name] = value.detach().cpu().contiguous()
            else:
                meta["scalars"][name] = value
    return tensors, meta


def _check_optimizer_tensor(name: str, value: th.Tensor, param: th.Tensor) -> None:
    """An optimizer state tensor fits its parameter: a one-value counter (``step``), or a moment of the
    parameter's shape and dtype; finite either way (NaN moments would train NaN weights)."""
    key = name.partition(".")[2]
    if key == "step":
        ok = value.numel() == 1 and value.is_floating_point()
        want = "one floating-point value"
    else:
        ok = value.shape == param.shape and value.dtype == param.dtype
        want = f"shape {tuple(param.shape)} and dtype {str(param.dtype).removeprefix('torch.')}"
    if not ok:
        raise RllabError(
            f"resume state's optimizer entry {name!r} has shape {tuple(value.shape)} and dtype "
            f"{str(value.dtype).removeprefix('torch.')}; its parameter needs {want}"
        )
    if value.is_floating_point() and not bool(th.isfinite(value).all()):
        raise RllabError(f"resume state's optimizer entry {name!r} is not finite")


def optimizer_from_files(optimizer: th.optim.Optimizer, tensors: dict[str, th.Tensor], meta: dict[str, Any]) -> None:
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict[str, Any]] = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, _, key = name.partition(".")
        if not idx.isdigit() or int(idx) >= len(params):
            raise RllabError(f"resume state names optimizer entry {name!r}, but the model has {len(params)} parameters")
        if isinstance(value, th.Tensor):
            _check_optimizer_tensor(name, value, params[int(idx)])
        state.setdefault(int(idx), {})[key] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError, TypeError) as exc:
        raise RllabError(f"resume state's optimizer does not fit the model: {exc}") from None


def agent_from_model(model: BaseAlgorithm, spec: dict[str, Any]) -> Agent:
    """An ``Agent`` sharing nothing with ``model`` (weights copied, CPU-independent)."""
    spec = copy.deepcopy(spec)
    env = model.get_env()
    if isinstance(env, VecNormalize) and env.norm_obs:
        rms = env.obs_rms
        spec["preprocessing"]["obs_normalization"] = {
            "mean": np.asarray(rms.mean).reshape(-1).tolist(),
            "var": np.asarray(rms.var).reshape(-1).tolist(),
            "clip": float(env.clip_obs),
            "epsilon": float(env.epsilon),
        }
    # Rebuilt from the spec (not copied) so every saved run proves its spec describes it.
    agent = agent_from_spec(spec, model.device)
    agent.policy.load_state_dict(model.policy.state_dict())
    return agent.eval()


def save_run(model: BaseAlgorithm, spec: dict[str, Any], run_dir: Path, complete: bool) -> Agent:
    """Write the checkpoint of ``model`` to ``run_dir`` with the resume state it continues from."""
    agent = agent_from_model(model, spec)
    agent.spec["training"] = {
        **agent.spec["training"],
        "timesteps": int(model.num_timesteps),
        "complete": complete,
        "updated": now(),
    }
    resume = run_dir / RESUME_DIR
    resume.mkdir(parents=True, exist_ok=True)
    tensors, meta = optimizer_to_files(model.policy.optimizer)
    meta["num_timesteps"] = int(model.num_timesteps)
    meta["n_updates"] = int(getattr(model, "_n_updates", 0))
    env = model.get_env()
    if isinstance(env, VecNormalize):
        meta["ret_rms"] = {
            "mean": float(np.asarray(env.ret_rms.mean)),
            "var": float(np.asarray(env.ret_rms.var)),
            "count": float(env.ret_rms.count),
            "obs_count": float(env.obs_rms.count),
        }
    # The resume state of this step is written before the checkpoint, and older steps' state removed
    # only after it: whatever the moment a run dies, its checkpoint's step has a resume state.
    step = int(model.num_timesteps)
    keep = [_state_file(resume, step), _optimizer_file(resume, step)]
    defense: DefenseState | None = getattr(model, DEFENSE_STATE_ATTR, None)
    if defense is not None:
        defense_tensors, meta["defense"] = defense.state()
        keep.append(_defense_file(resume, step))
        atomic_write(keep[-1], lambda tmp: save_file(defense_tensors, str(tmp)))
    atomic_write(keep[1], lambda tmp: save_file(tensors, str(tmp)))
    write_json(keep[0], meta)
    agent.save(run_dir)
    for old in resume.iterdir():
        if old.name not in {f.name for f in keep}:
            old.unlink(missing_ok=True)
    return agent


def _restore_defense(defense: DefenseState | None, resume: Path, step: int, meta: dict[str, Any]) -> None:
    """The defense's own state at ``step``; a run saved before defenses kept one goes on with a fresh one."""
    if defense is None:
        return
    path = _defense_file(resume, step)
    if meta.get("defense") is None or not path.is_file():
        print(
            f"warning: {resume} holds no state of the defense's own model at step {step} (saved by an older "
            "rllab); it starts afresh",
            file=sys.stderr,
        )
        return
    try:
        tensors = load_safetensors(read_regular_file(path, MAX_OPTIMIZER_BYTES, "defense state file"))
    except (OSError, SafetensorError) as exc:
        raise RllabError(f"cannot resume: {path} unreadable ({exc})") from None
    defense.load_state(tensors, meta["defense"])


def restore_run(model: BaseAlgorithm, run_dir: Path, spec: dict[str, Any]) -> int:
    """Load the run's weights, optimizer, counters and normalisation into ``model``; the step it resumes from."""
    saved = load(run_dir)
    model.policy.load_state_dict(saved.policy.state_dict())
    resume = run_dir / RESUME_DIR
    ckpt_steps = saved.spec.get("training", {}).get("timesteps")
    if not isinstance(ckpt_steps, int) or not _state_file(resume, ckpt_steps).is_file():
        raise RllabError(
            f"cannot resume {run_dir}: no resume state for its checkpoint at step {ckpt_steps} "
            f"(the run was not saved by `rllab train`, or {resume} was removed); start a new run"
        )
    try:
        meta = read_json(_state_file(resume, ckpt_steps), ResumeState)  # one line naming the file and field
        # read as a regular, size-bounded file first: a FIFO or device never blocks or fills memory
        raw = read_regular_file(_optimizer_file(resume, ckpt_steps), MAX_OPTIMIZER_BYTES, "optimizer file")
        tensors = load_safetensors(raw)
    except (OSError, json.JSONDecodeError, SafetensorError) as exc:
        raise RllabError(f"cannot resume {run_dir}: resume state unreadable ({exc})") from None
    if int(meta.get("num_timesteps", -1)) != ckpt_steps:
        raise RllabError(
            f"cannot resume {run_dir}: its checkpoint is at step {ckpt_steps} but the resume state at step "
            f"{meta.get('num_timesteps')}; start a new run"
        )
    optimizer_from_files(model.policy.optimizer, tensors, meta)
    _restore_defense(getattr(model, DEFENSE_STATE_ATTR, None), resume, ckpt_steps, meta)
    norm = spec["preprocessing"].get("obs_normalization")
    env = model.get_env()
    if norm and isinstance(env, VecNormalize):
        env.obs_rms.mean = np.asarray(norm["mean"]).reshape(env.obs_rms.mean.shape)
        env.obs_rms.var = np.asarray(norm["var"]).reshape(env.obs_rms.var.shape)
        if "ret_rms" in meta:
            env.obs_rms.count = meta["ret_rms"]["obs_count"]
    if isinstance(env, VecNormalize) and meta.get("ret_rms"):  # the reward scale continues where it stopped
        env.ret_rms.mean = np.float64(meta["ret_rms"]["mean"])
        env.ret_rms.var = np.float64(meta["ret_rms"]["var"])
        env.ret_rms.count = meta["ret_rms"]["count"]
    model.num_timesteps = int(meta["num_timesteps"])
    if hasattr(model, "_n_updates"):
        model._n_updates = int(meta.get("n_updates", 0))
    return model.num_timesteps
