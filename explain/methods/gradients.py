"""Gradient-based attribution methods, each a thin layer over captum: saliency, integrated gradients,
SmoothGrad and Grad-CAM."""

from __future__ import annotations

from typing import Any

import torch as th
from captum.attr import IntegratedGradients as CaptumIntegratedGradients
from captum.attr import LayerAttribution, LayerGradCam, NoiseTunnel
from captum.attr import Saliency as CaptumSaliency
from torch import nn

from explain.methods.base import Explainer, baseline_for, input_bounds
from explain.methods.validate import bool_option, float_option, int_option
from rllab.agent import Agent
from rllab.errors import RllabError
from rllab.units import STD, ThreatUnit


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
    if agent.obs_std is None:
        return None
    return th.as_tensor(ThreatUnit.for_agent(agent).scale)


def _unit_label(scale: th.Tensor | None) -> str:
    return f"per {STD}" if scale is not None else "per raw unit"


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
        g = CaptumSaliency(self.forward).attribute(x, target=self.captum_target(actions), abs=self.abs)
        return g if self.scale is None else g * self.scale.to(g)

    def params(self) -> dict[str, Any]:
        """abs, the gradient's unit and the (absent) baseline."""
        return {"abs": self.abs, "unit": _unit_label(self.scale), "baseline": "none (local gradient at the input)"}


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
        return CaptumIntegratedGradients(self.forward).attribute(
            x, baselines=base, target=self.captum_target(actions), n_steps=self.n_steps, method="gausslegendre"
        )

    def params(self) -> dict[str, Any]:
        """The baseline and the number of integration steps."""
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
        low, high = input_bounds(agent)
        self.noise = float_option(self.name, "noise", noise, 0.0)
        self.samples = int_option(self.name, "samples", samples)
        self.range = (high - low).clamp_min(1e-6)

    def _attribute(self, x: th.Tensor, actions: th.Tensor | None) -> th.Tensor:
        # NoiseTunnel takes one scalar std per input tensor: run it on x / range, so the noise is
        # ``noise`` x each input's own range, then take the gradient back to x's units.
        r = self.range.to(x)
        nt = NoiseTunnel(CaptumSaliency(lambda u: self.forward(u * r)))
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
        """Noise level, sample count and the gradient's unit."""
        return {
            "noise": self.noise,
            "samples": self.samples,
            "unit": _unit_label(self.scale),
            "baseline": "none (gradients at Gaussian-noised copies of the input)",
        }


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
        """The layer explained."""
        return {"layer": "last Conv2d of the feature extractor", "baseline": "none (gradients at the input)"}
