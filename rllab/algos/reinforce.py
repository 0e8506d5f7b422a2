"""REINFORCE (Williams 1992): vanilla policy gradient with reward-to-go.

The gradient estimate is ``mean_t  A_t * grad log pi(a_t | s_t)`` with
``A_t = G_t - b(s_t)``, where ``G_t = sum_k gamma^k r_{t+k}`` is the discounted
reward-to-go (Sutton & Barto 2018, eq. 13.8 with the baseline of section 13.4).
The baseline ``b`` is a learned state value (switchable off), advantages are
normalised per batch, and an entropy bonus is added. One gradient step per
rollout, on the whole batch.

Built as a Stable-Baselines3 ``OnPolicyAlgorithm`` subclass, like A2C/PPO: the
rollout loop, buffer, callbacks, logger and VecEnv machinery are SB3's; only the
return computation (``ReturnsToGoBuffer``) and the loss (``train``) are ours.

Episodes still running when a rollout ends: with the baseline on, their tail is
bootstrapped with the critic's value of the last state (as SB3 does for A2C/PPO);
with the baseline off there is no critic, so those unfinished tail steps are left
out of the loss: the estimator then uses complete episodes only.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, BasePolicy
from torch.nn import functional as F


def reward_to_go(
    rewards: np.ndarray,
    episode_starts: np.ndarray,
    last_dones: np.ndarray,
    last_values: np.ndarray,
    gamma: float,
    bootstrap: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Discounted reward-to-go for a ``(T, n_envs)`` rollout.

    ``episode_starts[t]`` is 1 where step ``t`` begins an episode; ``last_dones``
    says whether the step after the last one would start a new episode. Returns
    ``(returns, valid)``: ``valid`` is False for steps of an unfinished final
    episode when ``bootstrap`` is False (their return is unknown).
    """
    T = rewards.shape[0]
    returns = np.zeros_like(rewards, dtype=np.float32)
    valid = np.ones_like(rewards, dtype=bool)
    running = np.where(last_dones, 0.0, last_values if bootstrap else 0.0).astype(np.float64)
    tail_open = ~last_dones.astype(bool)
    for t in reversed(range(T)):
        if t < T - 1:
            running = running * (1.0 - episode_starts[t + 1])
        running = rewards[t] + gamma * running
        returns[t] = running
        if not bootstrap:
            valid[t] = ~tail_open
        tail_open = tail_open & (episode_starts[t] == 0)
    return returns, valid


class ReturnsToGoBuffer(RolloutBuffer):
    """SB3's rollout buffer with Monte-Carlo reward-to-go instead of GAE."""

    bootstrap: bool = True

    def compute_returns_and_advantage(self, last_values: th.Tensor, dones: np.ndarray) -> None:
        last = last_values.clone().cpu().numpy().flatten()
        self.returns, self.valid = reward_to_go(
            self.rewards, self.episode_starts, dones, last, self.gamma, self.bootstrap
        )
        self.advantages = self.returns - self.values


class REINFORCE(OnPolicyAlgorithm):
    """Vanilla policy gradient; see the module docstring for the estimator."""

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": ActorCriticPolicy,
        "CnnPolicy": ActorCriticCnnPolicy,
    }

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: Any,
        learning_rate: float | Any = 1e-3,
        n_steps: int = 512,
        gamma: float = 0.99,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        use_baseline: bool = True,
        normalize_advantage: bool = True,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=1.0,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=ReturnsToGoBuffer,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=(spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary),
        )
        self.use_baseline = use_baseline
        self.normalize_advantage = normalize_advantage
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        self.rollout_buffer.bootstrap = self.use_baseline
        if not self.use_baseline:
            # No critic: a zero value head makes SB3's time-limit bootstrap and the
            # tail bootstrap add nothing, and it is never trained.
            with th.no_grad():
                self.policy.value_net.weight.zero_()
                self.policy.value_net.bias.zero_()
            self.policy.value_net.requires_grad_(False)

    def train(self) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        buf = self.rollout_buffer
        valid = th.as_tensor(buf.swap_and_flatten(buf.valid), device=self.device).flatten()
        obs = buf.to_torch(buf.swap_and_flatten(buf.observations))[valid]
        actions = buf.to_torch(buf.swap_and_flatten(buf.actions))[valid]
        returns = buf.to_torch(buf.swap_and_flatten(buf.returns)).flatten()[valid]
        if valid.sum() == 0:  # no complete episode in this rollout: nothing to learn from
            return
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()

        values, log_prob, entropy = self.policy.evaluate_actions(obs, actions)
        values = values.flatten()
        advantages = returns - values.detach() if self.use_baseline else returns
        if self.normalize_advantage and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        policy_loss = -(advantages * log_prob).mean()
        entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
        loss = policy_loss + self.ent_coef * entropy_loss
        value_loss = th.zeros(())
        if self.use_baseline:
            value_loss = F.mse_loss(returns, values)
            loss = loss + self.vf_coef * value_loss

        self.policy.optimizer.zero_grad()
        loss.backward()
        th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        self.policy.optimizer.step()

        self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/policy_loss", policy_loss.item())
        self.logger.record("train/value_loss", value_loss.item())
        self.logger.record("train/entropy_loss", entropy_loss.item())
        self.logger.record("train/valid_fraction", float(valid.float().mean()))
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
