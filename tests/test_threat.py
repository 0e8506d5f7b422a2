"""The threat model (robustness.threat): budgets in threat units, projection onto the ball, clipping to the
observation bounds, budget checks, random points, eps parsing."""

from __future__ import annotations

import pytest
import torch

from rllab.errors import RllabError
from robustness.attacks.base import Attack
from robustness.evaluate import attacked_run
from robustness.threat import BudgetViolation, ThreatModel, parse_eps


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_in_std_units_for_vectors(cartpole_ppo, norm):
    t = ThreatModel.for_agent(cartpole_ppo, 0.3, norm)
    assert t.unit == "obs std"
    std = torch.as_tensor(cartpole_ppo.obs_std)
    x = torch.zeros(5, 4)
    far = x + torch.randn(5, 4, generator=torch.Generator().manual_seed(0)) * 10 * std
    p = t.project(far, x)
    z = (p - x) / std
    size = z.abs().amax(1) if norm == "linf" else z.norm(dim=1)
    assert torch.all(size <= 0.3 + 1e-6) and torch.all(size >= 0.3 - 1e-4)  # on the sphere: far points project to it
    inside = x + 0.1 * std
    torch.testing.assert_close(t.project(inside, x), inside) if norm == "linf" else None
    r = t.random_point(x, torch.Generator().manual_seed(1))
    assert torch.all(t.size(r, x) <= 0.3 + 1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_in_pixel_units_clips_to_the_image_range(catch_ppo, norm):
    t = ThreatModel.for_agent(catch_ppo, 8 / 255, norm)
    assert t.unit == "pixel/255"
    x = torch.zeros(2, 1, 10, 5)
    x[:, 0, 9, 2] = 255
    p = t.project(x + 100.0 * torch.randn_like(x), x)
    assert p.min() >= 0 and p.max() <= 255
    z = (p - x) / 255
    size = z.abs().amax((1, 2, 3)) if norm == "linf" else z.flatten(1).norm(dim=1)
    assert torch.all(size <= 8 / 255 + 1e-6)
    if norm == "linf":
        assert torch.all((p - x).abs() <= 8.0 + 1e-4)


def test_clipping_to_finite_observation_bounds(cartpole_ppo):
    t = ThreatModel.for_agent(cartpole_ppo, 100.0, "linf")  # a huge budget: only the bounds stop it
    x = torch.zeros(1, 4)
    p = t.project(torch.full((1, 4), 1e6), x)
    assert p[0, 0] == pytest.approx(4.8) and p[0, 2] == pytest.approx(0.41887903)
    assert p[0, 1] > 1.0  # velocity bounds are infinite: the ball decides


def test_l2_random_point_is_uniform_in_the_ball_of_the_free_features():
    d = 4
    scale = torch.tensor([1.0, 0.0, 2.0, 0.0])  # two features with a zero budget
    tm = ThreatModel(1.0, "l2", "obs std", scale, torch.full((d,), -1e9), torch.full((d,), 1e9))
    x = torch.zeros(20_000, d)
    torch.manual_seed(0)
    adv = tm.random_point(x)
    tm.check(adv, x, "noise")
    z = tm.size(adv, x)
    # uniform in the 2-D unit ball: P(|z| <= r) = r^2, E|z| = 2/3
    assert abs(float((z <= 0.5).float().mean()) - 0.25) < 0.015
    assert abs(float(z.mean()) - 2 / 3) < 0.01


def test_budget_violations_fail_loudly(cartpole_ppo):
    t = ThreatModel.for_agent(cartpole_ppo, 0.1)
    x = torch.zeros(3, 4)
    with pytest.raises(BudgetViolation, match="refusing to report"):
        t.check(x + 0.2 * torch.as_tensor(cartpole_ppo.obs_std), x, "bad")

    class Cheater(Attack):
        name = "cheater"

        def __call__(self, agent, obs, threat):
            return obs + 1.0

    with pytest.raises(BudgetViolation):
        attacked_run(cartpole_ppo, Cheater(), t, episodes=1, seed=0, n_envs=1)


def test_parse_eps_units():
    assert parse_eps("1/255,4/255") == [1 / 255, 4 / 255]
    with pytest.raises(RllabError, match=">= 0"):
        parse_eps("-0.1")
    with pytest.raises(RllabError, match="bad eps"):
        parse_eps("abc")
