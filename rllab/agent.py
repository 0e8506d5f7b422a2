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
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import torch.nn.functional as F
from safetensors.torch import save_model
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, Normal

from rllab.checkpoint import read_checkpoint, write_checkpoint
from rllab.environment import make_env
from rllab.errors import RllabError
from rllab.nn.build import (
    check_finite,
    clone_module,
    fill_weights,
    policy_from_spec,
    policy_observation_space,
    resolve_device,
)
from rllab.nn.filters import build_filter, straight_through
from rllab.nn.policies import FAST_ACTIVATIONS, mlp_actor
from rllab.nn.purifier import build_purifier
from rllab.nn.quantized import apply_quantization_spec
from rllab.spaces import check_spaces, frame_layout, space_from_json
from rllab.spec import LineageStep, append_lineage, spec_skeleton

# builders defined in rllab.nn.build and rllab.spec stay importable from here, as before the split
__all__ = ["Agent", "agent_from_spec", "clone_module", "load", "policy_observation_space", "resolve_device"]
__all__ += ["spec_skeleton"]


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
            build_filter(entry, self.layout(), *self.bounds()) for entry in pre.get("filters") or []
        )
        self.purifier = (
            build_purifier(pre["purifier"], self.observation_space.shape, *self.bounds())
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
        """The training algorithm (``ppo``, ``a2c``, ``dqn``, ``reinforce``, ...)."""
        return self.spec["algo"]

    @property
    def env_id(self) -> str:
        """The checkpoint's environment id."""
        return self.spec["env"]["id"]

    @property
    def device(self) -> th.device:
        """The device the policy's weights are on."""
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
        """Whether actions are one of n (``Discrete``)."""
        return isinstance(self.action_space, gym.spaces.Discrete)

    @property
    def is_image(self) -> bool:
        """Whether observations are uint8 images (3-d boxes)."""
        space = self.observation_space
        return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3

    @property
    def has_critic(self) -> bool:
        """A state-value critic (actor-critic agents with a trained value head)."""
        return bool(self.spec["policy"].get("has_critic", False))

    @property
    def has_q(self) -> bool:
        """A Q-function (DQN agents)."""
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
        """Per-feature mean of observations in the agent's own rollouts."""
        stats = self.spec.get("obs_stats")
        if not stats:
            return None
        return np.asarray(stats["mean"], dtype=np.float32).reshape(self.observation_space.shape)

    def layout(self) -> str:
        """How image observations (and bounded non-pixel frames, MinAtar's) are laid out (``hwc``, ``chw``),
        or ``vector``."""
        if not self.is_image:
            return frame_layout(self.observation_space) or "vector"
        return "hwc" if self.transpose_image else "chw"

    def bounds(self) -> tuple[float, float]:
        """The lowest and highest raw observation value (infinite for unbounded spaces)."""
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

    def mlp_actor(self) -> tuple[nn.Module, ...] | None:
        """The actor's layers when it is a plain MLP that can run without nn.Module dispatch, else None."""
        return mlp_actor(self.policy)

    def _latent_pi(self, obs: Any, layers: tuple[nn.Module, ...] | None = None) -> th.Tensor:
        policy = self.policy
        assert isinstance(policy, ActorCriticPolicy)
        layers = layers if layers is not None else self.mlp_actor()
        if layers is not None:
            x = preprocess_obs(self.preprocess(obs), policy.observation_space, policy.normalize_images).flatten(1)
            for m in layers[:-1]:
                x = F.linear(x, m.weight, m.bias) if type(m) is nn.Linear else FAST_ACTIVATIONS[type(m)](x)
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

    def raw_scores(self, obs: Any) -> th.Tensor:
        """The policy's action scores for ``obs`` without noise smoothing (input filters and purifier still run)."""
        if isinstance(self.policy, DQNPolicy):
            return self.policy.q_net(self.preprocess(obs))
        layers = self.mlp_actor()
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
            return self.raw_scores(obs)
        x = self.as_tensor(obs)
        n = int(self.smoothing["n"])
        low, high = self.bounds()
        copies = x.unsqueeze(0) + th.randn((n, *x.shape), device=x.device) * self.smoothing_sigma.to(x)
        scores = self.raw_scores(copies.clamp(low, high).reshape(n * x.shape[0], *x.shape[1:]))
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
        """The Q-values Q(s, .) of a DQN agent, shape (batch, actions)."""
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
        env = make_env(
            env_spec["id"],
            {**env_spec.get("kwargs", {}), **kwargs},
            env_spec.get("wrappers"),
            render_mode,
            module=env_spec.get("module"),
        )
        check_spaces(env, self.observation_space, self.action_space, env_spec["id"])
        return env

    # ------------------------------------------------------------------ save
    def save(self, path: str | Path, lineage: LineageStep | dict[str, Any] | None = None) -> Path:
        """Write this agent as a checkpoint folder; ``lineage`` appends one ancestry step."""
        check_finite(self, str(path))
        spec = copy.deepcopy(self.spec)
        if lineage is not None:
            append_lineage(spec, lineage)
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
        append_lineage(spec, LineageStep.of(parent_path, self.spec, transform, params))
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


def agent_from_spec(spec: dict[str, Any], device: th.device | str = "cpu") -> Agent:
    """A new agent with the architecture ``spec`` describes (random weights) on ``device``."""
    return Agent(spec, policy_from_spec(spec, device)).to(device)


def load(path: str | Path, device: str = "cpu", env_id: str | None = None) -> Agent:
    """Load a checkpoint folder (or its ``agent.json``). Reads JSON and safetensors only: never unpickles.

    The weights file is read once; its hash is checked on the bytes that are then loaded.
    ``env_id``, when given, must be the checkpoint's environment (a clear error otherwise).
    """
    folder, spec, data = read_checkpoint(path)
    if env_id is not None and env_id != spec["env"]["id"]:
        raise RllabError(f"checkpoint {path} is for {spec['env']['id']!r}, not {env_id!r}")
    agent = agent_from_spec(spec, resolve_device(device))
    if spec.get("quantization"):  # int8 checkpoints rebuild their quantised layers first
        apply_quantization_spec(agent, spec["quantization"])
        agent.forget_device()  # the cached device reference may be a removed layer's weight
    fill_weights(agent, data, path, quantized=bool(spec.get("quantization")))
    agent.eval()
    agent.path = folder
    return agent
