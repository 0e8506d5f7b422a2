"""Plain helper functions that more than one test module uses (fixtures are in conftest.py)."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import torch as th

import rllab
from rllab.agent import Agent
from rllab.cli import main


def sample_obs(agent: Agent, n: int = 32, seed: int = 0) -> np.ndarray:
    """``n`` observations drawn from (a copy of) the agent's observation space, seeded."""
    space = copy.deepcopy(agent.observation_space)
    space.seed(seed)
    return np.stack([space.sample() for _ in range(n)])


def collected_states(agent: rllab.Agent, n: int = 256) -> th.Tensor:
    """``n`` states collected by running the agent (``rllab.transforms.distill.collect_states``), seed 123."""
    from rllab.transforms.distill import collect_states

    return th.as_tensor(collect_states(agent.act, agent, n, seed=123))


def purifier_state(agent: Agent) -> dict[str, th.Tensor]:
    """A detached copy of the agent's purifier weights."""
    return {k: v.detach().clone() for k, v in agent.purifier.state_dict().items()}


def fails_in_one_line(argv: list[str], capsys) -> str:
    """Run the CLI; it must exit 2 with one error line (no traceback). Returns that line."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def copy_run(src, dst):
    """A copy of a run folder without its TensorBoard logs, resume state and earlier outputs."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tb", "resume", "explain", "attacks", "adversaries"))
    return dst


# The smallest study that still has every page part: a vanilla, a vote-smoothed (adaptive rows, not explained)
# and a pruned CartPole agent, two eps, a learned adversary, saliency maps with faithfulness metrics.
TINY_STUDY = """
name: tiny
envs:
  CartPole-v1:
    steps: 1024
    episodes: 3
    defenses:
      - {name: smoothed, smooth: "sigma=0.25,n=4,mode=vote"}
    compressions:
      - {name: prune, transform: prune, settings: {sparsity: 0.5, steps: 300, epochs: 1}}
    attacks: {eps: [0.25, 0.5], names: [fgsm], episodes: 2, steps: 2, learned_steps: 256, learned_eps: [0.5]}
    explain: {methods: [saliency], episodes: 1, every: 50, metrics: true}
"""
