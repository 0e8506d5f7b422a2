"""Input defenses (rllab defend): filters and BPDA, noise smoothing, the denoising purifier; defend as
Agent -> Agent, and the command's checks and messages."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import rllab
from rllab.cli import main
from rllab.cli.defend import defend_checkpoint
from rllab.defend import MAX_SMOOTHING_SAMPLES, defend
from rllab.errors import RllabError
from rllab.nn.filters import BitDepth, GaussianBlur, MedianFilter, straight_through
from tests.helpers import fails_in_one_line, purifier_state, sample_obs


def test_median_removes_an_isolated_pixel_and_keeps_a_flat_image():
    x = torch.zeros(2, 1, 7, 7)
    x[0, 0, 3, 3] = 255.0
    x[1] += 40.0
    y = MedianFilter("chw", 0, 255, size=3)(x)
    assert y[0].abs().max() == 0 and torch.allclose(y[1], x[1])
    # channel-last layout gives the same result
    y_hwc = MedianFilter("hwc", 0, 255, size=3)(x.permute(0, 2, 3, 1))
    torch.testing.assert_close(y_hwc.permute(0, 3, 1, 2), y)


def test_blur_preserves_a_flat_image_and_spreads_a_point():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 100.0
    y = GaussianBlur("chw", 0, 255, sigma=1.0)(x)
    assert y.sum().item() == pytest.approx(100.0, rel=1e-5)
    assert 0 < y[0, 0, 4, 4] < 100 and y[0, 0, 4, 5] > 0
    flat = torch.full((1, 1, 5, 5), 7.0)
    torch.testing.assert_close(GaussianBlur("chw", 0, 255, sigma=2.0)(flat), flat)


def test_bit_depth_levels():
    x = torch.linspace(0, 255, 256).view(1, 1, 16, 16)
    y = BitDepth("chw", 0, 255, bits=2)(x)
    assert torch.unique(y).numel() == 4 and y.min() == 0 and y.max() == 255


def test_bpda_passes_gradients_through_a_non_differentiable_filter():
    f = MedianFilter("chw", 0, 255, size=3)
    x = torch.rand(1, 1, 5, 5, requires_grad=True)
    straight_through(f, x).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))
    bits = BitDepth("chw", 0, 255, bits=3)
    z = (torch.rand(1, 1, 5, 5) * 255).requires_grad_()
    bits(z).sum().backward()
    assert z.grad.abs().sum() == 0  # round(): the gradient a naive attacker sees is zero


def test_filtered_agent_round_trip_lineage_and_bpda(catch_ppo_path, tmp_path):
    agent = defend_checkpoint(catch_ppo_path, tmp_path / "median", filters=[{"name": "median", "params": {"size": 3}}])
    again = rllab.load(tmp_path / "median")
    assert again.defenses == [{"name": "median", "params": {"size": 3}, "differentiable": False, "random": False}]
    step = again.spec["lineage"][-1]
    assert step["transform"] == "defend" and step["parent"] == str(catch_ppo_path)
    env = again.make_env()
    obs, _ = env.reset(seed=0)
    x = torch.tensor(obs[None], dtype=torch.float32)
    plain = rllab.load(catch_ppo_path)
    filtered = MedianFilter("chw", 0, 255, 3)(x)
    torch.testing.assert_close(again.logits(x), plain.logits(filtered))
    # a dense frame, so the median keeps some content and the policy's gradient is not zero
    xg = (torch.rand(1, 1, 10, 5, generator=torch.Generator().manual_seed(0)) * 255).requires_grad_()
    again.logits(xg)[0, 0].backward()
    exact = xg.grad.clone()  # the median's subgradient reaches only the pixels picked as medians
    xg.grad = None
    with again.straight_through():
        again.logits(xg)[0, 0].backward()
    assert (xg.grad != 0).sum() > (exact != 0).sum() > 0
    assert not again._straight_through
    torch.testing.assert_close(agent.logits(x), again.logits(x))


def test_noise_smoothing_votes_and_averages(cartpole_ppo_path, tmp_path):
    vote = defend_checkpoint(cartpole_ppo_path, tmp_path / "vote", smoothing={"sigma": 0.1, "n": 32, "mode": "vote"})
    smooth = vote.spec["preprocessing"]["smoothing"]
    std = np.asarray(vote.spec["obs_stats"]["std"])
    np.testing.assert_allclose(smooth["sigma"], 0.1 * std)
    obs = np.zeros((4, 4), dtype=np.float32)
    torch.manual_seed(0)
    shares = vote.logits(obs).exp()
    assert torch.allclose(shares.sum(-1), torch.ones(4), atol=1e-4)
    # zero noise -> the vote is the plain agent's action
    same = defend_checkpoint(cartpole_ppo_path, tmp_path / "zero", smoothing={"sigma": 0.0, "n": 4, "mode": "vote"})
    rng = np.random.default_rng(0)
    batch = (rng.normal(size=(64, 4)) * std).astype(np.float32)
    np.testing.assert_array_equal(same.act(batch), rllab.load(cartpole_ppo_path).act(batch))
    # mean mode is differentiable (EOT: the gradient is the average over the noise draws)
    mean = defend_checkpoint(cartpole_ppo_path, tmp_path / "mean", smoothing={"sigma": 0.1, "n": 8, "mode": "mean"})
    x = torch.tensor(batch[:2], requires_grad=True)
    mean.logits(x)[:, 0].sum().backward()
    assert x.grad.abs().sum() > 0
    # the smoothed agent still balances
    assert rllab.evaluate(vote, episodes=3, seed=0).summary()["mean_return"] > 400


def test_denoising_purifier_reduces_noise_and_round_trips(catch_ppo_path, tmp_path):
    defend_checkpoint(
        catch_ppo_path, tmp_path / "dae", purifier={"sigma": 0.1, "episodes": 10, "epochs": 20, "seed": 0}
    )
    again = rllab.load(tmp_path / "dae")
    assert [d["name"] for d in again.defenses] == ["purifier"]
    assert again.spec["lineage"][-1]["params"]["purifier"]["final_loss"] < 0.01
    from robustness.certify import visited_states

    clean = torch.as_tensor(visited_states(again, 3, 5), dtype=torch.float32)
    noisy = (clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)) * 25.5).clamp(0, 255)
    with torch.no_grad():
        restored = again.purifier(noisy)
    assert ((restored - clean) ** 2).mean() < 0.5 * ((noisy - clean) ** 2).mean()
    torch.testing.assert_close(again.logits(noisy), rllab.load(tmp_path / "dae").logits(noisy))
    x = noisy[:2].clone().requires_grad_()
    again.logits(x)[:, 0].sum().backward()  # differentiable: white-box attacks go through it
    assert x.grad.abs().sum() > 0
    assert rllab.evaluate(again, episodes=20, seed=0).summary()["mean_return"] >= 0.9


def test_bit_depth_masks_plain_pgd_and_bpda_and_unaware_attacks_see_through(catch_ppo_path, tmp_path):
    from robustness.attacks import PGD
    from robustness.evaluate import standard_suite
    from robustness.threat import ThreatModel

    agent = defend_checkpoint(catch_ppo_path, tmp_path / "bits", filters=[{"name": "bit_depth", "params": {"bits": 2}}])
    bare = rllab.load(catch_ppo_path)
    env = agent.make_env()
    obs = torch.tensor(np.stack([env.reset(seed=s)[0] for s in range(32)]), dtype=torch.float32)
    threat = ThreatModel.for_agent(agent, 64 / 255)
    with torch.no_grad():
        clean = agent.logits(obs).argmax(-1)
    # 2 bits: levels 0, 85, 170, 255; a 64/255 budget never reaches a new level on its own,
    # and round() gives a naive attacker a zero gradient: plain PGD cannot move the input at all
    torch.manual_seed(0)
    plain = PGD("margin", steps=10, random_start=False)(agent, obs, threat)
    assert torch.equal(plain, obs)
    torch.manual_seed(0)
    unaware = PGD("margin", steps=10, random_start=False, unaware=True)(agent, obs, threat)
    torch.manual_seed(0)
    reference = PGD("margin", steps=10, random_start=False)(bare, obs, threat)
    torch.testing.assert_close(unaware, reference)  # the unaware attacker differentiates the bare network
    assert agent.filters and not agent._unaware
    with agent.unaware():
        torch.testing.assert_close(agent.logits(obs), bare.logits(obs))
    # BPDA moves the input; whatever it finds stays in budget
    torch.manual_seed(0)
    bpda = PGD("margin", steps=10, random_start=False, bpda=True)(agent, obs, threat)
    assert (bpda - obs).abs().max() <= 64 + 1e-4 and not torch.equal(bpda, obs)
    with torch.no_grad():
        assert torch.equal(agent.logits(plain).argmax(-1), clean)
    labels = [a.label for a in standard_suite(agent)]
    assert "pgd-10:action+bpda" in labels and "pgd-10:action+unaware" in labels
    assert not any("unaware" in a.label or "bpda" in a.label for a in standard_suite(bare))


# ---------------------------------------------------------------------------- defend as Agent -> Agent
@pytest.fixture(scope="module")
def tiny_cartpole(tmp_path_factory):
    """A barely trained PPO CartPole agent: enough for observation statistics and a policy to copy."""
    out = tmp_path_factory.mktemp("tiny") / "cp"
    rllab.train(
        "ppo", "CartPole-v1", seed=0, steps=256, out=out, progress=False, eval_freq=0, threads=1, final_eval_episodes=2
    )
    return out


def test_defend_is_agent_to_agent(tiny_cartpole, tmp_path):
    agent = rllab.load(tiny_cartpole)
    before = json.dumps(agent.spec, sort_keys=True)
    defended = defend(agent, smoothing={"sigma": 0.1, "n": 4, "mode": "mean"})
    assert json.dumps(agent.spec, sort_keys=True) == before and agent.smoothing is None  # the parent is untouched
    assert defended.path is None and not list(tmp_path.iterdir())  # nothing written
    step = defended.spec["lineage"][-1]
    assert step["transform"] == "defend" and step["parent"] == str(tiny_cartpole)
    smooth = defended.spec["preprocessing"]["smoothing"]
    assert smooth["unit"] == "obs std" and smooth["unit_sigma"] == 0.1
    assert smooth["sigma"] == pytest.approx([0.1 * s for s in agent.obs_std.reshape(-1).tolist()])
    for p, q in zip(agent.policy.parameters(), defended.policy.parameters(), strict=True):
        assert torch.equal(p, q) and p is not q  # same weights, not shared
    out = defended.save(tmp_path / "d")
    assert rllab.load(out).spec["preprocessing"]["smoothing"] == smooth


def test_defend_bounds_the_smoothing_samples(tiny_cartpole):
    agent = rllab.load(tiny_cartpole)
    with pytest.raises(RllabError, match=f"n <= {MAX_SMOOTHING_SAMPLES}"):
        defend(agent, smoothing={"sigma": 0.1, "n": 10**12})
    with pytest.raises(RllabError, match="nothing to do"):
        defend(agent)


@pytest.mark.usefixtures("one_thread")
def test_defend_keeps_a_purified_parents_purifier(purified_path, tmp_path):
    from rllab.cli.defend import defend_checkpoint

    parent = rllab.load(purified_path)
    smoothed = defend_checkpoint(purified_path, tmp_path / "s", smoothing={"sigma": 0.1, "n": 4, "mode": "mean"})
    for k, v in purifier_state(parent).items():
        assert torch.equal(smoothed.purifier.state_dict()[k], v), k  # was a fresh random purifier
    x = torch.as_tensor(sample_obs(parent), dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(smoothed.purifier(x), parent.purifier(x))


# ---------------------------------------------------------------------------------- the defend command
def test_defend_cli_and_errors(catch_ppo_path, cartpole_ppo_path, tmp_path, capsys):
    assert (
        main(
            [
                "defend",
                str(catch_ppo_path),
                "--filter",
                "bit_depth:bits=1",
                "--out",
                str(tmp_path / "b"),
                "--episodes",
                "4",
            ]
        )
        == 0
    )
    assert "bit_depth" in capsys.readouterr().out
    # a 3x3 median erases Catch's one-pixel ball: the command says what the defense costs unattacked
    args = ["defend", str(catch_ppo_path), "--filter", "median:size=3", "--out", str(tmp_path / "m")]
    assert main([*args, "--episodes", "4"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"clean mean return: (\S+) undefended -> (\S+) defended", out)
    assert m and float(m[1]) == 1.0 and float(m[2]) < 0
    assert "warning: the defense costs" in out and "(a filter wider" in out
    assert main(["defend", str(catch_ppo_path), "--filter", "nope", "--out", str(tmp_path / "c")]) == 2
    assert "unknown input filter 'nope'" in capsys.readouterr().err
    assert main(["defend", str(cartpole_ppo_path), "--filter", "median:size=3", "--out", str(tmp_path / "d")]) == 2
    assert "needs image observations" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "d" / "agent.json").exists()
    with pytest.raises(RllabError, match="odd size"):
        MedianFilter("chw", 0, 255, size=2)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--filter", "gaussian_noise:sigma=8"], "8/255"),
        (["--smooth", "sigma=abc"], "--smooth sigma"),
        (["--filter", "median:size=abc"], "--filter median: size"),
        (["--smooth", "sigma=8,n=4"], "8/255"),
    ],
)
def test_defend_bad_numbers_are_one_line(argv, expected, catch_ppo_path, tmp_path, capsys):
    out = tmp_path / "d"
    err = fails_in_one_line(["defend", str(catch_ppo_path), *argv, "--out", str(out), "--episodes", "2"], capsys)
    assert expected in err
    assert not out.exists()


@pytest.mark.usefixtures("one_thread")
def test_defend_noise_fraction_is_stored_beside_the_raw_scale(catch_ppo_path, tmp_path, capsys):
    out = tmp_path / "d"
    assert (
        main(
            [
                "defend",
                str(catch_ppo_path),
                "--filter",
                "gaussian_noise:sigma=8/255",
                "--out",
                str(out),
                "--episodes",
                "2",
            ]
        )
        == 0
    )
    entry = json.loads((out / "agent.json").read_text())["preprocessing"]["filters"][-1]
    assert entry["params"]["sigma"] == pytest.approx(8.0)
    assert entry["unit_sigma"] == pytest.approx(8 / 255) and entry["unit"] == "pixel/255"
    assert rllab.load(out).defenses[-1]["name"] == "gaussian_noise"


@pytest.mark.usefixtures("one_thread")
def test_defend_cost_warning_does_not_blame_filter_width_for_noise(cartpole_ppo_path, tmp_path, capsys):
    out = tmp_path / "d"
    assert (
        main(
            [
                "defend",
                str(cartpole_ppo_path),
                "--filter",
                "gaussian_noise:sigma=3",
                "--out",
                str(out),
                "--episodes",
                "2",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "warning: the defense costs" in printed
    assert "wider than the objects" not in printed and "smaller sigma" in printed
