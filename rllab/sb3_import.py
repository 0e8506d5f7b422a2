"""Import a Stable-Baselines3 ``.zip`` (PPO, A2C, DQN) without executing anything in it.

SB3's own ``PPO.load`` cloudpickle-loads objects stored in the zip's ``data``
entry, so loading a stranger's zip runs the stranger's code. Here the ``data``
entry is read with ``json.loads`` only: its pickled payloads are never decoded.
The plain fields beside them (space shapes and dtypes, the policy class's name,
``repr`` strings of policy keyword arguments) are parsed as text against
allow-lists, and the weights come from ``policy.pth`` through
``torch.load(weights_only=True)``, which refuses arbitrary objects.
"""

from __future__ import annotations

import ast
import io
import json
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch as th
from gymnasium import spaces

from rllab.agent import Agent, agent_from_spec
from rllab.checkpoint import MAX_WEIGHTS_BYTES, SPEC_FILE, sha256_file
from rllab.environment import make_env
from rllab.errors import RllabError
from rllab.evaluation import observation_stats
from rllab.files import MAX_JSON_BYTES, loads
from rllab.nn.policies import ACTIVATIONS, needs_transpose, transposed_image_space
from rllab.schema import SCHEMA, validate_spec
from rllab.spec import LineageStep, append_lineage, now, spec_skeleton

_POLICY_CLASSES = {
    # class name in the zip -> (algorithm family, default features extractor)
    "ActorCriticPolicy": ("ac", "flatten"),
    "ActorCriticCnnPolicy": ("ac", "nature_cnn"),
    "DQNPolicy": ("dqn", "flatten"),
    "CnnPolicy": ("dqn", "nature_cnn"),
}
_EXTRACTOR_NAMES = {"FlattenExtractor": "flatten", "NatureCNN": "nature_cnn", "SmallCNN": "small_cnn"}
_PLAIN_KWARGS = {
    "net_arch",
    "ortho_init",
    "log_std_init",
    "full_std",
    "use_expln",
    "share_features_extractor",
    "normalize_images",
    "features_extractor_kwargs",
}
# a zip or member that is damaged (zlib.error, EOFError), encrypted (RuntimeError) or of an unknown method
UNREADABLE_ZIP = (zipfile.BadZipFile, OSError, zlib.error, EOFError, RuntimeError, NotImplementedError)
_IGNORED_KWARGS = {"optimizer_class", "optimizer_kwargs"}  # training-only


def _class_name(serialized: Any) -> str | None:
    """Name of a cloudpickled class from the text fields SB3 writes beside the payload."""
    if isinstance(serialized, str):
        m = re.search(r"<class '[\w.]*?(\w+)'>", serialized)
        return m.group(1) if m else None
    if isinstance(serialized, dict):
        init = str(serialized.get("__init__", ""))
        m = re.match(r"<function (\w+)\.__init__", init)
        if m:
            return m.group(1)
        return _class_name(serialized.get(":type:"))
    return None


def _literal(value: Any, key: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise RllabError(f"cannot import: policy_kwargs[{key!r}] = {value[:60]!r} is not plain data") from None


def _policy_kwargs(data: dict[str, Any], default_extractor: str) -> dict[str, Any]:
    raw = data.get("policy_kwargs") or {}
    if not isinstance(raw, dict):
        raise RllabError(f"cannot import: policy_kwargs is {type(raw).__name__}, not a mapping")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith(":") or key in _IGNORED_KWARGS:
            continue
        if key == "activation_fn":
            name = (_class_name(value) or "").lower()
            name = {"leakyrelu": "leaky_relu"}.get(name, name)
            if name not in ACTIVATIONS:
                raise RllabError(f"cannot import: unsupported activation {value!r}")
            out["activation_fn"] = name
        elif key == "features_extractor_class":
            name = _class_name(value)
            if name not in _EXTRACTOR_NAMES:
                raise RllabError(f"cannot import: unsupported features extractor {value!r}")
            out["features_extractor"] = _EXTRACTOR_NAMES[name]
        elif key == "squash_output":
            if _literal(value, key):  # tanh-squashed, rescaled actions: the agent's Gaussian would not be the policy
                raise RllabError("cannot import: squash_output=True (tanh-squashed actions) is not supported")
        elif key in _PLAIN_KWARGS:
            out[key] = _literal(value, key)
        else:
            raise RllabError(f"cannot import: unsupported policy keyword {key!r}")
    if (
        "net_arch" in out
        and isinstance(out["net_arch"], list)
        and out["net_arch"]
        and isinstance(out["net_arch"][0], dict)
    ):
        out["net_arch"] = out["net_arch"][0]  # SB3 < 1.8 format
    out.setdefault("features_extractor", default_extractor)
    if data.get("use_sde"):
        out["use_sde"] = True
    return out


def _check_space_fields(fields: dict[str, Any], space: spaces.Space, what: str, env_id: str) -> None:
    """Compare the zip's plain space fields with the environment's space."""
    if not isinstance(fields, dict):
        raise RllabError(f"cannot import: the zip has no readable {what} space")
    kind = _class_name(fields.get(":type:")) or ""
    ok = kind == type(space).__name__
    if ok and isinstance(space, spaces.Box):
        shape = _literal(fields.get("_shape"), "_shape")
        ok = tuple(shape or ()) == space.shape and str(fields.get("dtype")) == str(space.dtype)
    elif ok and isinstance(space, spaces.Discrete):
        ok = int(_literal(fields.get("n"), "n")) == int(space.n)
    if not ok:
        raise RllabError(
            f"the model's {what} space ({kind} {fields.get('_shape', fields.get('n'))}) does not match "
            f"{env_id!r} ({space})"
        )


def detect_algo(data: dict[str, Any]) -> str:
    """The algorithm of an SB3 zip, told from the hyperparameters its ``data`` entry holds."""
    if "exploration_final_eps" in data or "target_update_interval" in data:
        return "dqn"
    if "clip_range" in data:
        return "ppo"
    if "n_steps" in data:
        return "a2c"
    raise RllabError("cannot tell the algorithm of this zip (PPO, A2C and DQN are supported); pass --algo")


def import_sb3(model_zip: str | Path, env_id: str, out: str | Path, algo: str | None = None, seed: int = 0) -> Agent:
    """Turn an SB3 zip into an rllab checkpoint at ``out``; nothing in the zip is unpickled."""
    model_zip, out = Path(model_zip), Path(out)
    if (out / SPEC_FILE).exists():
        raise RllabError(f"{out} already holds a checkpoint")
    if not model_zip.is_file():
        raise RllabError(f"no such file {model_zip}")
    try:
        with zipfile.ZipFile(model_zip) as archive:
            names = set(archive.namelist())
            if "data" not in names or "policy.pth" not in names:
                raise RllabError(f"{model_zip} is not a Stable-Baselines3 model (no data / policy.pth entries)")
            for name, limit in (("data", MAX_JSON_BYTES), ("policy.pth", MAX_WEIGHTS_BYTES)):
                if archive.getinfo(name).file_size > limit:  # before decompressing: a zip bomb stops here
                    raise RllabError(f"refusing {model_zip}: its {name} entry holds more than {limit} bytes")
            data = loads(archive.read("data"), f"the data entry of {model_zip}")  # depth-limited, one line
            if not isinstance(data, dict):
                raise RllabError(f"{model_zip} is not a Stable-Baselines3 model (its data entry is not an object)")
            weights_bytes = archive.read("policy.pth")
            sb3_version = (
                archive.read("_stable_baselines3_version").decode().strip()
                if ("_stable_baselines3_version" in names)
                else None
            )
    except (*UNREADABLE_ZIP, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RllabError(f"cannot read {model_zip}: {exc}") from None

    algo = algo or detect_algo(data)
    policy_name = _class_name(data.get("policy_class"))
    if policy_name not in _POLICY_CLASSES:
        raise RllabError(f"cannot import policy class {policy_name!r}; supported: {', '.join(_POLICY_CLASSES)}")
    family, default_extractor = _POLICY_CLASSES[policy_name]
    if (family == "dqn") != (algo == "dqn"):
        raise RllabError(f"policy class {policy_name} does not fit algorithm {algo}")

    env = make_env(env_id)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    # SB3 wraps a channel-last image env in VecTransposeImage and stores the transposed (CHW) space
    model_obs_space = transposed_image_space(obs_space) if needs_transpose(obs_space) else obs_space
    _check_space_fields(data.get("observation_space"), model_obs_space, "observation", env_id)
    _check_space_fields(data.get("action_space"), act_space, "action", env_id)

    policy_kwargs = _policy_kwargs(data, default_extractor)
    spec = spec_skeleton(
        algo,
        env_id,
        {},
        [],
        obs_space,
        act_space,
        "DQNPolicy" if algo == "dqn" else "ActorCriticPolicy",
        policy_kwargs,
        has_critic=algo != "dqn",
        transpose_image=needs_transpose(obs_space),
    )
    try:
        state = th.load(io.BytesIO(weights_bytes), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (the unpickler refuses anything but tensors)
        raise RllabError(
            f"refusing {model_zip}: policy.pth is not plain tensors ({str(exc).splitlines()[0]})"
        ) from None
    # the architecture the zip claims, bounded and sized against its weights before any network is built
    claimed = {**spec, "schema": SCHEMA, "weights": {"sha256": "0" * 64, "bytes": len(weights_bytes)}}
    validate_spec(claimed, f"the policy_kwargs of {model_zip}")
    agent = agent_from_spec(spec)
    try:
        agent.policy.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RllabError(
            f"weights in {model_zip} do not fit the architecture {policy_kwargs}: {str(exc).splitlines()[0]}"
        ) from None
    agent.eval()
    agent.make_env().close()  # checks the spaces of the environment as the checkpoint builds it
    # pixel budgets are in 1/255, never in a per-pixel std: image agents keep no per-pixel statistics
    agent.spec["obs_stats"] = None if agent.is_image else observation_stats(agent, episodes=10, seed=seed + 10_000)
    agent.spec["training"] = {
        "imported_from": str(model_zip),
        "sb3_version": sb3_version,
        "timesteps": int(data["num_timesteps"]) if isinstance(data.get("num_timesteps"), int) else None,
        "complete": True,
        "imported": now(),
    }
    step = LineageStep(
        parent=str(model_zip),
        parent_resolved=str(Path(model_zip).resolve()),
        parent_sha256=sha256_file(model_zip),
        transform="import-sb3",
        params={"algo": algo, "policy_class": policy_name, "env": env_id},
    )
    append_lineage(agent.spec, step)
    agent.save(out)
    return agent
