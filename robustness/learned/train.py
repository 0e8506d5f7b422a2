"""Training a learned adversary: PPO on ``rllab/Attacked-v0`` against a victim checkpoint."""

from __future__ import annotations

from pathlib import Path

import rllab
from rllab.agent import Agent, load
from robustness.learned.env import ENV_ID, register, victim_summary


def train_adversary(
    victim: str | Path,
    eps: float,
    steps: int = 100_000,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool | None = None,
    mode: str = "pa-ad",
    pgd_steps: int = 10,
    final_eval_episodes: int = 20,
    normalize: bool | None = None,
) -> Agent:
    """PPO adversary against the checkpoint ``victim`` with budget ``eps``; returns the adversary agent.

    ``pgd_steps`` is the PA-AD actor's PGD steps per environment step (most of the training's
    cost); ``final_eval_episodes`` the adversary's own closing evaluation (its return is minus
    the victim's). ``normalize``: the adversary's PPO normalises its observations and rewards
    (RL Zoo's ``normalize: true``); None follows the victim, whose own training normalised its
    observations or not (ATLA trains its adversaries with the agent's PPO settings). On MuJoCo
    the raw states span orders of magnitude and the adversary's returns are in the thousands.
    """
    register()
    victim = Path(victim)
    loaded = load(victim)
    summary = victim_summary(loaded)
    if normalize is None:
        normalize = bool(loaded.normalize_obs)
    summary.pop("path")  # the victim's path is recorded beside it, as ``victim``
    out = Path(out) if out is not None else victim / "adversaries" / f"learned-eps{eps:g}-s{seed}"
    return rllab.train(
        "ppo",
        ENV_ID,
        seed=seed,
        steps=steps,
        out=out,
        progress=progress,
        env_kwargs={
            "victim": str(victim.resolve()),
            "eps": float(eps),
            "mode": mode,
            "pgd_steps": int(pgd_steps),
            "victim_spec": summary,
        },
        overrides={
            "n_envs": 8,
            "n_steps": 128,
            "batch_size": 256,
            "n_epochs": 10,
            "gamma": 0.99,
            "learning_rate": 1e-3,
            "ent_coef": 0.01,
            **({"normalize": True} if normalize else {}),
        },
        eval_freq=0,
        final_eval_episodes=final_eval_episodes,
    )
