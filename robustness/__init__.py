"""Threat models, attacks, defenses, certification and attacked evaluation of rllab agents."""

from robustness.evaluate import evaluate

__all__ = ["evaluate"]
