"""``Agent``: the one handle every part of the lab uses on a checkpoint.

All preprocessing (HWC->CHW transposition, observation normalisation, image
scaling) happens inside the differentiable forward pass, so gradients are taken
with respect to the raw observations the environment emits.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import torch as th
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_model
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, Normal

from rllab.checkpoint import lineage_entry, read_checkpoint, write_checkpoint
from rllab.environment import make_env
from rllab.errors import RllabError
from rllab.nn.filters import build_filter, straight_through
from rllab.nn.policies import build_policy, transposed_image_space
from rllab.nn.purifier import build_purifier
from rllab.spaces import describe, space_from_json, space_to_json, spaces_match

_FAST_ACTIVATIONS = {nn.Tanh: th.tanh, nn.ReLU: F.relu}


_M = TypeVar("_M", bound=nn.Module)


class Agent(nn.Module):
    """A trained policy plus everything needed to feed it raw observations.

    ``spec`` is the content of ``agent.json``; ``policy`` a Stable-Baselines3
    policy (``ActorCriticPolicy`` or ``DQNPolicy``).
    """

    def __init__(self, spec: dict[str, Any], policy: BasePolicy) -> None:
        super().__init__()
        self.spec = spec
        self.policy = policy
        self.path: Path | None = None  # the checkpoint folder it was loaded from or last saved to
        self.observation_space = space_from_json(spec["observation_space"])
        self.action_space = space_from_json(spec["action_space"])
        pre = spec.get("preprocessing", {})
        self.transpose_image = bool(pre.get("transpose_image", False))
        self.filters = nn.ModuleList(
            build_filter(entry, self._layout(), *self._bounds()) for entry in pre.get("filters") or []
        )
        self.purifier = (
            build_purifier(pre["purifier"], self.observation_space.shape, *self._bounds())
            if pre.get("purifier")
            else None
        )
        self.smoothing = pre.get("smoothing")
        if self.smoothing is not None:
            if self.smoothing.get("mode", "mean") not in ("mean", "vote"):
                raise RllabError(f"unknown smoothing mode {self.smoothing.get('mode')!r}; use mean or vote")
            if self.smoothing.get("mode") == "vote" and not isinstance(self.action_space, gym.spaces.Discrete):
                raise RllabError("majority-vote smoothing needs a discrete action space")
            self.register_buffer(
                "smoothing_sigma", th.as_tensor(self.smoothing["sigma"], dtype=th.float32), persistent=False
            )
        self._straight_through = False
        self._unaware = False
        norm = pre.get("obs_normalization")
        self.normalize_obs = norm is not None
        if self.normalize_obs:
            shape = self.observation_space.shape
            self.register_buffer("norm_mean", th.as_tensor(np.asarray(norm["mean"], dtype=np.float32).reshape(shape)))
            self.register_buffer("norm_var", th.as_tensor(np.asarray(norm["var"], dtype=np.float32).reshape(shape)))
            self.obs_clip = float(norm.get("clip", 10.0))
            self.obs_eps = float(norm.get("epsilon", 1e-8))

    # ------------------------------------------------------------ properties
    @property
    def algo(self) -> str:
        return self.spec["algo"]

    @property
    def env_id(self) -> str:
        return self.spec["env"]["id"]

    @property
    def device(self) -> th.device:
        # a cached reference parameter: module.to() moves parameters in place, so it stays valid,
        # and walking the module tree on every call costs more than a small forward pass. A layer
        # swapped out of the policy (quantisation) would leave the cache pointing at a tensor no
        # .to() moves any more: layer swaps call ``forget_device``, and so does every .to() / .cuda().
        ref = self.__dict__.get("_device_ref")
        if ref is None:
            ref = self.__dict__["_device_ref"] = next(itertools.chain(self.policy.parameters(), self.policy.buffers()))
        return ref.device

    def forget_device(self) -> None:
        """Drop the cached device reference (after replacing layers of the policy)."""
        self.__dict__.pop("_device_ref", None)

    def _apply(self, fn, *args, **kwargs):  # .to(), .cuda(), .float(), ...: look the device up afresh
        self.forget_device()
        return super()._apply(fn, *args, **kwargs)

    @property
    def is_discrete(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)

    @property
    def is_image(self) -> bool:
        space = self.observation_space
        return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3

    @property
    def has_critic(self) -> bool:
        """A state-value critic (actor-critic agents with a trained value head)."""
        return bool(self.spec["policy"].get("has_critic", False))

    @property
    def has_q(self) -> bool:
        return isinstance(self.policy, DQNPolicy)

    @property
    def obs_std(self) -> np.ndarray | None:
        """Per-feature standard deviation of observations in the agent's own rollouts."""
        stats = self.spec.get("obs_stats")
        if not stats:
            return None
        return np.asarray(stats["std"], dtype=np.float32).reshape(self.observation_space.shape)

    @property
    def obs_mean(self) -> np.ndarray | None:
        stats = self.spec.get("obs_stats")
        if not stats:
            return None
        return np.asarray(stats["mean"], dtype=np.float32).reshape(self.observation_space.shape)

    def _layout(self) -> str:
        if not self.is_image:
            return "vector"
        return "hwc" if self.transpose_image else "chw"

    def _bounds(self) -> tuple[float, float]:
        space = self.observation_space
        if isinstance(space, gym.spaces.Box):
            return float(np.min(space.low)), float(np.max(space.high))
        return -np.inf, np.inf

    @property
    def defenses(self) -> list[dict[str, Any]]:
        """The input defenses in front of the policy, with what an attacker must know about them."""
        out = [
            {"name": f.name, "params": f.params(), "differentiable": f.differentiable, "random": f.random}
            for f in self.filters
        ]
        if self.purifier is not None:
            out.append(
                {
                    "name": "purifier",
                    "params": {"kind": self.purifier.kind, "hidden": self.purifier.hidden},
                    "differentiable": True,
                    "random": False,
                }
            )
        if self.smoothing is not None:
            mode = self.smoothing.get("mode", "mean")
            out.append(
                {
                    "name": f"smoothing-{mode}",
                    "params": dict(self.smoothing),
                    "differentiable": mode == "mean",
                    "random": True,
                }
            )
        return out

    @contextmanager
    def straight_through(self) -> Iterator[Agent]:
        """Within this block non-differentiable defenses pass gradients as the identity (BPDA)."""
        previous, self._straight_through = self._straight_through, True
        try:
            yield self
        finally:
            self._straight_through = previous

    @contextmanager
    def unaware(self) -> Iterator[Agent]:
        """Within this block the agent runs without its input defenses (filters, purifier, smoothing).

        What a defense-unaware ("oblivious", Carlini & Wagner 2017) attacker differentiates: the
        bare network. The perturbation it finds is then fed to the defended agent as usual.
        """
        previous, self._unaware = self._unaware, True
        try:
            yield self
        finally:
            self._unaware = previous

    # ------------------------------------------------------------- forward
    def as_tensor(self, obs: Any) -> th.Tensor:
        """A batch of raw observations as a float tensor on the agent's device (grad kept)."""
        x = obs if isinstance(obs, th.Tensor) else th.as_tensor(np.asarray(obs))
        x = x.to(self.device)
        if not x.is_floating_point():
            x = x.float()
        if x.shape == self.observation_space.shape:
            x = x.unsqueeze(0)
        return x

    def preprocess(self, obs: Any) -> th.Tensor:
        """Raw observations -> what the SB3 policy's own preprocessing expects."""
        x = self.as_tensor(obs)
        for f in self.filters if not self._unaware else ():
            x = straight_through(f, x) if (self._straight_through and not f.differentiable) else f(x)
        if self.purifier is not None and not self._unaware:
            x = self.purifier(x)
        if self.transpose_image:
            x = x.permute(0, 3, 1, 2)
        if self.normalize_obs:
            x = th.clamp((x - self.norm_mean) / th.sqrt(self.norm_var + self.obs_eps), -self.obs_clip, self.obs_clip)
        return x

    def _mlp_actor(self) -> tuple[nn.Module, ...] | None:
        """The actor's layers when it is a plain MLP that can run without nn.Module dispatch, else None.

        Attacks call the actor tens of times per environment step on batches of a few vectors,
        where ``nn.Module.__call__`` and SB3's feature extraction cost more than the matrix
        products. Only exact ``nn.Linear`` / tanh / ReLU layers without hooks qualify (pruning's
        masks and other reparametrisations live in hooks, so those agents take the module path);
        checked on every call, nothing is cached.
        """
        policy = self.policy
        if not isinstance(policy, ActorCriticPolicy) or not isinstance(policy.observation_space, gym.spaces.Box):
            return None
        extractor = policy.features_extractor if policy.share_features_extractor else policy.pi_features_extractor
        if type(extractor) is not FlattenExtractor or not isinstance(policy.mlp_extractor.policy_net, nn.Sequential):
            return None
        layers = (*policy.mlp_extractor.policy_net, policy.action_net)
        for m in layers:
            plain = type(m) is nn.Linear or type(m) in _FAST_ACTIVATIONS
            if not plain or m._forward_hooks or m._forward_pre_hooks:
                return None
        return layers

    def _latent_pi(self, obs: Any, layers: tuple[nn.Module, ...] | None = None) -> th.Tensor:
        policy = self.policy
        assert isinstance(policy, ActorCriticPolicy)
        layers = layers if layers is not None else self._mlp_actor()
        if layers is not None:
            x = preprocess_obs(self.preprocess(obs), policy.observation_space, policy.normalize_images).flatten(1)
            for m in layers[:-1]:
                x = F.linear(x, m.weight, m.bias) if type(m) is nn.Linear else _FAST_ACTIVATIONS[type(m)](x)
            return x
        features = policy.extract_features(self.preprocess(obs))
        pi_features = features[0] if isinstance(features, tuple) else features
        return policy.mlp_extractor.forward_actor(pi_features)

    def features(self, obs: Any) -> th.Tensor:
        """The representation the action head reads (feature extractor + hidden layers)."""
        if isinstance(self.policy, DQNPolicy):
            q_net = self.policy.q_net
            feats = q_net.extract_features(self.preprocess(obs), q_net.features_extractor)
            return q_net.q_net[:-1](feats)
        return self._latent_pi(obs)

    def _raw_scores(self, obs: Any) -> th.Tensor:
        if isinstance(self.policy, DQNPolicy):
            return self.policy.q_net(self.preprocess(obs))
        layers = self._mlp_actor()
        if layers is not None:
            head = layers[-1]
            return F.linear(self._latent_pi(obs, layers), head.weight, head.bias)
        return self.policy.action_net(self._latent_pi(obs))

    def logits(self, obs: Any) -> th.Tensor:
        """Differentiable action scores: logits (discrete), Q-values (DQN) or Gaussian means (continuous).

        With noise smoothing, the scores of ``n`` noisy copies are combined: ``mean`` averages
        probabilities (discrete) or scores; ``vote`` returns log vote shares, so the argmax is
        the majority vote (its gradient is zero; under ``straight_through`` the mean's is used).
        """
        if self.smoothing is None or self._unaware:
            return self._raw_scores(obs)
        x = self.as_tensor(obs)
        n = int(self.smoothing["n"])
        low, high = self._bounds()
        copies = x.unsqueeze(0) + th.randn((n, *x.shape), device=x.device) * self.smoothing_sigma.to(x)
        scores = self._raw_scores(copies.clamp(low, high).reshape(n * x.shape[0], *x.shape[1:]))
        scores = scores.reshape(n, x.shape[0], *scores.shape[1:])
        discrete = isinstance(self.action_space, gym.spaces.Discrete) and not isinstance(self.policy, DQNPolicy)
        mean = th.logsumexp(th.log_softmax(scores, -1), 0) - np.log(n) if discrete else scores.mean(0)
        if self.smoothing.get("mode", "mean") == "mean":
            return mean
        votes = F.one_hot(scores.argmax(-1), scores.shape[-1]).float().mean(0)
        vote_logits = th.log(votes + 1e-6)
        if self._straight_through:
            return vote_logits + (mean - mean.detach())
        return vote_logits

    def action_dist(self, obs: Any) -> Distribution:
        """The action distribution (DQN: a softmax over Q-values, so KL-based attacks apply)."""
        if isinstance(self.policy, DQNPolicy) or (self.smoothing is not None and self.is_discrete):
            return Categorical(logits=self.logits(obs))
        latent = self._latent_pi(obs)
        dist = self.policy._get_action_dist_from_latent(latent).distribution
        if self.smoothing is not None and isinstance(dist, Normal):
            return Independent(Normal(self.logits(obs), dist.stddev), 1)
        if isinstance(dist, Normal):
            return Independent(dist, 1)
        if isinstance(dist, Bernoulli):
            return Independent(dist, 1)
        return dist

    def value(self, obs: Any) -> th.Tensor:
        """The critic's state value V(s), shape (batch,)."""
        if not self.has_critic:
            raise RllabError(f"this {self.algo} agent has no state-value critic")
        return self.policy.predict_values(self.preprocess(obs)).squeeze(-1)

    def q_values(self, obs: Any) -> th.Tensor:
        if not self.has_q:
            raise RllabError(f"this {self.algo} agent has no Q-function")
        return self.policy.q_net(self.preprocess(obs))

    @th.no_grad()
    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of raw observations (or one observation), as numpy.

        ``deterministic=False`` samples from ``action_dist`` (with noise smoothing: from the smoothed
        distribution). A DQN agent always acts greedily: it has no stochastic policy to sample.
        """
        single = (
            np.asarray(obs).shape == self.observation_space.shape
            if not isinstance(obs, th.Tensor)
            else (tuple(obs.shape) == self.observation_space.shape)
        )
        if isinstance(self.policy, DQNPolicy) or (self.is_discrete and deterministic):
            actions = self.logits(obs).argmax(dim=-1)
        else:
            dist = self.action_dist(obs)
            actions = dist.mode if deterministic else dist.sample()
        out = actions.cpu().numpy()
        if isinstance(self.action_space, gym.spaces.Box):
            out = np.clip(out, self.action_space.low, self.action_space.high)
        return out[0] if single else out

    def forward(self, obs: Any) -> th.Tensor:
        return self.logits(obs)

    # ----------------------------------------------------------- environment
    def make_env(self, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
        """The checkpoint's environment (id, kwargs and wrappers); ``kwargs`` override."""
        env_spec = self.spec["env"]
        env = make_env(env_spec["id"], {**env_spec.get("kwargs", {}), **kwargs}, env_spec.get("wrappers"), render_mode)
        check_spaces(env, self.observation_space, self.action_space, env_spec["id"])
        return env

    # ------------------------------------------------------------------ save
    def save(self, path: str | Path, lineage: dict[str, Any] | None = None) -> Path:
        """Write this agent as a checkpoint folder; ``lineage`` appends one ancestry step."""
        spec = copy.deepcopy(self.spec)
        if lineage is not None:
            spec["lineage"] = [*spec.get("lineage", []), lineage]
        if self.normalize_obs:
            spec["preprocessing"]["obs_normalization"]["mean"] = self.norm_mean.reshape(-1).tolist()
            spec["preprocessing"]["obs_normalization"]["var"] = self.norm_var.reshape(-1).tolist()
        out = write_checkpoint(path, spec, lambda p: save_model(self, str(p)))
        self.spec = spec
        self.path = Path(out)
        return out

    def derive(
        self,
        policy: BasePolicy,
        transform: str,
        params: dict[str, Any],
        parent_path: str | Path,
        policy_kwargs: dict[str, Any] | None = None,
    ) -> Agent:
        """A new agent with another policy and a lineage step recording how it was made.

        Everything in front of the policy is this agent's: observation normalisation and the
        input defenses (filters, a trained purifier) keep their state, copied (not shared).
        """
        spec = copy.deepcopy(self.spec)
        if policy_kwargs is not None:
            spec["policy"]["kwargs"] = policy_kwargs
        spec["lineage"] = [*spec.get("lineage", []), lineage_entry(parent_path, self.spec, transform, params)]
        agent = Agent(spec, policy).copy_front_from(self)
        return agent.to(self.device).train(self.training)

    def copy_front_from(self, other: Agent) -> Agent:
        """Take ``other``'s state in front of the policy — observation normalisation, filter buffers, a
        trained purifier — copied, not shared, for every such entry both agents have. An ``Agent(spec,
        policy)`` built from a spec starts with a random purifier and default statistics: every agent
        made from another goes through here. Returns ``self``."""
        mine = self.state_dict()
        own = {
            k: v.detach().clone()
            for k, v in other.state_dict().items()
            if not k.startswith("policy.") and k in mine and mine[k].shape == v.shape
        }
        self.load_state_dict(own, strict=False)
        return self


def clone_module(module: _M) -> _M:
    """A deep copy of an agent or SB3 policy that a transform can change without touching the original.

    ``copy.deepcopy`` alone fails on gSDE policies (SB3's default for PPO on Pendulum, say):
    their noise distribution keeps exploration matrices computed from ``log_std``, which are not
    graph leaves. Those are copied detached (SB3 resamples them before using them again).
    """
    held: list[tuple[object, str, th.Tensor]] = []
    seen: set[int] = set()

    def detach_in(obj: object) -> None:  # the modules and the plain objects they hold (distributions)
        if id(obj) in seen or isinstance(obj, (th.Tensor, type)) or not hasattr(obj, "__dict__"):
            return
        seen.add(id(obj))
        for name, value in list(vars(obj).items()):
            if isinstance(value, th.Tensor) and not value.is_leaf:
                held.append((obj, name, value))
                setattr(obj, name, value.detach())
            elif not isinstance(value, nn.Module):
                detach_in(value)

    for sub in module.modules():
        detach_in(sub)
    try:
        return copy.deepcopy(module)
    finally:
        for obj, name, value in held:
            setattr(obj, name, value)


def check_spaces(env: gym.Env, obs_space: gym.spaces.Space, act_space: gym.spaces.Space, env_id: str) -> None:
    if not spaces_match(env.observation_space, obs_space) or not spaces_match(env.action_space, act_space):
        raise RllabError(
            f"checkpoint spaces ({describe(obs_space)}, {describe(act_space)}) do not match environment {env_id!r} "
            f"({describe(env.observation_space)}, {describe(env.action_space)})"
        )


def policy_observation_space(spec: dict[str, Any]) -> gym.spaces.Space:
    space = space_from_json(spec["observation_space"])
    if spec.get("preprocessing", {}).get("transpose_image"):
        return transposed_image_space(space)
    return space


def agent_from_spec(spec: dict[str, Any], device: th.device | str = "cpu") -> Agent:
    policy = build_policy(
        spec["policy"]["class"],
        policy_observation_space(spec),
        space_from_json(spec["action_space"]),
        spec["policy"].get("kwargs", {}),
        device,
    )
    return Agent(spec, policy).to(device)


def load(path: str | Path, device: str = "cpu", env_id: str | None = None) -> Agent:
    """Load a checkpoint folder (or its ``agent.json``). Reads JSON and safetensors only: never unpickles.

    The weights file is read once; its hash is checked on the bytes that are then loaded.
    ``env_id``, when given, must be the checkpoint's environment (a clear error otherwise).
    """
    folder, spec, data = read_checkpoint(path)
    if env_id is not None and env_id != spec["env"]["id"]:
        raise RllabError(f"checkpoint {path} is for {spec['env']['id']!r}, not {env_id!r}")
    if spec.get("quantization"):  # int8 checkpoints rebuild their quantised layers first
        from rllab.transforms.quantize import quantized_from_checkpoint

        return quantized_from_checkpoint(folder, spec, data, device, shown=path)
    agent = agent_from_spec(spec, resolve_device(device))
    try:
        missing, unexpected = load_weights(agent, data)
    except RuntimeError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[0])
        raise RllabError(f"weights of {path} do not fit the architecture in agent.json ({detail})") from None
    except (SafetensorError, OSError) as exc:
        raise RllabError(f"cannot read weights of {path}: {str(exc).splitlines()[0]}") from None
    if missing or unexpected:
        raise RllabError(
            f"weights of {path} do not fit the architecture in agent.json "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    agent.eval()
    agent.path = folder
    return agent


def load_weights(module: nn.Module, data: bytes) -> tuple[list[str], list[str]]:
    """Load the safetensors bytes ``data`` into ``module``; returns (missing, unexpected) names.

    Like ``safetensors.torch.load_model``, but from bytes already read (and hashed). A tensor
    that several names share (one feature extractor for actor and critic) is stored under one
    name; the others count as loaded.
    """
    state = load_safetensors(data)
    current = module.state_dict(keep_vars=True)
    missing, unexpected = module.load_state_dict(state, strict=False)
    loaded = {id(current[k]) for k in state if k in current}
    return [k for k in missing if id(current[k]) not in loaded], list(unexpected)


def resolve_device(device: str) -> th.device:
    if device == "auto":
        return th.device("cuda" if th.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not th.cuda.is_available():
        raise RllabError("--device cuda was asked for, but no CUDA device is available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise RllabError(f"unknown device {device!r}; use cpu, cuda or auto")
    return th.device(device)


def spec_skeleton(
    algo: str,
    env_id: str,
    env_kwargs: dict[str, Any],
    wrappers: list[dict[str, Any]],
    observation_space: gym.spaces.Space,
    action_space: gym.spaces.Space,
    policy_class: str,
    policy_kwargs: dict[str, Any],
    has_critic: bool,
    transpose_image: bool = False,
    obs_normalization: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "algo": algo,
        "env": {"id": env_id, "kwargs": env_kwargs, "wrappers": wrappers},
        "observation_space": space_to_json(observation_space),
        "action_space": space_to_json(action_space),
        "policy": {"class": policy_class, "kwargs": policy_kwargs, "has_critic": has_critic},
        "preprocessing": {"transpose_image": transpose_image, "obs_normalization": obs_normalization},
        "obs_stats": None,
        "training": {},
        "lineage": [],
    }
