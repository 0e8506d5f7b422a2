"""``rllab.train``: one training run, from its options to its checkpoint, top to bottom."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.logger import configure

from rllab.agent import Agent
from rllab.checkpoint import SPEC_FILE, lock_run, removed_on_failure
from rllab.errors import RllabError
from rllab.training.build import build_model, probe_spaces
from rllab.training.callbacks import show_progress, training_callbacks
from rllab.training.config import TrainConfig, resolve_run
from rllab.training.defenses import check_defense_eps, install_defense
from rllab.training.finish import finish_run
from rllab.training.resume import restore_run, save_run


def train(algo: str, env: str, **options: Any) -> Agent:
    """Train ``algo`` on ``env`` and return the agent; the run folder is its checkpoint.

    ``options`` are :class:`TrainConfig`'s fields (seed, steps, n_envs, hyperparams, overrides, device,
    out, resume, env_kwargs, wrappers, eval_freq, eval_episodes, final_eval_episodes, save_freq,
    progress, verbose, defense, defense_kwargs, threads). The thread count used is recorded in the
    checkpoint (``training.config.torch_threads``) and a resumed run reuses it unless told otherwise.
    """
    return train_config(TrainConfig(algo, env, **options))


def train_config(config: TrainConfig) -> Agent:
    """Run the training ``config`` describes and return the agent."""
    config.check()
    run_dir = config.run_dir
    # A failure before the first checkpoint leaves nothing behind (a folder this call created goes);
    # one after it leaves a run that --resume continues.
    # The run folder is held for the whole run: a second writer (another train or --resume into the same
    # --out) is refused at once, instead of mixing its logs in and overwriting this run's checkpoint.
    with (
        _torch_threads(config.torch_threads()),
        removed_on_failure(run_dir, keep_checkpoint=True),
        lock_run(run_dir),
    ):
        started = time.time()
        run = resolve_run(config, run_dir)
        obs_space, act_space = probe_spaces(run.algo, run.env, run.env_kwargs, run.wrappers)
        if run.defense is not None:
            check_defense_eps(run.defense_kwargs, obs_space)
        recipe = run.recipe(obs_space)
        spec = run.new_spec(recipe, obs_space, act_space)
        model = build_model(recipe, run.seed, run.device, config.verbose)
        venv = model.get_env()  # closed after training
        if run.defense is not None:
            install_defense(model, spec, run.defense, run.defense_kwargs, run.seed)
        run_dir.mkdir(parents=True, exist_ok=True)
        model.set_logger(
            configure(str(run_dir / "tb" / "train"), ["stdout", "tensorboard"] if config.verbose else ["tensorboard"])
        )
        resumed_from = restore_run(model, run_dir, run.stored) if run.stored is not None else 0
        callbacks, eval_env = training_callbacks(
            recipe, run.steps, run.seed, spec, run_dir, config.eval_freq, config.eval_episodes, config.save_freq
        )
        try:
            _learn(
                model, run.steps - resumed_from, callbacks, show_progress(config.progress), config.resume, spec, run_dir
            )
        finally:
            venv.close()
            eval_env.close()
        return finish_run(model, spec, run_dir, run.seed, config.final_eval_episodes, started, resumed_from)


def _learn(
    model: BaseAlgorithm,
    remaining: int,
    callbacks: CallbackList,
    progress: bool,
    resume: bool,
    spec: dict[str, Any],
    run_dir: Path,
) -> None:
    """``model.learn`` for the ``remaining`` steps; Ctrl-C saves a checkpoint that --resume continues."""
    try:
        if remaining > 0:
            model.learn(
                total_timesteps=remaining, callback=callbacks, progress_bar=progress, reset_num_timesteps=not resume
            )
    except ValueError as exc:
        if "invalid values" not in str(exc):  # torch.distributions refusing NaN parameters: the run diverged
            raise
        kept = "its last checkpoint is kept" if (run_dir / SPEC_FILE).exists() else "nothing was saved"
        raise RllabError(
            f"training diverged at step {model.num_timesteps}: the policy's outputs are not finite (NaN); "
            f"{kept} in {run_dir}; try a lower learning rate"
        ) from None
    except KeyboardInterrupt:
        save_run(model, spec, run_dir, complete=False)
        raise RllabError(
            f"interrupted at step {model.num_timesteps}; checkpoint saved in {run_dir}; continue with --resume"
        ) from None


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """PyTorch's CPU thread count set to ``n`` (None: left alone) for the block, then given back."""
    before = th.get_num_threads()
    if n is not None:
        th.set_num_threads(int(n))
    try:
        yield
    finally:
        th.set_num_threads(before)
