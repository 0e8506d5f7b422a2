"""Training algorithms: Stable-Baselines3's A2C, PPO and DQN plus the lab's REINFORCE."""

from stable_baselines3 import A2C, DQN, PPO

from rllab.algos.reinforce import REINFORCE

ALGOS = {"reinforce": REINFORCE, "a2c": A2C, "ppo": PPO, "dqn": DQN}
ON_POLICY = {"reinforce", "a2c", "ppo"}

__all__ = ["ALGOS", "ON_POLICY", "REINFORCE"]
