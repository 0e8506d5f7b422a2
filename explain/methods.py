"""Attribution methods for rllab agents, all with captum's one verb.

``Method(agent, target="action" | "value").attribute(obs_batch, actions=None)``
returns a tensor of the observation batch's shape (``(N, *obs_shape)``): how much
each raw input (pixel in 0..255, or vector feature) drives the explained output.

* ``target="action"``: the score (logit; Q-value for DQN) of the action the agent
  takes (``actions`` overrides it). Continuous agents: the sum of the Gaussian means.
* ``target="value"``: the critic's V(s); agents without a critic raise ``RllabError``.

Gradients are taken with respect to the raw observation (the agent's preprocessing,
including the /255 for images, is inside ``agent.logits``). Every method is batched:
an episode's states go through a few forward/backward calls, in chunks of
``batch_size`` states.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch as th
import torch.nn.functional as F
from captum.attr import (
    FeatureAblation as _CaptumFeatureAblation,
)
from captum.attr import (
    IntegratedGradients as _CaptumIG,
)
from captum.attr import (
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
)
from captum.attr import (
    Occlusion as _CaptumOcclusion,
)
from captum.attr import (
    Saliency as _CaptumSaliency,
)
from torch import nn

from rllab.agent import Agent
from rllab.errors import RllabError

TARGETS = ("action", "value")


def _input_bounds(agent: Agent) -> tuple[th.Tensor, th.Tensor]:
    """Finite per-input bounds: the Box's bounds, or mean +- 4 std of the agent's own rollouts."""
    space = agent.observation_space
    shape = space.shape
    low = np.broadcast_to(np.asarray(space.low, dtype=np.float64), shape).copy()
    high = np.broadcast_to(np.asarray(space.high, dtype=np.float64), shape).copy()
    mean, std = agent.obs_mean, agent.obs_std
    if mean is None:
        mean, std = np.zeros(shape), np.ones(shape)
    low = np.where(np.isfinite(low), low, mean - 4 * std - 1e-3)
    high = np.where(np.isfinite(high), high, mean + 4 * std + 1e-3)
    return th.as_tensor(low, dtype=th.float32), th.as_tensor(high, dtype=th.float32)


def baseline_for(agent: Agent, kind: str | float | th.Tensor) -> th.Tensor:
    """A reference input of the observation's shape.

    ``zeros`` (black frame; zero vector), ``mean`` (the mean observation of the agent's
    own rollouts, stored in the checkpoint), a number, or a tensor.
    """
    shape = agent.observation_space.shape
    if isinstance(kind, th.Tensor):
        return kind.float().reshape(shape)
    if isinstance(kind, (int, float)):
        return th.full(shape, float(kind))
    if kind == "zeros":
        return th.zeros(shape)
    if kind == "mean":
        if agent.obs_mean is None:
            raise RllabError("this checkpoint stores no observation statistics; use baseline 'zeros'")
        return th.as_tensor(agent.obs_mean, dtype=th.float32)
    raise RllabError(f"unknown baseline {kind!r}; use zeros, mean or a number")


def as_index_tensor(values: Any, device: th.device) -> th.Tensor:
    """Actions (numpy, list or a tensor on any device) as a flat ``long`` tensor on ``device``."""
    if isinstance(values, th.Tensor):
        return values.detach().to(device).long().reshape(-1)
    return th.as_tensor(np.asarray(values), device=device).long().reshape(-1)


def int_option(method: str, key: str, value: Any, minimum: int = 1) -> int:
    """A whole-number option of a method, at least ``minimum`` (one-line error otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise RllabError(f"{method}: {key} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def float_option(method: str, key: str, value: Any, minimum: float = 0.0, strict: bool = False) -> float:
    """A number option of a method, ``>= minimum`` (``> minimum`` when ``strict``)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and math.isfinite(float(value)) and (value > minimum if strict else value >= minimum):
        return float(value)
    raise RllabError(f"{method}: {key} must be a number {'>' if strict else '>='} {minimum:g}, got {value!r}")


def bool_option(method: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RllabError(f"{method}: {key} must be true or false, got {value!r}")
    return value


class Explainer:
    """Base class: target handling, batching and the common ``attribute`` signature."""

    name: ClassVar[str] = "explainer"
    #: methods that need gradients of the agent (all but perturbation methods)
    gradient_based: ClassVar[bool] = True

    def __init__(self, agent: Agent, target: str = "action", batch_size: int = 256) -> None:
        if target not in TARGETS:
            raise RllabError(f"unknown target {target!r}; use action or value")
        if target == "value" and not agent.has_critic:
            raise RllabError(
                f"--target value needs a state-value critic, and this {agent.algo} agent has none; use --target action"
            )
        batch_size = int_option(self.name, "batch_size", batch_size)
        self.agent = agent
        self.target = target
        self.batch_size = batch_size

    # ------------------------------------------------------------ outputs
    def forward(self, obs: th.Tensor) -> th.Tensor:
        """The explained output: (N, n_actions) scores for ``action``; (N,) values for ``value``."""
        if self.target == "value":
            return self.agent.value(obs)
        scores = self.agent.logits(obs)
        if not self.agent.is_discrete:
            return scores.reshape(scores.shape[0], -1).sum(-1)
        return scores

    def captum_target(self, actions: th.Tensor | None) -> th.Tensor | None:
        if self.target == "value" or not self.agent.is_discrete:
            return None
        return actions

    def scalar_output(self, obs: th.Tensor, actions: th.Tensor | None) -> th.Tensor:
        """The explained scalar per state (N,)."""
        out = self.forward(obs)
        if out.dim() == 1:
            return out
        assert actions is not None
        return out.gather(1, actions.view(-1, 1)).squeeze(1)

    def default_actions(self, obs: th.Tensor) -> th.Tensor | None:
        if self.target == "value" or not self.agent.is_discrete:
            return None
        with th.no_grad():
            return self.agent.logits(obs).argmax(-1)

    # ------------------------------------------------------------ public verb
    def attribute(self, obs: Any, actions: Any = None) -> th.Tensor:
        """Attributions of ``obs`` (a batch of raw observations), same shape as ``obs``."""
        x = self.agent.as_tensor(obs).detach()
        if tuple(x.shape[1:]) != tuple(self.agent.observation_space.shape):
            raise RllabError(
                f"observations of shape {tuple(x.shape[1:])} do not match the agent's "
                f"{self.agent.observation_space.shape}"
            )
        if actions is None:
            acts = self.default_actions(x)
        else:
            acts = as_index_tensor(actions, x.device)
            if acts.shape[0] != x.shape[0]:
                raise RllabError(f"got {acts.shape[0]} actions for {x.shape[0]} observations")
        chunks = []
        for start in range(0, x.shape[0], self.batch_size):
            stop = start + self.batch_size
            chunk = x[start:stop]
            if self.gradient_based:
                chunk = chunk.clone().requires_grad_(True)
            chunks.append(self._attribute(chunk, None if acts is None else acts[start:stop]).detach())
        return th.cat(chunks, 0)

    def _attribute(self, x: th.Tensor, actions: th.Tensor | None) -> th.Tensor:
        raise NotImplementedError

    def for_agent(self, agent: Agent) -> Explainer:
        """The same method and settings on another agent (e.g. a copy with randomised weights)."""
        new = copy.copy(self)
        new.agent = agent
        new._bind()
        return new

    def _bind(self) -> None:
        """Recompute what depends on the agent's modules (overridden where a method holds a layer)."""

    def describe(self) -> dict[str, Any]:
        """Method, target and parameters (logged as the text entry next to the maps)."""
        return {"method": self.name, "target": self.target, **self.params()}

    def params(self) -> dict[str, Any]:
        return {}


def gradient_unit_scale(agent: Agent, unit: str) -> th.Tensor | None:
    """Per-input factor turning d score / d x (per raw unit) into the score's change per ``unit``.

    ``lab``: the lab's declared unit (DESIGN.md): one pixel value for images (a constant, so
    ranks are unchanged), one standard deviation of the agent's own rollouts for vectors,
    whose features come in unrelated units (CartPole: metres, radians, their rates);
    ``raw``: the textbook gradient per raw unit.
    """
    if unit == "raw" or agent.is_image:
        return None
    if unit != "lab":
        raise RllabError(f"unknown gradient unit {unit!r}; use lab or raw")
    std = agent.obs_std
    return None if std is None else th.as_tensor(std, dtype=th.float32)


class Saliency(Explainer):
    """Vanilla gradient saliency |d score / d x| (Simonyan et al. 2014, eq. 2-3), via captum ``Saliency``.

    For vector agents the gradient is, by default, per standard deviation of each feature
    (``unit="lab"``, see ``gradient_unit_scale``); ``unit="raw"`` gives it per raw unit.
    """

    name = "saliency"

    def __init__(
        self, agent: Agent, target: str = "action", batch_size: int = 256, abs: bool = True, unit: str = "lab"
    ) -> None:
        super().__init__(agent, target, batch_size)
        self.abs = bool_option(self.name, "abs", abs)
        self.unit = unit
        self.scale = gradient_unit_scale(agent, unit)

    def _attribute(self, x: th.Tensor, actions: th.Tensor | None) -> th.Tensor:
        g = _CaptumSaliency(self.forward).attribute(x, target=self.captum_target(actions), abs=self.abs)
        return g if self.scale is None else g * self.scale.to(g)

    def params(self) -> dict[str, Any]:
        return {
            "abs": self.abs,
            "unit": "per obs std" if self.scale is not None else "per raw unit",
            "baseline": "none (local gradient at the input)",
        }


class IntegratedGradients(Explainer):
    """Integrated gradients (Sundararajan et al. 2017, eq. 1) via captum, with a stated baseline.

    IG_i(x) = (x_i - x'_i) * int_0^1 d F(x' + a (x - x')) / d x_i da, Gauss-Legendre with ``n_steps``.
    The default baseline is the black frame / zero vector (``zeros``); ``mean`` uses the mean
    observation of the agent's own rollouts.
    """

    name = "integrated_gradients"

    def __init__(
        self,
        agent: Agent,
        target: str = "action",
        batch_size: int = 64,
        baseline: str | float | th.Tensor = "zeros",
        n_steps: int = 32,
    ) -> None:
        super().__init__(agent, target, batch_size)
        self.baseline_kind = baseline if not isinstance(baseline, th.Tensor) else "tensor"
        self.n_steps = int_option(self.name, "n_steps", n_steps)
        self.baseline = baseline_for(agent, baseline)

    def _attribute(self, x: th.Tensor, actions: th.Tensor | None) -> th.Tensor:
        base = self.baseline.to(x).unsqueeze(0).expand_as(x).contiguous()
        return _CaptumIG(self.forward).attribute(
            x, baselines=base, target=self.captum_target(actions), n_steps=self.n_steps, method="gausslegendre"
        )

    def params(self) -> dict[str, Any]:
        return {"baseline": self.baseline_kind, "n_steps": self.n_steps}


class SmoothGrad(Explainer):
    """SmoothGrad (Smilkov et al. 2017): saliency averaged over Gaussian-noised copies, captum ``NoiseTunnel``.

    ``noise`` is the noise standard deviation as a fraction of each input's own range (the
    Box bounds; for unbounded features mean +- 4 std of the agent's rollouts), 0.15 as in the paper.
    Gradients are per ``unit`` as in ``Saliency``.
    """

    name = "smoothgrad"

    def __init__(
        self,
        agent: Agent,
        target: str = "action",
        batch_size: int = 64,
        noise: float = 0.15,
        samples: int = 32,
        unit: str = "lab",
    ) -> None:
        super().__init__(agent, target, batch_size)
        self.scale = gradient_unit_scale(agent, unit)
        low, high = _input_bounds(agent)
        self.noise = float_option(self.name, "noise", noise, 0.0)
        self.samples = int_option(self.name, "samples", samples)
        self.range = (high - low).clamp_min(1e-6)

    def _attribute(self, x: th.Tensor, actions: th.Tensor | None) -> th.Tensor:
        # NoiseTunnel takes one scalar std per input tensor: run it on x / range, so the noise is
        # ``noise`` x each input's own range, then take the gradient back to x's units.
        r = self.range.to(x)
        nt = NoiseTunnel(_CaptumSaliency(lambda u: self.forward(u * r)))
        g = nt.attribute(
            (x / r).detach().requires_grad_(True),
            nt_type="smoothgrad",
            nt_samples=self.samples,
            nt_samples_batch_size=max(1, self.samples),
            stdevs=self.noise,
            target=self.captum_target(actions),
            abs=True,
        )
        g = g / r
        return g if self.scale is None else g * self.scale.to(g)

    def params(self) -> dict[str, Any]:
        return {
            "noise": self.noise,
            "samples": self.samples,
            "unit": "per obs std" if self.scale is not None else "per raw unit",
            "baseline": "none (gradients at Gaussian-noised copies of the input)",
        }


class Occlusion(Explainer):
    """Occlusion (Zeiler & Fergus 2014) via captum ``Occlusion``: the drop of the output when a
    sliding window is replaced by the baseline, spread over the window's inputs.

    ``window``/``stride`` are per observation dimension (default: 1 everywhere, i.e. single
    pixels on small frames; use e.g. ``(1, 8, 8)`` / ``(1, 4, 4)`` on 84x84 frames). A single
    int ``k`` means ``k`` along each spatial dimension and 1 along channels for images
    (``k`` for vectors): ``window=3, stride=3`` occludes one cell of Catch at ``scale=3``.
    ``perturbations_per_eval`` windows of all states in the chunk go through one forward call.
    """

    name = "occlusion"
    gradient_based = False

    def __init__(
        self,
        agent: Agent,
        target: str = "action",
        batch_size: int = 256,
        window: int | tuple[int, ...] | None = None,
        stride: int | tuple[int, ...] | None = None,
        baseline: str | float = "zeros",
        perturbations_per_eval: int = 64,
    ) -> None:
        super().__init__(agent, target, batch_size)
        ndim = len(agent.observation_space.shape)
        self.window = self._sizes(window, ndim)
        self.stride = self._sizes(stride, ndim)
        if len(self.window) != ndim or len(self.stride) != ndim:
            raise RllabError(f"occlusion window and stride need {ndim} sizes (one per observation dimension)")
        shape = agent.observation_space.shape
        for key, sizes in (("window", self.window), ("stride", self.stride)):
            for size, dim in zip(sizes, shape, strict=True):
                int_option(self.name, key, size)
                if size > dim:
                    raise RllabError(
                        f"occlusion: {key} {list(sizes)} is larger than the observation {list(shape)} along a dimension"
                    )
        self.perturbations_per_eval = int_option(self.name, "perturbations_per_eval", perturbations_per_eval)
        self.baseline_kind = baseline
        self.baseline = baseline_for(agent, baseline)

    def _sizes(self, k: int | tuple[int, ...] | None, ndim: int) -> tuple[int, ...]:
        if k is None:
            return (1,) * ndim
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            k = int_option(self.name, "window/stride", k)
            if not self.agent.is_image:
                return (k,) * ndim
            return (k, k, 1) if self.agent.transpose_image else (1, k, k)
        if not isinstance(k, (tuple, list)):
            raise RllabError(f"{self.name}: window and stride are whole numbers or lists of them, got {k!r}")
        return tuple(int_option(self.name, "window/stride", v) for v in k)

    def _attribute(self, x: th.Tensor, actions: th.Tensor | None) -> th.Tensor:
        base = self.baseline.to(x).unsqueeze(0).expand_as(x).contiguous()
        with th.no_grad():
            return _CaptumOcclusion(self.forward).attribute(
                x,
                sliding_window_shapes=self.window,
                strides=self.stride,
                baselines=base,
                target=self.captum_target(actions),
                perturbations_per_eval=self.perturbations_per_eval,
            )

    def params(self) -> dict[str, Any]:
        return {"window": list(self.window), "stride": list(self.stride), "baseline": self.baseline_kind}


def gaussian_kernel1d(sigma: float, device: th.device | None = None) -> th.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = th.arange(-radius, radius + 1, dtype=th.float32, device=device)
    k = th.exp(-(t**2) / (2 * sigma**2))
    return k / k.sum()


def gaussian_blur(x: th.Tensor, sigma: float) -> th.Tensor:
    """Separable Gaussian blur A(I, sigma) of (N, C, H, W) images, reflect-padded."""
    k = gaussian_kernel1d(sigma, x.device).to(x.dtype)
    r = k.numel() // 2
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    # reflect padding needs pad < size; replicate is used on tiny frames instead
    mode = "reflect" if r < min(h, w) else "replicate"
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


class Greydanus(Explainer):
    """Perturbation saliency of Greydanus et al. 2018, "Visualizing and Understanding Atari Agents".

    The perturbation Phi(I, i, j) = I * (1 - M(i, j)) + A(I, sigma_A) * M(i, j), with M(i, j) a
    Gaussian mask (std ``sigma_mask``) centred on pixel (i, j) and A a Gaussian blur (std
    ``sigma_blur``); the saliency S_pi(t, i, j) = 1/2 || pi_u(I_t) - pi_u(Phi(I_t, i, j)) ||^2 over
    the policy's logits pi_u, and for the critic S_V(t, i, j) = 1/2 (V(I_t) - V(Phi(I_t, i, j)))^2.
    Scores are computed every ``stride`` pixels and bilinearly upsampled (the paper uses
    stride 5, sigma_mask 5, sigma_blur 3 on 84x84 frames; the defaults scale these to the
    frame, and on frames under 16 pixels every pixel is scored). The map is the same for
    every channel of a pixel. For ``action`` the whole logit vector is compared, as in the
    paper; ``actions`` are not used.
    """

    name = "greydanus"
    gradient_based = False

    def __init__(
        self,
        agent: Agent,
        target: str = "action",
        batch_size: int = 32,
        sigma_mask: float | None = None,
        sigma_blur: float | None = None,
        stride: int | None = None,
        perturbations_per_eval: int = 4096,
    ) -> None:
        super().__init__(agent, target, batch_size)
        if not agent.is_image:
            raise RllabError("the Greydanus perturbation saliency needs image observations; use occlusion or ablation")
        c, h, w = self._chw_shape()
        side = min(h, w)
        name = self.name
        self.sigma_mask = (
            float_option(name, "sigma_mask", sigma_mask, strict=True)
            if sigma_mask is not None
            else max(0.5, 5.0 * side / 84)
        )
        self.sigma_blur = (
            float_option(name, "sigma_blur", sigma_blur, strict=True)
            if sigma_blur is not None
            else max(1.0, 3.0 * side / 84)
        )
        default_stride = 1 if side < 16 else max(1, round(5 * side / 84))
        self.stride = int_option(name, "stride", stride) if stride is not None else default_stride
        self.perturbations_per_eval = int_option(name, "perturbations_per_eval", perturbations_per_eval)

    def _chw_shape(self) -> tuple[int, int, int]:
        shape = self.agent.observation_space.shape
        if self.agent.transpose_image:
            return shape[2], shape[0], shape[1]
        return shape[0], shape[1], shape[2]

    def _to_chw(self, x: th.Tensor) -> th.Tensor:
        return x.permute(0, 3, 1, 2) if self.agent.transpose_image else x

    def _from_chw(self, x: th.Tensor) -> th.Tensor:
        return x.permute(0, 2, 3, 1) if self.agent.transpose_image else x

    def masks(self, device: th.device) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Gaussian masks M(i, j) for the scored centres: (P, H, W), and the centres' rows and columns."""
        _, h, w = self._chw_shape()
        rows = th.arange(0, h, self.stride, device=device)
        cols = th.arange(0, w, self.stride, device=device)
        ci, cj = th.meshgrid(rows, cols, indexing="ij")
        yy = th.arange(h, device=device, dtype=th.float32).view(1, h, 1)
        xx = th.arange(w, device=device, dtype=th.float32).view(1, 1, w)
        ci_f, cj_f = ci.reshape(-1, 1, 1).float(), cj.reshape(-1, 1, 1).float()
        m = th.exp(-((yy - ci_f) ** 2 + (xx - cj_f) ** 2) / (2 * self.sigma_mask**2))
        return m, rows, cols

    def _outputs(self, x: th.Tensor) -> th.Tensor:
        if self.target == "value":
            return self.agent.value(x).unsqueeze(-1)
        return self.agent.logits(x).reshape(x.shape[0], -1)

    def _attribute(self, x: th.Tensor, actions: th.Tensor | None) -> th.Tensor:
        with th.no_grad():
            img = self._to_chw(x)
            n, c, h, w = img.shape
            blurred = gaussian_blur(img, self.sigma_blur)
            m, rows, cols = self.masks(x.device)
            p = m.shape[0]
            ref = self._outputs(x)  # (N, K)
            scores = th.empty(n, p, device=x.device)
            per_state = max(1, self.perturbations_per_eval // max(1, p))
            for s0 in range(0, n, per_state):
                s1 = min(n, s0 + per_state)
                i0, b0 = img[s0:s1].unsqueeze(1), blurred[s0:s1].unsqueeze(1)  # (n', 1, C, H, W)
                mm = m.view(1, p, 1, h, w)
                perturbed = i0 * (1 - mm) + b0 * mm  # (n', P, C, H, W)
                flat = self._from_chw(perturbed.reshape(-1, c, h, w))
                out = self._outputs(flat).reshape(s1 - s0, p, -1)
                scores[s0:s1] = 0.5 * ((out - ref[s0:s1].unsqueeze(1)) ** 2).sum(-1)
            grid = scores.view(n, len(rows), len(cols))
            if self.stride > 1:  # bilinear between the scored pixels, each score at its own pixel
                grid = (
                    _pixel_interpolation(h, self.stride, x.device)
                    @ grid
                    @ _pixel_interpolation(w, self.stride, x.device).T
                )
            return self._from_chw(grid.unsqueeze(1).expand(n, c, h, w).contiguous())

    def params(self) -> dict[str, Any]:
        return {
            "sigma_mask": self.sigma_mask,
            "sigma_blur": self.sigma_blur,
            "stride": self.stride,
            "baseline": "Gaussian blur of the frame under a Gaussian mask",
        }


def _pixel_interpolation(size: int, stride: int, device: th.device) -> th.Tensor:
    """(size, ceil(size / stride)) linear interpolation from scores at pixels 0, stride, 2 stride, ...

    Pixel ``k * stride`` gets score ``k`` exactly; pixels between two scored ones are linear
    blends; pixels past the last scored one keep its score.
    """
    n = (size - 1) // stride + 1
    u = th.arange(size, device=device, dtype=th.float32) / stride
    i0 = u.floor().long().clamp(max=n - 1)
    i1 = (i0 + 1).clamp(max=n - 1)
    frac = (u - i0.float()).clamp(0, 1) * (i1 != i0).float()
    weights = th.zeros(size, n, device=device)
    weights[th.arange(size), i0] += 1 - frac
    weights[th.arange(size), i1] += frac
    return weights


def last_conv_layer(agent: Agent, target: str = "action") -> nn.Conv2d:
    """The last convolution of the feature extractor that ``target`` reads (Grad-CAM's layer).

    An actor-critic policy with separate extractors computes the value from its critic's one.
    """
    policy = agent.policy
    extractor = getattr(policy, "pi_features_extractor", None) or getattr(policy, "features_extractor", None)
    if target == "value" and getattr(policy, "share_features_extractor", True) is False:
        extractor = policy.vf_features_extractor
    if extractor is None and hasattr(policy, "q_net"):
        extractor = policy.q_net.features_extractor
    convs = [m for m in (extractor.modules() if extractor is not None else []) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise RllabError("Grad-CAM needs a CNN agent (no convolution layer in this agent's feature extractor)")
    return convs[-1]


class GradCam(Explainer):
    """Grad-CAM (Selvaraju et al. 2017, eq. 1-2) on the last conv layer, captum ``LayerGradCam``.

    ReLU(sum_k alpha_k A^k) with alpha_k the spatially averaged gradient of the score wrt
    feature map A^k; upsampled bilinearly to the frame and repeated over its channels.
    """

    name = "gradcam"

    def __init__(self, agent: Agent, target: str = "action", batch_size: int = 256) -> None:
        super().__init__(agent, target, batch_size)
        if not agent.is_image:
            raise RllabError("Grad-CAM needs image observations and a CNN agent")
        self._bind()

    def _bind(self) -> None:
        self.layer = last_conv_layer(self.agent, self.target)

    def _attribute(self, x: th.Tensor, actions: th.Tensor | None) -> th.Tensor:
        cam = LayerGradCam(self.forward, self.layer).attribute(
            x, target=self.captum_target(actions), relu_attributions=True
        )
        shape = self.agent.observation_space.shape
        hw = (shape[0], shape[1]) if self.agent.transpose_image else (shape[1], shape[2])
        up = LayerAttribution.interpolate(cam, hw, interpolate_mode="bilinear")  # (N, 1, H, W)
        if self.agent.transpose_image:
            return up.permute(0, 2, 3, 1).expand(x.shape).contiguous()
        return up.expand(x.shape).contiguous()

    def params(self) -> dict[str, Any]:
        return {"layer": "last Conv2d of the feature extractor", "baseline": "none (gradients at the input)"}


class FeatureAblation(Explainer):
    """Feature ablation via captum ``FeatureAblation``: the output drop when one input is set to the baseline.

    The baseline defaults to the mean observation of the agent's own rollouts for vector
    agents (zeros is a meaningful "absent" value only for images).
    """

    name = "ablation"
    gradient_based = False

    def __init__(
        self, agent: Agent, target: str = "action", batch_size: int = 256, baseline: str | float | None = None
    ) -> None:
        super().__init__(agent, target, batch_size)
        if baseline is None:
            baseline = "mean" if (not agent.is_image and agent.obs_mean is not None) else "zeros"
        self.baseline_kind = baseline
        self.baseline = baseline_for(agent, baseline)

    def _attribute(self, x: th.Tensor, actions: th.Tensor | None) -> th.Tensor:
        base = self.baseline.to(x).unsqueeze(0).expand_as(x).contiguous()
        with th.no_grad():
            return _CaptumFeatureAblation(self.forward).attribute(
                x, baselines=base, target=self.captum_target(actions), perturbations_per_eval=64
            )

    def params(self) -> dict[str, Any]:
        return {"baseline": self.baseline_kind}


class RandomMap(Explainer):
    """Uniform random attributions: the floor every faithfulness number is compared with."""

    name = "random"
    gradient_based = False

    def __init__(self, agent: Agent, target: str = "action", batch_size: int = 256, seed: int = 0) -> None:
        super().__init__(agent, target, batch_size)
        seed = int_option(self.name, "seed", seed, minimum=0)
        self.generator = th.Generator().manual_seed(seed)
        self.seed = seed

    def _attribute(self, x: th.Tensor, actions: th.Tensor | None) -> th.Tensor:
        return th.rand(x.shape, generator=self.generator).to(x)

    def params(self) -> dict[str, Any]:
        return {"seed": self.seed}


METHODS: dict[str, type[Explainer]] = {
    cls.name: cls
    for cls in (Saliency, IntegratedGradients, SmoothGrad, Occlusion, Greydanus, GradCam, FeatureAblation, RandomMap)
}
ALIASES = {"ig": "integrated_gradients", "grad_cam": "gradcam", "feature_ablation": "ablation"}


def make_method(name: str, agent: Agent, target: str = "action", **kwargs: Any) -> Explainer:
    """Build a method by name (``saliency``, ``integrated_gradients``/``ig``, ``smoothgrad``,
    ``occlusion``, ``greydanus``, ``gradcam``, ``ablation``, ``random``)."""
    key = ALIASES.get(name, name)
    if key not in METHODS:
        raise RllabError(f"unknown explanation method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[key](agent, target=target, **kwargs)


# ------------------------------------------------------------------ global view
def total_variation(x: th.Tensor) -> th.Tensor:
    """Anisotropic total variation of (N, C, H, W) images (a smoothness prior for images)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def activation_maximisation(
    agent: Agent,
    target: str = "action",
    steps: int = 300,
    lr: float = 0.05,
    l2: float = 1e-3,
    tv: float = 1e-2,
    seed: int = 0,
    score_fn: Callable[[th.Tensor], th.Tensor] | None = None,
) -> th.Tensor:
    """Activation maximisation (Erhan et al. 2009; Simonyan et al. 2014, eq. 1) for each action.

    argmax_x  S_a(x) - l2 ||x - mean||^2 - tv TV(x), where S_a is the action's logit minus
    the mean logit (a softmax is unchanged by a common shift, so the raw logit can grow
    without changing the policy). x is kept inside the observation space by optimising
    an unconstrained z with x = low + (high - low) sigmoid(z) (unbounded vector bounds:
    mean +- 4 std of the agent's rollouts). Returns (n_outputs, *obs_shape): one input per
    action (``target="action"``, discrete) or the one input maximising V (``value``).
    """
    if target not in TARGETS:
        raise RllabError(f"unknown target {target!r}; use action or value")
    if target == "value" and not agent.has_critic:
        raise RllabError(f"this {agent.algo} agent has no state-value critic to maximise")
    if target == "action" and not agent.is_discrete:
        raise RllabError("activation maximisation per action needs a discrete action space; use target value")
    device = agent.device
    low, high = (t.to(device) for t in _input_bounds(agent))
    n_out = int(agent.action_space.n) if target == "action" else 1
    gen = th.Generator().manual_seed(seed)
    z = (0.1 * th.randn((n_out, *agent.observation_space.shape), generator=gen)).to(device).requires_grad_(True)
    mean = agent.obs_mean
    centre = th.as_tensor(mean, device=device) if mean is not None else (low + high) / 2
    scale = (high - low).clamp_min(1e-6)
    opt = th.optim.Adam([z], lr=lr)
    grad_flags = [p.requires_grad for p in agent.parameters()]
    for p in agent.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            x = low + scale * th.sigmoid(z)
            if score_fn is not None:
                score = score_fn(x)
            elif target == "value":
                score = agent.value(x)
            else:
                logits = agent.logits(x)
                score = (logits - logits.mean(-1, keepdim=True)).diagonal()
            reg = l2 * (((x - centre) / scale) ** 2).flatten(1).sum(1)
            loss = -(score - reg).sum()
            if agent.is_image and tv > 0:
                img = x if not agent.transpose_image else x.permute(0, 3, 1, 2)
                loss = loss + tv * n_out * total_variation(img / scale.max())
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        for p, flag in zip(agent.parameters(), grad_flags, strict=True):
            p.requires_grad_(flag)
    with th.no_grad():
        return low + scale * th.sigmoid(z)


def space_kind(agent: Agent) -> str:
    """``image`` or ``vector`` (what the logging code draws)."""
    space = agent.observation_space
    if agent.is_image:
        return "image"
    if isinstance(space, gym.spaces.Box):
        return "vector"
    raise RllabError(f"cannot explain observations of type {type(space).__name__}")
