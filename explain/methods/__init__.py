"""Attribution methods for rllab agents, all with captum's one verb, and the registry that builds them by name.

``Method(agent, target="action" | "value", **options).attribute(obs_batch, actions=None)`` returns a tensor of
the observation batch's shape (see ``explain.methods.base``). Gradient methods live in ``gradients``,
perturbation methods in ``perturbation``, the global view in ``activation_max``.
"""

from __future__ import annotations

from typing import Any

from explain.methods.activation_max import activation_maximisation, total_variation
from explain.methods.base import TARGETS, Explainer, baseline_for, input_bounds, space_kind
from explain.methods.gradients import (
    GradCam,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
    gradient_unit_scale,
    last_conv_layer,
)
from explain.methods.perturbation import FeatureAblation, Greydanus, Occlusion, RandomMap, gaussian_blur
from explain.methods.validate import as_index_tensor, bool_option, float_option, int_option
from rllab.agent import Agent
from rllab.errors import RllabError

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


__all__ = [
    "ALIASES",
    "METHODS",
    "TARGETS",
    "Explainer",
    "FeatureAblation",
    "GradCam",
    "Greydanus",
    "IntegratedGradients",
    "Occlusion",
    "RandomMap",
    "Saliency",
    "SmoothGrad",
    "activation_maximisation",
    "as_index_tensor",
    "baseline_for",
    "bool_option",
    "float_option",
    "gaussian_blur",
    "gradient_unit_scale",
    "input_bounds",
    "int_option",
    "last_conv_layer",
    "make_method",
    "space_kind",
    "total_variation",
]
