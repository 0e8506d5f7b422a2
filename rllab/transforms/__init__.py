"""Checkpoint transforms: compression (distillation, pruning, quantisation) and domain adaptation.

Each transform takes agents and returns a new agent and a result record; the new agent carries a
lineage step (parent, transform, settings, what it measured) and saves like any other. Loading,
saving and the compression summary (parameters, file size, CPU latency, mean return) are the
command line's (``rllab.cli.transforms``).
"""

import torch as th

from rllab.agent import Agent
from rllab.errors import RllabError
from rllab.transforms.adapt import AdaptResult, adapt
from rllab.transforms.distill import DistillResult, distill, distillation_loss
from rllab.transforms.prune import PruneResult, prune
from rllab.transforms.quantize import QuantizeResult, quantize
from rllab.transforms.summary import compression_summary


def check_finite(agent: Agent) -> None:
    """Refuse, in one line, an agent with a non-finite weight (a diverged transform), before it is written."""
    for name, tensor in agent.state_dict().items():
        if tensor.is_floating_point() and not bool(th.isfinite(tensor).all()):
            raise RllabError(f"the new agent's {name} holds non-finite values (training diverged); nothing written")


__all__ = [
    "AdaptResult",
    "DistillResult",
    "PruneResult",
    "QuantizeResult",
    "adapt",
    "check_finite",
    "compression_summary",
    "distill",
    "distillation_loss",
    "prune",
    "quantize",
]
