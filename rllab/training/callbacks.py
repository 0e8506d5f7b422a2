"""What runs during ``model.learn``: periodic evaluation, periodic (resumable) checkpoints, the progress bar."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
from stable_baselines3.common.vec_env import VecEnv

from rllab.errors import RllabError
from rllab.training.build import ModelRecipe
from rllab.training.resume import save_run


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


def training_callbacks(
    recipe: ModelRecipe,
    steps: int,
    seed: int,
    spec: dict[str, Any],
    run_dir: Path,
    eval_freq: int | None,
    eval_episodes: int,
    save_freq: int | None,
) -> tuple[CallbackList, VecEnv]:
    """(the callbacks, the evaluation environments to close after training); frequencies default to steps/10."""
    if (eval_freq is not None and eval_freq < 0) or (save_freq is not None and save_freq < 0):
        raise RllabError("--eval-freq and --save-freq must be >= 0 (0 turns them off)")
    eval_freq = eval_freq if eval_freq is not None else max(steps // 10, 1000)
    save_freq = save_freq if save_freq is not None else max(steps // 10, 1000)
    # One env per evaluation episode, so the periodic evaluation's forward passes are batched.
    eval_env = recipe.vec_env(eval_episodes, seed + 1_000_000, training=False)
    callbacks: list[BaseCallback] = []
    if eval_freq > 0:  # 0 turns periodic evaluation off
        callbacks.append(
            EvalCallback(
                eval_env,
                n_eval_episodes=eval_episodes,
                eval_freq=max(eval_freq // recipe.n_envs, 1),
                deterministic=True,
                verbose=0,
                warn=False,
            )
        )
    if save_freq > 0:  # 0 turns periodic checkpoints off
        callbacks.append(PeriodicCheckpoint(spec, run_dir, save_freq))
    return CallbackList(callbacks), eval_env


def show_progress(progress: bool | None) -> bool:
    """The progress bar is shown when asked for, or by default when stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else progress
