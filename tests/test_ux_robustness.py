"""Regression tests for user-facing fixes in robustness/ and explain/ (one or a few per fix)."""

from __future__ import annotations


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
