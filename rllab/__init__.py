"""rllab: train, attack, defend, explain, adapt and compress RL agents on one checkpoint format."""

from rllab.agent import Agent, load
from rllab.errors import RllabError
from rllab.evaluation import EvalResult, evaluate, run_episodes
from rllab.training import train

__version__ = "0.1.0"
__all__ = ["Agent", "EvalResult", "RllabError", "evaluate", "load", "run_episodes", "train"]
