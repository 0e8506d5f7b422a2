"""Post-training dynamic int8 quantisation of an agent's linear layers.

``torch.ao.quantization`` (``quantize_dynamic``) is deprecated in the installed torch and
its quantised tensors are not plain tensors, so they cannot go into safetensors. The
layers are ``rllab.nn.quantized.QuantizedLinear`` (the scheme is described there).

The checkpoint stores ``weight_int8`` (int8) and ``weight_scale`` (float) tensors in
``weights.safetensors`` and a ``quantization`` section in ``agent.json``;
``rllab.load`` rebuilds the quantised modules. Gradients, when asked for, flow
straight through the rounding to the dequantised weights (Bengio et al. 2013), so
white-box attacks on a quantised agent attack its int8 weights' float equivalent.
"""

from __future__ import annotations

from dataclasses import dataclass

from rllab.agent import Agent
from rllab.errors import RllabError
from rllab.nn.build import clone_module
from rllab.nn.quantized import DTYPES, QuantizedLinear, linear_names, swap_module
from rllab.transforms.lineage import record


def quantize_agent(agent: Agent, dtype: str = "int8", min_features: int = 16) -> Agent:
    """A copy of ``agent`` whose policy's linear layers are int8 (input-defense modules stay float).

    Layers with fewer than ``min_features`` inputs or outputs (an observation embedding
    from 4 features, a 2-action head) stay float: their matmul costs less than quantising
    the activations, and they hold few weights (torchao filters small layers likewise).
    """
    if dtype not in DTYPES:
        raise RllabError(f"unsupported --dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if agent.spec.get("quantization"):
        raise RllabError("this agent is quantised already")
    q = clone_module(agent)
    names = [
        "policy." + n
        for n in linear_names(q.policy)
        if min(q.policy.get_submodule(n).in_features, q.policy.get_submodule(n).out_features) >= min_features
    ]
    if not names:
        raise RllabError(f"no linear layer has >= {min_features} inputs and outputs; nothing to quantise")
    for name in names:
        swap_module(q, name, QuantizedLinear.from_float(q.get_submodule(name)))
    q.forget_device()  # the cached device reference may be a removed layer's weight
    q.spec["quantization"] = {
        "dtype": dtype,
        "scheme": "int8 weights, symmetric per output channel; int8 activations, symmetric per row, at run time",
        "modules": names,
        "min_features": min_features,
    }
    return q.eval()


@dataclass
class QuantizeResult:
    """What was quantised: the dtype and the layers that became int8."""

    dtype: str
    modules: list[str]


def quantize(
    agent: Agent, dtype: str = "int8", *, min_features: int = 16, seed: int = 0
) -> tuple[Agent, QuantizeResult]:
    """Post-training dynamic quantisation of ``agent`` (see :func:`quantize_agent`), with its lineage step.

    ``seed`` is recorded in the step: it is the seed of the evaluation that the command line
    stores beside the quantised agent.
    """
    q = quantize_agent(agent, dtype, min_features)
    note = "gradients of this agent are straight-through gradients of its dequantised (float) weights"
    record(q, agent, "quantize", {"dtype": dtype, "min_features": min_features, "seed": seed}, note=note)
    return q, QuantizeResult(dtype, list(q.spec["quantization"]["modules"]))
