"""Checkpoint transforms that compress an agent: distillation, pruning, quantisation.

Each transform reads a checkpoint folder and writes a new one that ``rllab.load``
reads like any other, with a lineage step (parent, method, settings) and a
compression summary (parameters, file size, CPU latency, mean return) in
``agent.json``.
"""

from rllab.transforms.distill import distill, distillation_loss
from rllab.transforms.prune import prune
from rllab.transforms.quantize import load_quantized, quantize
from rllab.transforms.summary import compression_summary

__all__ = ["compression_summary", "distill", "distillation_loss", "load_quantized", "prune", "quantize"]
