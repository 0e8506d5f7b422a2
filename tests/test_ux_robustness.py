"""Regression tests for user-facing fixes in robustness/ and explain/ (one or a few per fix)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rllab import load as rllab_load
from rllab.errors import RllabError
from robustness.threat import ThreatModel


def _row(mean, lo=None, hi=None, n=10):
    ci = None if lo is None else [lo, hi]
    return {"mean_return": mean, "ci95_return": ci, "std_return": 1.0, "episodes": n}


def _card(results, attacks=None, unit="obs std", eps=(0.1,), env="CartPole-v1"):
    attacks = attacks or {
        "noise": {"attack": "noise", "kind": "random"},
        "pgd-10:action": {"attack": "pgd", "kind": "white-box", "objective": "action", "steps": 10},
    }
    return {
        "agent": {"algo": "ppo", "env": env, "lineage": [], "defenses": []},
        "threat_model": {"eps": list(eps), "unit": unit, "norm": "linf", "per_eps": []},
        "episodes": 10,
        "seed": 0,
        "attacks": attacks,
        "clean": _row(500.0, 490.0, 510.0),
        "results": results,
    }


def test_worst_case_and_strongest_attack_include_uniform_noise():
    from robustness.report import _table, leaderboard, render_markdown, sanity_flags

    card = _card({"noise": {"0.1": _row(100.0, 90, 110)}, "pgd-10:action": {"0.1": _row(300.0, 290, 310)}})
    board = leaderboard({"a": card})
    entry = board["by_eps"]["0.1"][0]
    assert entry["worst_case"] == 100.0 and entry["worst_attack"] == "noise"
    _, rows, bold = _table(card)
    assert [r[0] for r in rows] == ["clean", "noise", "pgd-10:action"]
    assert bold == {(1, 3)}  # the noise row is highlighted at eps 0.1
    card["flags"] = sanity_flags(card)
    assert any("random noise (100) beats every gradient attack" in f for f in card["flags"])
    assert "**100 [90, 110]" in render_markdown(card)


def test_rows_without_a_confidence_interval_are_shown_as_na_and_skip_ci_comparisons(cartpole_ppo):
    from robustness.evaluate import evaluate
    from robustness.report import _table, leaderboard, render_html, render_markdown, sanity_flags

    one = evaluate(cartpole_ppo, attacks=["noise"], eps=[0.1], episodes=1, n_envs=1, progress=False)
    assert one["clean"]["ci95_return"] is None and one["results"]["noise"]["0.1"]["ci95_return"] is None
    attacks = {
        "noise": {"attack": "noise", "kind": "random"},
        "fgsm:action": {"attack": "fgsm", "kind": "white-box", "objective": "action", "steps": 1},
        "pgd-10:action": {"attack": "pgd", "kind": "white-box", "objective": "action", "steps": 10},
    }
    results = {
        "noise": {"0.1": _row(480.0), "0.2": _row(470.0)},
        "fgsm:action": {"0.1": _row(100.0), "0.2": _row(90.0)},
        "pgd-10:action": {"0.1": _row(50.0), "0.2": _row(400.0)},  # a rise, but no interval to judge it by
    }
    card = _card(results, attacks=attacks, eps=(0.1, 0.2))
    card["clean"] = _row(500.0)
    card["flags"] = flags = sanity_flags(card)
    assert not [f for f in flags if "rises" in f or "higher return" in f]
    _, rows, _ = _table(card)
    assert rows[3][3] == "50 [n/a]"
    assert "n/a" in render_markdown(card) and "n/a" in render_html(card)
    assert leaderboard({"a": card})["by_eps"]["0.1"][0]["worst_case"] == 50.0


def test_the_clean_row_shows_its_95_ci_like_every_other_row():
    from robustness.report import _table, render_markdown

    card = _card({"noise": {"0.1": _row(480.0, 470, 490)}, "pgd-10:action": {"0.1": _row(300.0, 290, 310)}})
    card["clean"] = {"mean_return": 470.0, "std_return": 2.6, "ci95_return": [468.5, 471.5]}
    _, rows, _ = _table(card)
    assert rows[0][3] == "470 [468, 472]"
    md = render_markdown({**card, "flags": []})
    assert "±" not in md and "| clean | - | - | 470 [468, 472] |" in md


def test_plot_ticks_and_certify_print_pixel_budgets_as_k_over_255(catch_ppo_path, capsys):
    from rllab.cli import main
    from robustness.report import _svg_plot

    card = _card(
        {"noise": {k: _row(5.0, 4, 6) for k in ("0.00392157", "0.0156863")}},
        attacks={"noise": {"attack": "noise", "kind": "random"}},
        unit="pixel/255",
        eps=(1 / 255, 4 / 255),
        env="Catch-v0",
    )
    svg = _svg_plot(card)
    assert ">1/255</text>" in svg and ">4/255</text>" in svg and "0.00392" not in svg
    assert main(["certify", str(catch_ppo_path), "--eps", "1/255", "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert "eps 1/255: certified" in out and "0.003922" not in out


def test_atomically_written_files_get_the_umask_mode_not_0600(tmp_path, monkeypatch):
    import rllab.checkpoint
    from robustness.report import write_atomic

    # the process umask is read once at import (reading it means setting it: racy in threads)
    monkeypatch.setattr(rllab.checkpoint, "_UMASK", 0o022)
    write_atomic(tmp_path / "a" / "results.json", "{}\n")
    monkeypatch.setattr(rllab.checkpoint, "_UMASK", 0o027)
    write_atomic(tmp_path / "a" / "report.md", "x\n")
    assert (tmp_path / "a" / "results.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a" / "report.md").stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["report.md", "results.json"]


def test_evaluate_returns_the_sanity_flags_like_the_cli_card(cartpole_ppo, tmp_path, monkeypatch):
    import json

    import robustness.report
    from rllab.cli import main
    from robustness.evaluate import evaluate

    seen = []  # the flags of the card they were computed on, so an empty list cannot pass by accident
    monkeypatch.setattr(robustness.report, "sanity_flags", lambda c: seen.append(c) or [f"flag {len(seen)}"])
    card = evaluate(cartpole_ppo, attacks=["fgsm"], eps=[0.05], episodes=2, n_envs=2, progress=False)
    assert card["flags"] == ["flag 1"] and seen[0] is card
    out = tmp_path / "att"
    argv = ["attack", str(cartpole_ppo.path), "--attack", "fgsm", "--eps", "0.05", "--episodes", "2"]
    assert main([*argv, "--n-envs", "2", "--out", str(out), "--no-progress"]) == 0
    cli = json.loads((out / "results.json").read_text())
    assert cli["flags"] and set(cli) - {"agent"} == set(card) - {"agent"}


def test_progress_bars_are_drawn_on_a_terminal_only(cartpole_ppo, capsys, monkeypatch):
    import sys

    from robustness.evaluate import _progress, evaluate

    evaluate(cartpole_ppo, attacks=["noise"], eps=[0.05], episodes=1, n_envs=1, progress=True)
    assert capsys.readouterr().err == ""  # pytest's captured stderr is not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    shown, hidden = _progress(3, True), _progress(3, False)
    drawn = [not shown.disable, not hidden.disable]
    shown.close(), hidden.close()
    assert drawn == [True, False]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--alpha", "2"], "0 < alpha < 1, got 2"),
        (["--alpha", "0"], "0 < alpha < 1, got 0"),
        (["--samples", "0"], "--samples must be >= 1, got 0"),
        (["--sigma", "0"], "--sigma must be > 0, got 0"),
        (["--sigma", "-1"], "--sigma must be > 0, got -1"),
    ],
)
def test_certify_smoothing_refuses_bad_settings_in_one_line(cartpole_ppo_path, tmp_path, capsys, extra, message):
    from rllab.cli import main
    from robustness.certify import certify_smoothing

    out = tmp_path / "cert.json"
    argv = ["certify", str(cartpole_ppo_path), "--method", "smoothing", "--eps", "0.1", "--json", str(out), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not out.exists()
    with pytest.raises(RllabError, match="n0"):
        certify_smoothing(rllab_load(cartpole_ppo_path), np.zeros((1, 4), np.float32), 0.25, n0=0, n=10)


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


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tb", "resume", "explain", "attacks", "adversaries"))
    return dst


def test_explain_metrics_table_has_a_legend_and_metrics_json_describes_the_columns(catch_ppo_path, tmp_path):
    import json

    from explain.report import METRIC_DESCRIPTIONS, explain_run, metrics_table

    run = _copy_run(catch_ppo_path, tmp_path / "catch")
    result = explain_run(run, "saliency", episodes=1, metrics=True, seed=0, progress=False)
    table = metrics_table(result["metrics"])
    assert "rho (lit): the same sanity check over 'lit' positions only" in table
    assert "deletion:" in table and "lower is better" in table and "higher is better" in table
    saved = json.loads((Path(result["png_dir"]) / "metrics.json").read_text())
    lit = saved["columns"]["sanity_spearman_lit"]
    assert lit["header"] == "rho (lit)" and "non-zero" in lit["meaning"] and lit["better"].startswith("lower")
    assert set(saved["columns"]) == {k for r in saved["metrics"] for k in r if k in METRIC_DESCRIPTIONS}


def test_explain_metrics_list_a_requested_random_method_once(cartpole_ppo_path, tmp_path):
    from explain.report import explain_run, metrics_table

    run = _copy_run(cartpole_ppo_path, tmp_path / "cp")
    result = explain_run(run, "saliency,random", episodes=1, metrics=True, seed=0, progress=False)
    assert [r["method"] for r in result["metrics"]] == ["saliency", "random"]
    assert sum(line.startswith("random ") for line in metrics_table(result["metrics"]).splitlines()) == 1
    result = explain_run(run, "saliency", episodes=1, metrics=True, seed=0, progress=False)
    assert [r["method"] for r in result["metrics"]] == ["saliency", "random"]  # the automatic control


@pytest.fixture(scope="module")
def pendulum_tiny(tmp_path_factory):
    from tests.conftest import trained_run

    over = ["n_steps=64", "batch_size=64"]
    path = trained_run(
        tmp_path_factory, "pendulum-ppo-tiny", algo="ppo", env="Pendulum-v1", seed=0, steps=256, overrides=over
    )
    return rllab_load(path)


def test_fgsm_kl_is_r_fgsm_and_moves_a_continuous_agent(pendulum_tiny, one_thread):
    from robustness.attacks import FGSM
    from robustness.evaluate import evaluate

    card = evaluate(pendulum_tiny, attacks=[FGSM("kl")], eps=[0.2], episodes=2, n_envs=2, seed=0, progress=False)
    row = card["results"]["fgsm:kl"]["0.2"]
    assert row["mean_perturbation"] > 0.5 * 0.2  # plain FGSM stood still: the KL's gradient is 0 at the clean point
    assert row["action_change_rate"] > 0.9
    assert row["mean_return"] != card["clean"]["mean_return"]
    settings = card["attacks"]["fgsm:kl"]
    assert settings["random_start"] is True and "R+FGSM" in settings["gradient_at"]
    # the step is eps from the clean observation: every moved feature moved by exactly eps (linf)
    tm = ThreatModel.for_agent(pendulum_tiny, 0.2)
    x = pendulum_tiny.as_tensor(np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32) * 0.3)
    torch.manual_seed(0)
    z = ((FGSM("kl")(pendulum_tiny, x, tm) - x) / tm.scale).abs()
    assert torch.allclose(z[z > 0], torch.tensor(0.2), atol=1e-5) and (z > 0).float().mean() > 0.9
    assert FGSM("action").settings()["random_start"] is False  # its gradient does not vanish: plain FGSM


def _fake_adversary(victim_path, out, eps=0.5, record=True):
    """A CartPole PPO checkpoint relabelled as a PA-AD adversary of ``victim_path`` (same spaces as a real one)."""
    import json
    import shutil

    out.mkdir(parents=True)
    for name in ("agent.json", "weights.safetensors"):
        shutil.copy(victim_path / name, out / name)
    spec = json.loads((out / "agent.json").read_text())
    kwargs = {"victim": str(victim_path.resolve()), "eps": eps, "mode": "pa-ad"}
    if record:
        kwargs["victim_spec"] = {
            "env": "CartPole-v1",
            "observation_shape": [4],
            "action_space": {"type": "Discrete", "n": 2},
        }
    spec["env"] = {"id": "rllab/Attacked-v0", "kwargs": kwargs, "wrappers": []}
    (out / "agent.json").write_text(json.dumps(spec))
    return out


@pytest.mark.parametrize("record", [True, False])
def test_an_adversary_for_another_victim_kind_is_refused_in_one_line(
    cartpole_ppo_path, catch_ppo_path, tmp_path, capsys, record
):
    from rllab.cli import main

    adv = _fake_adversary(cartpole_ppo_path, tmp_path / "adv", record=record)
    out = tmp_path / "att"
    argv = ["attack", str(catch_ppo_path), "--attack", "learned", "--adversary", str(adv), "--eps", "0.5"]
    assert main([*argv, "--episodes", "1", "--n-envs", "1", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained against a CartPole-v1 (observations of shape (4,), 2 actions) victim" in err[0]
    assert "this agent is a Catch-v0" in err[0] and not out.exists()


def test_an_adversary_used_at_another_eps_or_on_another_agent_warns(cartpole_ppo_path, tmp_path, capsys):
    from robustness.evaluate import build_attack, evaluate

    adv = _fake_adversary(cartpole_ppo_path, tmp_path / "adv", eps=0.5)
    # the same agent at its training eps: no warning
    attack = build_attack("learned", adversary=str(adv))
    evaluate(rllab_load(cartpole_ppo_path), attacks=[attack], eps=[0.5], episodes=1, n_envs=1, progress=False)
    assert "warning" not in capsys.readouterr().err
    # a copy of the victim (another CartPole agent) at two eps, one of them not the training one
    other = _copy_run(cartpole_ppo_path, tmp_path / "other")
    attack = build_attack("learned", adversary=str(adv))
    card = evaluate(rllab_load(other), attacks=[attack], eps=[0.1, 0.5], episodes=1, n_envs=1, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("warning: ") for line in err)
    assert (
        "trained against another CartPole-v1 agent" in err[0]
        and "trained at eps 0.5; it is used here at eps 0.1" in err[1]
    )
    settings = card["attacks"]["learned"]
    assert settings["adversary_trained_for"]["eps"] == 0.5 and len(settings["warnings"]) == 2


def test_report_refuses_cards_of_different_environments_and_points_to_results_json(tmp_path, capsys):
    import json

    from rllab.cli import main

    cp = _card({"noise": {"0.1": _row(480.0, 470, 490)}})
    catch = _card({"noise": {"0.0156863": _row(5.0, 4, 6)}}, unit="pixel/255", eps=(4 / 255,), env="Catch-v0")
    for name, card in (("cp.json", cp), ("catch.json", catch)):
        (tmp_path / name).write_text(json.dumps(card))
    out = tmp_path / "lb"
    assert main(["report", str(tmp_path / "cp.json"), str(tmp_path / "catch.json"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different environments (CartPole-v1: " in err[0] and "Catch-v0: " in err[0]
    assert "share no eps" not in err[0] and not out.exists()
    # a run whose attack was written elsewhere (attack --out DIR)
    (tmp_path / "run").mkdir()
    assert main(["report", str(tmp_path / "run"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass DIR/results.json" in err[0]


def test_bpda_and_eot_on_an_agent_without_such_defenses_are_dropped_with_a_note(cartpole_ppo_path, tmp_path, capsys):
    import json

    from rllab.cli import main

    out = tmp_path / "att"
    argv = ["attack", str(cartpole_ppo_path), "--attack", "fgsm", "--bpda", "--eot", "4", "--eps", "0.05"]
    assert main([*argv, "--episodes", "1", "--n-envs", "1", "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(" changes nothing")[0] for line in err] == ["note: --bpda", "note: --eot 4"]
    card = json.loads((out / "results.json").read_text())
    assert set(card["results"]) == {"noise", "fgsm:action"}  # no +bpda / +eot4 label
    assert card["attacks"]["fgsm:action"]["bpda"] is False and card["attacks"]["fgsm:action"]["eot"] == 1


def test_a_fraction_eps_on_a_vector_agent_warns_but_runs(cartpole_ppo_path, catch_ppo_path, tmp_path, capsys):
    import json

    from rllab.cli import main

    out = tmp_path / "att"
    argv = ["attack", str(cartpole_ppo_path), "--attack", "fgsm", "--eps", "4/255,0.1", "--episodes", "1"]
    assert main([*argv, "--n-envs", "1", "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: --eps 4/255: the k/255 form is meant for pixel budgets")
    assert "0.0157 std" in err[0]
    assert json.loads((out / "results.json").read_text())["threat_model"]["eps"] == pytest.approx([4 / 255, 0.1])
    assert main(["certify", str(cartpole_ppo_path), "--eps", "1/255", "--episodes", "1"]) == 0
    assert "warning: --eps 1/255" in capsys.readouterr().err
    assert main(["certify", str(catch_ppo_path), "--eps", "1/255", "--episodes", "1"]) == 0
    assert "warning" not in capsys.readouterr().err  # pixels: the form it is meant for


def test_attack_and_certify_refuse_an_unwritable_output_before_any_episode(cartpole_ppo_path, tmp_path, capsys):
    from rllab.cli import main as cli

    afile = tmp_path / "afile"
    afile.write_text("x")
    argv = ["attack", str(cartpole_ppo_path), "--attack", "fgsm", "--eps", "0.1", "--episodes", "1"]
    assert cli([*argv, "--out", str(afile / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "is a file, not a folder" in err and err.count("\n") == 1
    assert cli(["certify", str(cartpole_ppo_path), "--eps", "0.1", "--json", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "it is a directory" in err and err.count("\n") == 1
    assert cli(["certify", str(cartpole_ppo_path), "--eps", "0.1,-1"]) == 2
    assert "eps must be a finite number >= 0" in capsys.readouterr().err
