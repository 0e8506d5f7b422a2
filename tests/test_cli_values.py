"""The command line's typed values and output checks: numbers out of range, output folders, negative seeds in every
command, defaults in the help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import rllab
from rllab.cli import main

TRAIN = ["train", "--algo", "ppo", "--env", "CartPole-v1"]


def _usage_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "argv,expected",
    [
        ([*TRAIN, "--steps", "inf"], "--steps: must be finite"),
        ([*TRAIN, "--steps", "1e30"], "--steps: must be <="),
        ([*TRAIN, "--steps", "nan"], "--steps: must be finite"),
        ([*TRAIN, "--eval-freq", "-1"], "--eval-freq: must be >= 0"),
        ([*TRAIN, "--defense-ramp", "2"], "--defense-ramp: must be <= 1"),
        (["eval", "run", "--episodes", "inf"], "--episodes: must be finite"),
        (["eval", "run", "--episodes", "1e7"], "--episodes: must be <="),
        (["lab", "--attack-episodes", "0"], "--attack-episodes: must be >= 1"),
        (["sweep", "--algo", "ppo", "--env", "CartPole-v1", "--steps", "inf"], "--steps: must be finite"),
        (["sweep", "--algo", "ppo", "--env", "CartPole-v1", "--jobs", "1e9"], "--jobs: must be <="),
        ([*TRAIN, "--threads", "1e9"], "--threads: must be <="),
        ([*TRAIN, "--defense", "atla", "--defense-adv-every", "0"], "--defense-adv-every: must be >= 1"),
        (["attack", "run", "--adv-seeds", "0"], "--adv-seeds: must be >= 1"),
        (["attack", "run", "--adv-steps", "-5"], "--adv-steps: must be >= 1"),
    ],
)
def test_numbers_out_of_range_are_one_line(argv, expected, capsys):
    line = _usage_error(argv, capsys)
    assert expected in line and line.startswith("rllab ")


def test_output_folders_are_checked_before_any_work(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    for argv, message in [
        ([*TRAIN, "--steps", "64", "--out", str(afile)], "it is a file"),
        ([*TRAIN, "--steps", "64", "--out", str(afile / "sub")], f"{afile} is a file"),
        (["lab", "--out", str(afile), "--no-attack"], "it is a file"),
        (["sweep", "--algo", "ppo", "--env", "CartPole-v1", "--seeds", "0", "--out", str(afile)], "it is a file"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, argv
    assert afile.read_text() == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_output_under_a_read_only_folder_is_one_line(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main([*TRAIN, "--steps", "64", "--out", str(ro / "run")]) == 2
        assert "is not writable" in capsys.readouterr().err
    finally:
        ro.chmod(0o755)


def test_python_m_rllab_cli_runs_the_command_line():
    proc = subprocess.run([sys.executable, "-m", "rllab.cli", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "sweep" in proc.stdout


def test_an_unwritable_output_folder_is_one_line_even_as_root(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    assert main([*TRAIN, "--steps", "64", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} is not writable" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


# -------------------------------------------------------------------- negative seeds, in every command
@pytest.mark.usefixtures("one_thread")
def test_negative_seeds_are_refused(tmp_path, cartpole_ppo_path, capsys):
    for argv in (
        ["train", "--algo", "ppo", "--env", "CartPole-v1", "--seed", "-1", "--out", str(tmp_path / "r")],
        ["eval", str(cartpole_ppo_path), "--seed", "-1"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "--seed: must be >= 0" in err and "Traceback" not in err
    with pytest.raises(rllab.RllabError, match="seed"):
        rllab.train("ppo", "CartPole-v1", seed=-1, out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("command", ["distill", "prune", "quantize", "adapt", "defend", "import-sb3", "lab"])
def test_every_command_refuses_a_negative_seed(command, cartpole_ppo_path, tmp_path, capsys):
    extra = {"import-sb3": ["--env", "CartPole-v1"], "lab": []}.get(command, [])
    target = [] if command == "lab" else [str(cartpole_ppo_path)]
    with pytest.raises(SystemExit) as exc:
        main([command, *target, *extra, "--seed", "-1", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "--seed: must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.usefixtures("one_thread")
def test_evaluation_refuses_a_negative_seed(cartpole_ppo):
    from rllab.evaluation import run_episodes

    with pytest.raises(rllab.RllabError, match="seeds must be >= 0"):
        run_episodes(cartpole_ppo, 1, seed=-1)


# -------------------------------------------------------------------------------- defaults in the help
@pytest.mark.usefixtures("one_thread")
def test_default_eps_is_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "default 0.1" in " ".join(capsys.readouterr().out.split())
