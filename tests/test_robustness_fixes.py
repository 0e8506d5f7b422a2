"""Regression tests for fixed robustness bugs (one test, or a few, per fix)."""

from __future__ import annotations

import numpy as np
import torch

from robustness.attacks import PGD
from robustness.threat import ThreatModel


def test_pgd_by_hand_gradient_accepts_float64_observations(cartpole_ppo):
    tm = ThreatModel.for_agent(cartpole_ppo, 0.3)
    x = cartpole_ppo.as_tensor(np.random.default_rng(0).normal(size=(8, 4)) * 0.05)
    assert x.dtype == torch.float64
    fast = PGD("action", steps=3, random_start=False)
    slow = PGD("action", steps=3, random_start=False)
    slow.by_hand = False
    adv_fast, adv_slow = fast(cartpole_ppo, x, tm), slow(cartpole_ppo, x, tm)
    assert adv_fast.dtype == torch.float64
    assert torch.allclose(adv_fast, adv_slow, atol=1e-6)
    tm.check(adv_fast, x, "pgd")
