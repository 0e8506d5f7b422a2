"""Batched evaluation: episodes run across several environments, one agent call per step.

Episode ``j`` is always reset with seed ``seed + j``, so with a deterministic
policy the returns do not depend on how many environments run in parallel.
``act_fn`` lets other modules (attacks, defenses) decide what the agent sees.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from scipy import stats as _stats

from rllab.agent import Agent
from rllab.errors import RllabError
from rllab.frames import frame_rgb, write_gif

MAX_COLLECT_BYTES = 8 << 30  # observations a transform gathers in memory (distill, prune, adapt)

ActFn = Callable[[np.ndarray, dict[str, Any]], np.ndarray]


@dataclass
class EvalResult:
    """The returns and lengths of evaluated episodes (episode ``j`` reset with seed ``seed + j``)."""

    returns: list[float]
    lengths: list[int]
    seed: int
    deterministic: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def episodes(self) -> int:
        """The number of episodes."""
        return len(self.returns)

    def summary(self) -> dict[str, Any]:
        """Mean/std/min/max of returns and lengths, the 95% interval and every episode (eval.json's content)."""
        r = np.asarray(self.returns, dtype=np.float64)
        lengths = np.asarray(self.lengths, dtype=np.float64)
        return {
            "episodes": self.episodes,
            "seed": self.seed,
            "seeds": [self.seed + j for j in range(self.episodes)],
            "deterministic": self.deterministic,
            "mean_return": float(r.mean()),
            "std_return": float(r.std(ddof=1)) if r.size > 1 else 0.0,
            "min_return": float(r.min()),
            "max_return": float(r.max()),
            "ci95_return": confidence_interval(r),
            "mean_length": float(lengths.mean()),
            "std_length": float(lengths.std(ddof=1)) if lengths.size > 1 else 0.0,
            "min_length": int(lengths.min()),
            "max_length": int(lengths.max()),
            "returns": [float(x) for x in r],
            "lengths": [int(x) for x in lengths],
            **self.extra,
        }

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict."""
        return asdict(self)


def confidence_interval(x: np.ndarray, level: float = 0.95) -> list[float] | None:
    """Student-t interval ``[lo, hi]`` for the mean; None (JSON null) for fewer than two samples,
    where it is undefined (not the zero-width interval at the one value)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < 2:
        return None
    m = float(x.mean())
    half = float(_stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return [m - half, m + half]


def run_episodes(
    agent: Agent,
    episodes: int,
    seed: int = 0,
    n_envs: int = 8,
    deterministic: bool = True,
    act_fn: ActFn | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> EvalResult:
    """Run ``episodes`` episodes of ``agent`` in up to ``n_envs`` environments stepped together.

    ``act_fn(obs_batch, ctx)`` returns the actions for the batch of raw observations of
    the active environments; ``ctx`` holds ``env_index``, ``episode_index``, ``t`` and the
    last ``infos``. ``on_step`` receives each step's record (obs, actions, rewards, infos).
    """
    if episodes <= 0:
        raise RllabError(f"episodes must be positive, got {episodes}")
    if seed < 0:
        raise RllabError(f"seeds must be >= 0, got {seed}")
    n = max(1, min(n_envs, episodes))
    th.manual_seed(seed)  # stochastic policies and random defenses draw from torch's generator
    envs = [agent.make_env(**(env_kwargs or {})) for _ in range(n)]
    returns = [0.0] * episodes
    lengths = [0] * episodes
    obs: list[Any] = [None] * n
    infos: list[dict[str, Any]] = [{} for _ in range(n)]
    slot_episode = [-1] * n
    next_episode = 0
    for i, env in enumerate(envs):
        if next_episode < episodes:
            obs[i], infos[i] = env.reset(seed=seed + next_episode)
            slot_episode[i] = next_episode
            next_episode += 1
    t = 0
    try:
        while True:
            active = [i for i in range(n) if slot_episode[i] >= 0]
            if not active:
                break
            batch = np.stack([obs[i] for i in active])
            ctx = {
                "env_index": active,
                "episode_index": [slot_episode[i] for i in active],
                "t": t,
                "infos": [infos[i] for i in active],
            }
            if act_fn is None:
                actions = agent.act(batch, deterministic=deterministic)
            else:
                actions = act_fn(batch, ctx)
            rewards = np.zeros(len(active))
            dones = np.zeros(len(active), dtype=bool)
            for k, i in enumerate(active):
                ep = slot_episode[i]
                o, r, term, trunc, info = envs[i].step(actions[k])
                returns[ep] += float(r)
                lengths[ep] += 1
                rewards[k], dones[k] = r, term or trunc
                obs[i], infos[i] = o, info
                if term or trunc:
                    if next_episode < episodes:
                        obs[i], infos[i] = envs[i].reset(seed=seed + next_episode)
                        slot_episode[i] = next_episode
                        next_episode += 1
                    else:
                        slot_episode[i] = -1
            if on_step is not None:
                on_step({**ctx, "obs": batch, "actions": actions, "rewards": rewards, "dones": dones})
            t += 1
    finally:
        for env in envs:
            env.close()
    # a DQN agent acts greedily whatever it is asked (Agent.act); the record says what ran
    acted = deterministic or (act_fn is None and agent.has_q)
    return EvalResult(returns=returns, lengths=lengths, seed=seed, deterministic=acted)


def evaluate(
    agent: Agent, episodes: int = 20, seed: int = 0, n_envs: int = 8, deterministic: bool = True
) -> EvalResult:
    """Clean evaluation of ``agent``: mean/std/min/max return with a 95% CI."""
    return run_episodes(agent, episodes, seed=seed, n_envs=n_envs, deterministic=deterministic)


# ---------------------------------------------------------------- visited states
Policy = Callable[[np.ndarray], np.ndarray]  # a batch of raw observations -> a batch of actions


def visit_observations(
    agent: Agent,
    on_batch: Callable[[np.ndarray], None],
    episodes: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    policy: Policy | None = None,
    n_envs: int = 8,
) -> None:
    """Hand ``on_batch`` every batch of raw observations visited by ``policy`` (default: the agent, deterministic).

    Give ``episodes`` (episode ``j`` reset with seed ``seed + j``, as in :func:`run_episodes`) or ``steps``
    (``n_envs`` environments stepped together, reset with seeds ``seed``, ``seed + 1``, ... in the order
    their episodes start; the last batch may run past ``steps``).
    """
    if (episodes is None) == (steps is None):
        raise ValueError("give episodes or steps")
    if episodes is not None:
        act_fn = None if policy is None else (lambda batch, ctx: policy(batch))
        run_episodes(agent, episodes, seed=seed, n_envs=n_envs, act_fn=act_fn, on_step=lambda s: on_batch(s["obs"]))
        return
    behaviour = policy or agent.act
    envs = [agent.make_env() for _ in range(n_envs)]
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    started, visited = n_envs, 0
    try:
        while visited < steps:
            batch = np.stack(obs)
            on_batch(batch)
            visited += n_envs
            actions = behaviour(batch)
            for i, env in enumerate(envs):
                o, _, term, trunc, _ = env.step(actions[i])
                if term or trunc:
                    o, _ = env.reset(seed=seed + started)
                    started += 1
                obs[i] = o
    finally:
        for env in envs:
            env.close()


def check_gather(agent: Agent, states: int) -> None:
    """Refuse, before any episode, to gather more observations in memory than ``MAX_COLLECT_BYTES`` hold."""
    space = agent.observation_space
    if states * space.dtype.itemsize * int(np.prod(space.shape)) > MAX_COLLECT_BYTES:
        raise RllabError(
            f"{states} observations of shape {tuple(space.shape)} would not fit in memory "
            f"(at most {MAX_COLLECT_BYTES >> 30} GiB are gathered); ask for fewer states"
        )


def collect_observations(
    agent: Agent,
    episodes: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    policy: Policy | None = None,
    n_envs: int = 8,
) -> np.ndarray:
    """The raw observations :func:`visit_observations` visits, stacked (``steps`` of them in steps mode)."""
    if steps is not None:
        check_gather(agent, steps)
    seen: list[np.ndarray] = []
    visit_observations(agent, lambda b: seen.append(np.asarray(b)), episodes, steps, seed, policy, n_envs)
    x = np.concatenate(seen)
    return x if steps is None else x[:steps]


class RunningMoments:
    """Per-feature count, mean and variance of a stream of batches, in float64, keeping no batch.

    The sum is accumulated row by row, numpy's own order for an axis-0 sum, so the mean is the one of the
    stacked data to the bit; the variance merges each batch's (Chan et al. 1979), equal to float noise.
    """

    def __init__(self) -> None:
        self.count = 0
        self.sum: np.ndarray | None = None
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    def add(self, batch: np.ndarray) -> None:
        """Take in a batch of samples (first axis)."""
        x = np.asarray(batch, dtype=np.float64)
        if self.sum is None:
            self.sum, self._mean, self._m2 = (np.zeros(x.shape[1:]) for _ in range(3))
        for row in x:
            self.sum += row
        n, mean = len(x), x.mean(axis=0)
        total = self.count + n
        delta = mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + ((x - mean) ** 2).sum(axis=0) + delta**2 * (self.count * n / total)
        self.count = total

    @property
    def mean(self) -> np.ndarray:
        """The per-feature mean."""
        return self.sum / self.count

    @property
    def std(self) -> np.ndarray:
        """The per-feature (population) standard deviation."""
        return np.sqrt(self._m2 / self.count)


def observation_stats(agent: Agent, episodes: int = 10, seed: int = 10_000) -> dict[str, Any]:
    """Per-feature mean/std of observations in the agent's own (deterministic) rollouts, streamed."""
    moments = RunningMoments()
    visit_observations(agent, moments.add, episodes=episodes, seed=seed)
    return {
        "mean": moments.mean.reshape(-1).tolist(),
        "std": moments.std.reshape(-1).tolist(),
        "episodes": episodes,
        "steps": moments.count,
        "seed": seed,
        "source": "the agent's own deterministic rollouts",
    }


def record_video(agent: Agent, path: str | Path, seed: int = 0, fps: int = 30, deterministic: bool = True) -> Path:
    """Record one episode as an animated GIF, encoded with Pillow.

    Uses the environment's ``rgb_array`` rendering where it has one, and the image
    observation itself otherwise.
    """
    # pygame-based renderers (classic control) need no display for rgb_array frames.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    path = Path(path)
    try:
        env = agent.make_env(render_mode="rgb_array")
        renderable = True
    except RllabError:
        env = agent.make_env()
        renderable = False
    frames: list[np.ndarray] = []

    def frame(o: np.ndarray) -> np.ndarray | None:
        if renderable:
            try:
                img = env.render()
            except Exception:  # noqa: BLE001  (renderer missing, e.g. no pygame)
                img = None
            if img is not None:
                return np.asarray(img, dtype=np.uint8)
        if agent.is_image:
            return frame_rgb(o, channels_last=agent.transpose_image, zoom=16)
        return None

    try:
        o, _ = env.reset(seed=seed)
        done = False
        while not done:
            f = frame(o)
            if f is not None:
                frames.append(f)
            o, _, term, trunc, _ = env.step(agent.act(o, deterministic=deterministic))
            done = term or trunc
        f = frame(o)
        if f is not None:
            frames.append(f)
    finally:
        env.close()
    if not frames:
        raise RllabError(f"{agent.env_id} has no rgb_array rendering and no image observations to record")
    return write_gif(path, frames, fps)
