"""Third-party environments (ALE, MinAtar, MuJoCo, ``module:Env-id``), wrappers recorded in the checkpoint,
the Atari preset, MinAtar's frames and budget unit, and ``--threads`` (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import rllab
import rllab.environment as environment
from rllab.agent import agent_from_spec
from rllab.cli import apply_threads, build_parser, default_threads, main
from rllab.environment import check_env_id, env_module, make_env
from rllab.errors import RllabError
from rllab.nn.policies import MinAtarCNN, default_extractor
from rllab.spec import spec_skeleton
from rllab.units import ABSOLUTE, PIXEL, STD, ThreatUnit, default_eps
from robustness.certify import action_score_bounds, certify
from tests.helpers import fails_in_one_line

ROOT = Path(__file__).resolve().parents[1]
ale_py = pytest.importorskip("ale_py")
pytest.importorskip("minatar")
pytest.importorskip("cv2")

HWC_ID = "tests.third_party_env:ThirdParty/HwcCatch-v0"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small networks here: one thread (see conftest)."""


def test_third_party_ids_register_on_demand():
    check_env_id("MinAtar/Breakout-v1")
    check_env_id("ALE/Pong-v5")
    check_env_id("Hopper-v5")
    assert "MinAtar/Breakout-v1" in gym.registry and "ALE/Pong-v5" in gym.registry
    assert env_module("ALE/Pong-v5") == "ale_py"
    assert env_module("MinAtar/Breakout-v1") == "minatar.gym"
    assert env_module("Hopper-v5") is None
    env = make_env(HWC_ID)  # Gymnasium's module:Env-id syntax: the module is imported, then the id made
    assert env.observation_space.shape == (10, 5, 3)
    env.close()
    with pytest.raises(RllabError, match="unknown environment id 'ALE/NoSuchGame-v5'"):
        check_env_id("ALE/NoSuchGame-v5")
    with pytest.raises(RllabError, match="cannot import 'no_such_module_xyz'"):
        check_env_id("no_such_module_xyz:Foo-v0")


def test_the_module_is_recorded_and_reimported_from_the_checkpoint():
    assert _minatar_spec()["env"]["module"] == "minatar.gym"
    spec2 = spec_skeleton(
        "ppo",
        HWC_ID,
        {},
        [],
        gym.spaces.Box(0, 1, (2,)),
        gym.spaces.Discrete(2),
        "ActorCriticPolicy",
        {},
        has_critic=True,
    )
    assert spec2["env"]["module"] == "tests.third_party_env"


def _without_module(monkeypatch, missing: str) -> None:
    """Make importing ``missing`` (and its submodules) fail as if its package were not installed."""
    real = environment.importlib.import_module

    def fake(name, *args, **kwargs):
        if name == missing or name.startswith(missing + "."):
            raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(environment.importlib, "import_module", fake)


def test_a_missing_extra_is_one_line_naming_it(monkeypatch, capsys, tmp_path):
    check_env_id("MinAtar/Breakout-v1")
    for env_id in [k for k in list(gym.registry) if k.startswith("MinAtar/")]:
        monkeypatch.delitem(gym.registry, env_id)
    _without_module(monkeypatch, "minatar")
    err = fails_in_one_line(
        ["train", "--algo", "ppo", "--env", "MinAtar/Breakout-v1", "--out", str(tmp_path / "r")], capsys
    )
    assert err.startswith("rllab train: error: minatar is not installed: install the 'minatar' extra")
    assert "pip install -e '.[minatar]'" in err and "scripts/setup.sh" in err
    assert not (tmp_path / "r").exists()
    monkeypatch.undo()
    _without_module(monkeypatch, "imageio")  # Gymnasium's MuJoCo envs import it when made
    with pytest.raises(RllabError, match=r"imageio is not installed: install the 'mujoco' extra") as info:
        check_env_id("Hopper-v5")
    assert "\n" not in str(info.value)


def test_wrappers_round_trip_through_the_checkpoint_tuples_included(tmp_path):
    run = tmp_path / "hwc"
    wrappers = [{"name": "ResizeObservation", "kwargs": {"shape": (8, 8)}}]
    agent = rllab.train(
        "ppo",
        HWC_ID,
        steps=64,
        n_envs=1,
        overrides={"n_steps": 64, "batch_size": 32},
        wrappers=wrappers,
        out=run,
        progress=False,
        eval_freq=0,
        final_eval_episodes=2,
    )
    stored = json.loads((run / "agent.json").read_text())["env"]
    assert stored["wrappers"] == [{"name": "ResizeObservation", "kwargs": {"shape": [8, 8]}}]
    assert stored["module"] == "tests.third_party_env"
    assert agent.observation_space.shape == (8, 8, 3)
    # a new process rebuilds the environment: the module imported, the shape a tuple again
    code = (
        f"import rllab; a = rllab.load(r'{run}'); e = a.make_env(); "
        "print(type(e.shape).__name__, e.shape, a.observation_space.shape)"
    )
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # tests/ importable, not from the cwd
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "tuple (8, 8) (8, 8, 3)"


def test_train_wrappers_option_is_parsed_and_recorded(tmp_path, capsys):
    err = fails_in_one_line(
        ["train", "--algo", "ppo", "--env", "CartPole-v1", "--wrappers", "{a: 1}", "--out", str(tmp_path / "x")], capsys
    )
    assert "--wrappers must be a YAML/JSON list" in err
    err = fails_in_one_line(
        [
            "train",
            "--algo",
            "ppo",
            "--env",
            "CartPole-v1",
            "--wrappers",
            "[{name: Nope}]",
            "--out",
            str(tmp_path / "x"),
        ],
        capsys,
    )
    assert "unknown wrapper 'Nope'" in err


def test_atari_wrapper_matches_sb3s():
    from stable_baselines3.common.atari_wrappers import AtariWrapper as SB3AtariWrapper

    from envs.atari import AtariWrapper

    ours = AtariWrapper(gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.0))
    theirs = SB3AtariWrapper(gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.0))
    a, _ = ours.reset(seed=3)
    b, _ = theirs.reset(seed=3)
    assert a.shape == (84, 84) and np.array_equal(a, b[..., 0])
    rng = np.random.default_rng(0)
    for _ in range(150):
        action = int(rng.integers(4))
        a, ra, ta, ua, _ = ours.step(action)
        b, rb, tb, ub, _ = theirs.step(action)
        assert np.array_equal(a, b[..., 0]) and ra == rb and (ta, ua) == (tb, ub)
        if ta or ua:
            a, _ = ours.reset()
            b, _ = theirs.reset()
            assert np.array_equal(a, b[..., 0])


def test_atari_preset_trains_and_a_new_process_evaluates_it(tmp_path, capsys):
    run = tmp_path / "pong"
    code = main(
        [
            "train",
            "--algo",
            "ppo",
            "--env",
            "ALE/Pong-v5",
            "--steps",
            "128",
            "--n-envs",
            "2",
            "--set",
            "n_steps=64",
            "--set",
            "batch_size=64",
            "--set",
            "n_epochs=1",
            "--eval-freq",
            "0",
            "--env-kwargs",
            "{max_num_frames_per_episode: 240}",
            "--out",
            str(run),
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    spec = json.loads((run / "agent.json").read_text())
    assert spec["env"]["module"] == "ale_py"
    assert spec["env"]["kwargs"] == {"frameskip": 1, "max_num_frames_per_episode": 240}
    assert [w["name"] for w in spec["env"]["wrappers"]] == ["AtariWrapper", "FrameStackObservation"]
    assert spec["policy"]["kwargs"]["features_extractor"] == "nature_cnn"
    assert spec["observation_space"]["shape"] == [4, 84, 84]
    assert spec["obs_stats"] is None  # pixel budgets need no per-pixel statistics
    assert spec["training"]["config"]["hyperparams"]["train_wrapper_kwargs"] == {
        "AtariWrapper": {"terminal_on_life_loss": True, "clip_reward": True}
    }
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "rllab.cli", "eval", str(run), "--episodes", "1", "--n-envs", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "episodes 1 (seed 0)" in out.stdout


def _minatar_spec() -> dict:
    """A PPO spec for MinAtar Breakout with the extractor rllab picks for its frames."""
    env = make_env("MinAtar/Breakout-v1")
    kwargs = {"features_extractor": default_extractor(env.observation_space)}
    spec = spec_skeleton(
        "ppo", "MinAtar/Breakout-v1", {}, [], env.observation_space, env.action_space, "ActorCriticPolicy", kwargs, True
    )
    env.close()
    return spec


def _minatar_agent() -> rllab.Agent:
    th.manual_seed(0)
    return agent_from_spec(_minatar_spec())


def test_minatar_frames_are_read_channels_last_by_a_cnn_sized_for_10x10(tmp_path):
    space = gym.spaces.Box(0.0, 1.0, (10, 10, 4), dtype=bool)
    assert default_extractor(space) == "minatar_cnn"
    th.manual_seed(0)
    cnn = MinAtarCNN(space)
    assert sum(p.numel() for p in cnn.parameters()) == (4 * 9 * 16 + 16) + (16 * 8 * 8 * 128 + 128)
    x = th.as_tensor(np.random.default_rng(0).random((2, 10, 10, 4)) < 0.2)
    out = cnn(x)
    assert out.shape == (2, 128)
    # channels last: the convolution sees channel c of frame pixel (i, j) as x[:, i, j, c]
    conv = th.nn.functional.conv2d(x.float().permute(0, 3, 1, 2), cnn.cnn[0].weight, cnn.cnn[0].bias)
    assert th.allclose(out, cnn.linear(th.relu(conv).flatten(1)))
    agent = _minatar_agent()
    assert agent.layout() == "hwc" and not agent.transpose_image
    obs, _ = agent.make_env().reset(seed=0)
    assert agent.logits(obs[None]).shape == (1, agent.action_space.n)
    loaded = rllab.load(agent.save(tmp_path / "minatar"))  # boolean bounds stored as 0/1, read back as bool
    assert loaded.observation_space == agent.observation_space and loaded.observation_space.dtype == bool
    assert th.equal(loaded.logits(obs[None]), agent.logits(obs[None]))


def test_bounded_observations_get_the_absolute_unit_and_per_unit_default_budgets():
    agent = _minatar_agent()
    unit = ThreatUnit.for_agent(agent)
    assert unit.name == ABSOLUTE == "absolute [0, 1]"
    assert np.allclose(unit.raw(0.1), 0.1) and unit.raw(0.1).shape == (10, 10, 4)
    with pytest.raises(RllabError, match="above 1"):
        unit.check(1.5, "--eps")
    assert default_eps(ABSOLUTE) == "0.1" and default_eps(ABSOLUTE, sweep=True) == "0.05,0.1,0.2"
    assert default_eps(PIXEL) == "2/255" and default_eps(PIXEL, sweep=True) == "1/255,2/255,4/255"
    assert default_eps(STD) == "0.1"
    report = certify(agent, [0.01], episodes=1, seed=0)  # certification names the same unit as attacks
    assert report.unit == ABSOLUTE and report.rows[0]["eps"] == 0.01
    obs = th.as_tensor(agent.make_env().reset(seed=0)[0][None]).float()
    _, lo, hi = action_score_bounds(agent, obs, 0.05)  # IBP through MinAtarCNN's channels-last read is sound
    th.manual_seed(0)
    for _ in range(20):
        scores = agent.logits((obs + (th.rand_like(obs) * 2 - 1) * 0.05).clamp(0, 1))
        assert bool((scores >= lo - 1e-5).all() and (scores <= hi + 1e-5).all())


def test_threads_option_on_every_command_and_its_default(tmp_path, monkeypatch):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert all("--threads" in c._option_string_actions for c in commands.values())
    before = th.get_num_threads()
    try:
        assert apply_threads(parser.parse_args(["eval", "somewhere", "--threads", "3"])) == 3
        assert th.get_num_threads() == 3
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert apply_threads(parser.parse_args(["eval", "somewhere"])) == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert apply_threads(parser.parse_args(["eval", str(tmp_path)])) == 1  # no checkpoint: 1
        big = max(1, min(len(os.sched_getaffinity(0)) // 2, 4))
        (tmp_path / "agent.json").write_text(json.dumps({"policy": {"kwargs": {"features_extractor": "nature_cnn"}}}))
        assert default_threads(parser.parse_args(["eval", str(tmp_path)])) == big
        assert default_threads(parser.parse_args(["train", "--algo", "ppo", "--env", "ALE/Pong-v5"])) == big
        assert default_threads(parser.parse_args(["train", "--algo", "ppo", "--env", "CartPole-v1"])) == 1
    finally:
        th.set_num_threads(before)


def _image_agent(shape: tuple[int, ...]) -> rllab.Agent:
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    spec = spec_skeleton(
        "ppo",
        "ALE/Pong-v5",
        {},
        [],
        space,
        gym.spaces.Discrete(6),
        "ActorCriticPolicy",
        {"features_extractor": "nature_cnn" if min(shape[1:]) >= 36 else "small_cnn"},
        has_critic=True,
    )
    th.manual_seed(0)
    return agent_from_spec(spec)


def test_explain_defaults_for_big_frames_and_the_cap_on_image_files(tmp_path):
    from explain.commands import default_every, default_methods
    from explain.tensorboard import ExplanationWriter

    big, small = _image_agent((4, 84, 84)), _image_agent((1, 10, 5))
    assert default_every(big) == 10 and default_every(small) == 1
    assert default_methods(big) == (
        "saliency,occlusion(window=[4,8,8],stride=[4,8,8],batch_size=8,perturbations_per_eval=16),greydanus"
    )
    from explain.report import build_methods

    occlusion = build_methods(big, default_methods(big))[1]  # the default string builds
    assert (occlusion.window, occlusion.perturbations_per_eval) == ((4, 8, 8), 16)
    assert default_methods(small) == "saliency,occlusion,greydanus"
    w = ExplanationWriter(tmp_path / "tb", tmp_path / "png", max_files=3)
    img = np.zeros((4, 4, 3), np.uint8)
    for t in range(5):
        w.image("saliency/ep0/overlay", img, step=t)
    w.image("saliency/ep0/grid", img)
    w.animation("saliency/ep0/animation", [img, img])
    w.close()
    files = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert (w.files_written, w.files_skipped) == (3, 2)
    assert len([f for f in files if "overlay" in f]) == 3 and "saliency__ep0__grid__t0000.png" in files
    assert "saliency__ep0__animation.gif" in files


def test_a_checkpoints_env_module_is_validated(tmp_path):
    from tests.test_checkpoint_safety import tiny_agent

    path = tiny_agent().save(tmp_path / "ckpt")
    spec = json.loads((path / "agent.json").read_text())
    assert "module" not in spec["env"]  # Gymnasium's own ids need no module
    spec["env"]["module"] = "os; rm -rf"
    (path / "agent.json").write_text(json.dumps(spec))
    with pytest.raises(RllabError, match="env.module"):
        rllab.load(path)
