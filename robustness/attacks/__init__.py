"""Observation attacks: callables ``attack(agent, obs, threat) -> perturbed obs`` (batched, raw units)."""

from robustness.attacks.base import Attack
from robustness.attacks.noise import UniformNoise
from robustness.attacks.pgd import FGSM, OBJECTIVES, PGD
from robustness.attacks.planning import PlanningAttack
from robustness.attacks.surrogate import SurrogateTransfer
from robustness.attacks.timed import StrategicallyTimed
from robustness.attacks.torchattacks_adapter import TORCHATTACKS, TorchAttack

__all__ = [
    "FGSM",
    "OBJECTIVES",
    "PGD",
    "PlanningAttack",
    "TORCHATTACKS",
    "Attack",
    "StrategicallyTimed",
    "SurrogateTransfer",
    "TorchAttack",
    "UniformNoise",
]
