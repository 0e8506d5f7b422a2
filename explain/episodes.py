"""Collecting the states an agent visits (observations, actions, ground-truth masks) for explanation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rllab.agent import Agent
from rllab.evaluation import run_episodes


@dataclass
class Trajectories:
    """States of whole episodes in time order: ``obs[k]`` was seen at step ``t[k]`` of episode ``episode[k]``."""

    obs: np.ndarray
    actions: np.ndarray
    episode: np.ndarray
    t: np.ndarray
    masks: np.ndarray | None
    returns: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    def episode_slice(self, e: int) -> np.ndarray:
        """Indices of episode ``e``'s states, in time order."""
        return np.flatnonzero(self.episode == e)

    def every(self, k: int) -> Trajectories:
        """Only the states at steps 0, k, 2k, ... of each episode (the ones images are logged for)."""
        keep = self.t % k == 0
        masks = self.masks[keep] if self.masks is not None else None
        return Trajectories(self.obs[keep], self.actions[keep], self.episode[keep], self.t[keep], masks, self.returns)


def collect_states(agent: Agent, episodes: int = 1, seed: int = 0, n_envs: int = 8) -> Trajectories:
    """Run ``episodes`` deterministic episodes (episode j reset with seed ``seed + j``) and keep every state.

    ``masks`` holds the environment's ground-truth ``info["mask"]`` of each state when it has one (Catch).
    """
    obs: list[np.ndarray] = []
    actions: list[Any] = []
    ep: list[int] = []
    ts: list[int] = []
    masks: list[Any] = []
    t_in_episode: dict[int, int] = {}

    def record(step: dict[str, Any]) -> None:
        for k, e in enumerate(step["episode_index"]):
            obs.append(np.asarray(step["obs"][k]))
            actions.append(step["actions"][k])
            ep.append(e)
            ts.append(t_in_episode.get(e, 0))
            t_in_episode[e] = ts[-1] + 1
            masks.append(step["infos"][k].get("mask"))

    result = run_episodes(agent, episodes, seed=seed, n_envs=n_envs, on_step=record)
    order = np.lexsort((np.asarray(ts), np.asarray(ep)))
    have_masks = all(m is not None for m in masks)
    return Trajectories(
        obs=np.stack(obs)[order],
        actions=np.asarray(actions)[order],
        episode=np.asarray(ep)[order],
        t=np.asarray(ts)[order],
        masks=np.stack([np.asarray(m, dtype=bool) for m in masks])[order] if have_masks else None,
        returns=result.returns,
    )
