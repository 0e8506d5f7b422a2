"""ATLA (Zhang et al. 2021): adversarial training against a learned adversary that trains alongside the victim.

Installed as the ``atla`` training defense (``robustness.adversarial_training``): the victim's
rollouts see observations perturbed by a PA-AD adversary, which trains in turn against the
current victim.
"""

from __future__ import annotations

from typing import Annotated, Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit
from pydantic import Field
from stable_baselines3 import PPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecNormalize

from envs.wrappers import WRAPPERS, ObservationShift
from rllab.agent import Agent
from rllab.errors import RllabError
from rllab.nn.policies import default_extractor
from rllab.schema.base import Finite, _Model, validate
from rllab.schema.records import ParamGroup, ReturnStats
from rllab.spaces import is_unit_box
from rllab.spec import spec_skeleton
from rllab.training.defenses import DEFENSE_STATE_ATTR
from rllab.training.resume import optimizer_from_files, optimizer_to_files
from rllab.units import RUNNING_STD, ThreatUnit
from robustness.learned.env import AttackedEnv, AttackedVecEnv

RANDOM_STD = "random-action obs std"  # the unit ATLA records for vector budgets


class AdversarialObservations:
    """The victim's rollouts see observations perturbed by the current adversary: ``venv``'s ``reset`` and
    ``step_wait`` are hooked on the instance, so the chain of vector-env wrappers stays the run's own (SB3 syncs
    an evaluation env's VecNormalize statistics by walking both chains in step; an extra wrapper breaks that)."""

    def __init__(self, venv: Any, attacked: AttackedEnv, adversary: Any, adversary_norm: Any = None) -> None:
        self.attacked, self.adversary = attacked, adversary
        self.adversary_norm = adversary_norm  # the adversary's own VecNormalize: it sees states as it trains on them
        reset, step_wait = venv.reset, venv.step_wait

        def perturbed_reset(*args: Any, **kwargs: Any) -> Any:
            return self.perturb(reset(*args, **kwargs))

        def perturbed_step_wait() -> Any:
            obs, rewards, dones, infos = step_wait()
            return self.perturb(obs), rewards, dones, infos

        venv.reset, venv.step_wait = perturbed_reset, perturbed_step_wait

    def perturb(self, obs: np.ndarray) -> np.ndarray:
        """The current adversary's perturbation of a batch of observations (uint8 pixels rounded)."""
        if self.attacked.eps == 0:
            return obs
        seen = obs.astype(np.float32)
        if self.adversary_norm is not None:
            seen = self.adversary_norm.normalize_obs(seen).astype(np.float32)
        action, _ = self.adversary.predict(seen, deterministic=False)
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
    envs = getattr(venv, "envs", None)
    if not envs:
        raise RllabError("--defense atla needs the lab's own (DummyVecEnv) training environments")
    env, wrappers = envs[0], []
    while isinstance(env, gym.Wrapper):
        name = next((n for n, cls in WRAPPERS.items() if type(env) is cls), None)
        if isinstance(env, TimeLimit) and isinstance(env.env, (OrderEnforcing, PassiveEnvChecker)):
            name = None  # gym.make's own time limit (the registration's), not a wrapper of the run
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


class _Moments(_Model):
    mean: Annotated[list[Finite], Field(max_length=1 << 20)]
    var: Annotated[list[Annotated[float, Field(ge=0, allow_inf_nan=False)]], Field(max_length=1 << 20)]


class _OptimizerMeta(_Model):
    param_groups: Annotated[list[ParamGroup], Field(min_length=1, max_length=1000)]
    scalars: dict[Annotated[str, Field(pattern=r"^\d+\.\w+$")], bool | int | float | None]


class AdversaryResume(_Model):
    """``defense`` in an ATLA run's ``resume/state.N.json``: the adversary's counters and normalisation."""

    optimizer: _OptimizerMeta
    num_timesteps: Annotated[int, Field(ge=0)]
    n_updates: Annotated[int, Field(ge=0)]
    victim_updates: Annotated[int, Field(ge=0)]
    obs_rms: _Moments | None = None
    ret_rms: ReturnStats | None = None


class AdversaryState:
    """ATLA's adversary as ``--resume`` continues it: weights, optimizer, step counters, normalisation
    statistics and where the victim is in the alternation (a ``rllab.training.defenses.DefenseState``)."""

    def __init__(self, adversary: PPO, norm: VecNormalize | None, updates: dict[str, int]) -> None:
        self.adversary, self.norm, self.updates = adversary, norm, updates

    def state(self) -> tuple[dict[str, th.Tensor], dict[str, Any]]:
        policy = self.adversary.policy
        tensors = {f"policy.{k}": v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
        opt_tensors, opt_meta = optimizer_to_files(policy.optimizer)
        tensors.update({f"optimizer.{k}": v for k, v in opt_tensors.items()})
        meta: dict[str, Any] = {
            "optimizer": opt_meta,
            "num_timesteps": int(self.adversary.num_timesteps),
            "n_updates": int(self.adversary._n_updates),
            "victim_updates": int(self.updates["n"]),
        }
        if self.norm is not None:
            obs, ret = self.norm.obs_rms, self.norm.ret_rms
            meta["obs_rms"] = {
                "mean": np.asarray(obs.mean).reshape(-1).tolist(),
                "var": np.asarray(obs.var).reshape(-1).tolist(),
            }
            meta["ret_rms"] = {
                "mean": float(np.asarray(ret.mean)),
                "var": float(np.asarray(ret.var)),
                "count": float(ret.count),
                "obs_count": float(obs.count),
            }
        return tensors, meta

    def load_state(self, tensors: dict[str, th.Tensor], meta: dict[str, Any]) -> None:
        validate(meta, AdversaryResume, "resume state's ATLA adversary")
        policy = self.adversary.policy
        weights = {k.removeprefix("policy."): v for k, v in tensors.items() if k.startswith("policy.")}
        if not all(bool(th.isfinite(v).all()) for v in weights.values() if v.is_floating_point()):
            raise RllabError("resume state's ATLA adversary has weights that are not finite")
        try:
            policy.load_state_dict(weights)
        except RuntimeError as exc:
            raise RllabError(
                f"resume state's ATLA adversary does not fit this run: {str(exc).splitlines()[0]}"
            ) from None
        opt = {k.removeprefix("optimizer."): v for k, v in tensors.items() if k.startswith("optimizer.")}
        optimizer_from_files(policy.optimizer, opt, meta["optimizer"])
        self.adversary.num_timesteps = meta["num_timesteps"]
        self.adversary._n_updates = meta["n_updates"]
        self.updates["n"] = meta["victim_updates"]
        if (self.norm is None) != (meta.get("ret_rms") is None) or (self.norm is None) != (meta.get("obs_rms") is None):
            raise RllabError("resume state's ATLA adversary was saved with other normalisation than this run's")
        if self.norm is not None:
            obs = self.norm.obs_rms
            if len(meta["obs_rms"]["mean"]) != obs.mean.size or len(meta["obs_rms"]["var"]) != obs.var.size:
                raise RllabError("resume state's ATLA adversary normalises another observation size")
            obs.mean = np.asarray(meta["obs_rms"]["mean"], dtype=np.float64).reshape(obs.mean.shape)
            obs.var = np.asarray(meta["obs_rms"]["var"], dtype=np.float64).reshape(obs.var.shape)
            obs.count = meta["ret_rms"]["obs_count"]
            ret = self.norm.ret_rms
            ret.mean, ret.var = np.float64(meta["ret_rms"]["mean"]), np.float64(meta["ret_rms"]["var"])
            ret.count = meta["ret_rms"]["count"]


def install_atla(
    model: Any, eps: float, seed: int = 0, steps: int = 10, adv_every: int = 8, adv_steps: int = 2048, **_: Any
) -> dict[str, Any]:
    """ATLA (Zhang et al. 2021): alternate victim and adversary training.

    The victim's rollouts see observations perturbed by a PA-AD adversary; every ``adv_every``
    victim updates the adversary trains ``adv_steps`` PPO steps against the current victim (ATLA's
    alternation is ``adv_every=1`` with ``adv_steps`` the victim's rollout size). The adversary is saved
    with the run's resume state, so ``--resume`` continues it.
    The adversary's environments are the run's own (id, kwargs and wrappers). Vector budgets are in
    the run's running observation std where it normalises observations (SA-PPO's and ATLA's
    normalised-state units, close to the std unit the attacks use on the trained agent), else in the
    std of observations in 2000 steps of random-action rollouts of that environment.
    """
    if not hasattr(model, "rollout_buffer"):
        raise RllabError("--defense atla needs an on-policy algorithm (reinforce, a2c, ppo)")
    for name, value in (("adv_every", adv_every), ("adv_steps", adv_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RllabError(f"atla's {name} must be a positive integer, got {value!r}")
    env = model.get_env()
    norm = env if isinstance(env, VecNormalize) and env.norm_obs else None  # rewards-only: observations are raw
    venv = env.venv if isinstance(env, VecNormalize) else env  # the raw observations: the adversary perturbs these
    if type(venv).__name__ == "VecTransposeImage":
        raise RllabError("--defense atla supports environments without transposed image observations")
    env_id, env_kwargs, wrappers = env_spec_of(venv)
    obs_space, act_space = model.observation_space, model.action_space
    kwargs = {"features_extractor": default_extractor(obs_space)} if len(obs_space.shape) == 3 else {}
    spec = spec_skeleton(
        "ppo", env_id, env_kwargs, wrappers, obs_space, act_space, "ActorCriticPolicy", kwargs, has_critic=True
    )
    if norm is not None:  # the victim normalises as the run does, with the statistics of the moment (synced below)
        rms = norm.obs_rms
        mean, var = np.asarray(rms.mean).reshape(-1).tolist(), np.asarray(rms.var).reshape(-1).tolist()
        spec["preprocessing"]["obs_normalization"] = {"mean": mean, "var": var, "clip": float(norm.clip_obs)}
        spec["preprocessing"]["obs_normalization"]["epsilon"] = float(norm.epsilon)
    probe = Agent(spec, model.policy).make_env()  # the run's environment; checks the spaces too
    seen, (o, _) = [], probe.reset(seed=seed)
    for _ in range(2000):
        seen.append(np.asarray(o, dtype=np.float64))
        o, _, term, trunc, _ = probe.step(probe.action_space.sample())
        if term or trunc:
            o, _ = probe.reset()
    probe.close()
    x = np.stack(seen)
    spec["obs_stats"] = {"mean": x.mean(0).reshape(-1).tolist(), "std": x.std(0).reshape(-1).tolist()}
    victim = Agent(spec, model.policy)  # a live view: it shares the policy being trained
    shape = tuple(obs_space.shape)
    if victim.is_image or is_unit_box(obs_space):
        unit = ThreatUnit.for_agent(victim)  # pixels, or [0, 1] absolute (MinAtar): the units the attacks use
    elif norm is not None:
        # SA-PPO's and ATLA's budgets are in normalised-state units: the std of the run's running statistics,
        # which the attacks' unit (the trained agent's obs_stats) is close to; synced as they move (below)
        unit = ThreatUnit.std(np.sqrt(np.asarray(norm.obs_rms.var, dtype=np.float64)), shape, name=RUNNING_STD)
    else:
        # the std of random-action rollouts (the checkpoint's obs_stats come after training)
        unit = ThreatUnit.std(victim.obs_std, shape, name=RANDOM_STD)
    attacked = [AttackedEnv(victim, eps, pgd_steps=steps, unit=unit) for _ in range(4)]
    adversary_env: Any = AttackedVecEnv([lambda a=a: a for a in attacked])  # one PGD batch for the 4 copies
    # the adversary's PPO normalises its states and rewards where the run normalises (train_adversary's rule):
    # on raw MuJoCo states and returns in the thousands it learns little
    adversary_norm = VecNormalize(adversary_env, gamma=0.99) if norm is not None else None
    adversary = PPO(
        "MlpPolicy",
        adversary_norm if adversary_norm is not None else adversary_env,
        n_steps=128,
        batch_size=256,
        n_epochs=10,
        learning_rate=1e-3,
        ent_coef=0.01,
        seed=seed,
        device=model.device,
        verbose=0,
    )
    # the raw observations perturbed, then (with VecNormalize) the run's normalisation: its statistics see them too
    AdversarialObservations(venv, attacked[0], adversary, adversary_norm)
    train, collect = model.train, model.collect_rollouts
    updates = {"n": 0}

    def sync() -> None:
        """The victim normalises as the run does now, and running-std budgets scale with its statistics."""
        if norm is None:
            return
        victim.norm_mean.copy_(victim.norm_mean.new_tensor(norm.obs_rms.mean).reshape(shape))
        victim.norm_var.copy_(victim.norm_var.new_tensor(norm.obs_rms.var).reshape(shape))
        if unit.name == RUNNING_STD:  # every attacked env shares this array
            unit.scale[...] = ThreatUnit.std(np.sqrt(np.asarray(norm.obs_rms.var)), shape, name=RUNNING_STD).scale

    def collect_synced(*args: Any, **kwargs: Any) -> Any:
        sync()  # the victim's rollouts (a resumed run's first too, after its statistics were restored)
        return collect(*args, **kwargs)

    def train_then_adversary() -> None:
        train()
        updates["n"] += 1
        if updates["n"] % adv_every == 0:
            sync()  # the adversary attacks the victim as it now normalises
            adversary.learn(adv_steps, reset_num_timesteps=False)
            model.logger.record("train/atla_adversary_steps", adversary.num_timesteps)

    model.collect_rollouts = collect_synced
    model.train = train_then_adversary
    setattr(model, DEFENSE_STATE_ATTR, AdversaryState(adversary, adversary_norm, updates))  # --resume keeps it
    return {
        "name": "atla",
        "eps": eps,
        "unit": unit.name,
        "env": {"id": env_id, "kwargs": env_kwargs, "wrappers": wrappers},
        "pgd_steps": steps,
        "adv_every": adv_every,
        "adv_steps": adv_steps,
        "adversary": "PA-AD (PPO director)",
        "adversary_normalized": adversary_norm is not None,
    }
