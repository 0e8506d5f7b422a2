"""Int8 linear layers: what a quantised checkpoint's ``quantization`` section describes.

The scheme is the one torchao calls ``Int8DynamicActivationInt8Weight``, written with core
torch ops only: weights are quantised once, symmetric per output channel
(``w_q = round(w / s)``, ``s = max|w_row| / 127``); activations are quantised at run time,
symmetric per row, and multiplied with ``torch._int_mm`` (int8 x int8 -> int32), then
rescaled (Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", with symmetric zero points). Gradients, when asked for,
flow straight through the rounding to the dequantised weights (Bengio et al. 2013).

The checkpoint stores ``weight_int8`` (int8) and ``weight_scale`` (float) tensors in
``weights.safetensors``; :func:`apply_quantization_spec` puts empty layers where the section
says, so that ``rllab.load`` fills them like any other weights.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch as th
import torch.nn.functional as F
from torch import nn

from rllab.errors import RllabError

DTYPES = ("int8",)

_M = TypeVar("_M", bound=nn.Module)


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
        """The int8 layer closest to ``linear`` (weights rounded per output channel)."""
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
        """The float weights the int8 ones stand for."""
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


def linear_names(module: nn.Module, skip: tuple[str, ...] = ()) -> list[str]:
    """Names of the ``nn.Linear`` layers in ``module``, except those under a prefix in ``skip``."""
    return [name for name, m in module.named_modules() if isinstance(m, nn.Linear) and not name.startswith(skip)]


def swap_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` in place of ``root``'s submodule ``name``."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def apply_quantization_spec(module: _M, section: dict[str, Any]) -> _M:
    """Replace the layers listed in ``section["modules"]`` by empty ``QuantizedLinear`` s (weights loaded later).

    An ``Agent`` caches a reference parameter for its device: call its ``forget_device`` afterwards.
    """
    if section.get("dtype") not in DTYPES:
        raise RllabError(f"unsupported quantization dtype {section.get('dtype')!r}; this rllab reads int8")
    for name in section["modules"]:
        try:
            m = module.get_submodule(name)
        except AttributeError:
            raise RllabError(f"quantization section names {name!r}, which the architecture lacks") from None
        if not isinstance(m, nn.Linear):
            raise RllabError(f"quantization section names {name!r}, which is not a linear layer")
        layer = QuantizedLinear(m.in_features, m.out_features, m.bias is not None)
        swap_module(module, name, layer.to(m.weight.device))
    return module
