import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

import rllab
from rllab.cli import main


@pytest.mark.parametrize(
    "algo,env_id",
    [
        ("reinforce", "CartPole-v1"),
        ("a2c", "CartPole-v1"),
        ("ppo", "Catch-v0"),
        ("dqn", "Catch-v0"),
        ("reinforce", "Pendulum-v1"),
        ("ppo", "Pendulum-v1"),
    ],
)
def test_short_training_smoke(tmp_path, algo, env_id):
    overrides = {"learning_starts": 100} if algo == "dqn" else None
    agent = rllab.train(
        algo,
        env_id,
        seed=0,
        steps=1024,
        out=tmp_path / "run",
        progress=False,
        overrides=overrides,
        final_eval_episodes=3,
    )
    spec = agent.spec
    assert spec["training"]["complete"] and spec["training"]["timesteps"] >= 1024
    assert spec["training"]["final_eval"]["episodes"] == 3
    assert (tmp_path / "run" / "tb" / "train").is_dir() and any((tmp_path / "run" / "tb" / "train").iterdir())
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["episodes"] == 3
    rllab.load(tmp_path / "run")


def test_reinforce_learns_cartpole_quickly(tmp_path):
    # 40k steps is far from the 500 ceiling, but must beat a random policy (~22) clearly
    agent = rllab.train("reinforce", "CartPole-v1", seed=0, steps=40_000, out=tmp_path / "r", progress=False)
    assert rllab.evaluate(agent, episodes=10, seed=0).summary()["mean_return"] > 100


def test_reinforce_without_baseline_has_no_critic(tmp_path):
    agent = rllab.train(
        "reinforce",
        "CartPole-v1",
        seed=0,
        steps=1024,
        out=tmp_path / "r",
        progress=False,
        overrides={"use_baseline": False},
        final_eval_episodes=2,
    )
    assert not agent.has_critic
    assert torch.all(agent.policy.value_net.weight == 0)
    with pytest.raises(rllab.RllabError):
        agent.value(np.zeros((1, 4), dtype=np.float32))


def test_same_seed_gives_identical_results(tmp_path):
    a = rllab.train("ppo", "CartPole-v1", seed=3, steps=2048, out=tmp_path / "a", progress=False, final_eval_episodes=5)
    b = rllab.train("ppo", "CartPole-v1", seed=3, steps=2048, out=tmp_path / "b", progress=False, final_eval_episodes=5)
    assert a.spec["training"]["final_eval"] == b.spec["training"]["final_eval"]
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    ra = rllab.evaluate(rllab.load(tmp_path / "a"), episodes=5, seed=7).returns
    rb = rllab.evaluate(rllab.load(tmp_path / "b"), episodes=5, seed=7).returns
    assert ra == rb


def test_hyperparams_file_and_set_override(tmp_path):
    hp = tmp_path / "hp.yml"
    hp.write_text("CartPole-v1:\n  n_steps: 16\n  policy_kwargs: {net_arch: [8, 8]}\n")
    agent = rllab.train(
        "ppo",
        "CartPole-v1",
        seed=0,
        steps=512,
        out=tmp_path / "r",
        progress=False,
        hyperparams=hp,
        overrides=["gamma=0.9", "batch_size=64"],
        final_eval_episodes=2,
    )
    used = agent.spec["training"]["config"]["hyperparams"]
    assert used["n_steps"] == 16 and used["gamma"] == 0.9 and used["batch_size"] == 64
    assert agent.policy.mlp_extractor.policy_net[0].out_features == 8


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


def test_trained_catch_agent_catches(catch_ppo):
    s = rllab.evaluate(catch_ppo, episodes=50, seed=0).summary()
    assert s["mean_return"] >= 0.9


def test_trained_cartpole_agent_balances(cartpole_ppo):
    s = rllab.evaluate(cartpole_ppo, episodes=20, seed=0).summary()
    assert s["mean_return"] >= 475


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--algo", "ppo", "--env", "NoSuchEnv-v0"], "unknown environment id 'NoSuchEnv-v0'"),
        (["train", "--algo", "dqn", "--env", "Pendulum-v1", "--steps", "100"], "dqn needs a discrete action space"),
        (["eval", "/nonexistent/run"], "no checkpoint at /nonexistent/run"),
        (["train", "--algo", "ppo", "--env", "CartPole-v1", "--device", "tpu"], "unknown device"),
        (["train", "--algo", "ppo", "--env", "CartPole-v1", "--hyperparams", "/no/such.yml"], "not found"),
        (["train", "--algo", "ppo", "--env", "CartPole-v1", "--set", "gamma"], "--set expects key=value"),
        (["train", "--algo", "ppo", "--env", "Catch-v0", "--env-kwargs", "[1]"], "--env-kwargs must be a YAML/JSON"),
        (["eval", "/nonexistent/run", "--wrappers", "{a: 1}"], "--wrappers must be a YAML/JSON list"),
        (["train", "--algo", "ppo", "--env", "CartPole-v1", "--set", "n_epoch=3"], "hyperparameter(s) n_epoch;"),
        (["train", "--algo", "dqn", "--env", "CartPole-v1", "--set", "seed=3"], "unknown dqn hyperparameter(s) seed"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code = main([*argv, *(["--out", str(tmp_path / "x")] if argv[0] == "train" else [])])
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x" / "agent.json").exists()
    if "unknown environment" in message or "env-kwargs" in message:
        assert captured.out == ""  # no "training ... ->" line for a run that never starts


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--algo", "ppo", "--env", "CartPole-v1", "--steps", "0"],
        ["train", "--algo", "ppo", "--env", "CartPole-v1", "--steps", "-5"],
        ["train", "--algo", "sac", "--env", "CartPole-v1"],
    ],
)
def test_bad_arguments_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    rllab.train("ppo", "CartPole-v1", seed=0, steps=256, out=tmp_path / "r", progress=False, final_eval_episodes=1)
    assert main(["train", "--algo", "ppo", "--env", "CartPole-v1", "--out", str(tmp_path / "r")]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_interrupted_training_resumes_from_its_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "rllab.cli",
        "train",
        "--algo",
        "ppo",
        "--env",
        "CartPole-v1",
        "--steps",
        "200000",
        "--save-freq",
        "2048",
        "--out",
        str(run),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    deadline = time.time() + 120
    while not (run / "agent.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert (run / "agent.json").exists()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "interrupted at step" in err and "--resume" in err
    saved = rllab.load(run)
    done = saved.spec["training"]["timesteps"]
    assert not saved.spec["training"]["complete"] and 0 < done < 200_000
    agent = rllab.train(
        "ppo", "CartPole-v1", out=run, resume=True, steps=done + 4096, progress=False, final_eval_episodes=2
    )
    assert agent.spec["training"]["complete"]
    assert agent.spec["training"]["resumed_from"] == done
    assert agent.spec["training"]["timesteps"] >= done + 4096
    assert agent.spec["training"]["config"]["seed"] == 0
    # the interrupted run trained on 1 thread (OMP_NUM_THREADS=1): the resumed part does too
    assert saved.spec["training"]["config"]["torch_threads"] == 1
    assert agent.spec["training"]["config"]["torch_threads"] == 1


def test_training_thread_count_is_pinned_recorded_and_restored(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    seen = []
    original = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), original(n))[1])
    agent = rllab.train("ppo", "CartPole-v1", steps=256, out=tmp_path / "a", progress=False, threads=3)
    assert seen == [3, before]  # set for training, then given back
    assert torch.get_num_threads() == before
    assert agent.spec["training"]["config"]["torch_threads"] == 3
    with pytest.raises(rllab.RllabError, match="--threads must be positive"):
        rllab.train("ppo", "CartPole-v1", steps=256, out=tmp_path / "b", progress=False, threads=0)
    assert not (tmp_path / "b").exists()


def test_a_finished_run_trains_further_when_resumed_with_more_steps(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--algo", "ppo", "--env", "CartPole-v1", "--out", str(run), "--threads", "1", "--no-progress"]
    assert main([*argv, "--steps", "1024"]) == 0
    first = rllab.load(run).spec
    assert first["training"]["complete"] and first["training"]["timesteps"] >= 1024
    capsys.readouterr()
    # nothing to add: one line saying how to train further
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "finished training already" in err and "--steps N above" in err and err.count("\n") == 1
    assert main([*argv, "--resume", "--steps", "2048"]) == 0
    more = rllab.load(run).spec["training"]
    assert more["complete"] and more["timesteps"] >= 2048 and more["resumed_from"] == first["training"]["timesteps"]
    assert more["config"]["steps"] == 2048 and more["config"]["seed"] == 0
    assert rllab.load(run).spec["weights"]["sha256"] != first["weights"]["sha256"]  # it trained
