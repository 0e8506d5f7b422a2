"""``rllab.train``: Stable-Baselines3 training that ends in an rllab checkpoint.

The run folder ``runs/NAME`` *is* the checkpoint (``agent.json``,
``weights.safetensors``) plus ``tb/`` (TensorBoard), ``eval.json`` and
``resume/`` (optimizer state and step counter for ``--resume``).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from safetensors.torch import load_file, save_file
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize, VecTransposeImage

from rllab import hyperparams as hp_lib
from rllab.agent import Agent, agent_from_spec, resolve_device, spec_skeleton
from rllab.algos import ALGOS
from rllab.checkpoint import SPEC_FILE, atomic_write, now, read_spec, removed_on_failure, write_json
from rllab.environment import check_env_id, env_factory, make_env
from rllab.errors import RllabError
from rllab.evaluation import evaluate, observation_stats
from rllab.nn.policies import POLICY_CLASSES, default_extractor, policy_kwargs_to_sb3
from rllab.units import check_budget

RESUME_DIR = "resume"

# Training-time defenses (adversarial training) are provided by other packages, found by
# module name so that rllab never imports attack code: name -> installer(model, **settings).
TRAINING_DEFENSES: dict[str, Callable[..., dict[str, Any]]] = {}
DEFENSE_PROVIDERS = ["robustness.adversarial_training"]


def training_defense(name: str) -> Callable[..., dict[str, Any]]:
    if name not in TRAINING_DEFENSES:
        for module in DEFENSE_PROVIDERS:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError:
                continue
    if name not in TRAINING_DEFENSES:
        known = ", ".join(TRAINING_DEFENSES) or "none installed"
        raise RllabError(f"unknown training defense {name!r}; known: {known}")
    return TRAINING_DEFENSES[name]


def _check_algo_kwargs(algo: str, algo_kwargs: dict[str, Any]) -> None:
    """An unknown hyperparameter is a one-line error before anything is built (SB3 raises a TypeError)."""
    import inspect

    set_by_lab = {"self", "policy", "env", "_init_setup_model", "seed", "device", "verbose", "policy_kwargs"}
    accepted = set(inspect.signature(ALGOS[algo].__init__).parameters) - set_by_lab
    unknown = sorted(set(algo_kwargs) - accepted)
    if unknown:
        raise RllabError(
            f"unknown {algo} hyperparameter(s) {', '.join(unknown)}; {algo} takes the lab's keys "
            f"({', '.join(sorted(hp_lib.LAB_KEYS))}) and {', '.join(sorted(accepted))}"
        )


def _check_algo_values(algo: str, algo_kwargs: dict[str, Any]) -> None:
    """A hyperparameter whose default is a number must be given a number (SB3 fails late, deep inside)."""
    import inspect

    for name, param in inspect.signature(ALGOS[algo].__init__).parameters.items():
        if name not in algo_kwargs:
            continue
        default, value = param.default, algo_kwargs[name]
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            continue
        if callable(value) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            continue
        raise RllabError(f"bad hyperparameters for {algo}: {name} must be a number, got {value!r}")


def _check_extractor(policy_kwargs: dict[str, Any], obs_space: spaces.Space, transpose: bool) -> None:
    """NatureCNN's 8x8/4, 4x4/2, 3x3/1 convolutions need frames of at least 36x36 pixels."""
    if policy_kwargs.get("features_extractor") != "nature_cnn" or len(obs_space.shape) != 3:
        return
    h, w = obs_space.shape[:2] if transpose else obs_space.shape[1:]
    if min(h, w) < 36:
        raise RllabError(
            f"the nature_cnn extractor needs frames of at least 36x36 pixels; these are {h}x{w}: "
            "use features_extractor: small_cnn (the default for images)"
        )


def _check_defense_eps(defense_kwargs: dict[str, Any] | None, obs_space: spaces.Space) -> None:
    """The adversarial-training budget, in the threat model's units, checked before anything is built."""
    eps = (defense_kwargs or {}).get("eps")
    if eps is not None:
        check_budget(float(eps), is_image_space(obs_space, check_channels=False), "--eps", "--eps {v}")


def default_run_dir(algo: str, env_id: str, seed: int) -> Path:
    return Path("runs") / f"{algo}-{env_id.replace('/', '_')}-s{seed}"


# ---------------------------------------------------------------- environments
def make_vec_env(env_id: str, n_envs: int, seed: int, env_kwargs: dict[str, Any], wrappers: list[dict[str, Any]]):
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

    return sb3_make_vec_env(
        env_factory(env_id, env_kwargs, wrappers), n_envs=n_envs, seed=seed, vec_env_cls=DummyVecEnv
    )


def _needs_transpose(space: spaces.Space) -> bool:
    return is_image_space(space, check_channels=True) and not is_image_space_channels_first(space)


# ---------------------------------------------------------------- checkpointing
def _optimizer_to_files(optimizer: th.optim.Optimizer) -> tuple[dict[str, th.Tensor], dict[str, Any]]:
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


def _optimizer_from_files(optimizer: th.optim.Optimizer, tensors: dict[str, th.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def agent_from_model(model: BaseAlgorithm, spec: dict[str, Any]) -> Agent:
    """An ``Agent`` sharing nothing with ``model`` (weights copied, CPU-independent)."""
    spec = copy.deepcopy(spec)
    env = model.get_env()
    if isinstance(env, VecNormalize):
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
    agent = agent_from_model(model, spec)
    agent.spec["training"] = {
        **agent.spec["training"],
        "timesteps": int(model.num_timesteps),
        "complete": complete,
        "updated": now(),
    }
    resume = run_dir / RESUME_DIR
    resume.mkdir(parents=True, exist_ok=True)
    tensors, meta = _optimizer_to_files(model.policy.optimizer)
    meta["num_timesteps"] = int(model.num_timesteps)
    meta["n_updates"] = int(getattr(model, "_n_updates", 0))
    if isinstance(model.get_env(), VecNormalize):
        meta["ret_rms"] = {
            "mean": float(np.asarray(model.get_env().ret_rms.mean)),
            "var": float(np.asarray(model.get_env().ret_rms.var)),
            "count": float(model.get_env().ret_rms.count),
            "obs_count": float(model.get_env().obs_rms.count),
        }
    # The optimizer state is written before the checkpoint so that a checkpoint's
    # step counter never runs ahead of the state it would resume from.
    atomic_write(resume / "optimizer.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    write_json(resume / "state.json", meta)
    agent.save(run_dir)
    return agent


class PeriodicCheckpoint(BaseCallback):
    """Saves the run folder as a (resumable) checkpoint every ``save_freq`` steps."""

    def __init__(self, spec: dict[str, Any], run_dir: Path, save_freq: int) -> None:
        super().__init__()
        self.spec, self.run_dir, self.save_freq = spec, run_dir, save_freq
        self._last = 0

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.save_freq:
            self._last = self.num_timesteps
            save_run(self.model, self.spec, self.run_dir, complete=False)
        return True


# ---------------------------------------------------------------- training
@contextlib.contextmanager
def _torch_threads(n: int | None):
    """PyTorch's CPU thread count set to ``n`` (None: left alone) for the block, then given back."""
    before = th.get_num_threads()
    if n is not None:
        th.set_num_threads(int(n))
    try:
        yield
    finally:
        th.set_num_threads(before)


def train(
    algo: str,
    env: str,
    seed: int = 0,
    steps: int | None = None,
    n_envs: int | None = None,
    hyperparams: str | Path | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
    device: str = "cpu",
    out: str | Path | None = None,
    resume: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    wrappers: list[dict[str, Any]] | None = None,
    eval_freq: int | None = None,
    eval_episodes: int = 5,
    final_eval_episodes: int = 20,
    save_freq: int | None = None,
    progress: bool | None = None,
    verbose: int = 0,
    defense: str | None = None,
    defense_kwargs: dict[str, Any] | None = None,
    threads: int | None = None,
) -> Agent:
    """Train ``algo`` on ``env`` and return the agent; the run folder is its checkpoint.

    ``steps`` defaults to the hyperparameter file's ``n_timesteps``. ``resume=True``
    continues the run in ``out`` from its last checkpoint, with its stored settings.

    ``threads`` pins PyTorch's CPU thread count while training (restored afterwards): the
    summation order of PyTorch's CPU kernels depends on it, so the same seed gives the same
    weights only with the same thread count. The count used is recorded in the checkpoint
    (``training.config.torch_threads``) and a resumed run reuses it unless told otherwise.
    """
    if threads is not None and threads < 1:
        raise RllabError(f"--threads must be positive, got {threads}")
    if seed < 0:
        raise RllabError(f"--seed must be >= 0, got {seed}")
    if threads is None and resume:
        stored = Path(out) if out is not None else default_run_dir(algo, env, seed)
        if (stored / SPEC_FILE).exists():
            threads = read_spec(stored)["training"]["config"].get("torch_threads")
    run_dir = Path(out) if out is not None else default_run_dir(algo, env, seed)
    # A failure before the first checkpoint leaves nothing behind (a folder this call created goes);
    # one after it leaves a run that --resume continues.
    with _torch_threads(threads), removed_on_failure(run_dir, keep_checkpoint=True):
        started = time.time()
        resumed_from = 0
        if resume:
            spec0 = read_spec(run_dir)
            config = spec0["training"]["config"]
            if config["algo"] != algo or config["env"] != env:
                raise RllabError(
                    f"{run_dir} is a {config['algo']} run on {config['env']}; cannot resume it as {algo} on {env}"
                )
            done = int(spec0["training"]["timesteps"])
            if spec0["training"].get("complete") and (steps is None or steps <= done):
                raise RllabError(
                    f"{run_dir} finished training already ({done} steps); to train it further, resume with "
                    f"--steps N above {done}"
                )
            seed, n_envs, env_kwargs, wrappers = (
                config["seed"],
                config["n_envs"],
                config["env_kwargs"],
                config["wrappers"],
            )
            steps = config["steps"] if steps is None else steps
            hp = config["hyperparams"]
            if config.get("defense"):
                defense = config["defense"]["name"]
                saved = config["defense"]
                defense_kwargs = {k: saved[k] for k in ("eps", "coef", "steps", "ramp", "solver") if k in saved}
        else:
            if algo not in ALGOS:
                raise RllabError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
            check_env_id(env)
            if (run_dir / SPEC_FILE).exists():
                raise RllabError(
                    f"{run_dir} already holds a checkpoint; pass --resume to continue it or choose another --out"
                )
            hp = hp_lib.resolve(algo, env, hyperparams, overrides)
        env_kwargs = dict(env_kwargs or {})
        wrappers = list(wrappers or [])
        lab, algo_kwargs = hp_lib.split(hp)
        _check_algo_kwargs(algo, algo_kwargs)
        _check_algo_values(algo, algo_kwargs)
        steps = int(lab.get("n_timesteps", 100_000) if steps is None else steps)
        if steps <= 0:
            raise RllabError(f"--steps must be positive, got {steps}")
        n_envs = int(n_envs or lab.get("n_envs", 1))
        if n_envs <= 0:
            raise RllabError(f"--n-envs must be positive, got {n_envs}")
        th_device = resolve_device(device)

        probe = make_env(env, env_kwargs, wrappers)
        obs_space, act_space = probe.observation_space, probe.action_space
        probe.close()
        if algo == "dqn" and not isinstance(act_space, spaces.Discrete):
            raise RllabError(f"dqn needs a discrete action space; {env} has {act_space}")
        if not isinstance(act_space, (spaces.Box, spaces.Discrete)):
            raise RllabError(f"rllab agents take Discrete or Box actions; {env} has {act_space}")

        if defense is not None:
            _check_defense_eps(defense_kwargs, obs_space)
        transpose = _needs_transpose(obs_space)
        if not isinstance(lab.get("policy_kwargs") or {}, dict):
            raise RllabError(f"policy_kwargs must be a mapping, got {lab['policy_kwargs']!r}")
        policy_kwargs = dict(lab.get("policy_kwargs") or {})
        _check_extractor(policy_kwargs, obs_space, transpose)
        if is_image_space(obs_space, check_channels=False):
            policy_kwargs.setdefault("features_extractor", default_extractor(obs_space))
        policy_class = "DQNPolicy" if algo == "dqn" else "ActorCriticPolicy"
        has_critic = algo != "dqn" and bool(algo_kwargs.get("use_baseline", True))
        normalize = bool(lab.get("normalize", False))
        if normalize and is_image_space(obs_space, check_channels=False):
            raise RllabError(
                "normalize: true is for vector observations; image observations are scaled by 1/255 already"
            )

        venv: VecEnv = make_vec_env(env, n_envs, seed, env_kwargs, wrappers)
        if transpose:
            venv = VecTransposeImage(venv)
        if normalize:
            venv = VecNormalize(venv, norm_obs=True, norm_reward=False, gamma=float(algo_kwargs.get("gamma", 0.99)))

        spec_policy_kwargs = {**policy_kwargs, "use_sde": True} if algo_kwargs.get("use_sde") else policy_kwargs
        spec = spec_skeleton(
            algo,
            env,
            env_kwargs,
            wrappers,
            obs_space,
            act_space,
            policy_class,
            spec_policy_kwargs,
            has_critic,
            transpose_image=transpose,
        )
        spec["training"] = {
            "config": {
                "algo": algo,
                "env": env,
                "seed": seed,
                "steps": steps,
                "n_envs": n_envs,
                "env_kwargs": env_kwargs,
                "wrappers": wrappers,
                "hyperparams": hp,
                "device": str(th_device),
                "torch_threads": th.get_num_threads(),
            },
            "started": now(),
        }

        try:
            model = ALGOS[algo](
                POLICY_CLASSES[policy_class],
                venv,
                seed=seed,
                device=th_device,
                verbose=verbose,
                policy_kwargs=policy_kwargs_to_sb3(policy_kwargs),
                **algo_kwargs,
            )
        except (TypeError, ValueError, AssertionError) as exc:
            venv.close()
            raise RllabError(f"bad hyperparameters for {algo}: {str(exc).splitlines()[0]}") from None
        if defense is not None:
            settings = training_defense(defense)(model, seed=seed, **(defense_kwargs or {}))
            spec["training"]["config"]["defense"] = {**settings, **(defense_kwargs or {})}
            spec["lineage"] = [
                {"parent": None, "transform": f"adversarial-training:{defense}", "params": settings, "time": now()}
            ]
        run_dir.mkdir(parents=True, exist_ok=True)
        tb_dir = run_dir / "tb"
        model.set_logger(configure(str(tb_dir / "train"), ["stdout", "tensorboard"] if verbose else ["tensorboard"]))

        if resume:
            resumed_from = _restore(model, run_dir, spec0)

        if (eval_freq is not None and eval_freq < 0) or (save_freq is not None and save_freq < 0):
            raise RllabError("--eval-freq and --save-freq must be >= 0 (0 turns them off)")
        eval_freq = eval_freq if eval_freq is not None else max(steps // 10, 1000)
        save_freq = save_freq if save_freq is not None else max(steps // 10, 1000)
        # One env per evaluation episode, so the periodic evaluation's forward passes are batched.
        eval_env = make_vec_env(env, eval_episodes, seed + 1_000_000, env_kwargs, wrappers)
        if transpose:
            eval_env = VecTransposeImage(eval_env)
        if normalize:
            eval_env = VecNormalize(eval_env, norm_obs=True, norm_reward=False, training=False)
        callback_list: list[BaseCallback] = []
        if eval_freq > 0:  # 0 turns periodic evaluation off
            callback_list.append(
                EvalCallback(
                    eval_env,
                    n_eval_episodes=eval_episodes,
                    eval_freq=max(eval_freq // n_envs, 1),
                    deterministic=True,
                    verbose=0,
                    warn=False,
                )
            )
        if save_freq > 0:  # 0 turns periodic checkpoints off
            callback_list.append(PeriodicCheckpoint(spec, run_dir, save_freq))
        callbacks = CallbackList(callback_list)
        if progress is None:
            progress = sys.stderr.isatty()
        remaining = steps - resumed_from
        try:
            if remaining > 0:
                model.learn(
                    total_timesteps=remaining, callback=callbacks, progress_bar=progress, reset_num_timesteps=not resume
                )
        except KeyboardInterrupt:
            save_run(model, spec, run_dir, complete=False)
            raise RllabError(
                f"interrupted at step {model.num_timesteps}; checkpoint saved in {run_dir}; continue with --resume"
            ) from None
        finally:
            venv.close()
            eval_env.close()

        agent = agent_from_model(model, spec)
        agent.spec["obs_stats"] = observation_stats(agent, episodes=10, seed=seed + 10_000)
        result = evaluate(agent, episodes=final_eval_episodes, seed=seed + 20_000)
        summary = result.summary()
        agent.spec["training"] = {
            **spec["training"],
            "timesteps": int(model.num_timesteps),
            "complete": True,
            "resumed_from": resumed_from or None,
            "finished": now(),
            "wall_time_s": round(time.time() - started, 2),
            "final_eval": {
                k: summary[k]
                for k in (
                    "episodes",
                    "seed",
                    "mean_return",
                    "std_return",
                    "ci95_return",
                    "min_return",
                    "max_return",
                    "mean_length",
                )
            },
        }
        # Keep the resume state consistent with the final weights, then write the checkpoint.
        save_run(model, agent.spec, run_dir, complete=True)
        agent = agent_from_model(model, agent.spec)
        agent.save(run_dir)
        write_json(run_dir / "eval.json", summary)
        _log_summary(tb_dir, agent.spec)
        return agent


def _restore(model: BaseAlgorithm, run_dir: Path, spec: dict[str, Any]) -> int:
    from rllab.agent import load

    saved = load(run_dir)
    model.policy.load_state_dict(saved.policy.state_dict())
    resume = run_dir / RESUME_DIR
    try:
        meta = json.loads((resume / "state.json").read_text())
        tensors = load_file(str(resume / "optimizer.safetensors"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RllabError(f"cannot resume {run_dir}: resume state unreadable ({exc})") from None
    # save_run writes the resume state first and the checkpoint last: a run killed between the two
    # writes holds a newer optimizer and step counter than its weights, which must not be mixed.
    ckpt_steps = saved.spec.get("training", {}).get("timesteps")
    if ckpt_steps is None or int(meta.get("num_timesteps", -1)) != int(ckpt_steps):
        raise RllabError(
            f"cannot resume {run_dir}: its checkpoint is at step {ckpt_steps} but the resume state at step "
            f"{meta.get('num_timesteps')} (interrupted while saving); start a new run"
        )
    _optimizer_from_files(model.policy.optimizer, tensors, meta)
    norm = spec["preprocessing"].get("obs_normalization")
    env = model.get_env()
    if norm and isinstance(env, VecNormalize):
        env.obs_rms.mean = np.asarray(norm["mean"]).reshape(env.obs_rms.mean.shape)
        env.obs_rms.var = np.asarray(norm["var"]).reshape(env.obs_rms.var.shape)
        if "ret_rms" in meta:
            env.obs_rms.count = meta["ret_rms"]["obs_count"]
    model.num_timesteps = int(meta["num_timesteps"])
    if hasattr(model, "_n_updates"):
        model._n_updates = int(meta.get("n_updates", 0))
    return model.num_timesteps


def _log_summary(tb_dir: Path, spec: dict[str, Any]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tb_dir / "train")) as writer:
        text = "```\n" + json.dumps({k: spec[k] for k in ("algo", "env", "training")}, indent=2) + "\n```"
        writer.add_text("rllab/run", text, int(spec["training"]["timesteps"]))
        fe = spec["training"]["final_eval"]
        writer.add_scalar("rllab/final_mean_return", fe["mean_return"], int(spec["training"]["timesteps"]))
