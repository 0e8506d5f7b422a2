"""User-facing errors and output of rllab's own commands: one line, exit 2, nothing half-written left."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import rllab
from rllab.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _fails(argv: list[str], capsys) -> str:
    """Run the CLI; it must exit 2 with one error line (no traceback). Returns that line."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


TINY = ["--steps", "64", "--n-envs", "1", "--eval-freq", "0", "--save-freq", "0", "--no-progress"]


# ------------------------------------------------ 1: train --eps syntax, budget check, no half-made folder
def test_train_eps_in_pixels_above_one_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    err = _fails(
        ["train", "--algo", "ppo", "--env", "Catch-v0", "--defense", "sa-reg", "--eps", "4", *TINY, "--out", str(out)],
        capsys,
    )
    assert "4/255" in err
    assert not out.exists()


def test_train_eps_takes_fractions_like_attack():
    from rllab.parsing import budget

    assert budget("4/255") == pytest.approx(4 / 255)
    assert budget("0.5") == 0.5
    with pytest.raises(Exception, match="number"):
        budget("abc")


def test_a_failure_during_training_removes_the_run_folder_it_created(tmp_path, monkeypatch):
    import rllab.training as training

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


# ------------------------------------------------ 3: bad hyperparameter values
@pytest.mark.parametrize("setting", ["n_steps=abc", "gamma=abc", "batch_size=-5"])
def test_bad_hyperparameter_values_are_one_line_and_leave_no_folder(setting, tmp_path, capsys):
    out = tmp_path / "run"
    err = _fails(["train", "--algo", "ppo", "--env", "CartPole-v1", "--set", setting, *TINY, "--out", str(out)], capsys)
    assert "bad hyperparameters for ppo" in err and setting.split("=")[0] in err
    assert not out.exists()


# ------------------------------------------------ 4: negative seeds
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


# ------------------------------------------------ 5: nature_cnn on small frames
def test_nature_cnn_on_small_frames_names_the_frame_and_small_cnn(tmp_path, capsys):
    out = tmp_path / "run"
    err = _fails(
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


# ------------------------------------------------ 7: no confidence interval from one episode
def test_one_episode_has_no_confidence_interval(cartpole_ppo_path, tmp_path, capsys):
    from rllab.evaluation import confidence_interval

    assert confidence_interval(np.array([3.0])) is None
    assert confidence_interval(np.array([1.0, 3.0])) == pytest.approx([2 - 12.706 * 1, 2 + 12.706 * 1], rel=1e-3)
    out = tmp_path / "one.json"
    assert main(["eval", str(cartpole_ppo_path), "--episodes", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "95% CI n/a" in printed and "seeds 0..0" not in printed
    assert json.loads(out.read_text())["ci95_return"] is None


def test_train_summary_says_std_not_plus_minus(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--algo", "ppo", "--env", "CartPole-v1", *TINY, "--set", "n_steps=32", "--set", "batch_size=32"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "+/-" not in printed and "(std " in printed and "95% CI [" in printed


# ------------------------------------------------ 11: --eps without --defense
def test_defense_settings_without_a_defense_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    err = _fails(["train", "--algo", "ppo", "--env", "CartPole-v1", "--eps", "0.5", *TINY, "--out", str(out)], capsys)
    assert "--eps" in err and "--defense" in err
    assert not out.exists()


def test_default_eps_is_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "default 0.1" in " ".join(capsys.readouterr().out.split())


# ------------------------------------------------ 2: defend's numbers
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
    err = _fails(["defend", str(catch_ppo_path), *argv, "--out", str(out), "--episodes", "2"], capsys)
    assert expected in err
    assert not out.exists()


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


@pytest.mark.parametrize("command", ["distill", "prune", "quantize", "adapt", "defend", "import-sb3", "lab"])
def test_every_command_refuses_a_negative_seed(command, cartpole_ppo_path, tmp_path, capsys):
    extra = {"import-sb3": ["--env", "CartPole-v1"], "lab": []}.get(command, [])
    target = [] if command == "lab" else [str(cartpole_ppo_path)]
    with pytest.raises(SystemExit) as exc:
        main([command, *target, *extra, "--seed", "-1", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "--seed: must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_evaluation_refuses_a_negative_seed(cartpole_ppo):
    from rllab.evaluation import run_episodes

    with pytest.raises(rllab.RllabError, match="seeds must be >= 0"):
        run_episodes(cartpole_ppo, 1, seed=-1)


# ------------------------------------------------ 6: output files that cannot be written
@pytest.mark.parametrize("option", ["--json", "--video"])
def test_eval_outputs_that_cannot_be_written_are_one_line(option, cartpole_ppo_path, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    name = "x.json" if option == "--json" else "x.gif"
    for target in (tmp_path / "afile" / name, tmp_path / "adir", Path("/proc") / name):
        err = _fails(["eval", str(cartpole_ppo_path), "--episodes", "1", option, str(target)], capsys)
        assert err.startswith("rllab eval: error: cannot write ") and str(target) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"] and not any((tmp_path / "adir").iterdir())


def test_eval_json_leaves_no_temporary_file_beside_it(cartpole_ppo_path, tmp_path, capsys):
    out = tmp_path / "walk"
    assert main(["eval", str(cartpole_ppo_path), "--episodes", "1", "--json", str(out)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["walk"]


def test_a_checkpoint_that_cannot_be_written_is_one_line(cartpole_ppo_path, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    err = _fails(
        [
            "defend",
            str(cartpole_ppo_path),
            "--filter",
            "gaussian_noise:sigma=0.1",
            "--out",
            str(tmp_path / "afile" / "d"),
            "--episodes",
            "1",
        ],
        capsys,
    )
    assert "cannot write" in err
    err = _fails(["quantize", str(cartpole_ppo_path), "--out", "/proc/q", "--episodes", "1"], capsys)
    assert "cannot write" in err


# ------------------------------------------------ 9: written files get the normal mode, not mkstemp's 0600
def test_written_files_get_the_normal_mode(cartpole_ppo, tmp_path, monkeypatch):
    import rllab.checkpoint
    from rllab.checkpoint import file_mode, write_json

    monkeypatch.setattr(rllab.checkpoint, "_UMASK", 0o022)  # the process umask, read once at import
    cartpole_ppo.save(tmp_path / "ckpt")
    write_json(tmp_path / "x.json", {"a": 1})
    for f in (tmp_path / "ckpt" / "weights.safetensors", tmp_path / "ckpt" / "agent.json", tmp_path / "x.json"):
        assert f.stat().st_mode & 0o777 == 0o644, f
    monkeypatch.setattr(rllab.checkpoint, "_UMASK", 0o027)
    assert file_mode() == 0o640


# ------------------------------------------------ 12: no progress bars into a redirected stderr
def test_transforms_draw_no_progress_bar_off_a_terminal(cartpole_ppo_path, tmp_path, capsys):
    argv = ["prune", str(cartpole_ppo_path), "--sparsity", "0.5", "--steps", "200", "--epochs", "1"]
    assert main([*argv, "--episodes", "2", "--out", str(tmp_path / "p")]) == 0
    captured = capsys.readouterr()
    assert "prune:" not in captured.err and "round/s" not in captured.err and "\r" not in captured.err
    assert "2 episodes" in captured.out


# ------------------------------------------------ 13/14: compress summaries show the parent; lineage of ensembles
def test_quantize_prints_the_parents_figures_beside_the_new_ones(cartpole_ppo_path, tmp_path, capsys):
    out = tmp_path / "q"
    assert main(["quantize", str(cartpole_ppo_path), "--episodes", "1", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    new = next(ln for ln in lines if ln.strip().startswith("new "))
    parent = next(ln for ln in lines if ln.strip().startswith("parent "))
    for line in (new, parent):
        assert "params" in line and "KiB" in line and "latency" in line and "over 1 episode" in line
        assert "1 episodes" not in line
    spec = json.loads((out / "agent.json").read_text())
    assert spec["compression"]["parent"]["mean_return"] == pytest.approx(500.0)
    assert spec["compression"]["parent"]["episodes"] == 1 and spec["compression"]["parent"]["eval_seed"] == 0
    step = spec["lineage"][-1]
    assert step["parent"] == str(cartpole_ppo_path)
    assert step["parent_resolved"] == str(Path(cartpole_ppo_path).resolve())


def test_ensemble_distillation_records_every_teacher(cartpole_ppo_path, tmp_path, capsys):
    import shutil

    second = tmp_path / "second"
    shutil.copytree(cartpole_ppo_path, second)
    out = tmp_path / "student"
    argv = ["distill", str(cartpole_ppo_path), str(second), "--steps", "200", "--rounds", "1", "--epochs", "1"]
    assert main([*argv, "--episodes", "1", "--out", str(out)]) == 0
    step = json.loads((out / "agent.json").read_text())["lineage"][-1]
    sha = json.loads((Path(cartpole_ppo_path) / "agent.json").read_text())["weights"]["sha256"]
    assert [t["path"] for t in step["teachers"]] == [str(cartpole_ppo_path), str(second)]
    assert [t["resolved"] for t in step["teachers"]] == [str(Path(cartpole_ppo_path).resolve()), str(second.resolve())]
    assert [t["sha256"] for t in step["teachers"]] == [sha, sha]
