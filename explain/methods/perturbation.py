"""Perturbation attribution methods: occlusion, feature ablation, the Greydanus et al. blur saliency, and the
random control. None needs the agent's gradients."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch as th
from captum.attr import FeatureAblation as CaptumFeatureAblation
from captum.attr import Occlusion as CaptumOcclusion

from explain.methods.base import Explainer, baseline_for
from explain.methods.validate import float_option, int_option
from rllab.agent import Agent
from rllab.errors import RllabError
from rllab.nn.filters import gaussian_kernel, separable_blur


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
            return CaptumOcclusion(self.forward).attribute(
                x,
                sliding_window_shapes=self.window,
                strides=self.stride,
                baselines=base,
                target=self.captum_target(actions),
                perturbations_per_eval=self.perturbations_per_eval,
            )

    def params(self) -> dict[str, Any]:
        """Window, stride and baseline."""
        return {"window": list(self.window), "stride": list(self.stride), "baseline": self.baseline_kind}


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
            return CaptumFeatureAblation(self.forward).attribute(
                x, baselines=base, target=self.captum_target(actions), perturbations_per_eval=64
            )

    def params(self) -> dict[str, Any]:
        """The baseline."""
        return {"baseline": self.baseline_kind}


def gaussian_blur(x: th.Tensor, sigma: float) -> th.Tensor:
    """Greydanus et al.'s A(I, sigma): separable Gaussian blur of (N, C, H, W) images, reflect-padded.

    The kernel reaches ceil(3 sigma) pixels (at least 1) each side; reflect padding needs a pad smaller
    than the frame, so tiny frames are replicate-padded instead.
    """
    radius = max(1, int(math.ceil(3 * sigma)))
    mode = "reflect" if radius < min(x.shape[-2:]) else "replicate"
    return separable_blur(x, gaussian_kernel(sigma, 2 * radius + 1), padding=mode)


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


#: float32 bytes of perturbed frames per forward pass by default: 64 MiB (for 84x84x4 stacks, 594 frames: two
#: states' 289 masks; 4,096 of them took an explanation of a Pong agent to 2.3 GB of memory)
GREYDANUS_CHUNK_BYTES = 64 * 2**20


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
        perturbations_per_eval: int | None = None,
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
        if perturbations_per_eval is None:  # 4,096 frames per forward pass, fewer when that would pass 64 MiB
            frame_bytes = 4 * c * h * w
            perturbations_per_eval = max(1, min(4096, GREYDANUS_CHUNK_BYTES // frame_bytes))
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
        """The mask and blur widths and the scoring stride."""
        return {
            "sigma_mask": self.sigma_mask,
            "sigma_blur": self.sigma_blur,
            "stride": self.stride,
            "baseline": "Gaussian blur of the frame under a Gaussian mask",
        }


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
        """The seed of the random maps."""
        return {"seed": self.seed}
