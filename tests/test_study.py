"""``rllab lab [STUDY.yml]`` (the study package): the study file's one-line errors, the stage cache (a rerun
reruns nothing, a changed setting reruns only what reads it), resuming after an interruption, the
self-contained index.html, ties named as ties and CIs clipped to the feasible range. The tiny study itself is
built once per session by conftest.py's ``tiny`` fixture (tests/test_browser.py opens the same pages)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import study.run
from rllab.cli import main
from rllab.errors import RllabError
from robustness.plots import Series, clip_ci, eps_plot, lowest_at
from robustness.report import render_html, render_markdown, strongest_label
from study.spec import DEFAULT_STUDY, load_study
from tests.helpers import TINY_STUDY

pytestmark = pytest.mark.usefixtures("one_thread")


def _statuses(out: Path) -> dict[str, str]:
    return {t["stage"]: t["status"] for t in json.loads((out / "timings.json").read_text())["timings"]}


@pytest.mark.parametrize(
    "text, message",
    [
        ("envs: {CartPole-v1: {attacks: {eps: [8/0]}}}", "envs.CartPole-v1.attacks.eps[0]: eps divides by zero"),
        ("envs: {CartPole-v1: {algos: [ppq]}}", "envs.CartPole-v1.algos[0]: must be one of"),
        ("envs: {CartPole-v1: {stepz: 10}}", "envs.CartPole-v1.stepz: Extra inputs are not permitted"),
        ("envs: {CartPole-v1: {defenses: [{name: x}]}}", "envs.CartPole-v1.defenses[0]: give exactly one of"),
        ("seeds: [-1]\nenvs: {CartPole-v1: {}}", "seeds[0]: must be >= 0"),
        ("envs: {}", "envs: must hold at least 1 items"),
        ("[1, 2]", "must be a YAML mapping"),
        ("envs: {CartPole-v1: {defenses: [{name: vanilla, smooth: 'n=2'}]}}", "agent names must differ"),
    ],
)
def test_a_bad_study_file_is_one_line_naming_the_field(tmp_path, capsys, text, message):
    path = tmp_path / "study.yml"
    path.write_text(text)
    with pytest.raises(RllabError, match=re.escape(message)):
        load_study(path)
    assert main(["lab", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"rllab lab: error: {path}: ") and message in err[0]
    assert not (tmp_path / "out").exists()


def test_a_missing_or_odd_study_file_is_one_line(tmp_path, capsys):
    assert main(["lab", str(tmp_path / "nope.yml")]) == 2
    assert "error: no such study file" in capsys.readouterr().err
    (tmp_path / "bad.yml").write_text("envs: [unclosed\n")
    assert main(["lab", str(tmp_path / "bad.yml")]) == 2
    assert f"{tmp_path / 'bad.yml'} is not valid YAML" in capsys.readouterr().err
    assert main(["lab", str(tmp_path)]) == 2  # a folder
    assert "not a regular study file" in capsys.readouterr().err


def test_the_default_study_and_its_quick_preset_are_valid():
    full, quick = load_study(), load_study(quick=True)
    assert set(full.envs) == {"CartPole-v1", "Catch-v0"} and full.name == "lab" and quick.name == "lab-quick"
    cartpole = full.envs["CartPole-v1"]
    assert [d.name for d in cartpole.defenses] == ["atla", "smoothed"]  # holds best, and one that does not
    assert {c.transform for c in cartpole.compressions} == {"distill", "prune"}
    assert cartpole.attacks.learned_steps > 0 and full.envs["Catch-v0"].adaptations
    assert all(e.steps <= 8192 and e.attacks.learned_steps == 0 for e in quick.envs.values())
    assert DEFAULT_STUDY["envs"]["CartPole-v1"]["steps"] == 100_000  # the dict is not changed by --quick


def test_a_rerun_reruns_nothing_and_a_changed_setting_only_what_reads_it(tiny, tmp_path, capsys):
    path, first = tiny
    assert set(_statuses(first).values()) == {"ran"} and len(_statuses(first)) == 12  # 3 agents x 4 stages
    out = tmp_path / "copy"
    shutil.copytree(first, out)  # records keep paths inside the study folder: a moved study is still cached
    capsys.readouterr()
    assert main(["lab", str(path), "--out", str(out)]) == 0
    assert set(_statuses(out).values()) == {"cached"}
    assert "12 cached" in capsys.readouterr().out
    # another budget: the three attack stages rerun; training, defending, pruning, evaluating, explaining do not
    changed = TINY_STUDY.replace("eps: [0.25, 0.5]", "eps: [0.25, 1]")
    path.with_name("eps.yml").write_text(changed)
    assert main(["lab", str(path.with_name("eps.yml")), "--out", str(out)]) == 0
    ran = sorted(s for s, status in _statuses(out).items() if status == "ran")
    assert ran == [f"attack/CartPole-v1-ppo-s0-{n}" for n in ("prune", "smoothed", "vanilla")]
    card = json.loads((out / "agents/CartPole-v1-ppo-s0-vanilla/attacks/lab/results.json").read_text())
    assert card["threat_model"]["eps"] == [0.25, 1.0]
    # the learned adversary attacks the vanilla agent only, at learned_eps only (it trains one per eps)
    assert list(card["results"]["learned"]) == ["0.5"] and card["attacks"]["learned"]["adv_steps"] == 256
    # a changed pruning setting remakes the pruned agent, then everything that reads it, and nothing else
    path.with_name("prune.yml").write_text(changed.replace("sparsity: 0.5", "sparsity: 0.6"))
    assert main(["lab", str(path.with_name("prune.yml")), "--out", str(out)]) == 0
    ran = sorted(s for s, status in _statuses(out).items() if status == "ran")
    assert ran == [f"{s}/CartPole-v1-ppo-s0-prune" for s in ("attack", "eval", "explain", "make")]


def test_an_interrupted_study_resumes_at_the_stage_it_was_in(tiny, tmp_path, monkeypatch, capsys):
    path, first = tiny
    out = tmp_path / "copy"
    shutil.copytree(first, out)
    path.with_name("steps.yml").write_text(TINY_STUDY.replace("steps: 2,", "steps: 3,"))  # every attack stage reruns
    real = study.run.attack_agent
    calls = []

    def interrupted(plan, env, tb_root):
        calls.append(plan.name)
        if len(calls) == 2:  # Ctrl-C in the second agent's attack, its report half written
            (plan.folder / study.run.ATTACK_DIR).mkdir(parents=True, exist_ok=True)
            (plan.folder / study.run.ATTACK_DIR / "results.json").write_text("{")
            raise KeyboardInterrupt
        return real(plan, env, tb_root)

    monkeypatch.setattr(study.run, "attack_agent", interrupted)
    # --jobs 1: the stages run in this process, where `calls` counts them (forked stages each count their own)
    assert main(["lab", str(path.with_name("steps.yml")), "--out", str(out), "--jobs", "1"]) == 130
    assert "interrupted" in capsys.readouterr().err
    monkeypatch.setattr(study.run, "attack_agent", real)
    assert main(["lab", str(path.with_name("steps.yml")), "--out", str(out)]) == 0
    ran = sorted(s for s, status in _statuses(out).items() if status == "ran")
    assert ran == ["attack/CartPole-v1-ppo-s0-prune", "attack/CartPole-v1-ppo-s0-smoothed"]  # vanilla's was done
    card = json.loads((out / "agents/CartPole-v1-ppo-s0-smoothed/attacks/lab/results.json").read_text())
    assert card["attacks"]["fgsm:action"]["steps"] == 1 and card["episodes"] == 2


def _numbers(out: Path) -> dict[str, object]:
    """Every agent's clean and attacked returns (no wall times) and its stage records' results."""
    cards = {}
    for path in sorted((out / "agents").rglob("results.json")):
        card = json.loads(path.read_text())
        rows = {a: {e: r["returns"] for e, r in by_eps.items()} for a, by_eps in card["results"].items()}
        cards[path.relative_to(out).as_posix()] = (card["clean"]["returns"], rows)
    evals = {p.name: json.loads(p.read_text())["result"] for p in sorted((out / "stages").glob("eval__*.json"))}
    return {"cards": cards, "evals": evals}


def test_stages_forked_in_parallel_give_the_numbers_of_one_after_the_other(tiny, tmp_path):
    """The tiny study ran with --jobs 2 (conftest); one stage at a time gives the same returns everywhere."""
    path, parallel = tiny
    assert main(["lab", str(path), "--out", str(tmp_path / "seq"), "--jobs", "1"]) == 0
    seq, par = _numbers(tmp_path / "seq"), _numbers(parallel)
    assert len(seq["cards"]) == 3 and len(seq["evals"]) == 3 and seq == par
    # each stage's timing names the stages it waited for (bench/lab_budget.py replays the schedule from them)
    needs = {t["stage"]: t["needs"] for t in json.loads((parallel / "timings.json").read_text())["timings"]}
    assert needs["attack/CartPole-v1-ppo-s0-prune"] == ["make/CartPole-v1-ppo-s0-prune"]
    assert needs["make/CartPole-v1-ppo-s0-prune"] == ["make/CartPole-v1-ppo-s0-vanilla"]
    assert needs["make/CartPole-v1-ppo-s0-vanilla"] == []


def test_a_failed_forked_stage_is_one_line_and_the_study_resumes(tiny, tmp_path, monkeypatch, capsys):
    path, first = tiny
    out = tmp_path / "copy"
    shutil.copytree(first, out)
    path.with_name("eps2.yml").write_text(TINY_STUDY.replace("eps: [0.25, 0.5]", "eps: [0.25, 2]"))
    real = study.run.attack_agent

    def failing(plan, env, tb_root):
        if plan.name == "smoothed":
            raise RllabError("boom")
        return real(plan, env, tb_root)

    monkeypatch.setattr(study.run, "attack_agent", failing)
    capsys.readouterr()
    assert main(["lab", str(path.with_name("eps2.yml")), "--out", str(out), "--jobs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rllab lab: error: stage attack/CartPole-v1-ppo-s0-smoothed failed: boom"]
    monkeypatch.setattr(study.run, "attack_agent", real)
    assert main(["lab", str(path.with_name("eps2.yml")), "--out", str(out), "--jobs", "2"]) == 0
    ran = {s for s, status in _statuses(out).items() if status == "ran"}
    assert "attack/CartPole-v1-ppo-s0-smoothed" in ran and ran <= {
        f"attack/CartPole-v1-ppo-s0-{n}" for n in ("prune", "smoothed", "vanilla")
    }
    card = json.loads((out / "agents/CartPole-v1-ppo-s0-smoothed/attacks/lab/results.json").read_text())
    assert card["threat_model"]["eps"] == [0.25, 2.0]


def test_index_html_is_one_self_contained_page(tiny):
    _, out = tiny
    page = (out / "index.html").read_text()
    assert not re.search(r"https?://", page)  # nothing fetched: no URL at all, not even an SVG namespace
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(?!data:)[^\"]*\.(js|css|png)", page)
    assert "<h3>Defense leaderboard</h3>" in page and page.count("<h4>eps ") == 2
    assert page.count("<svg") == 1 + 3  # the worst-case plot and one plot per attacked agent
    assert '<h2 id="glossary">Glossary</h2>' in page and "<dt>[a, b]</dt>" in page and "<dt>adaptive</dt>" in page
    assert "<dt>changed</dt>" in page and "tensorboard --logdir" in page
    assert page.count('src="data:image/png;base64,') == 2  # vanilla and pruned; the vote is not differentiable
    assert "not explained: non-differentiable defense (smoothing-vote)" in page
    assert '<a href="agents/CartPole-v1-ppo-s0-vanilla/attacks/lab/report.html">' in page
    assert "<details><summary>Exact settings" in page and "<details><summary>Versions" in page
    assert "CartPole-v1-ppo-s0-vanilla &gt; prune" in page  # the compression table's lineage
    # the vote-smoothed agent is attacked adaptively too (BPDA past the vote, EOT over its noise), and says so
    card = json.loads((out / "agents/CartPole-v1-ppo-s0-smoothed/attacks/lab/results.json").read_text())
    adaptive = [n for n, a in card["attacks"].items() if a.get("bpda") and a.get("eot") == 8]
    assert len(adaptive) == 1 and f"<td>{adaptive[0]}</td>" in page
    summary = (out / "summary.md").read_text()
    assert (
        summary.startswith("# rllab study: tiny") and summary.count("\n| CartPole-v1-ppo-s0-") == 3 + 6
    )  # 3 agents, then 2 eps each


def _card(results, clean=(500.0, 448.0, 531.0), env="CartPole-v1"):
    def row(m, lo, hi):
        return {"mean_return": m, "ci95_return": [lo, hi], "std_return": 1.0}

    return {
        "agent": {"algo": "ppo", "env": env, "lineage": [], "defenses": []},
        "threat_model": {"eps": [0.1], "unit": "obs std", "norm": "linf", "per_eps": []},
        "episodes": 10,
        "seed": 0,
        "attacks": {n: {"attack": n, "kind": "white-box"} for n in results},
        "clean": row(*clean),
        "results": {n: {"0.1": row(*r)} for n, r in results.items()},
        "flags": [],
    }


def test_ties_are_named_as_ties_and_no_attack_is_the_strongest_when_none_lowered_the_return():
    card = _card({"noise": (300.0, 250, 350), "fgsm": (300.0, 260, 340), "pgd": (400.0, 380, 420)})
    assert strongest_label(card, "0.1") == "tie: noise, fgsm"
    md = render_markdown(card)
    assert "**300 [250, 350]" in md and "**300 [260, 340]" in md and "Strongest attack at eps 0.1: tie: noise" in md
    untouched = _card({"noise": (500.0, 500, 500), "pgd": (500.0, 500, 500)})
    assert strongest_label(untouched, "0.1") == "none (no row below clean)"
    assert "**" not in render_markdown(untouched).split("| attack |")[1]  # no row bold
    series = [Series("a", [0.1], [3.0]), Series("b", [0.1], [3.0]), Series("c", [0.1], [5.0])]
    assert lowest_at(series, 0.1) == (3.0, ["a", "b"])
    assert ">tie: 2</text>" in eps_plot(series, "obs std", "linf", clean=(6.0, None))


def test_confidence_intervals_are_clipped_to_the_feasible_return_range():
    assert clip_ci([448.0, 531.0], (0.0, 500.0)) == ((448.0, 500.0), True)
    assert clip_ci([1.0, 2.0], (0.0, 500.0)) == ((1.0, 2.0), False) and clip_ci(None, (0, 1)) == (None, False)
    assert clip_ci([-1.4, 0.2], None) == ((-1.4, 0.2), False)  # an unknown range is not clipped
    card = _card({"noise": (480.0, 440, 520)})
    md, page = render_markdown(card), render_html(card)
    assert "500 [448, 500]*" in md and "480 [440, 500]*" in md and "531" not in md and "520" not in md
    assert "clipped to the returns an episode can have, [0, 500]" in md
    assert "clipped to the feasible return range [0, 500] (clipping changed some bands)" in page
    assert "what [a, b]" not in page and "95% confidence interval" in page  # the HTML carries report.md's notes
    assert "<details><summary>Attack settings (JSON)</summary>" in page and not re.search(r"https?://", page)
    catch = _card({"noise": (0.9, 0.7, 1.1)}, clean=(1.0, 1.0, 1.0), env="Catch-v0")
    assert "0.9 [0.7, 1]*" in render_markdown(catch)


@pytest.mark.slow
def test_the_quick_default_study_from_scratch_then_cached(tmp_path, capsys):
    """README's first command at --quick budgets: every stage runs, the page is written, a rerun is all cached."""
    out = tmp_path / "lab-quick"
    assert main(["lab", "--quick", "--out", str(out)]) == 0
    first = json.loads((out / "timings.json").read_text())
    assert {t["status"] for t in first["timings"]} == {"ran"} and (out / "index.html").exists()
    page = (out / "index.html").read_text()
    assert "<h2>CartPole-v1</h2>" in page and "<h2>Catch-v0</h2>" in page and "<h3>Adaptation</h3>" in page
    assert main(["lab", "--quick", "--out", str(out)]) == 0
    again = json.loads((out / "timings.json").read_text())
    assert {t["status"] for t in again["timings"]} == {"cached"} and again["seconds"] < 0.1 * first["seconds"]
