"""The learned adversary's game: the attacked environment it is trained in, and the PA-AD actor.

The optimal learned adversary is a policy trained with PPO to perturb a victim's observations
(Zhang et al. 2021, "Robust RL on State Observations with Learned Optimal Adversary", ATLA):
in the state-adversarial MDP the adversary observes the true state ``s``, chooses a
perturbation ``delta`` in the threat model's ball, the victim acts on ``s + delta`` and the
adversary receives the negative of the victim's reward. The adversary's policy outputs
``a in [-1, 1]^d`` and the perturbation is ``a * eps * scale`` (linf ball; ``scale`` is the
victim's threat unit, ``rllab.units.ThreatUnit``), clipped to the observation space. The
adversary is itself an rllab checkpoint: its environment is ``rllab/Attacked-v0`` with the
victim's path and the budget as keyword arguments.

Two parameterisations (``mode``):

- ``direct``: the adversary's action is the perturbation direction itself, as above. Hard
  to learn where random perturbations do nothing (an exploration problem).
- ``pa-ad`` (default; Sun et al. 2022, "Who Is the Strongest Enemy?", PA-AD): the adversary
  (the "director") chooses a direction in the victim's *action* space and a PGD "actor"
  turns it into the state perturbation inside the ball. For a discrete victim the direction
  is a target action and the PGD step maximises ``log pi(target | s')``; for a continuous
  victim it is ``d in [-1, 1]^k`` and PGD maximises ``d . mu(s')``. This is white-box: the
  actor uses the victim's gradient.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv

from rllab.agent import Agent, load
from rllab.environment import VEC_ENV_CLASSES
from rllab.errors import RllabError
from rllab.units import ThreatUnit

ENV_ID = "rllab/Attacked-v0"


def victim_summary(agent: Agent) -> dict[str, Any]:
    """What an adversary was trained for, recorded in its checkpoint (``env.kwargs.victim_spec``)."""
    space = agent.action_space
    if agent.is_discrete:
        action: dict[str, Any] = {"type": "Discrete", "n": int(space.n)}
    else:
        action = {"type": "Box", "shape": list(space.shape)}
    return {
        "env": agent.env_id,
        "observation_shape": list(agent.observation_space.shape),
        "action_space": action,
        "path": str(Path(agent.path).resolve()) if getattr(agent, "path", None) else None,
    }


def describe_victim(v: dict[str, Any]) -> str:
    """A victim summary in words: its environment, observation shape and actions."""
    acts = v.get("action_space") or {}
    acts_text = f"{acts['n']} actions" if acts.get("type") == "Discrete" else f"actions of shape {acts.get('shape')}"
    return f"{v.get('env')} (observations of shape {tuple(v.get('observation_shape') or ())}, {acts_text})"


def trained_for(adversary: Agent) -> dict[str, Any]:
    """The victim an adversary checkpoint was trained against, from its spec (older checkpoints: the victim's
    agent.json, where it still exists) plus what the adversary's own spaces say."""
    kwargs = adversary.spec["env"]["kwargs"]
    recorded = dict(kwargs.get("victim_spec") or {})
    victim = kwargs.get("victim")
    if not recorded and victim:
        try:
            spec = json.loads((Path(victim) / "agent.json").read_text())
            recorded = {"env": spec["env"]["id"]}
        except (OSError, ValueError, KeyError, TypeError):
            recorded = {}
    recorded.setdefault("path", str(Path(victim).resolve()) if victim else None)
    recorded.setdefault("observation_shape", list(adversary.observation_space.shape))
    return {**recorded, "eps": float(kwargs["eps"]), "mode": kwargs.get("mode", "pa-ad")}


def check_adversary(adversary: Agent, agent: Agent, eps: list[float] | tuple[float, ...] = ()) -> list[str]:
    """Refuses an adversary trained for another kind of victim (one line); returns warnings for a
    different victim of the same kind or a different budget."""
    trained = trained_for(adversary)
    mode = trained["mode"]
    mine = victim_summary(agent)
    where = f"the adversary {adversary.path or ''}".rstrip()
    problem = None
    if trained.get("env") and trained["env"] != agent.env_id:
        problem = "environment"
    elif tuple(adversary.observation_space.shape) != tuple(agent.observation_space.shape):
        problem = "observation shape"
    else:  # what the adversary's actions mean must fit this victim
        space = adversary.action_space
        if mode == "direct":
            ok = isinstance(space, gym.spaces.Box) and tuple(space.shape) == tuple(agent.observation_space.shape)
        elif agent.is_discrete:
            ok = isinstance(space, gym.spaces.Discrete) and int(space.n) == int(agent.action_space.n)
        else:
            ok = isinstance(space, gym.spaces.Box) and tuple(space.shape) == tuple(agent.action_space.shape)
        problem = None if ok else "action space"
    if problem is not None:
        victim = f" at {trained['path']}" if trained.get("path") else ""
        shown = {**trained, "action_space": trained.get("action_space") or adversary_actions(adversary, mode)}
        raise RllabError(
            f"{where} was trained against a {describe_victim(shown)} victim{victim}; this agent is a "
            f"{describe_victim(mine)} one (different {problem}): train an adversary for it (omit --adversary)"
        )
    warnings = []
    if trained.get("path") and mine["path"] and trained["path"] != mine["path"]:
        warnings.append(
            f"{where} was trained against another {agent.env_id} agent ({trained['path']}), not this one "
            f"({mine['path']}): its attack may be weaker than one trained for this agent"
        )
    other = sorted({f"{e:g}" for e in eps if abs(float(e) - trained["eps"]) > 1e-9}, key=float)
    if other:
        warnings.append(
            f"{where} was trained at eps {trained['eps']:g}; it is used here at eps {', '.join(other)} "
            "(its perturbations are rescaled to each budget)"
        )
    return warnings


def adversary_actions(adversary: Agent, mode: str) -> dict[str, Any]:
    """The victim's action space as the adversary's own (PA-AD directions are victim actions)."""
    space = adversary.action_space
    if mode != "direct" and isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if mode != "direct":
        return {"type": "Box", "shape": list(space.shape)}
    return {}


_VICTIMS: dict[tuple[str, tuple[int, ...]], Agent] = {}


def load_victim(path: str | Path) -> Agent:
    """The victim checkpoint at ``path``, loaded once per process while its files are unchanged.

    Every environment of an adversary's training (and of its final evaluation) attacks the same
    victim: one loaded agent serves them all (attacks only read it).
    """
    folder = Path(path).resolve()
    files = sorted(folder.glob("*")) if folder.is_dir() else []
    stamp = tuple(f.stat().st_mtime_ns for f in files if f.is_file())
    key = (str(folder), stamp)
    if key not in _VICTIMS:
        if len(_VICTIMS) >= 8:  # a handful of victims per process at most: drop the oldest
            _VICTIMS.pop(next(iter(_VICTIMS)))
        _VICTIMS[key] = load(folder)
    return _VICTIMS[key]


class AttackedEnv(gym.Env):
    """The victim's environment seen from the adversary's side (see the module docstring)."""

    def __init__(
        self,
        victim: str | Agent,
        eps: float,
        mode: str = "pa-ad",
        pgd_steps: int = 10,
        victim_env_kwargs: dict[str, Any] | None = None,
        victim_spec: dict[str, Any] | None = None,
        unit: ThreatUnit | None = None,
    ) -> None:
        if eps < 0:
            raise RllabError(f"eps must be >= 0, got {eps}")
        if mode not in ("pa-ad", "direct"):
            raise RllabError(f"unknown adversary mode {mode!r}; use pa-ad or direct")
        self.eps, self.mode, self.pgd_steps = float(eps), mode, int(pgd_steps)
        # a live Agent (ATLA trains against the victim as it learns) or a checkpoint folder
        self.victim = victim if isinstance(victim, Agent) else load_victim(victim)
        if victim_spec is not None:  # what the adversary was trained for (recorded by train_adversary)
            now = victim_summary(self.victim)
            for key in ("env", "observation_shape", "action_space"):
                if victim_spec.get(key) is not None and victim_spec[key] != now[key]:
                    raise RllabError(
                        f"the victim {victim} is now a {describe_victim(now)} agent; this adversary was trained "
                        f"against a {describe_victim(victim_spec)} one"
                    )
        self.env = self.victim.make_env(**(victim_env_kwargs or {}))
        space = self.victim.observation_space
        self.low = np.asarray(space.low, dtype=np.float32)
        self.high = np.asarray(space.high, dtype=np.float32)
        self.unit = unit if unit is not None else ThreatUnit.for_agent(self.victim)
        self.scale = self.unit.scale
        self.observation_space = gym.spaces.Box(
            np.maximum(self.low, -np.inf), np.minimum(self.high, np.inf), shape=space.shape, dtype=np.float32
        )
        if mode == "direct":
            self.action_space = gym.spaces.Box(-1.0, 1.0, shape=space.shape, dtype=np.float32)
        elif self.victim.is_discrete:
            self.action_space = gym.spaces.Discrete(int(self.victim.action_space.n))
        else:
            self.action_space = gym.spaces.Box(-1.0, 1.0, shape=self.victim.action_space.shape, dtype=np.float32)
        self._obs: np.ndarray | None = None
        self._pending: tuple[np.ndarray, np.ndarray] | None = None  # (adversary action, victim action) of a batch

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """The victim's environment, reset."""
        super().reset(seed=seed)
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs, self._pending = np.asarray(obs, dtype=np.float32), None
        return self._obs, info

    def perturb(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Batched: observations (B, ...) and adversary actions (B, ...) -> perturbed observations."""
        if self.mode == "direct":
            delta = np.clip(action, -1.0, 1.0) * self.eps * self.scale
            return np.clip(obs + delta, self.low, self.high)
        return pa_ad_actor(self.victim, obs, action, self.eps * self.scale, self.low, self.high, self.pgd_steps)

    def step(self, action: np.ndarray):
        """The victim acts on the perturbed observation; the adversary gets minus its reward."""
        pending, self._pending = self._pending, None
        if pending is not None and np.array_equal(pending[0], np.asarray(action)):
            victim_action = pending[1]  # computed with the other copies' (AttackedVecEnv)
        else:
            seen = self.perturb(self._obs[None], np.asarray(action)[None])[0]
            victim_action = self.victim.act(seen[None])[0]
        obs, reward, terminated, truncated, info = self.env.step(victim_action)
        self._obs = np.asarray(obs, dtype=np.float32)
        return self._obs, -float(reward), terminated, truncated, info

    def close(self) -> None:
        """Closes the victim's environment."""
        self.env.close()


class AttackedVecEnv(DummyVecEnv):
    """Copies of the attacked MDP that share one victim and budget, stepped together: the PA-AD actor's PGD and
    the victim's action run once on the batch of all copies (one small-network call instead of one per copy:
    on CPU the per-call overhead dominates), then each copy steps its own environment through its wrappers.
    Copies that do not share a victim and budget step one by one, as in a ``DummyVecEnv``."""

    def step_wait(self):
        attacked = [env.unwrapped for env in self.envs]
        first = attacked[0]
        if all(_batchable(first, a) for a in attacked):
            actions = np.stack([np.asarray(self.actions[i]) for i in range(self.num_envs)])
            seen = first.perturb(np.stack([a._obs for a in attacked]), actions)
            victim_actions = first.victim.act(seen)
            for a, action, victim_action in zip(attacked, actions, victim_actions, strict=True):
                a._pending = (action, victim_action)
        return super().step_wait()


def _batchable(first: Any, other: Any) -> bool:
    """Whether ``other`` perturbs and acts exactly as ``first`` does (same victim object, budget and actor)."""
    return (
        isinstance(other, AttackedEnv)
        and isinstance(first, AttackedEnv)
        and other._obs is not None
        and other.victim is first.victim
        and (other.eps, other.mode, other.pgd_steps) == (first.eps, first.mode, first.pgd_steps)
        and np.array_equal(other.scale, first.scale)
        and np.array_equal(other.low, first.low)
        and np.array_equal(other.high, first.high)
    )


def pa_ad_actor(
    victim: Agent,
    obs: np.ndarray,
    direction: np.ndarray,
    radius: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    steps: int,
) -> np.ndarray:
    """PGD inside the linf ball that moves the victim's policy along ``direction`` (PA-AD's actor)."""
    x = th.as_tensor(np.asarray(obs, dtype=np.float32), device=victim.device)
    r = th.as_tensor(radius, dtype=th.float32, device=x.device)
    lo = th.as_tensor(low, dtype=th.float32, device=x.device)
    hi = th.as_tensor(high, dtype=th.float32, device=x.device)
    d = th.as_tensor(np.asarray(direction), device=x.device)
    adv = x.clone()
    step = 2.5 * r / max(steps, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        scores = victim.logits(adv)
        if victim.is_discrete:
            objective = th.log_softmax(scores, -1).gather(1, d.long().reshape(-1, 1)).sum()
        else:
            objective = (scores * d.float().reshape(scores.shape)).sum()
        (grad,) = th.autograd.grad(objective, adv)
        with th.no_grad():
            adv = th.clamp(th.minimum(th.maximum(adv + step * grad.sign(), x - r), x + r), lo, hi)
    return adv.detach().cpu().numpy()


def register() -> None:
    """Registers ``rllab/Attacked-v0`` with Gymnasium (``rllab.environment.ENV_PROVIDERS`` calls it by module name)."""
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point="robustness.learned.env:AttackedEnv")
    VEC_ENV_CLASSES.setdefault(ENV_ID, AttackedVecEnv)  # rllab.train steps the copies' victim in one batch
