"""The end of a run: observation statistics, the final evaluation, the training summary, the saved checkpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm

from rllab.agent import Agent
from rllab.checkpoint import write_json
from rllab.evaluation import evaluate, observation_stats
from rllab.spec import now
from rllab.training.resume import agent_from_model, save_run

# what agent.json keeps of eval.json's summary
FINAL_EVAL_KEYS = (
    "episodes",
    "seed",
    "mean_return",
    "std_return",
    "ci95_return",
    "min_return",
    "max_return",
    "mean_length",
)


def finish_run(
    model: BaseAlgorithm,
    spec: dict[str, Any],
    run_dir: Path,
    seed: int,
    final_eval_episodes: int,
    started: float,
    resumed_from: int,
) -> Agent:
    """Measure and evaluate the trained agent, then write its checkpoint, ``eval.json`` and TensorBoard summary."""
    agent = agent_from_model(model, spec)
    # pixel budgets are in 1/255, never in a per-pixel std: image agents keep no per-pixel statistics
    agent.spec["obs_stats"] = None if agent.is_image else observation_stats(agent, episodes=10, seed=seed + 10_000)
    summary = evaluate(agent, episodes=final_eval_episodes, seed=seed + 20_000).summary()
    agent.spec["training"] = {
        **spec["training"],
        "timesteps": int(model.num_timesteps),
        "complete": True,
        "resumed_from": resumed_from or None,
        "finished": now(),
        "wall_time_s": round(time.time() - started, 2),
        "final_eval": {k: summary[k] for k in FINAL_EVAL_KEYS},
    }
    # Keep the resume state consistent with the final weights, then write the checkpoint.
    save_run(model, agent.spec, run_dir, complete=True)
    agent = agent_from_model(model, agent.spec)
    agent.save(run_dir)
    write_json(run_dir / "eval.json", summary)
    _log_summary(run_dir / "tb", agent.spec)
    return agent


def _log_summary(tb_dir: Path, spec: dict[str, Any]) -> None:
    from torch.utils.tensorboard import SummaryWriter  # tensorboard is slow to import; only needed here

    with SummaryWriter(str(tb_dir / "train")) as writer:
        text = "```\n" + json.dumps({k: spec[k] for k in ("algo", "env", "training")}, indent=2) + "\n```"
        writer.add_text("rllab/run", text, int(spec["training"]["timesteps"]))
        fe = spec["training"]["final_eval"]
        writer.add_scalar("rllab/final_mean_return", fe["mean_return"], int(spec["training"]["timesteps"]))
