"""explain/: attribution methods, their formulas, and their faithfulness on small trained agents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch as th
from captum.attr import Occlusion as CaptumOcclusion

import rllab
from explain.episodes import collect_states
from explain.faithfulness import (
    deletion_insertion,
    pointing_game,
    randomisation_cascade,
    relevance_mass,
    sanity_check,
)
from explain.methods import (
    METHODS,
    Greydanus,
    IntegratedGradients,
    Occlusion,
    Saliency,
    activation_maximisation,
    gaussian_blur,
    make_method,
)
from tests.conftest import trained_run
from tests.helpers import copy_run


@pytest.fixture(scope="session")
def catchd_ppo_path(tmp_path_factory) -> Path:
    """PPO (small CNN) on CatchDistractors-v0, shipped hyperparameters, 40k steps, seed 0 (catches every ball)."""
    return trained_run(tmp_path_factory, "catchd-ppo-40k", algo="ppo", env="CatchDistractors-v0", seed=0, steps=40_000)


@pytest.fixture(scope="session")
def catchd_ppo(catchd_ppo_path) -> rllab.Agent:
    return rllab.load(catchd_ppo_path)


@pytest.fixture(scope="session")
def catchd_states(catchd_ppo):
    """About 100 states of 11 episodes, with their ground-truth masks."""
    return collect_states(catchd_ppo, episodes=11, seed=100)


@pytest.fixture(scope="session")
def cartpole_dqn(tmp_path_factory) -> rllab.Agent:
    """A barely trained DQN: only its shape matters (no critic)."""
    path = trained_run(tmp_path_factory, "cartpole-dqn-tiny", algo="dqn", env="CartPole-v1", seed=0, steps=300)
    return rllab.load(path)


# ------------------------------------------------------------------ methods
def test_every_method_gives_maps_of_the_observation_shape(catchd_ppo, catchd_states):
    obs = catchd_states.obs[:20]
    for name in METHODS:
        for target in ("action", "value"):
            th.manual_seed(0)
            method = make_method(name, catchd_ppo, target=target)
            attr = method.attribute(obs)
            assert attr.shape == (20, *catchd_ppo.observation_space.shape), (name, target)
            assert th.isfinite(attr).all(), (name, target)
            assert attr.abs().sum() > 0, (name, target)
            assert method.describe()["target"] == target


def test_saliency_is_the_absolute_input_gradient_of_the_chosen_logit(catchd_ppo, catchd_states):
    x = th.as_tensor(catchd_states.obs[:8]).float().requires_grad_(True)
    logits = catchd_ppo.logits(x)
    a = logits.argmax(-1)
    logits.gather(1, a.view(-1, 1)).sum().backward()
    expected = x.grad.abs()
    got = Saliency(catchd_ppo).attribute(catchd_states.obs[:8])
    assert th.allclose(got, expected, atol=1e-6)
    # chunking over the batch does not change the numbers
    assert th.allclose(Saliency(catchd_ppo, batch_size=3).attribute(catchd_states.obs[:8]), expected, atol=1e-6)


def test_integrated_gradients_is_complete(catchd_ppo, catchd_states):
    """Sundararajan et al.'s completeness axiom: attributions sum to F(x) - F(baseline)."""
    obs = th.as_tensor(catchd_states.obs[:10]).float()
    for target in ("action", "value"):
        ig = IntegratedGradients(catchd_ppo, target=target, n_steps=64)
        attr = ig.attribute(obs)
        with th.no_grad():
            acts = catchd_ppo.logits(obs).argmax(-1) if target == "action" else None
            gap = ig.scalar_output(obs, acts) - ig.scalar_output(th.zeros_like(obs), acts)
        assert th.allclose(attr.flatten(1).sum(1), gap, rtol=0.03, atol=0.03), target
        assert ig.describe()["baseline"] == "zeros"


def test_greydanus_matches_the_paper_formula_pixel_by_pixel(catchd_ppo, catchd_states):
    """S(t,i,j) = 1/2 ||pi(I) - pi(I*(1-M) + A(I)*M)||^2, M a Gaussian mask at (i, j), A a Gaussian blur."""
    obs = th.as_tensor(catchd_states.obs[:4]).float()
    for target in ("action", "value"):
        g = Greydanus(catchd_ppo, target=target, sigma_mask=1.0, sigma_blur=1.5)
        maps = g.attribute(obs)
        blurred = gaussian_blur(obs, 1.5)
        for i, j in [(0, 0), (3, 2), (9, 4)]:
            yy, xx = th.meshgrid(th.arange(10.0), th.arange(5.0), indexing="ij")
            m = th.exp(-((yy - i) ** 2 + (xx - j) ** 2) / 2.0)
            perturbed = obs * (1 - m) + blurred * m
            with th.no_grad():
                if target == "action":
                    s = 0.5 * ((catchd_ppo.logits(obs) - catchd_ppo.logits(perturbed)) ** 2).sum(-1)
                else:
                    s = 0.5 * (catchd_ppo.value(obs) - catchd_ppo.value(perturbed)) ** 2
            assert th.allclose(maps[:, 0, i, j], s, rtol=1e-4, atol=1e-6), (target, i, j)
    # a blurred frame keeps its total brightness away from the border
    img = th.zeros(1, 1, 21, 21)
    img[0, 0, 10, 10] = 255.0
    assert abs(float(gaussian_blur(img, 2.0).sum()) - 255.0) < 1e-3


def test_batched_occlusion_equals_a_per_state_captum_loop(catchd_ppo, catchd_states):
    obs = th.as_tensor(catchd_states.obs[:12]).float()
    acts = catchd_ppo.logits(obs).argmax(-1)
    batched = Occlusion(catchd_ppo, window=(1, 2, 2), stride=(1, 1, 1)).attribute(obs)
    occ = CaptumOcclusion(catchd_ppo.logits)
    loop = th.cat(
        [
            occ.attribute(obs[k : k + 1], sliding_window_shapes=(1, 2, 2), strides=(1, 1, 1), target=int(acts[k]))
            for k in range(12)
        ]
    )
    assert th.allclose(batched, loop, atol=1e-5)


def test_methods_that_cannot_apply_fail_clearly(cartpole_dqn, cartpole_ppo):
    with pytest.raises(rllab.RllabError, match="critic"):
        Saliency(cartpole_dqn, target="value")
    with pytest.raises(rllab.RllabError, match="critic"):
        activation_maximisation(cartpole_dqn, target="value")
    with pytest.raises(rllab.RllabError, match="image"):
        make_method("greydanus", cartpole_ppo)
    with pytest.raises(rllab.RllabError, match="CNN|image"):
        make_method("gradcam", cartpole_ppo)
    with pytest.raises(rllab.RllabError, match="unknown explanation method"):
        make_method("lime", cartpole_ppo)
    with pytest.raises(rllab.RllabError, match="target"):
        Saliency(cartpole_ppo, target="reward")
    # the DQN agent is explained through its Q-values
    assert Saliency(cartpole_dqn).attribute(np.zeros((3, 4), dtype=np.float32)).shape == (3, 4)


def test_vector_agent_feature_attributions(cartpole_ppo):
    states = collect_states(cartpole_ppo, episodes=1, seed=0)
    obs = states.obs[:100]
    ablation = make_method("ablation", cartpole_ppo).attribute(obs)
    assert ablation.shape == (100, 4)
    assert make_method("ablation", cartpole_ppo).describe()["baseline"] == "mean"
    # CartPole's policy reads the pole (angle, angular velocity) much more than the cart position
    for name in ("integrated_gradients", "ablation"):
        rel = make_method(name, cartpole_ppo).attribute(obs).abs().mean(0)
        assert rel[2] + rel[3] > 2 * rel[0], (name, rel)


def test_activation_maximisation_stays_in_the_space_and_drives_each_action(catchd_ppo):
    x = activation_maximisation(catchd_ppo, steps=150, seed=0)
    assert x.shape == (3, 1, 10, 5)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 255.0
    with th.no_grad():
        assert catchd_ppo.logits(x).argmax(-1).tolist() == [0, 1, 2]
    assert th.equal(x, activation_maximisation(catchd_ppo, steps=150, seed=0))


# ------------------------------------------------------------------ faithfulness metrics
def test_relevance_mass_and_pointing_game_on_hand_made_maps(catchd_ppo):
    masks = np.zeros((3, 10, 5), dtype=bool)
    masks[:, 0, 1] = masks[:, 9, 2] = True
    attr = np.zeros((3, 1, 10, 5))
    attr[0, 0, 0, 1] = 3.0  # all mass on the ball
    attr[1, 0, 0, 1], attr[1, 0, 5, 0] = -1.0, 3.0  # sign ignored; top pixel outside
    attr[2] = 1.0  # constant map: a tie is a miss
    np.testing.assert_allclose(relevance_mass(attr, masks, catchd_ppo), [1.0, 0.25, 2 / 50])
    np.testing.assert_array_equal(pointing_game(attr, masks, catchd_ppo), [1.0, 0.0, 0.0])


def test_catch_with_distractors_maps_land_on_the_ground_truth(catchd_ppo, catchd_states):
    """Must-show (small agent): the best of IG / occlusion / Greydanus puts >= 75% of its mass on ball and paddle,
    points at them >= 85% of the time, and each of them gets >= 10x a random map's mass."""
    tr = catchd_states
    assert len(tr) >= 90 and np.mean(np.asarray(tr.returns) > 0) >= 0.9
    assert (tr.obs[:, 0][~tr.masks] > 0).mean() > 0.03  # distractors are lit outside the ground truth
    random_mass = relevance_mass(make_method("random", catchd_ppo).attribute(tr.obs), tr.masks, catchd_ppo).mean()
    results = {}
    for name in ("integrated_gradients", "occlusion", "greydanus"):
        attr = make_method(name, catchd_ppo).attribute(tr.obs, actions=tr.actions)
        results[name] = (
            relevance_mass(attr, tr.masks, catchd_ppo).mean(),
            pointing_game(attr, tr.masks, catchd_ppo).mean(),
        )
        assert results[name][0] >= 10 * random_mass, (name, results[name], random_mass)
    best = max(results, key=lambda k: results[k][0])
    assert results[best][0] >= 0.75 and results[best][1] >= 0.85, results


def test_deletion_beats_random_ordering(catchd_ppo, catchd_states, cartpole_ppo):
    tr = catchd_states
    attr = make_method("greydanus", catchd_ppo).attribute(tr.obs)
    di = deletion_insertion(catchd_ppo, tr.obs, attr, seed=0)
    assert di["deletion_auc"] < 0.8 * di["random_deletion_auc"], di
    assert di["insertion_auc"] > di["random_insertion_auc"], di
    # a random map is indistinguishable from a random ordering
    rnd = deletion_insertion(catchd_ppo, tr.obs, make_method("random", catchd_ppo).attribute(tr.obs), seed=1)
    assert abs(rnd["deletion_auc"] - rnd["random_deletion_auc"]) < 0.1
    # curves start at the agent's own probability and end on the all-baseline input
    assert di["deletion_curve"][0] > 0.8 and di["insertion_curve"][-1] == pytest.approx(di["deletion_curve"][0])
    obs = collect_states(cartpole_ppo, episodes=1, seed=0).obs[:150]
    for name in ("integrated_gradients", "occlusion", "ablation"):
        d = deletion_insertion(cartpole_ppo, obs, make_method(name, cartpole_ppo).attribute(obs), seed=0)
        assert d["deletion_auc"] < d["random_deletion_auc"], (name, d)


def test_sanity_check_saliency_decorrelates_under_weight_randomisation(catchd_ppo, catchd_states):
    layers = [name for name, _ in randomisation_cascade(catchd_ppo)]
    assert layers[0] == "action_net" and layers[-1] == "features_extractor.cnn.0"
    before = [p.detach().clone() for p in catchd_ppo.parameters()]
    sc = sanity_check(catchd_ppo, catchd_states.obs[:60], lambda ag: Saliency(ag), seed=0)
    assert all(th.equal(a, b) for a, b in zip(before, catchd_ppo.parameters(), strict=True))  # original untouched
    assert [s["layer"] for s in sc["steps"]] == layers
    assert sc["spearman_full"] < 0.3, sc
    assert sc["steps"][0]["spearman"] > sc["spearman_full"] + 0.2, sc
    assert 40 <= sc["region_size"] <= 50  # pixels lit in some of the 60 states


def test_sanity_check_region_shows_the_sparse_input_trap(catchd_ppo, catchd_states):
    """Occlusion-to-black maps are zero on unlit pixels whatever the weights: over all varying pixels they stay
    correlated after full randomisation; over each state's lit pixels the randomisation shows."""
    obs = catchd_states.obs[:60]
    trivial = sanity_check(catchd_ppo, obs, lambda ag: Occlusion(ag), region="varying")
    lit = sanity_check(catchd_ppo, obs, lambda ag: Occlusion(ag), region="lit")
    assert trivial["spearman_full"] > 0.9
    assert lit["spearman_full"] < trivial["spearman_full"] - 0.3
    assert 2 <= lit["region_size"] <= 10  # ball, paddle and a few distractors
    with pytest.raises(rllab.RllabError, match="region"):
        sanity_check(catchd_ppo, obs, lambda ag: Occlusion(ag), region="everything")


@pytest.fixture(scope="session")
def catch_scaled_ppo(tmp_path_factory) -> rllab.Agent:
    """PPO on Catch-v0 drawn at scale=2 (20x10 frame, 2x2-pixel ball and paddle), 6k steps, seed 0 (~8 s).

    Trained on one torch thread: this small CNN gains nothing from two, and two threads on a busy
    machine made the same training take minutes."""
    threads = th.get_num_threads()
    th.set_num_threads(1)
    try:
        path = trained_run(
            tmp_path_factory,
            "catch-scale2-ppo-6k",
            algo="ppo",
            env="Catch-v0",
            seed=0,
            steps=6_000,
            env_kwargs={"scale": 2},
        )
    finally:
        th.set_num_threads(threads)
    return rllab.load(path)


def test_deletion_of_relevant_cells_beats_random_ordering_on_a_scaled_frame(catch_scaled_ppo):
    """On a frame where ball and paddle span 2x2 pixels, deleting the pixels of one-cell occlusion maps first
    drops the action's probability far faster than random orderings; a random map does not."""
    agent = catch_scaled_ppo
    assert agent.observation_space.shape == (1, 20, 10)
    tr = collect_states(agent, episodes=4, seed=100)
    assert np.mean(np.asarray(tr.returns) > 0) >= 0.75 and tr.masks.shape == (len(tr), 20, 10)
    obs, acts = tr.obs[:32], tr.actions[:32]
    occ = Occlusion(agent, window=2, stride=2)
    assert occ.window == (1, 2, 2) and occ.stride == (1, 2, 2)
    attr = occ.attribute(obs, actions=acts)
    di = deletion_insertion(agent, obs, attr, actions=acts, seed=0, random_orderings=3)
    assert di["deletion_auc"] < 0.75 * di["random_deletion_auc"], di
    assert di["insertion_auc"] > di["random_insertion_auc"] + 0.05, di
    # the relevance-ordered curve is already near its end (the all-black frame) after 10% of the pixels
    assert di["deletion_curve"][5] < di["baseline_probability"] + 0.1, di["deletion_curve"][:8]
    rnd = make_method("random", agent, seed=0).attribute(obs)
    r = deletion_insertion(agent, obs, rnd, actions=acts, seed=1, random_orderings=3)
    assert abs(r["deletion_auc"] / r["random_deletion_auc"] - 1) < 0.15, r


def test_deletion_accepts_one_baseline_per_state(catchd_ppo, catchd_states):
    """A (N, *obs_shape) baseline gives every state its own reference (e.g. its blurred frame): the curves end on
    each state's baseline, and a batch of identical baselines equals the single one."""
    obs = th.as_tensor(catchd_states.obs[:16]).float()
    attr = make_method("occlusion", catchd_ppo).attribute(obs)
    zeros = deletion_insertion(catchd_ppo, obs, attr, seed=0, random_orderings=1)
    batch = deletion_insertion(catchd_ppo, obs, attr, baseline=th.zeros_like(obs), seed=0, random_orderings=1)
    assert batch["deletion_auc"] == pytest.approx(zeros["deletion_auc"])
    blurred = gaussian_blur(obs, 1.0)
    b = deletion_insertion(catchd_ppo, obs, attr, baseline=blurred, seed=0, random_orderings=1)
    with th.no_grad():
        acts = catchd_ppo.logits(obs).argmax(-1)
        p_blur = th.softmax(catchd_ppo.logits(blurred), -1).gather(1, acts.view(-1, 1)).mean()
    assert b["baseline_probability"] == pytest.approx(float(p_blur), abs=1e-5)


def _untrained_image_agent(shape, extractor, share=True):
    import gymnasium as gym

    from rllab.agent import agent_from_spec, spec_skeleton

    th.manual_seed(0)
    kwargs = {"net_arch": [8], "features_extractor": extractor, "share_features_extractor": share}
    spec = spec_skeleton(
        "ppo",
        "None-v0",
        {},
        [],
        gym.spaces.Box(0, 255, shape, np.uint8),
        gym.spaces.Discrete(3),
        "ActorCriticPolicy",
        kwargs,
        True,
    )
    return agent_from_spec(spec).eval()


def test_greydanus_with_a_stride_puts_each_score_on_its_own_pixel():
    agent = _untrained_image_agent((1, 21, 17), "flatten")
    gen = th.Generator().manual_seed(0)
    obs = th.randint(0, 256, (2, 1, 21, 17), generator=gen).float()
    g = Greydanus(agent, sigma_mask=2.0, sigma_blur=1.5, stride=5)
    maps = g.attribute(obs)
    blurred = gaussian_blur(obs, 1.5)
    yy, xx = th.meshgrid(th.arange(21.0), th.arange(17.0), indexing="ij")
    centres = [(i, j) for i in (0, 5, 10, 15, 20) for j in (0, 5, 10, 15)]
    scored = {}
    for i, j in centres:
        m = th.exp(-((yy - i) ** 2 + (xx - j) ** 2) / (2 * 2.0**2))
        with th.no_grad():
            s = 0.5 * ((agent.logits(obs) - agent.logits(obs * (1 - m) + blurred * m)) ** 2).sum(-1)
        scored[i, j] = s
        assert th.allclose(maps[:, 0, i, j], s, rtol=1e-4, atol=1e-7), (i, j)
    # between two scored pixels, a linear blend; past the last scored column, its score
    mid = 0.6 * scored[5, 5] + 0.4 * scored[5, 10]
    assert th.allclose(maps[:, 0, 5, 7], mid, rtol=1e-4, atol=1e-7)
    assert th.allclose(maps[:, 0, 10, 16], scored[10, 15], rtol=1e-4, atol=1e-7)


def test_gradcam_of_the_value_uses_the_critics_extractor():
    from explain.methods import GradCam

    agent = _untrained_image_agent((1, 20, 20), "small_cnn", share=False)
    vf_convs = [m for m in agent.policy.vf_features_extractor.modules() if isinstance(m, th.nn.Conv2d)]
    pi_convs = [m for m in agent.policy.pi_features_extractor.modules() if isinstance(m, th.nn.Conv2d)]
    assert GradCam(agent, target="value").layer is vf_convs[-1]
    assert GradCam(agent, target="action").layer is pi_convs[-1]
    obs = th.randint(0, 256, (4, 1, 20, 20), generator=th.Generator().manual_seed(0)).float()
    assert float(GradCam(agent, target="value").attribute(obs).abs().sum()) > 0


# ---------------------------------------------------------------- method options and the metrics table
@pytest.mark.parametrize(
    "method,message",
    [
        ("ig(n_steps=0)", "n_steps must be a whole number >= 1, got 0"),
        ("ig(n_steps=-3)", "n_steps must be a whole number >= 1, got -3"),
        ("ig(n_steps=2.5)", "n_steps must be a whole number >= 1, got 2.5"),
        ("smoothgrad(samples=0)", "samples must be a whole number >= 1"),
        ("smoothgrad(noise=-0.1)", "noise must be a number >= 0"),
        ("occlusion(window=0)", "window/stride must be a whole number >= 1"),
        ("occlusion(window=3,stride=-1)", "window/stride must be a whole number >= 1"),
        ("occlusion(window=[1,2,3,4,5])", "need 3 sizes"),
        ("occlusion(window=[1,99,99])", "larger than the observation"),
        ("greydanus(sigma_mask=0)", "sigma_mask must be a number > 0"),
        ("greydanus(stride=0)", "stride must be a whole number >= 1"),
        ("saliency(abs=maybe)", "abs must be true or false"),
        ("saliency(batch_size=0)", "batch_size must be a whole number >= 1"),
    ],
)
def test_explain_method_options_are_checked_in_one_line(catch_ppo_path, capsys, method, message):
    from rllab.cli import main

    before = (
        sorted(p.name for p in (catch_ppo_path / "explain").glob("*")) if (catch_ppo_path / "explain").exists() else []
    )
    assert main(["explain", str(catch_ppo_path), "--method", method, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    after = (
        sorted(p.name for p in (catch_ppo_path / "explain").glob("*")) if (catch_ppo_path / "explain").exists() else []
    )
    assert after == before


def test_explain_metrics_table_has_a_legend_and_metrics_json_describes_the_columns(catch_ppo_path, tmp_path):
    import json

    from explain.commands import explain_run
    from explain.report import METRIC_DESCRIPTIONS, metrics_table

    run = copy_run(catch_ppo_path, tmp_path / "catch")
    result = explain_run(run, "saliency", episodes=1, metrics=True, seed=0, progress=False)
    table = metrics_table(result["metrics"])
    assert "rho (lit): the same sanity check over 'lit' positions only" in table
    assert "deletion:" in table and "lower is better" in table and "higher is better" in table
    saved = json.loads((Path(result["png_dir"]) / "metrics.json").read_text())
    lit = saved["columns"]["sanity_spearman_lit"]
    assert lit["header"] == "rho (lit)" and "non-zero" in lit["meaning"] and lit["better"].startswith("lower")
    assert set(saved["columns"]) == {k for r in saved["metrics"] for k in r if k in METRIC_DESCRIPTIONS}


def test_explain_metrics_list_a_requested_random_method_once(cartpole_ppo_path, tmp_path):
    from explain.commands import explain_run
    from explain.report import metrics_table

    run = copy_run(cartpole_ppo_path, tmp_path / "cp")
    result = explain_run(run, "saliency,random", episodes=1, metrics=True, seed=0, progress=False)
    assert [r["method"] for r in result["metrics"]] == ["saliency", "random"]
    assert sum(line.startswith("random ") for line in metrics_table(result["metrics"]).splitlines()) == 1
    result = explain_run(run, "saliency", episodes=1, metrics=True, seed=0, progress=False)
    assert [r["method"] for r in result["metrics"]] == ["saliency", "random"]  # the automatic control
