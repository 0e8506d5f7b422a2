"""Robust Sarsa (SA-PPO, Zhang et al. 2020): a robust Q-function of a FIXED Gaussian policy, learned to attack it.

The RS attack needs the value of the *victim's own* behaviour, which a PPO agent does not have
(its critic is ``V(s)``, not ``Q(s, a)``). It is learned here by on-policy TD (SARSA) on the
victim's own rollouts, the policy never changing:

    L_TD(theta)  = SmoothL1( Q(s, a), r~ + gamma * (1 - done) * Q(s', a') ),   a ~ pi(.|s), a' ~ pi(.|s')
    L_rob(theta) = mean( max_{||a^ - a||_inf <= rs_eps} |Q(s, a^) - Q(s, a)| ^2 )
    L            = L_TD + rs_reg * L_rob

``r~`` is the reward divided by the standard deviation of the discounted return (what SA-PPO's
reward normalisation does), so Q is of order one whatever the environment's reward scale. The
robustness term makes Q smooth in the action within ``rs_eps`` (in units of the action space's
half-range; SA-PPO's ``--sarsa-eps``, default 0.02, and ``--sarsa-reg``, default 0.1): its inner
maximum is bounded by interval bound propagation through Q (``max(ub - q, q - lb)``; SA-PPO's
code uses auto_LiRPA's IBP+CROWN bounds, here plain IBP, the same bound as its ``beta=1`` setting).
The smooth Q gives the attack useful gradients where the raw TD fit is noisy.

Training is bounded by ``steps`` environment steps of rollouts (stochastic actions of the
fixed policy, seeded) and ``epochs`` passes over them, and cached per victim (a fingerprint of
its weights and spec) and settings: in memory for the process, and beside a checkpoint-loaded
victim in ``VICTIM/adversaries/rs-<key>.pt``, so an evaluation at several eps, or RS and
RS+MAD together, train it once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import torch.nn.functional as F
from torch import nn

from rllab.agent import Agent
from rllab.errors import RllabError
from robustness.certify import propagate


class QNetwork(nn.Module):
    """Q(s, a): an MLP (64-64 tanh, SA-PPO's value network) on the standardised observation and scaled action."""

    def __init__(self, obs_dim: int, act_dim: int, obs_mean: np.ndarray, obs_std: np.ndarray, act_scale: np.ndarray):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim + act_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)
        )
        self.register_buffer("obs_mean", th.as_tensor(obs_mean, dtype=th.float32).reshape(-1))
        self.register_buffer("obs_std", th.as_tensor(obs_std, dtype=th.float32).reshape(-1))
        self.register_buffer("act_scale", th.as_tensor(act_scale, dtype=th.float32).reshape(-1))

    def inputs(self, obs: th.Tensor, act: th.Tensor) -> th.Tensor:
        """The network's input: standardised observation, action in half-range units."""
        o = (obs.reshape(obs.shape[0], -1).float() - self.obs_mean) / self.obs_std
        return th.cat([o, act.reshape(act.shape[0], -1).float() / self.act_scale], dim=1)

    def forward(self, obs: th.Tensor, act: th.Tensor) -> th.Tensor:
        """Q(s, a), shape (batch,)."""
        return self.net(self.inputs(obs, act)).squeeze(-1)

    def action_ball_bounds(self, obs: th.Tensor, act: th.Tensor, radius: float) -> tuple[th.Tensor, th.Tensor]:
        """IBP bounds (lower, upper) of Q(s, a^) over ``||a^ - a||_inf <= radius`` (half-range units), s fixed."""
        c = self.inputs(obs, act)
        r = th.zeros_like(c)
        r[:, c.shape[1] - self.act_scale.numel() :] = radius
        for layer in self.net:
            c, r = propagate(layer, c, r)
        return (c - r).squeeze(-1), (c + r).squeeze(-1)


@dataclass
class Transitions:
    """SARSA data of a fixed policy: (s, a, r, s', terminated) and the policy's Gaussian at s'."""

    obs: th.Tensor
    actions: th.Tensor
    rewards: th.Tensor
    next_obs: th.Tensor
    terminated: th.Tensor
    next_mean: th.Tensor
    next_std: th.Tensor
    return_std: float  # std of the discounted return along the rollouts: the reward scale
    episodes: int


def gaussian(agent: Agent, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """The policy's action mean and std at ``obs`` (pre-squashing, as the Q-function sees actions)."""
    dist = agent.action_dist(obs)
    return dist.mean, dist.stddev


def env_action(agent: Agent, action: np.ndarray) -> np.ndarray:
    """The action the environment receives for a raw Gaussian sample (squashed or clipped to the space)."""
    if getattr(agent.policy, "squash_output", False):
        action = np.tanh(action)
    space = agent.action_space
    return np.clip(action, space.low, space.high)


@th.no_grad()
def collect_transitions(agent: Agent, steps: int, seed: int, gamma: float, n_envs: int = 8) -> Transitions:
    """``steps`` environment steps of the fixed stochastic policy on ``n_envs`` environments (reset seeds
    ``seed + 100_000 + i``: never the evaluation's episode seeds)."""
    gen = th.Generator(device="cpu").manual_seed(seed)
    envs = [agent.make_env() for _ in range(n_envs)]
    obs = np.stack([np.asarray(e.reset(seed=seed + 100_000 + i)[0], dtype=np.float32) for i, e in enumerate(envs)])
    next_seed = seed + 100_000 + n_envs
    running = np.zeros(n_envs)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "actions", "rewards", "next_obs", "terminated")}
    returns: list[float] = []
    episodes = 0
    for _ in range(max(1, -(-steps // n_envs))):
        mean, std = gaussian(agent, agent.as_tensor(obs))
        noise = th.randn(mean.shape, generator=gen).to(mean)
        actions = (mean + std * noise).cpu().numpy()
        nxt, done_obs = np.empty_like(obs), np.empty_like(obs)
        for i, env in enumerate(envs):
            o, r, term, trunc, _ = env.step(env_action(agent, actions[i]))
            done_obs[i] = np.asarray(o, dtype=np.float32)
            running[i] = running[i] * gamma + float(r)
            returns.append(running[i])
            out["rewards"].append(np.float32(r))
            out["terminated"].append(np.float32(term))
            if term or trunc:
                episodes += 1
                running[i] = 0.0
                o, _ = env.reset(seed=next_seed)
                next_seed += 1
            nxt[i] = np.asarray(o, dtype=np.float32)
        out["obs"].append(obs)
        out["actions"].append(actions.astype(np.float32))
        out["next_obs"].append(done_obs)  # s' of this transition: the final observation where an episode ended
        obs = nxt
    for e in envs:
        e.close()
    s = th.as_tensor(np.concatenate(out["obs"]))
    s2 = th.as_tensor(np.concatenate(out["next_obs"]))
    means, stds = [], []
    for chunk in th.split(s2, 4096):
        m, sd = gaussian(agent, agent.as_tensor(chunk.numpy()))
        means.append(m.cpu())
        stds.append(sd.cpu())
    return Transitions(
        obs=s,
        actions=th.as_tensor(np.concatenate(out["actions"])),
        rewards=th.as_tensor(np.asarray(out["rewards"], dtype=np.float32)),
        next_obs=s2,
        terminated=th.as_tensor(np.asarray(out["terminated"], dtype=np.float32)),
        next_mean=th.cat(means),
        next_std=th.cat(stds),
        return_std=float(np.std(returns)),
        episodes=episodes,
    )


@dataclass(frozen=True)
class SarsaSettings:
    """How the robust Q-function is learned (the RS attack's ``rs_*`` settings)."""

    steps: int = 30_000  # environment steps of the victim's rollouts (SA-PPO: 30 iterations of 2048)
    epochs: int = 30  # passes over them
    eps: float = 0.02  # action-ball radius of the robustness term, action half-range units (SA-PPO's default)
    reg: float = 0.1  # weight of the robustness term (SA-PPO's default)
    gamma: float = 0.99
    lr: float = 1e-3
    batch: int = 64  # SA-PPO: 32 minibatches of 2048 steps

    def check(self) -> None:
        """One line for settings that cannot train a Q-function."""
        if self.steps < 1 or self.epochs < 1 or self.batch < 2:
            raise RllabError(f"Robust Sarsa needs rs-steps >= 1 and epochs >= 1, got {self.steps} and {self.epochs}")
        if not (self.eps >= 0 and self.reg >= 0 and np.isfinite(self.eps) and np.isfinite(self.reg)):
            raise RllabError(f"Robust Sarsa needs rs-eps >= 0 and rs-reg >= 0, got {self.eps:g} and {self.reg:g}")
        if not 0 <= self.gamma < 1:
            raise RllabError(f"Robust Sarsa needs 0 <= gamma < 1, got {self.gamma:g}")


@dataclass
class RobustQ:
    """A trained robust Q-function of one victim, with how it was trained."""

    q: QNetwork
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: TD error and robustness term
    info: dict[str, Any] = field(default_factory=dict)


def check_gaussian(agent: Agent, what: str = "Robust Sarsa") -> None:
    """One line unless ``agent`` has a Gaussian policy over a Box action space (PPO/A2C/REINFORCE)."""
    if agent.is_discrete or not isinstance(agent.action_space, gym.spaces.Box):
        raise RllabError(f"{what} attacks continuous-action (Gaussian) policies; use pgd for discrete agents")
    if agent.has_q:
        raise RllabError(f"{what} needs a Gaussian policy; this {agent.algo} agent has none")


def train_robust_q(agent: Agent, settings: SarsaSettings, seed: int) -> RobustQ:
    """Robust Sarsa (see the module docstring): collect the fixed policy's rollouts, fit Q by TD + robustness."""
    settings.check()
    check_gaussian(agent)
    data = collect_transitions(agent, settings.steps, seed, settings.gamma)
    space = agent.action_space
    half = (np.asarray(space.high, np.float64) - np.asarray(space.low, np.float64)) / 2
    act_scale = np.where(np.isfinite(half) & (half > 0), half, 1.0).reshape(-1)
    obs_flat = data.obs.reshape(data.obs.shape[0], -1)
    obs_std = obs_flat.std(0).numpy()
    with th.random.fork_rng(devices=[]):
        th.manual_seed(seed)
        q = QNetwork(
            obs_flat.shape[1],
            int(np.prod(space.shape)),
            obs_flat.mean(0).numpy(),
            np.where(obs_std > 1e-6, obs_std, 1.0),
            act_scale,
        )
    scale = max(data.return_std, 1e-6)
    rewards = data.rewards / scale
    opt = th.optim.Adam(q.parameters(), lr=settings.lr)
    gen = th.Generator().manual_seed(seed + 1)
    n = data.obs.shape[0]
    history = []
    for _ in range(settings.epochs):
        order = th.randperm(n, generator=gen)
        # a' ~ pi(.|s') drawn afresh every epoch; the epoch's data shuffled once, then sliced
        next_act = data.next_mean + data.next_std * th.randn(data.next_mean.shape, generator=gen)
        epoch = [t[order] for t in (data.obs, data.actions, rewards, data.next_obs, next_act, data.terminated)]
        td_sum = reg_sum = 0.0
        for start in range(0, n, settings.batch):
            s, a, r, s2, a2, term = (t[start : start + settings.batch] for t in epoch)
            with th.no_grad():
                target = r + settings.gamma * (1 - term) * q(s2, a2)
            value = q(s, a)
            td = F.smooth_l1_loss(value, target)
            loss = td
            if settings.reg > 0 and settings.eps > 0:
                lo, hi = q.action_ball_bounds(s, a, settings.eps)
                rob = th.maximum(hi - value, value - lo).pow(2).mean()
                loss = td + settings.reg * rob
                reg_sum += float(rob.detach()) * len(s)
            opt.zero_grad()
            loss.backward()
            opt.step()
            td_sum += float(td.detach()) * len(s)
        history.append({"td_loss": td_sum / n, "robustness": reg_sum / n})
    q.eval()
    for p in q.parameters():
        p.requires_grad_(False)
    info = {"transitions": n, "episodes": data.episodes, "reward_scale": scale, "seed": seed}
    return RobustQ(q, history, info)


def victim_fingerprint(agent: Agent) -> str:
    """A hash of the victim's spec and weights: the cache key of what was learned about it."""
    h = hashlib.sha256(json.dumps(agent.spec, sort_keys=True, default=str).encode())
    for name, t in agent.policy.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


_CACHE: dict[str, RobustQ] = {}


def robust_q(agent: Agent, settings: SarsaSettings, seed: int) -> RobustQ:
    """The victim's robust Q-function: from the process cache, the victim's folder, or trained now (then kept)."""
    settings.check()
    check_gaussian(agent)
    key = hashlib.sha256(
        json.dumps([victim_fingerprint(agent), settings.__dict__, seed], sort_keys=True).encode()
    ).hexdigest()[:16]
    if key in _CACHE:
        return _CACHE[key]
    path = Path(agent.path) / "adversaries" / f"rs-{key}.pt" if getattr(agent, "path", None) else None
    if path is not None and path.exists():
        stored = th.load(path, map_location="cpu", weights_only=True)
        shapes = stored["shapes"]
        q = QNetwork(shapes[0], shapes[1], np.zeros(shapes[0]), np.ones(shapes[0]), np.ones(shapes[1]))
        q.load_state_dict(stored["state_dict"])
        q.eval().requires_grad_(False)
        found = RobustQ(q, stored["history"], {**stored["info"], "loaded_from": str(path)})
    else:
        found = train_robust_q(agent, settings, seed)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                obs_dim = found.q.obs_mean.numel()
                th.save(
                    {
                        "state_dict": found.q.state_dict(),
                        "shapes": [obs_dim, found.q.act_scale.numel()],
                        "history": found.history,
                        "info": found.info,
                    },
                    path,
                )
                found.info["saved_to"] = str(path)
            except OSError:  # a read-only victim folder: the cache stays in memory
                pass
    _CACHE[key] = found
    return found
