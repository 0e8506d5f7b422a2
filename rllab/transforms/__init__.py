"""Checkpoint transforms: compression (distillation, pruning, quantisation) and domain adaptation.

Each transform reads a checkpoint folder and writes a new one that ``rllab.load``
reads like any other, with a lineage step (parent, method, settings) and a
compression summary (parameters, file size, CPU latency, mean return) or an
adaptation summary (returns in both domains, domain gap) in ``agent.json``.
"""

from rllab.transforms.adapt import adapt
from rllab.transforms.distill import distill, distillation_loss
from rllab.transforms.prune import prune
from rllab.transforms.quantize import load_quantized, quantize
from rllab.transforms.summary import compression_summary

__all__ = ["adapt", "compression_summary", "distill", "distillation_loss", "load_quantized", "prune", "quantize"]
