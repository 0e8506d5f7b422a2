"""The study page (``STUDY/index.html``) and an attack report (``report.html``) in a real headless Chromium
(tests/browser.py): no console or page error, no failed request and none leaving the page (it is one offline
file), the leaderboard, every plot and every saliency thumbnail visible, links that lead to existing pages, no
sideways scroll in a 420 px window, and a full-page screenshot kept in test-artifacts/.

They skip when Debian's chromium or the playwright package is missing, unless RLLAB_REQUIRE_BROWSER=1 (CI
sets it): then a missing browser fails them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.browser import INDEX_PARTS, REPORT_PARTS, chromium_or_reason, inspect_page, open_browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM, WHY_NOT = chromium_or_reason()
REQUIRED = os.environ.get("RLLAB_REQUIRE_BROWSER") == "1"
NARROW = 420

# skipped before the shared study is built; with RLLAB_REQUIRE_BROWSER=1 the browser fixture fails instead
pytestmark = pytest.mark.skipif(CHROMIUM is None and not REQUIRED, reason=f"no headless browser: {WHY_NOT}")


@pytest.fixture(scope="module")
def browser():
    """The system Chromium, headless, for the whole module."""
    if CHROMIUM is None:
        pytest.fail(f"RLLAB_REQUIRE_BROWSER=1 but there is no headless browser: {WHY_NOT}")
    with open_browser(CHROMIUM) as b:
        yield b


def _no_sideways_scroll(browser, url: str, parts: dict[str, str]) -> None:
    narrow = inspect_page(browser, url, parts, width=NARROW)
    assert narrow.scroll_width <= narrow.client_width == NARROW, f"{url} scrolls sideways at {NARROW} px"
    plots = [b for b in narrow.boxes["plot"] if b]
    assert plots and all(b["x"] >= 0 and b["x"] + b["width"] <= NARROW for b in plots)  # the plots shrink


def test_the_study_page_in_a_real_browser(tiny, browser):
    _, out = tiny
    url = (out / "index.html").as_uri()
    page = inspect_page(browser, url, INDEX_PARTS, screenshot=ARTIFACTS / "index.png")
    assert page.problems == [] and page.invisible() == [] and page.broken_links() == []
    assert page.scroll_width <= page.client_width
    # the tiny study: one leaderboard table per eps (2), the worst-case plot and one per agent (1 + 3), and a
    # thumbnail for the vanilla and the pruned agent (the vote-smoothed one is not differentiable)
    assert [len(page.boxes[p]) for p in ("leaderboard", "plot", "thumbnail")] == [2, 4, 2]
    assert all(b["width"] >= 300 for b in page.boxes["plot"])  # drawn at a readable size, not a stamp
    reports = sorted(out.glob("agents/*/attacks/lab/report.html"))
    assert len(reports) == 3
    thumbs = sorted(page.image_links)
    assert thumbs == [p.as_uri() for p in reports if "smoothed" not in str(p)]  # each links to its agent's report
    assert {"CartPole-v1", "glossary", "details"} <= page.ids
    assert (ARTIFACTS / "index.png").stat().st_size > 10_000
    _no_sideways_scroll(browser, url, INDEX_PARTS)


def test_an_attack_report_in_a_real_browser(tiny, browser):
    _, out = tiny
    report = out / "agents/CartPole-v1-ppo-s0-smoothed/attacks/lab/report.html"
    card = json.loads(report.with_name("results.json").read_text())
    page = inspect_page(browser, report.as_uri(), REPORT_PARTS, screenshot=ARTIFACTS / "report.png")
    assert page.problems == [] and page.invisible() == [] and page.broken_links() == []
    assert [len(page.boxes[p]) for p in ("table", "plot")] == [1, 1]
    assert len(page.boxes["notes"]) >= 5 + len(card["threat_model"]["eps"])  # what every number means, per eps
    _no_sideways_scroll(browser, report.as_uri(), REPORT_PARTS)


def test_the_checks_catch_a_broken_page(tmp_path, browser):
    """The same checks on a page that breaks every rule: each is reported."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!doctype html><html><body><script>console.error('boom'); undefinedCall();</script>"
        '<img src="http://127.0.0.1:9/x.png"><a href="missing.html">x</a><a href="#nowhere">y</a>'
        '<figure class="plot"><svg width="0" height="0"></svg></figure><figure class="plot" style="display:none">'
        '<svg width="10" height="10"></svg></figure><div style="width:2000px" id="a">wide</div><p id="a"></p>'
        "</body></html>"
    )
    page = inspect_page(browser, bad.as_uri(), {"plot": "figure.plot svg", "thumbnail": ".thumb img"}, width=NARROW)
    text = " | ".join(page.problems)
    assert "console error: boom" in text and "undefinedCall is not defined" in text
    assert "failed request: http://127.0.0.1:9/x.png" in text and "request outside the page" in text
    assert "duplicate id: a" in text
    assert page.invisible() == ["plot #0", "plot #1", "thumbnail: none on the page"]
    assert sorted(page.broken_links()) == [bad.as_uri() + "#nowhere", bad.with_name("missing.html").as_uri()]
    assert page.scroll_width > page.client_width
