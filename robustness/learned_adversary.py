"""The optimal learned adversary: a policy trained with PPO to perturb a victim's observations.

Zhang et al. 2021 ("Robust RL on State Observations with Learned Optimal Adversary", ATLA):
in the state-adversarial MDP the adversary observes the true state ``s``, chooses a
perturbation ``delta`` in the threat model's ball, the victim acts on ``s + delta`` and the
adversary receives the negative of the victim's reward. The adversary's policy outputs
``a in [-1, 1]^d`` and the perturbation is ``a * eps * scale`` (linf ball; ``scale`` is
255 for images, the checkpoint's per-feature observation std for vectors), clipped to the
observation space. The adversary is itself an rllab checkpoint: its environment is
``rllab/Attacked-v0`` with the victim's path and the budget as keyword arguments.

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
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

from rllab.agent import Agent, load
from rllab.errors import RllabError
from robustness.attacks.base import Attack

ENV_ID = "rllab/Attacked-v0"


def perturbation_scale(agent: Agent) -> np.ndarray:
    if agent.is_image:
        return np.full(agent.observation_space.shape, 255.0, dtype=np.float32)
    if agent.obs_std is None:
        raise RllabError("the victim checkpoint has no observation statistics (obs_stats)")
    return np.asarray(agent.obs_std, dtype=np.float32)


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


def _describe(v: dict[str, Any]) -> str:
    acts = v.get("action_space") or {}
    acts_text = f"{acts['n']} actions" if acts.get("type") == "Discrete" else f"actions of shape {acts.get('shape')}"
    return f"{v.get('env')} (observations of shape {tuple(v.get('observation_shape') or ())}, {acts_text})"


def _trained_for(adversary: Agent) -> dict[str, Any]:
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
    trained = _trained_for(adversary)
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
        shown = {**trained, "action_space": trained.get("action_space") or _adversary_actions(adversary, mode)}
        raise RllabError(
            f"{where} was trained against a {_describe(shown)} victim{victim}; this agent is a "
            f"{_describe(mine)} one (different {problem}): train an adversary for it (omit --adversary)"
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


def _adversary_actions(adversary: Agent, mode: str) -> dict[str, Any]:
    """The victim's action space as the adversary's own (PA-AD directions are victim actions)."""
    space = adversary.action_space
    if mode != "direct" and isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if mode != "direct":
        return {"type": "Box", "shape": list(space.shape)}
    return {}


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
    ) -> None:
        if eps < 0:
            raise RllabError(f"eps must be >= 0, got {eps}")
        if mode not in ("pa-ad", "direct"):
            raise RllabError(f"unknown adversary mode {mode!r}; use pa-ad or direct")
        self.eps, self.mode, self.pgd_steps = float(eps), mode, int(pgd_steps)
        # a live Agent (ATLA trains against the victim as it learns) or a checkpoint folder
        self.victim = victim if isinstance(victim, Agent) else load(victim)
        if victim_spec is not None:  # what the adversary was trained for (recorded by train_adversary)
            now = victim_summary(self.victim)
            for key in ("env", "observation_shape", "action_space"):
                if victim_spec.get(key) is not None and victim_spec[key] != now[key]:
                    raise RllabError(
                        f"the victim {victim} is now a {_describe(now)} agent; this adversary was trained against "
                        f"a {_describe(victim_spec)} one"
                    )
        self.env = self.victim.make_env(**(victim_env_kwargs or {}))
        space = self.victim.observation_space
        self.low = np.asarray(space.low, dtype=np.float32)
        self.high = np.asarray(space.high, dtype=np.float32)
        self.scale = perturbation_scale(self.victim)
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

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs = np.asarray(obs, dtype=np.float32)
        return self._obs, info

    def perturb(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Batched: observations (B, ...) and adversary actions (B, ...) -> perturbed observations."""
        if self.mode == "direct":
            delta = np.clip(action, -1.0, 1.0) * self.eps * self.scale
            return np.clip(obs + delta, self.low, self.high)
        return pa_ad_actor(self.victim, obs, action, self.eps * self.scale, self.low, self.high, self.pgd_steps)

    def step(self, action: np.ndarray):
        seen = self.perturb(self._obs[None], np.asarray(action)[None])[0]
        victim_action = self.victim.act(seen[None])[0]
        obs, reward, terminated, truncated, info = self.env.step(victim_action)
        self._obs = np.asarray(obs, dtype=np.float32)
        return self._obs, -float(reward), terminated, truncated, info

    def close(self) -> None:
        self.env.close()


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
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point="robustness.learned_adversary:AttackedEnv")


def train_adversary(
    victim: str | Path,
    eps: float,
    steps: int = 100_000,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool | None = None,
    mode: str = "pa-ad",
) -> Agent:
    """PPO adversary against the checkpoint ``victim`` with budget ``eps``; returns the adversary agent."""
    import rllab

    register()
    victim = Path(victim)
    summary = victim_summary(load(victim))
    summary.pop("path")  # the victim's path is recorded beside it, as ``victim``
    out = Path(out) if out is not None else victim / "adversaries" / f"learned-eps{eps:g}-s{seed}"
    return rllab.train(
        "ppo",
        ENV_ID,
        seed=seed,
        steps=steps,
        out=out,
        progress=progress,
        env_kwargs={"victim": str(victim.resolve()), "eps": float(eps), "mode": mode, "victim_spec": summary},
        overrides={
            "n_envs": 8,
            "n_steps": 128,
            "batch_size": 256,
            "n_epochs": 10,
            "gamma": 0.99,
            "learning_rate": 1e-3,
            "ent_coef": 0.01,
        },
        eval_freq=0,
    )


class LearnedAttack:
    """Perturbs a batch of observations with a trained adversary: ``attack(agent, obs) -> obs + delta``."""

    def __init__(self, adversary: Agent | str | Path, eps: float | None = None) -> None:
        register()
        self.adversary = adversary if isinstance(adversary, Agent) else load(adversary)
        if self.adversary.env_id != ENV_ID:
            raise RllabError(f"{adversary} is not a learned adversary (its env is {self.adversary.env_id})")
        kwargs = self.adversary.spec["env"]["kwargs"]
        self.eps = float(eps if eps is not None else kwargs["eps"])
        self.mode = kwargs.get("mode", "pa-ad")
        self.pgd_steps = int(kwargs.get("pgd_steps", 10))
        self._checked: Agent | None = None

    def __call__(self, agent: Agent, obs: np.ndarray | th.Tensor) -> np.ndarray:
        if self._checked is not agent:  # an adversary of another victim kind fails in one line, not in PGD
            check_adversary(self.adversary, agent)
            self._checked = agent
        x = (obs.detach().cpu().numpy() if isinstance(obs, th.Tensor) else np.asarray(obs)).astype(np.float32)
        a = self.adversary.act(x)
        space = agent.observation_space
        low, high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
        radius = self.eps * perturbation_scale(agent)
        if self.mode == "direct":
            return np.clip(x + np.clip(a, -1.0, 1.0) * radius, low, high).astype(np.float32)
        return pa_ad_actor(agent, x, a, radius, low, high, self.pgd_steps)


class LearnedAttackAdapter(Attack):
    """The learned adversary as an attack of the suite: one adversary per eps.

    ``adversary`` is a trained adversary checkpoint (used at every eps, a note in the card
    says for which eps it was trained); without it, an adversary is trained with
    ``adv_steps`` PPO steps for each eps at first use and saved beside the victim
    (``VICTIM/adversaries/``).
    """

    name = "learned"
    kind = "learned adversary (PA-AD director, white-box PGD actor)"

    def __init__(self, adversary: str | Path | None = None, adv_steps: int = 30_000) -> None:
        super().__init__()
        if adversary is not None and not (Path(adversary) / "agent.json").exists():
            raise RllabError(f"no adversary checkpoint at {adversary}")  # before any episode runs
        self.adversary_path, self.adv_steps = adversary, adv_steps
        self._by_eps: dict[float, LearnedAttack] = {}
        self._victim_path: Path | None = None
        self._adversary: Agent | None = None
        self.trained: dict[str, str] = {}
        self.trained_for: dict[str, Any] | None = None
        self.warnings: list[str] = []

    def settings(self) -> dict[str, Any]:
        out = {
            **super().settings(),
            "adversary": str(self.adversary_path) if self.adversary_path else None,
            "adv_steps": self.adv_steps if self.adversary_path is None else None,
            "trained_adversaries": self.trained,
        }
        if self.trained_for is not None:
            out["adversary_trained_for"] = self.trained_for
        if self.warnings:
            out["warnings"] = self.warnings
        return out

    def check_victim(self, agent: Agent, eps: list[float] | tuple[float, ...]) -> None:
        """Before any episode: a given adversary must fit this victim (one-line error); a different
        victim of the same kind, or another eps than its training one, prints a warning line."""
        if self.adversary_path is None:
            return
        register()
        self._adversary = load(self.adversary_path)
        if self._adversary.env_id != ENV_ID:
            raise RllabError(f"{self.adversary_path} is not a learned adversary (its env is {self._adversary.env_id})")
        self.warnings = check_adversary(self._adversary, agent, eps)
        trained = _trained_for(self._adversary)
        self.trained_for = {k: trained.get(k) for k in ("env", "path", "eps")}
        for w in self.warnings:
            print(f"warning: {w}", file=sys.stderr)

    def prepare(self, agent: Agent, seed: int) -> None:
        self._seed = seed
        self._victim_path = agent.path

    def __call__(self, agent: Agent, obs: th.Tensor, threat: Any) -> th.Tensor:
        if threat.eps not in self._by_eps:
            if self.adversary_path is not None:
                self._by_eps[threat.eps] = LearnedAttack(self._adversary or self.adversary_path, eps=threat.eps)
            else:
                if self._victim_path is None:
                    raise RllabError("training a learned adversary needs the victim loaded from a checkpoint folder")
                # the training budget is part of the name: a longer-trained adversary is a different attack
                name = f"learned-eps{threat.eps:g}-s{self._seed}-{self.adv_steps}steps"
                out = self._victim_path / "adversaries" / name
                if not (out / "agent.json").exists():
                    train_adversary(
                        self._victim_path, threat.eps, steps=self.adv_steps, seed=self._seed, out=out, progress=False
                    )
                self.trained[f"{threat.eps:g}"] = str(out)
                self._by_eps[threat.eps] = LearnedAttack(out, eps=threat.eps)
        perturbed = self._by_eps[threat.eps](agent, obs)
        return threat.project(th.as_tensor(perturbed, device=obs.device), obs)


# ------------------------------------------------------------------------------ ATLA
class AdversarialObservations:
    """A VecEnv wrapper: the victim's rollouts see observations perturbed by the current adversary."""

    def __init__(self, venv: Any, attacked: AttackedEnv, adversary: Any) -> None:
        from stable_baselines3.common.vec_env import VecEnvWrapper

        class _Wrapper(VecEnvWrapper):
            def reset(inner):  # noqa: N805
                return self.perturb(inner.venv.reset())

            def step_wait(inner):  # noqa: N805
                obs, rewards, dones, infos = inner.venv.step_wait()
                return self.perturb(obs), rewards, dones, infos

        self.attacked, self.adversary = attacked, adversary
        self.vec = _Wrapper(venv)

    def perturb(self, obs: np.ndarray) -> np.ndarray:
        if self.attacked.eps == 0:
            return obs
        action, _ = self.adversary.predict(obs.astype(np.float32), deterministic=False)
        out = self.attacked.perturb(obs.astype(np.float32), action)
        if np.issubdtype(obs.dtype, np.integer):  # uint8 pixels: nearest grey level, not truncation
            info = np.iinfo(obs.dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        return out.astype(obs.dtype)


def env_spec_of(venv: Any) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """(id, kwargs, wrappers) of the environments of an rllab training ``DummyVecEnv``.

    Read back from the first environment: the kwargs from its ``gym.make`` spec, the named
    wrappers (``envs.wrappers.WRAPPERS``) from its wrapper chain, so that the adversary's and the
    statistics' environments are the run's own, not ``gym.make(id)``.
    """
    from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit
    from stable_baselines3.common.monitor import Monitor

    from envs.wrappers import WRAPPERS, ObservationShift

    envs = getattr(venv, "envs", None)
    if not envs:
        raise RllabError("--defense atla needs the lab's own (DummyVecEnv) training environments")
    env, wrappers = envs[0], []
    while isinstance(env, gym.Wrapper):
        name = next((n for n, cls in WRAPPERS.items() if type(env) is cls), None)
        if name is not None:
            if isinstance(env, ObservationShift):
                kwargs = {"scale": env.scale, "offset": env.offset}
            else:
                kwargs = dict(getattr(env, "_saved_kwargs", {}))
            wrappers.append({"name": name, "kwargs": kwargs})
        elif not isinstance(env, (Monitor, TimeLimit, OrderEnforcing, PassiveEnvChecker)):
            raise RllabError(f"--defense atla cannot rebuild the training environment's {type(env).__name__} wrapper")
        env = env.env
    spec = env.spec
    if spec is None:
        raise RllabError("--defense atla needs a registered environment (gym.make) to rebuild it")
    return spec.id, dict(spec.kwargs), wrappers[::-1]


def install_atla(
    model: Any, eps: float, seed: int = 0, steps: int = 10, adv_every: int = 8, adv_steps: int = 2048, **_: Any
) -> dict[str, Any]:
    """ATLA (Zhang et al. 2021): alternate victim and adversary training.

    The victim's rollouts see observations perturbed by a PA-AD adversary; every ``adv_every``
    victim updates the adversary trains ``adv_steps`` PPO steps against the current victim.
    The adversary's environments are the run's own (id, kwargs and wrappers). Vector budgets
    use the std of observations in 2000 steps of random-action rollouts of that environment.
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from rllab.agent import Agent as _Agent
    from rllab.agent import spec_skeleton
    from rllab.nn.policies import default_extractor

    if not hasattr(model, "rollout_buffer"):
        raise RllabError("--defense atla needs an on-policy algorithm (reinforce, a2c, ppo)")
    venv = model.get_env()
    if isinstance(venv, VecNormalize) or type(venv).__name__ == "VecTransposeImage":
        raise RllabError("--defense atla supports environments without observation normalisation or transposition")
    env_id, env_kwargs, wrappers = env_spec_of(venv)
    obs_space, act_space = model.observation_space, model.action_space
    kwargs = {"features_extractor": default_extractor(obs_space)} if len(obs_space.shape) == 3 else {}
    spec = spec_skeleton(
        "ppo", env_id, env_kwargs, wrappers, obs_space, act_space, "ActorCriticPolicy", kwargs, has_critic=True
    )
    probe = _Agent(spec, model.policy).make_env()  # the run's environment; checks the spaces too
    seen, (o, _) = [], probe.reset(seed=seed)
    for _ in range(2000):
        seen.append(np.asarray(o, dtype=np.float64))
        o, _, term, trunc, _ = probe.step(probe.action_space.sample())
        if term or trunc:
            o, _ = probe.reset()
    probe.close()
    x = np.stack(seen)
    spec["obs_stats"] = {"mean": x.mean(0).reshape(-1).tolist(), "std": x.std(0).reshape(-1).tolist()}
    victim = _Agent(spec, model.policy)  # a live view: it shares the policy being trained
    attacked = [AttackedEnv(victim, eps, pgd_steps=steps) for _ in range(4)]
    adversary = PPO(
        "MlpPolicy",
        DummyVecEnv([lambda a=a: a for a in attacked]),
        n_steps=128,
        batch_size=256,
        n_epochs=10,
        learning_rate=1e-3,
        ent_coef=0.01,
        seed=seed,
        device=model.device,
        verbose=0,
    )
    wrapper = AdversarialObservations(venv, attacked[0], adversary)
    model.env = wrapper.vec
    train = model.train
    updates = {"n": 0}

    def train_then_adversary() -> None:
        train()
        updates["n"] += 1
        if updates["n"] % adv_every == 0:
            adversary.learn(adv_steps, reset_num_timesteps=False)
            model.logger.record("train/atla_adversary_steps", adversary.num_timesteps)

    model.train = train_then_adversary
    return {
        "name": "atla",
        "eps": eps,
        "unit": "pixel/255" if victim.is_image else "random-action obs std",
        "env": {"id": env_id, "kwargs": env_kwargs, "wrappers": wrappers},
        "pgd_steps": steps,
        "adv_every": adv_every,
        "adv_steps": adv_steps,
        "adversary": "PA-AD (PPO director)",
    }
