"""Post-training dynamic int8 quantisation of an agent's linear layers.

``torch.ao.quantization`` (``quantize_dynamic``) is deprecated in the installed torch and
its quantised tensors are not plain tensors, so they cannot go into safetensors. The
scheme here is the one torchao calls ``Int8DynamicActivationInt8Weight``, written with
core torch ops only: weights are quantised once, symmetric per output channel
(``w_q = round(w / s)``, ``s = max|w_row| / 127``); activations are quantised at run time,
symmetric per row, and multiplied with ``torch._int_mm`` (int8 x int8 -> int32), then
rescaled (Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", with symmetric zero points).

The checkpoint stores ``weight_int8`` (int8) and ``weight_scale`` (float) tensors in
``weights.safetensors`` and a ``quantization`` section in ``agent.json``;
``load_quantized`` rebuilds the quantised modules. Gradients, when asked for, flow
straight through the rounding to the dequantised weights (Bengio et al. 2013), so
white-box attacks on a quantised agent attack its int8 weights' float equivalent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch as th
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn

from rllab.agent import Agent, agent_from_spec, clone_module, load, load_weights, resolve_device
from rllab.checkpoint import lineage_entry, read_checkpoint
from rllab.errors import RllabError

DTYPES = ("int8",)


def _int_mm_ok() -> bool:
    try:
        th._int_mm(th.zeros(17, 8, dtype=th.int8), th.zeros(8, 8, dtype=th.int8))
        return True
    except (RuntimeError, AttributeError):
        return False


class QuantizedLinear(nn.Module):
    """A linear layer with int8 weights (per-output-channel scales) and dynamically quantised inputs."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_int8", th.zeros(out_features, in_features, dtype=th.int8))
        self.register_buffer("weight_scale", th.ones(out_features))
        # int8 transposed copy, contiguous for _int_mm; derived, so not saved
        self.register_buffer("_wt", th.zeros(in_features, out_features, dtype=th.int8), persistent=False)
        self.bias = nn.Parameter(th.zeros(out_features), requires_grad=False) if bias else None
        self.register_load_state_dict_post_hook(lambda module, _: module._refresh())

    @classmethod
    def from_float(cls, linear: nn.Linear) -> QuantizedLinear:
        q = cls(linear.in_features, linear.out_features, linear.bias is not None)
        w = linear.weight.detach().float()
        scale = w.abs().amax(1).clamp_min(1e-12) / 127.0
        q.weight_int8.copy_(th.round(w / scale[:, None]).clamp(-127, 127).to(th.int8))
        q.weight_scale.copy_(scale)
        if linear.bias is not None:
            q.bias.data.copy_(linear.bias.detach())
        q._refresh()
        return q.to(linear.weight.device)

    def _refresh(self) -> None:
        self._wt = self.weight_int8.t().contiguous()

    def dequantized_weight(self) -> th.Tensor:
        return self.weight_int8.float() * self.weight_scale[:, None]

    def _int8_forward(self, x: th.Tensor) -> th.Tensor:
        flat = x.reshape(-1, self.in_features)
        amax = flat.abs().amax(1, keepdim=True).clamp_min_(1e-12)
        # in-place ops: at these sizes the elementwise passes cost as much as the int8 matmul
        x_q = flat.mul(127.0 / amax).round_().clamp_(-127, 127).to(th.int8)
        n = x_q.shape[0]
        if n <= 16:  # _int_mm wants more than 16 rows; tiny batches are padded
            x_q = th.cat([x_q, x_q.new_zeros(17 - n, self.in_features)])
        out = th._int_mm(x_q, self._wt)[:n].float().mul_(amax / 127.0).mul_(self.weight_scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features)

    def forward(self, x: th.Tensor) -> th.Tensor:
        if not (th.is_grad_enabled() and x.requires_grad) and INT_MM:
            return self._int8_forward(x)
        exact = F.linear(x, self.dequantized_weight(), self.bias)
        if not INT_MM:
            return exact
        # straight-through: the int8 result forward, the dequantised layer's gradient backward
        return exact + (self._int8_forward(x.detach()) - exact).detach()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype=int8"


INT_MM = _int_mm_ok()


def _linear_names(module: nn.Module, skip: tuple[str, ...] = ()) -> list[str]:
    return [name for name, m in module.named_modules() if isinstance(m, nn.Linear) and not name.startswith(skip)]


def _swap(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def apply_quantization_spec(agent: Agent, section: dict[str, Any]) -> Agent:
    """Replace the layers listed in ``section["modules"]`` by empty ``QuantizedLinear`` s (weights loaded later).

    This is the hook ``agent_from_spec`` needs for quantised checkpoints.
    """
    if section.get("dtype") not in DTYPES:
        raise RllabError(f"unsupported quantization dtype {section.get('dtype')!r}; this rllab reads int8")
    for name in section["modules"]:
        try:
            m = agent.get_submodule(name)
        except AttributeError:
            raise RllabError(f"quantization section names {name!r}, which the architecture lacks") from None
        if not isinstance(m, nn.Linear):
            raise RllabError(f"quantization section names {name!r}, which is not a linear layer")
        _swap(agent, name, QuantizedLinear(m.in_features, m.out_features, m.bias is not None).to(agent.device))
    agent.forget_device()  # the cached device reference may be a removed layer's weight
    return agent


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
        for n in _linear_names(q.policy)
        if min(q.policy.get_submodule(n).in_features, q.policy.get_submodule(n).out_features) >= min_features
    ]
    if not names:
        raise RllabError(f"no linear layer has >= {min_features} inputs and outputs; nothing to quantise")
    for name in names:
        _swap(q, name, QuantizedLinear.from_float(q.get_submodule(name)))
    q.forget_device()  # the cached device reference may be a removed layer's weight
    q.spec["quantization"] = {
        "dtype": dtype,
        "scheme": "int8 weights, symmetric per output channel; int8 activations, symmetric per row, at run time",
        "modules": names,
        "min_features": min_features,
    }
    return q.eval()


def load_quantized(path: str | Path, device: str = "cpu") -> Agent:
    """Load any checkpoint (folder or ``agent.json``), quantised or not (quantised ones get their int8 modules)."""
    folder, spec, data = read_checkpoint(path)
    if not spec.get("quantization"):
        return load(folder, device)
    return quantized_from_checkpoint(folder, spec, data, device, shown=path)


def quantized_from_checkpoint(
    folder: Path, spec: dict[str, Any], data: bytes, device: str = "cpu", shown: str | Path | None = None
) -> Agent:
    """A quantised agent from a checkpoint's validated spec and the (hashed) bytes of its weights."""
    shown = folder if shown is None else shown
    agent = agent_from_spec(spec, resolve_device(device))
    apply_quantization_spec(agent, spec["quantization"])
    try:
        missing, unexpected = load_weights(agent, data)
    except (RuntimeError, SafetensorError, OSError) as exc:
        raise RllabError(f"cannot read quantised weights of {shown}: {str(exc).splitlines()[0]}") from None
    if missing or unexpected:
        raise RllabError(
            f"cannot read quantised weights of {shown}: "
            f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
        )
    agent.eval()
    agent.path = folder
    return agent


def quantize(
    run: str | Path,
    dtype: str = "int8",
    out: str | Path | None = None,
    seed: int = 0,
    eval_episodes: int = 20,
    min_features: int = 16,
) -> Agent:
    """Post-training dynamic quantisation of checkpoint ``run``, saved to ``out``."""
    from rllab.cli.transforms import finish

    run = Path(run)
    parent = load(run)
    q = quantize_agent(parent, dtype, min_features)
    step = lineage_entry(run, parent.spec, "quantize", {"dtype": dtype, "min_features": min_features, "seed": seed})
    q.spec["lineage"] = [*q.spec.get("lineage", []), step]
    q.spec["lineage"][-1]["note"] = (
        "gradients of this agent are straight-through gradients of its dequantised (float) weights"
    )
    return finish(q, out, parent, run, "quantize", seed, eval_episodes)
