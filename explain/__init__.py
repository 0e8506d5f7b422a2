"""explain: attribution maps of rllab agents, their faithfulness, and TensorBoard views.

Every method has captum's one verb: ``Method(agent, target="action" | "value").attribute(obs_batch)``
returns attributions of the observation batch's shape.
"""

from explain.episodes import Trajectories, collect_states
from explain.faithfulness import deletion_insertion, pointing_game, relevance_mass, sanity_check
from explain.methods import (
    METHODS,
    Explainer,
    FeatureAblation,
    GradCam,
    Greydanus,
    IntegratedGradients,
    Occlusion,
    RandomMap,
    Saliency,
    SmoothGrad,
    activation_maximisation,
    make_method,
)

__all__ = [
    "METHODS",
    "Explainer",
    "FeatureAblation",
    "GradCam",
    "Greydanus",
    "IntegratedGradients",
    "Occlusion",
    "RandomMap",
    "Trajectories",
    "Saliency",
    "SmoothGrad",
    "activation_maximisation",
    "collect_states",
    "deletion_insertion",
    "make_method",
    "pointing_game",
    "relevance_mass",
    "sanity_check",
]
