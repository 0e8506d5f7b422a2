"""Collecting the states an agent visits (observations, actions, ground-truth masks) for explanation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rllab.agent import Agent
from rllab.evaluation import run_episodes

# action names of environments whose actions have no get_action_meanings (ALE's), by the unwrapped env's class
ACTION_NAMES: dict[str, tuple[str, ...]] = {
    "CartPoleEnv": ("left", "right"),  # push the cart
    "CatchEnv": ("left", "stay", "right"),  # envs.catch: LEFT, STAY, RIGHT
    "AcrobotEnv": ("torque -1", "torque 0", "torque +1"),
    "MountainCarEnv": ("left", "none", "right"),  # accelerate
    "LunarLander": ("noop", "fire left", "fire main", "fire right"),
}
MINATAR_ACTIONS = {"n": "noop", "l": "left", "u": "up", "r": "right", "d": "down", "f": "fire"}  # action_map letters


def _names_of(env: Any) -> list[str] | None:
    """The action names an environment knows: ALE's meanings, MinAtar's action map, or the table above."""
    if hasattr(env, "get_action_meanings"):
        return [str(m) for m in env.get_action_meanings()]
    game = getattr(getattr(env, "game", None), "env", None)  # MinAtar: gym env -> Environment -> game
    if game is not None and hasattr(game, "action_map") and hasattr(env, "action_set"):
        return [MINATAR_ACTIONS.get(game.action_map[a], str(game.action_map[a])) for a in env.action_set]
    names = ACTION_NAMES.get(type(env).__name__)
    return list(names) if names else None


def action_names(agent: Agent) -> list[str]:
    """Names of a discrete agent's actions, for tags and titles (``left``, ``FIRE``), unique; ``action3`` style
    indices where the environment has no names, and none for continuous actions."""
    if not agent.is_discrete:
        return []
    n = int(agent.action_space.n)
    fallback = [f"action{a}" for a in range(n)]
    env = agent.make_env()
    try:
        names = _names_of(env.unwrapped)
    finally:
        env.close()
    if not names or len(names) != n or len(set(names)) != n:
        return fallback
    return names


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
