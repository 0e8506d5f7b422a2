"""Space-to-depth input gradients of strided convolutions (robustness/attacks/gradients.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from rllab.agent import agent_from_spec, spec_skeleton
from robustness.attacks import PGD
from robustness.attacks.gradients import eligible, fast_input_grads, space_to_depth_weight
from robustness.threat import ThreatModel


@pytest.mark.parametrize(
    "c,o,k,s,p,h,w",
    [
        (4, 32, 8, 4, 0, 84, 84),  # NatureCNN's first layer
        (32, 64, 4, 2, 0, 20, 20),  # and its second
        (3, 8, 4, 2, 1, 17, 13),  # padding, odd sizes: rows the kernel never covers
        (2, 5, 6, 3, 2, 23, 30),
        (1, 4, (4, 2), 2, 0, 9, 7),  # rectangular kernel
    ],
)
def test_input_gradient_matches_autograd(c, o, k, s, p, h, w):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(c, o, k, s, p), nn.ReLU(), nn.Conv2d(o, 3, 1)).double()
    x = torch.randn(3, c, h, w, dtype=torch.double, requires_grad=True)
    y = net(x)
    (expected,) = torch.autograd.grad(y.square().sum(), x)
    with fast_input_grads(net) as n:
        assert n == 1
        y_fast = net(x)
        (got,) = torch.autograd.grad(y_fast.square().sum(), x)
    assert torch.equal(y, y_fast)  # the forward pass is the same call
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-12)
    assert expected.abs().max() > 0.01
    assert "forward" not in net[0].__dict__  # patch removed


def test_space_to_depth_weight_is_the_same_map():
    torch.manual_seed(1)
    x, wt = torch.randn(2, 3, 16, 16, dtype=torch.double), torch.randn(5, 3, 8, 8, dtype=torch.double)
    direct = torch.nn.functional.conv2d(x, wt, stride=4)
    folded = torch.nn.functional.conv2d(torch.nn.functional.pixel_unshuffle(x, 4), space_to_depth_weight(wt, 4))
    assert torch.allclose(direct, folded)


def test_eligibility_and_restore_on_error():
    assert eligible(nn.Conv2d(4, 32, 8, 4)) and eligible(nn.Conv2d(32, 64, 4, 2))
    assert not eligible(nn.Conv2d(4, 8, 3, 2, padding=1))  # SmallCNN: 3 is not a multiple of 2
    assert not eligible(nn.Conv2d(4, 8, 3, 1))  # stride 1: nothing to gain
    assert not eligible(nn.Conv2d(4, 8, 4, 2, groups=2))
    conv = nn.Conv2d(1, 2, 4, 2)
    with pytest.raises(RuntimeError), fast_input_grads(conv):
        raise RuntimeError("boom")
    assert "forward" not in conv.__dict__


def test_pgd_on_a_nature_cnn_agent_is_unchanged():
    obs = spaces.Box(0, 255, (4, 36, 36), np.uint8)
    spec = spec_skeleton(
        "ppo",
        "test/NatureCNN",
        {},
        [],
        obs,
        spaces.Discrete(4),
        "ActorCriticPolicy",
        {"features_extractor": "nature_cnn"},
        has_critic=True,
    )
    torch.manual_seed(0)
    agent = agent_from_spec(spec, "cpu").eval()
    x = torch.randint(0, 256, (16, 4, 36, 36), generator=torch.Generator().manual_seed(0)).float()
    threat = ThreatModel.for_agent(agent, 8 / 255)
    for objective in ("action", "kl", "value"):
        fast, slow = PGD(objective, steps=5, random_start=False), PGD(objective, steps=5, random_start=False)
        slow.fast_conv = False
        a, b = fast(agent, x, threat), slow(agent, x, threat)
        threat.check(a, x, "pgd")
        assert (a - x).abs().max() > 0  # it moved
        # float summation order only: a sign may flip where a gradient entry is ~0
        assert (a == b).float().mean() > 0.99
        assert (agent.act(a) == agent.act(b)).mean() == 1.0
