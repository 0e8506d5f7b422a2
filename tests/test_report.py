"""Robustness cards and reports (robustness.report): tables, worst cases, 95% CIs, plot ticks, sanity flags,
the leaderboard and the report command."""

from __future__ import annotations

import json

from rllab.cli import main
from robustness.report import leaderboard, sanity_flags


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
    from robustness.report import card_plot

    card = _card(
        {"noise": {k: _row(5.0, 4, 6) for k in ("0.00392157", "0.0156863")}},
        attacks={"noise": {"attack": "noise", "kind": "random"}},
        unit="pixel/255",
        eps=(1 / 255, 4 / 255),
        env="Catch-v0",
    )
    svg = card_plot(card)
    assert ">1/255</text>" in svg and ">4/255</text>" in svg and "0.00392" not in svg
    assert main(["certify", str(catch_ppo_path), "--eps", "1/255", "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert "eps 1/255: certified" in out and "0.003922" not in out


# ---------------------------------------------------------------------------------------- sanity flags
def test_sanity_flags_fire_on_suspicious_cards():
    def row(m):
        return {"mean_return": m, "ci95_return": [m - 1, m + 1], "std_return": 1.0}

    card = {
        "threat_model": {"eps": [0.1, 0.2]},
        "agent": {"defenses": [{"name": "median", "differentiable": False}]},
        "attacks": {
            "noise": {"kind": "random"},
            "pgd-10:action": {"kind": "white-box", "attack": "pgd", "objective": "action", "steps": 10},
            "surrogate:action": {"kind": "black-box (transfer)"},
        },
        "results": {
            "noise": {"0.1": row(50), "0.2": row(40)},
            "pgd-10:action": {"0.1": row(60), "0.2": row(90)},
            "surrogate:action": {"0.1": row(55), "0.2": row(30)},
        },
    }
    flags = " | ".join(sanity_flags(card))
    assert "return rises" in flags and "noise" in flags and "black-box" in flags and "non-adaptive" in flags
    assert "overstates robustness" not in flags
    # a rise within the episodes' noise is not flagged: 484 +- 36 over 10 episodes, then 10 full episodes
    noisy = {"mean_return": 484.0, "ci95_return": [448.0, 520.0], "std_return": 50.0}
    full = {"mean_return": 500.0, "ci95_return": [500.0, 500.0], "std_return": 0.0}
    calm = {**card, "results": {**card["results"], "pgd-10:action": {"0.1": noisy, "0.2": full}}}
    assert not any(f.startswith("pgd-10:action: return rises") for f in sanity_flags(calm))

    # the same defense, now with the adaptive (BPDA) version of the PGD attack beside the plain one
    card["attacks"]["pgd-10:action+bpda"] = {**card["attacks"]["pgd-10:action"], "bpda": True}
    card["results"]["pgd-10:action+bpda"] = {"0.1": row(59.5), "0.2": row(10)}
    card["results"]["pgd-10:action"]["0.2"] = row(35)
    flags = sanity_flags(card)
    masked = [f for f in flags if "overstates robustness" in f]
    assert len(masked) == 1 and masked[0].startswith("eps 0.2: pgd-10:action (35)")  # not at 0.1: within the CI
    assert "masks its gradients" in masked[0]
    assert not any("non-adaptive only" in f for f in flags)
    # a fixed-target row is a different attack from the BPDA least-preferred-target row: never compared
    targeted = {"kind": "white-box", "attack": "pgd", "objective": "targeted", "steps": 10}
    card["attacks"]["pgd-10:targeted=1"] = {**targeted, "target_action": 1}
    card["results"]["pgd-10:targeted=1"] = {"0.1": row(80), "0.2": row(80)}
    card["attacks"]["pgd-10:targeted+bpda"] = {**targeted, "target_action": None, "bpda": True}
    card["results"]["pgd-10:targeted+bpda"] = {"0.1": row(20), "0.2": row(20)}
    assert not any(f.startswith("eps 0.2: pgd-10:targeted=1") for f in sanity_flags(card))
    for name in ("pgd-10:targeted=1", "pgd-10:targeted+bpda"):
        del card["attacks"][name], card["results"][name]
    from robustness.report import render_markdown

    card.update(clean=row(100), episodes=10, seed=0, flags=flags)
    card["agent"].update(algo="ppo", env="Catch-v0")
    card["threat_model"].update(norm="linf", unit="pixel/255")
    md = render_markdown(card)
    assert "| pgd-10:action+bpda | white-box | BPDA |" in md and "| pgd-10:action | white-box | - |" in md


def test_evaluate_returns_the_sanity_flags_like_the_cli_card(cartpole_ppo, tmp_path, monkeypatch):
    import importlib
    import json

    import robustness.report
    from rllab.cli import main
    from robustness.evaluate import evaluate

    seen = []  # the flags of the card they were computed on, so an empty list cannot pass by accident
    flags = lambda c: seen.append(c) or [f"flag {len(seen)}"]  # noqa: E731
    # (robustness.evaluate is the function the package re-exports; the module is reached by name)
    monkeypatch.setattr(importlib.import_module("robustness.evaluate"), "sanity_flags", flags)
    monkeypatch.setattr(robustness.report, "sanity_flags", flags)  # the CLI's write_report
    card = evaluate(cartpole_ppo, attacks=["fgsm"], eps=[0.05], episodes=2, n_envs=2, progress=False)
    assert card["flags"] == ["flag 1"] and seen[0] is card
    out = tmp_path / "att"
    argv = ["attack", str(cartpole_ppo.path), "--attack", "fgsm", "--eps", "0.05", "--episodes", "2"]
    assert main([*argv, "--n-envs", "2", "--out", str(out), "--no-progress"]) == 0
    cli = json.loads((out / "results.json").read_text())
    assert cli["flags"] and set(cli) - {"agent"} == set(card) - {"agent"}


def _ci_row(mean, lo, hi):
    return {"mean_return": mean, "ci95_return": [lo, hi], "std_return": 0.0}


def _eps_card(eps, results):
    attacks = {"pgd-10:action": {"attack": "pgd", "kind": "white-box", "objective": "action", "steps": 10}}
    return {
        "threat_model": {"eps": eps, "unit": "obs std", "norm": "linf"},
        "attacks": attacks,
        "results": results,
        "agent": {"defenses": []},
        "clean": _ci_row(500, 500, 500),
    }


def test_eps_typed_out_of_order_is_sorted_in_the_card_and_the_flags(cartpole_ppo):
    from robustness.evaluate import evaluate
    from robustness.report import _table, sanity_flags

    card = evaluate(cartpole_ppo, attacks=["noise"], eps=[0.2, 0.1, 0.1], episodes=1, n_envs=1, progress=False)
    assert card["threat_model"]["eps"] == [0.1, 0.2]
    assert list(card["results"]["noise"]) == ["0.1", "0.2"]
    # an old card with eps in the order typed: no false "return rises" flag, and the table is ordered
    results = {
        "noise": {"0.2": _ci_row(480, 470, 490), "0.1": _ci_row(500, 500, 500)},
        "pgd-10:action": {"0.2": _ci_row(100, 90, 110), "0.1": _ci_row(400, 390, 410)},
    }
    old = _eps_card([0.2, 0.1], results)
    assert not [f for f in sanity_flags(old) if "rises" in f]
    header, _, _ = _table(old)
    assert header[-2:] == ["eps 0.1", "eps 0.2"]
    # a real rise is still flagged
    results["pgd-10:action"] = {"0.2": _ci_row(400, 390, 410), "0.1": _ci_row(100, 90, 110)}
    assert [f for f in sanity_flags(_eps_card([0.2, 0.1], results)) if "rises from 100 at eps 0.1 to 400" in f]


# --------------------------------------------- written reports, the leaderboard and the report command
def test_attack_command_writes_a_parseable_report_and_the_leaderboard_sorts(cartpole_ppo_path, tmp_path, capsys):
    out = tmp_path / "rep"
    assert (
        main(
            [
                "attack",
                str(cartpole_ppo_path),
                "--attack",
                "pgd,fgsm",
                "--objective",
                "kl",
                "--eps",
                "0.1,0.5",
                "--episodes",
                "3",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    card = json.loads((out / "results.json").read_text())
    assert set(card["results"]) == {"noise", "pgd-10:kl", "fgsm:kl"}
    row = card["results"]["pgd-10:kl"]["0.5"]
    for key in (
        "mean_return",
        "std_return",
        "ci95_return",
        "min_return",
        "episodes",
        "seeds",
        "action_change_rate",
        "mean_perturbation",
        "wall_s",
    ):
        assert key in row
    assert (
        card["threat_model"]["unit"] == "obs std"
        and len(card["threat_model"]["per_eps"][0]["raw_budget_per_feature"]) == 4
    )
    assert card["attacks"]["pgd-10:kl"]["steps"] == 10 and card["attacks"]["pgd-10:kl"]["random_start"] is True
    md = (out / "report.md").read_text()
    # the strongest attack is bold where some row fell below the clean return (none is named otherwise)
    rows = [r for by in card["results"].values() for r in by.values()]
    lowered = any(r["mean_return"] < card["clean"]["mean_return"] for r in rows)
    assert "obs std" in md and ("**" in md) == lowered
    assert lowered or "Strongest attack at eps 0.1: none (no row below clean)" in md
    html = (out / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html and "http" not in html.split("<svg")[0]
    # two agents side by side; a made-up stronger agent ranks first
    weak = json.loads((out / "results.json").read_text())
    strong = json.loads((out / "results.json").read_text())
    for by_eps in strong["results"].values():
        for r in by_eps.values():
            r["mean_return"] = 500.0
    (tmp_path / "strong.json").write_text(json.dumps(strong))
    board = leaderboard({"weak": weak, "strong": strong})
    assert [e["agent"] for e in board["by_eps"]["0.5"]] == ["strong", "weak"]
    assert (
        main(["report", str(out / "results.json"), str(tmp_path / "strong.json"), "--out", str(tmp_path / "lb")]) == 0
    )
    assert (tmp_path / "lb" / "leaderboard.md").exists()


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
