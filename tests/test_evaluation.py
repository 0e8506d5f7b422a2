"""rllab eval and rllab.evaluate(): returns and their 95% CI, JSON and video outputs, how agents act when evaluated."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from PIL import Image

from rllab.agent import Agent, agent_from_spec, spec_skeleton
from rllab.cli import main
from tests.helpers import fails_in_one_line, sample_obs


def test_eval_command_json_and_gif(tmp_path, catch_ppo_path, capsys):
    out = tmp_path / "eval.json"
    gif = tmp_path / "ep.gif"
    assert (
        main(["eval", str(catch_ppo_path), "--episodes", "6", "--seed", "1", "--json", str(out), "--video", str(gif)])
        == 0
    )
    text = capsys.readouterr().out
    assert "95% CI" in text and "video:" in text
    res = json.loads(out.read_text())
    assert res["episodes"] == 6 and len(res["returns"]) == 6
    assert res["mean_return"] == pytest.approx(np.mean(res["returns"]))
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 10  # reset frame + 9 steps of 10x5 Catch
    # the same command with the same seed gives the same numbers
    assert (
        main(["eval", str(catch_ppo_path), "--episodes", "6", "--seed", "1", "--json", str(tmp_path / "b.json")]) == 0
    )
    assert json.loads((tmp_path / "b.json").read_text())["returns"] == res["returns"]


@pytest.mark.usefixtures("one_thread")
def test_one_episode_has_no_confidence_interval(cartpole_ppo_path, tmp_path, capsys):
    from rllab.evaluation import confidence_interval

    assert confidence_interval(np.array([3.0])) is None
    assert confidence_interval(np.array([1.0, 3.0])) == pytest.approx([2 - 12.706 * 1, 2 + 12.706 * 1], rel=1e-3)
    out = tmp_path / "one.json"
    assert main(["eval", str(cartpole_ppo_path), "--episodes", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "95% CI n/a" in printed and "seeds 0..0" not in printed
    assert json.loads(out.read_text())["ci95_return"] is None


# ---------------------------------------------------------------------------------------- output files
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("option", ["--json", "--video"])
def test_eval_outputs_that_cannot_be_written_are_one_line(option, cartpole_ppo_path, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    name = "x.json" if option == "--json" else "x.gif"
    for target in (tmp_path / "afile" / name, tmp_path / "adir", Path("/proc") / name):
        err = fails_in_one_line(["eval", str(cartpole_ppo_path), "--episodes", "1", option, str(target)], capsys)
        assert err.startswith("rllab eval: error: cannot write ") and str(target) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"] and not any((tmp_path / "adir").iterdir())


@pytest.mark.usefixtures("one_thread")
def test_eval_json_leaves_no_temporary_file_beside_it(cartpole_ppo_path, tmp_path, capsys):
    out = tmp_path / "walk"
    assert main(["eval", str(cartpole_ppo_path), "--episodes", "1", "--json", str(out)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["walk"]


# ------------------------------------------------------------------------ videos of image observations
class _Frames(gym.Env):
    """Three steps of flat frames whose channel c holds 40 * (c + 1) + 10 * t; no rgb_array rendering."""

    metadata = {"render_modes": []}

    def __init__(self, shape=(3, 4, 5), channel_axis=0):
        self.shape, self.axis = shape, channel_axis
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        c = self.shape[self.axis]
        values = (40 * (np.arange(c) + 1) + 10 * self.t).astype(np.uint8)
        return np.moveaxis(np.broadcast_to(values, (*np.delete(self.shape, self.axis), c)), -1, self.axis).copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, self.t >= 3, False, {}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    "shape,axis,rgb",
    # (3, 4, 3): channels first by SB3's rule (the smallest axis first), which the shape alone cannot tell
    [((4, 5, 1), 2, False), ((3, 4, 5), 0, True), ((4, 5, 3), 2, True), ((1, 4, 5), 0, False), ((3, 4, 3), 0, True)],
)
def test_video_of_image_observations_keeps_their_colours(tmp_path, shape, axis, rgb):
    from PIL import Image

    from rllab.evaluation import record_video
    from rllab.nn.policies import needs_transpose

    env_id = f"rllabtest/Frames{'x'.join(map(str, shape))}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=_Frames, kwargs={"shape": shape, "channel_axis": axis})
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    spec = spec_skeleton(
        "ppo",
        env_id,
        {},
        [],
        space,
        gym.spaces.Discrete(2),
        "ActorCriticPolicy",
        {"net_arch": [4], "features_extractor": "flatten"},
        True,
        transpose_image=needs_transpose(space),
    )
    path = record_video(agent_from_spec(spec).eval(), tmp_path / "v.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 4  # reset + 3 steps
        for t in range(4):
            gif.seek(t)
            frame = np.asarray(gif.convert("RGB"))
            height, width = np.delete(shape, axis)
            assert frame.shape == (height * 16, width * 16, 3)
            want = [40 + 10 * t, 80 + 10 * t, 120 + 10 * t] if rgb else [40 + 10 * t] * 3
            assert (frame == want).all(), (t, frame[0, 0], want)


# ------------------------------------------- how the agent acts: stochastic acting with smoothing, DQN
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("mode", ["mean", "vote"])
def test_stochastic_acting_with_smoothing_samples_the_smoothed_distribution(cartpole_ppo, mode):
    spec = copy.deepcopy(cartpole_ppo.spec)
    spec["preprocessing"]["smoothing"] = {"sigma": 0.5, "n": 8, "mode": mode}
    agent = Agent(spec, cartpole_ppo.policy).eval()
    obs = np.repeat(sample_obs(agent, 1), 4000, axis=0) * 0.1  # one state near the balance point
    th.manual_seed(0)
    with th.no_grad():
        probs = agent.action_dist(obs).probs.mean(0).numpy()
    th.manual_seed(1)
    sampled = agent.act(obs, deterministic=False)
    assert 0.05 < probs[1] < 0.95  # the test means something: both actions are likely
    assert abs(sampled.mean() - probs[1]) < 0.03  # frequencies follow the smoothed distribution


@pytest.mark.usefixtures("one_thread")
def test_evaluation_records_that_a_dqn_agent_acted_greedily():
    from rllab.evaluation import evaluate

    env = gym.make("CartPole-v1")
    spec = spec_skeleton(
        "dqn", "CartPole-v1", {}, [], env.observation_space, env.action_space, "DQNPolicy", {"net_arch": [8]}, False
    )
    env.close()
    agent = agent_from_spec(spec).eval()
    result = evaluate(agent, episodes=2, deterministic=False)
    assert result.summary()["deterministic"] is True
    assert result.returns == evaluate(agent, episodes=2, deterministic=True).returns
