"""Observation attacks: callables ``attack(agent, obs, threat) -> perturbed obs`` (batched, raw units)."""

from robustness.attacks.base import Attack, PlayedEpisodes
from robustness.attacks.continuous import MAD, Critic, RobustSarsa
from robustness.attacks.noise import UniformNoise
from robustness.attacks.objectives import OBJECTIVES
from robustness.attacks.pgd import FGSM, PGD
from robustness.attacks.planning import PlanningAttack
from robustness.attacks.surrogate import SurrogateTransfer
from robustness.attacks.timed import StrategicallyTimed
from robustness.attacks.torchattacks_adapter import TORCHATTACKS, TorchAttack

__all__ = [
    "FGSM",
    "MAD",
    "OBJECTIVES",
    "PGD",
    "PlanningAttack",
    "TORCHATTACKS",
    "Attack",
    "Critic",
    "PlayedEpisodes",
    "RobustSarsa",
    "StrategicallyTimed",
    "SurrogateTransfer",
    "TorchAttack",
    "UniformNoise",
]
