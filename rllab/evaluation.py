"""Batched evaluation: episodes run across several environments, one agent call per step.

Episode ``j`` is always reset with seed ``seed + j``, so with a deterministic
policy the returns do not depend on how many environments run in parallel.
``act_fn`` lets other modules (attacks, defenses) decide what the agent sees.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from scipy import stats as _stats

from rllab.agent import Agent
from rllab.checkpoint import atomic_write
from rllab.errors import RllabError

ActFn = Callable[[np.ndarray, dict[str, Any]], np.ndarray]


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]
    seed: int
    deterministic: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def episodes(self) -> int:
        return len(self.returns)

    def summary(self) -> dict[str, Any]:
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


def observation_stats(agent: Agent, episodes: int = 10, seed: int = 10_000) -> dict[str, Any]:
    """Per-feature mean/std of observations in the agent's own (deterministic) rollouts."""
    seen: list[np.ndarray] = []

    def record(step: dict[str, Any]) -> None:
        seen.append(np.asarray(step["obs"], dtype=np.float64))

    run_episodes(agent, episodes, seed=seed, on_step=record)
    x = np.concatenate(seen, axis=0)
    return {
        "mean": x.mean(axis=0).reshape(-1).tolist(),
        "std": x.std(axis=0).reshape(-1).tolist(),
        "episodes": episodes,
        "steps": int(x.shape[0]),
        "seed": seed,
        "source": "the agent's own deterministic rollouts",
    }


def observation_frame(o: np.ndarray, zoom: int = 16, channels_last: bool | None = None) -> np.ndarray:
    """An image observation as a picture Pillow can encode: (H, W) grey or (H, W, 3) RGB, each cell zoom x zoom.

    Channels-first (C, H, W) and channels-last (H, W, C) are both read: three channels are RGB
    (channels-last RGBA drops alpha), one is grey, and other counts (stacked frames) show the first.
    Give ``channels_last`` where the layout is known (an agent's ``transpose_image``); otherwise it is
    guessed from the shape, which a channels-first frame narrower than its channel count defeats.
    """
    img = np.asarray(o, dtype=np.uint8)
    if channels_last is None:
        channels_last = not (img.ndim == 3 and img.shape[0] in (1, 3, 4) and img.shape[0] < img.shape[-1])
    if img.ndim == 3 and not channels_last:
        img = np.moveaxis(img, 0, -1) if img.shape[0] == 3 else img[0]
    if img.ndim == 3:  # channels last
        img = img[..., :3] if img.shape[-1] in (3, 4) else img[..., 0]
    return np.repeat(np.repeat(img, zoom, axis=0), zoom, axis=1)


def record_video(agent: Agent, path: str | Path, seed: int = 0, fps: int = 30, deterministic: bool = True) -> Path:
    """Record one episode as an animated GIF, encoded with Pillow.

    Uses the environment's ``rgb_array`` rendering where it has one, and the image
    observation itself otherwise.
    """
    import os

    from PIL import Image

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
            return observation_frame(o, channels_last=agent.transpose_image)
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
    images = [Image.fromarray(f) for f in frames]
    atomic_write(
        path,
        lambda tmp: images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0
        ),
    )
    return path
