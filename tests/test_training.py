"""Training: short runs of every algorithm, the train command's options and one-line refusals, resuming, summaries."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import rllab
from rllab.checkpoint import SPEC_FILE
from rllab.cli import main
from tests.helpers import fails_in_one_line


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
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # also when pytest runs as a background job
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


@pytest.mark.usefixtures("one_thread")
def test_resume_continues_from_the_last_good_checkpoint_when_killed_mid_save(tmp_path):
    import json

    run = tmp_path / "run"
    small = {"n_steps": 32, "batch_size": 32, "n_epochs": 1}
    rllab.train(
        "ppo",
        "CartPole-v1",
        steps=64,
        n_envs=2,
        overrides=small,
        out=run,
        eval_freq=0,
        save_freq=0,
        final_eval_episodes=1,
        progress=False,
    )
    spec = json.loads((run / SPEC_FILE).read_text())
    done = spec["training"]["timesteps"]
    spec["training"]["complete"] = False  # as if killed mid-run (agent.json is not covered by the weights' hash)
    (run / SPEC_FILE).write_text(json.dumps(spec))
    # consistent: resumes (nothing left to train)
    agent = rllab.train("ppo", "CartPole-v1", out=run, resume=True, steps=done, final_eval_episodes=1, progress=False)
    assert agent.spec["training"]["resumed_from"] == done
    # killed between writing the next step's resume state and its checkpoint: resumes from the last good one
    spec["training"]["complete"] = False
    (run / SPEC_FILE).write_text(json.dumps(spec))
    resume = run / "resume"
    state = json.loads((resume / f"state.{done}.json").read_text())
    (resume / f"state.{done + 64}.json").write_text(json.dumps({**state, "num_timesteps": done + 64}))
    (resume / f"optimizer.{done + 64}.safetensors").write_bytes(b"half-writ")
    agent = rllab.train("ppo", "CartPole-v1", out=run, resume=True, steps=done, final_eval_episodes=1, progress=False)
    assert agent.spec["training"]["resumed_from"] == done
    assert sorted(p.name for p in resume.iterdir()) == [f"optimizer.{done}.safetensors", f"state.{done}.json"]
    # a resume state whose counter disagrees with the file it is in is refused in one line
    spec["training"]["complete"] = False
    (run / SPEC_FILE).write_text(json.dumps(spec))
    (resume / f"state.{done}.json").write_text(json.dumps({**state, "num_timesteps": done + 64}))
    with pytest.raises(
        rllab.RllabError, match=f"checkpoint is at step {done} but the resume state at step {done + 64}"
    ):
        rllab.train("ppo", "CartPole-v1", out=run, resume=True, steps=done + 64, final_eval_episodes=1, progress=False)


# ------------------------------------- train's options: refused in one line before anything is written
TINY = ["--steps", "64", "--n-envs", "1", "--eval-freq", "0", "--save-freq", "0", "--no-progress"]


@pytest.mark.usefixtures("one_thread")
def test_train_eps_in_pixels_above_one_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    err = fails_in_one_line(
        ["train", "--algo", "ppo", "--env", "Catch-v0", "--defense", "sa-reg", "--eps", "4", *TINY, "--out", str(out)],
        capsys,
    )
    assert "4/255" in err
    assert not out.exists()


@pytest.mark.usefixtures("one_thread")
def test_train_eps_takes_fractions_like_attack():
    from rllab.parsing import budget

    assert budget("4/255") == pytest.approx(4 / 255)
    assert budget("0.5") == 0.5
    with pytest.raises(Exception, match="number"):
        budget("abc")


@pytest.mark.usefixtures("one_thread")
def test_defense_settings_without_a_defense_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    err = fails_in_one_line(
        ["train", "--algo", "ppo", "--env", "CartPole-v1", "--eps", "0.5", *TINY, "--out", str(out)], capsys
    )
    assert "--eps" in err and "--defense" in err
    assert not out.exists()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("setting", ["n_steps=abc", "gamma=abc", "batch_size=-5"])
def test_bad_hyperparameter_values_are_one_line_and_leave_no_folder(setting, tmp_path, capsys):
    out = tmp_path / "run"
    err = fails_in_one_line(
        ["train", "--algo", "ppo", "--env", "CartPole-v1", "--set", setting, *TINY, "--out", str(out)], capsys
    )
    assert "bad hyperparameters for ppo" in err and setting.split("=")[0] in err
    assert not out.exists()


@pytest.mark.usefixtures("one_thread")
def test_nature_cnn_on_small_frames_names_the_frame_and_small_cnn(tmp_path, capsys):
    out = tmp_path / "run"
    err = fails_in_one_line(
        [
            "train",
            "--algo",
            "ppo",
            "--env",
            "Catch-v0",
            "--set",
            "policy_kwargs={features_extractor: nature_cnn}",
            *TINY,
            "--out",
            str(out),
        ],
        capsys,
    )
    assert "10x5" in err and "small_cnn" in err
    assert not out.exists()


@pytest.mark.usefixtures("one_thread")
def test_a_failure_during_training_removes_the_run_folder_it_created(tmp_path, monkeypatch):
    import rllab.training.finish as training

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(training, "observation_stats", boom)  # fails after learn(), before the checkpoint
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        rllab.train(
            "ppo",
            "CartPole-v1",
            steps=64,
            n_envs=1,
            eval_freq=0,
            save_freq=0,
            progress=False,
            out=out,
            overrides=["n_steps=32", "batch_size=32", "n_epochs=1"],
        )
    assert not out.exists()


@pytest.mark.usefixtures("one_thread")
def test_train_summary_says_std_not_plus_minus(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--algo", "ppo", "--env", "CartPole-v1", *TINY, "--set", "n_steps=32", "--set", "batch_size=32"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "+/-" not in printed and "(std " in printed and "95% CI [" in printed
