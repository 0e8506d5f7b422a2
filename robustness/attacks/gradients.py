"""Input gradients by hand, where autograd is the bottleneck of an attack (same numbers, fewer kernels).

**Plain MLP actors** (``MLPInputGradient``): the objective's gradient with respect to the
observation as one forward pass that keeps the activations and one backward sweep of matrix
products (see the class).

**Strided convolutions whose kernel is a multiple of the stride** (``fast_input_grads``): an
attack differentiates the agent with respect to its input only. For the first layer of an
Atari-style network (NatureCNN: 4 input channels, 8x8 kernel, stride 4) that input gradient is
the framework's slowest kernel: a transposed convolution that writes 4 channels with stride 4
(on the lab's CPU build it is several times slower than the layer's forward pass).

A convolution with stride ``s`` and a kernel of ``m*s x n*s`` is the same map as a stride-1
convolution with an ``m x n`` kernel on the space-to-depth input (every ``s x s`` block of
pixels folded into ``C*s*s`` channels, ``pixel_unshuffle``). Its input gradient is then a stride-1
transposed convolution into ``C*s*s`` channels followed by ``pixel_shuffle`` back: the same
numbers up to float summation order, from a kernel that is well shaped for both CPU and GPU
libraries.

``fast_input_grads(module)`` patches every eligible ``nn.Conv2d`` inside ``module`` for the
duration of a ``with`` block: the forward pass is untouched (the same ``F.conv2d`` call, the
same outputs), only the backward pass to the input changes. Inside the block the weights get
no gradient, so the context is for input-gradient computations (attacks) only, never for
training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch as th
import torch.nn.functional as F
from stable_baselines3.common.distributions import CategoricalDistribution
from torch import nn

from rllab.agent import Agent
from rllab.nn.policies import FAST_ACTIVATIONS
from robustness.attacks.objectives import Objective

ACTIVATION_GRADS = {
    nn.Tanh: lambda g, out: g * (1 - out * out),
    nn.ReLU: lambda g, out: g * (out > 0),
}


class MLPInputGradient:
    """The objective's gradient with respect to the observation, by hand, for plain MLP actors.

    Attacks on small vector agents spend most of their time in the autograd engine, not in
    arithmetic. For an actor that is a chain of ``nn.Linear`` and tanh/ReLU layers
    (``Agent.mlp_actor``) with discrete actions, no input defenses and at most observation
    normalisation in front, the gradient of the ``action``, ``targeted``, ``margin`` and ``kl``
    objectives is one forward pass that keeps the activations and one backward sweep of matrix
    products: ``dL/dz`` (``softmax(z) - onehot(a)``, its negative towards the target,
    ``onehot(b*) - onehot(a)``, ``softmax(z) - p_clean``), then ``g @ W`` and the activation's
    derivative layer by layer, then the normalisation's ``1/std`` where it did not clip. A test
    checks it against autograd for every objective. Anything else returns ``None`` (autograd).
    """

    def __init__(self, agent: Agent, loss_fn: Objective, layers: tuple[nn.Module, ...]) -> None:
        self.agent, self.loss_fn, self.layers = agent, loss_fn, layers
        if loss_fn.objective == "kl":
            self.p_clean = loss_fn.clean.probs

    @classmethod
    def build(cls, agent: Agent, loss_fn: Objective) -> MLPInputGradient | None:
        """The by-hand gradient for this agent and objective, or None where autograd must do it."""
        if not isinstance(agent, Agent):  # e.g. the surrogate model of a transfer attack
            return None
        if loss_fn.objective not in ("action", "targeted", "margin", "kl") or not agent.is_discrete:
            return None
        if agent.is_image or agent.transpose_image or agent.defenses:
            return None
        layers = agent.mlp_actor()
        if layers is None or not isinstance(agent.policy.action_dist, CategoricalDistribution):
            return None
        return cls(agent, loss_fn, layers)

    def __call__(self, x: th.Tensor) -> th.Tensor:
        agent, obj = self.agent, self.loss_fn
        with th.no_grad():
            # float64 (or other) observations: compute in float32 as SB3's preprocess_obs does on the module path
            h = x.reshape(x.shape[0], -1).float()
            keep = None
            if agent.normalize_obs:
                inv = 1.0 / th.sqrt(agent.norm_var + agent.obs_eps).reshape(1, -1)
                h = (h - agent.norm_mean.reshape(1, -1)) * inv
                keep = (h.abs() < agent.obs_clip) * inv  # d(normalised)/dx: 1/std inside, 0 where clipped
                h = h.clamp(-agent.obs_clip, agent.obs_clip)
            outs = []
            for m in self.layers:
                h = F.linear(h, m.weight, m.bias) if type(m) is nn.Linear else FAST_ACTIVATIONS[type(m)](h)
                outs.append(h)
            z = h
            if obj.objective == "margin":
                others = z.scatter(1, obj.action.unsqueeze(1), -th.inf)
                g = F.one_hot(others.argmax(-1), z.shape[-1]).to(z) - F.one_hot(obj.action, z.shape[-1]).to(z)
            elif obj.objective == "kl":
                g = th.softmax(z, -1) - self.p_clean
            else:
                target = obj.action if obj.objective == "action" else obj.target
                g = th.softmax(z, -1) - F.one_hot(target, z.shape[-1]).to(z)
                if obj.objective == "targeted":
                    g = -g
            for m, out in zip(reversed(self.layers), reversed(outs), strict=True):
                g = g @ m.weight if type(m) is nn.Linear else ACTIVATION_GRADS[type(m)](g, out)
            if keep is not None:
                g = g * keep
            return g.reshape(x.shape).to(x.dtype)


# ------------------------------------------------------------------ strided convolutions
def eligible(conv: nn.Module) -> bool:
    """A plain 2-D convolution with equal strides > 1 that divide its kernel (NatureCNN's first two layers)."""
    if type(conv) is not nn.Conv2d or conv.groups != 1 or conv.padding_mode != "zeros":
        return False
    if isinstance(conv.padding, str) and conv.padding != "valid":
        return False
    (sh, sw), (kh, kw) = conv.stride, conv.kernel_size
    return sh == sw and sh > 1 and conv.dilation == (1, 1) and kh % sh == 0 and kw % sw == 0


def space_to_depth_weight(weight: th.Tensor, s: int) -> th.Tensor:
    """(O, C, m*s, n*s) -> (O, C*s*s, m, n), channel order matching ``F.pixel_unshuffle(x, s)``."""
    o, c, kh, kw = weight.shape
    m, n = kh // s, kw // s
    return weight.reshape(o, c, m, s, n, s).permute(0, 1, 3, 5, 2, 4).reshape(o, c * s * s, m, n)


class _StridedConvInputGrad(th.autograd.Function):
    @staticmethod
    def forward(ctx, x: th.Tensor, conv: nn.Conv2d) -> th.Tensor:  # type: ignore[override]
        weight = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None else None
        padding = (0, 0) if isinstance(conv.padding, str) else conv.padding
        out = F.conv2d(x, weight, bias, conv.stride, padding)
        ctx.s, ctx.padding, ctx.in_shape, ctx.in_dtype = conv.stride[0], padding, x.shape, x.dtype
        ctx.save_for_backward(weight)
        return out

    @staticmethod
    def backward(ctx, grad_out: th.Tensor):  # type: ignore[override]
        (weight,) = ctx.saved_tensors
        s, (ph, pw) = ctx.s, ctx.padding
        _, _, h, w = ctx.in_shape
        w2 = space_to_depth_weight(weight, s).to(grad_out.dtype)
        g = F.pixel_shuffle(F.conv_transpose2d(grad_out, w2), s)  # gradient of the covered, padded input
        # rows/columns the kernel never covered (and the padding) get zero, then the padding goes
        hp, wp = h + 2 * ph, w + 2 * pw
        g = F.pad(g, (0, wp - g.shape[-1], 0, hp - g.shape[-2]))
        return g[:, :, ph : ph + h, pw : pw + w].to(ctx.in_dtype), None


def _forward(conv: nn.Conv2d, x: th.Tensor) -> th.Tensor:
    if x.dim() != 4 or not x.requires_grad:
        return nn.Conv2d.forward(conv, x)
    return _StridedConvInputGrad.apply(x, conv)


@contextlib.contextmanager
def fast_input_grads(module: nn.Module) -> Iterator[int]:
    """Patch eligible convolutions of ``module`` (see the module docstring); yields how many."""
    patched = [(m, m.__dict__.get("forward")) for m in module.modules() if eligible(m)]
    for m, _ in patched:
        m.forward = _forward.__get__(m)  # instance attribute: shadows nn.Conv2d.forward
    try:
        yield len(patched)
    finally:
        for m, before in patched:
            if before is None:
                del m.forward
            else:
                m.forward = before
