"""The lab's TensorBoard logdirs in a real TensorBoard server, read back through its HTTP API: the attack curves
on an eps axis (values per eps equal to the result cards'), the custom-scalars layout that names that axis, and
the attribution maps (PNG of the expected size, each with its colour scale, served as written, and in groups that
the dashboards sort and open first).

The logdir holds the tiny study of conftest.py's session ``tiny`` fixture (``rllab lab``: CartPole agents, std
budgets, eps x 1000) beside a Catch agent's ``rllab attack`` and ``rllab explain`` folders (pixel budgets, eps x
255, image maps): the study has no image agent, and Catch is the lab's image agent whose training other tests
share (``catch_ppo_path``).
"""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from explain.tensorboard import SCALE_HEIGHT, colormap
from rllab.cli import main
from rllab.units import PIXEL, STD
from robustness.tensorboard import CLEAN, chart_title, curve_tag, eps_step, eps_ticks, layout, run_name
from tests.helpers import copy_run

pytestmark = pytest.mark.usefixtures("one_thread")

CATCH_EPS = {"2/255": 2, "8/255": 8, "32/255": 32}  # budget -> TensorBoard step (eps x 255)
STUDY_EPS = {"0.25": 250, "0.5": 500}  # tests.helpers.TINY_STUDY's budgets -> step (eps x 1000)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(base: str, path: str, **query: Any) -> bytes:
    url = base + path + ("?" + urllib.parse.urlencode(query) if query else "")
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def _json(base: str, path: str, **query: Any) -> Any:
    return json.loads(_get(base, path, **query))


def _tensorboard() -> list[str]:
    """The venv's ``tensorboard`` script (``python -m tensorboard.main`` where there is none)."""
    script = Path(sys.executable).with_name("tensorboard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tensorboard.main"]


def compare_tag_names(a: str, b: str) -> int:
    """TensorBoard's ``compareTagNames`` (tensorboard/webapp/.../vz_sorting, the bundle's ``Eh``), which the
    Images and Time Series dashboards sort tags with: numbers compared as numbers, and digits, ``_`` and ``/``
    before every other character."""

    def digit(c: str) -> bool:
        return "0" <= c <= "9"

    def early(c: str) -> bool:
        return c in "/_" or digit(c)

    def number_end(s: str, i: int) -> int:
        state = "natural"
        while i < len(s):
            c = s[i]
            if state == "natural":
                if c == ".":
                    state = "real"
                elif c in "eE":
                    state = "sign"
                elif not digit(c):
                    break
            elif state == "real":
                if c in "eE":
                    state = "sign"
                elif not digit(c):
                    break
            elif state == "sign":
                if digit(c) or c in "+-":
                    state = "exponent"
                else:
                    break
            elif not digit(c):
                break
            i += 1
        return i

    i = j = 0
    while True:
        if i == len(a):
            return 0 if j == len(b) else -1
        if j == len(b):
            return 1
        if digit(a[i]) and digit(b[j]):
            i0, j0 = i, j
            i, j = number_end(a, i + 1), number_end(b, j + 1)
            x, y = float(a[i0:i]), float(b[j0:j])
            if x != y:
                return -1 if x < y else 1
            continue
        if early(a[i]):
            if not early(b[j]):
                return -1
        elif early(b[j]):
            return 1
        elif a[i] != b[j]:
            return -1 if a[i] < b[j] else 1
        i, j = i + 1, j + 1


def dashboard_groups(tags: list[str]) -> list[str]:
    """The tag groups in the order the Images and Time Series dashboards show them: tags sorted with
    ``compare_tag_names``, grouped by their first ``/`` component in order of first appearance. Both open
    the first two groups only."""
    groups: list[str] = []
    for tag in sorted(tags, key=functools.cmp_to_key(compare_tag_names)):
        group = tag.split("/", 1)[0]
        if group not in groups:
            groups.append(group)
    return groups


def test_the_port_of_tensorboards_tag_order_sorts_as_tensorboard_does():
    order = ["1_saliency/ep0/overlay", "2_occlusion/ep0/grid", "10_ig/ep0/grid", "activation_maximisation/left"]
    order += ["frame/ep0", "frame/ep2", "frame/ep10", "saliency/ep0/overlay"]
    assert sorted(reversed(order), key=functools.cmp_to_key(compare_tag_names)) == order
    assert dashboard_groups(["frame/ep0", "activation_maximisation/left", "2_x/a", "1_y/b"]) == [
        "1_y",
        "2_x",
        "activation_maximisation",
        "frame",
    ]


def test_the_eps_step_is_a_whole_number_of_the_units_ticks_and_named():
    assert eps_ticks(PIXEL, [2 / 255, 8 / 255, 32 / 255]) == 255 and eps_ticks(STD, [0.075, 0.5]) == 1000
    assert eps_ticks(STD, [0.0125, 0.5]) == 10_000 and eps_ticks(PIXEL, [0.5 / 255]) == 2550  # finer where needed
    assert [eps_step(e, 255) for e in (2 / 255, 8 / 255)] == [2, 8] and eps_step(0.075, 1000) == 75
    assert layout(STD, 10_000) == {
        "attack curves, eps in obs std (x: eps x 10000)": {
            "mean return vs eps (x: eps x 10000)": ["Multiline", ["mean_return_vs_eps_x10000$"]],
            "action-change rate vs eps (x: eps x 10000)": ["Multiline", ["action_change_rate_vs_eps_x10000$"]],
        }
    }
    assert run_name("pgd-10:action+bpda") == "pgd-10_action+bpda"


@pytest.fixture(scope="module")
def logdir(tiny, catch_ppo_path, tmp_path_factory) -> dict[str, Path]:
    """One logdir: ``study/`` (the tiny study's tb/) and ``catch/`` (a Catch agent attacked and explained by the
    commands); with the folders whose numbers and images the server must give back."""
    root = tmp_path_factory.mktemp("tensorboard")
    run = copy_run(catch_ppo_path, root / "catch")
    attack = [str(run), "--attack", "fgsm,pgd", "--eps", ",".join(CATCH_EPS), "--episodes", "2", "--steps", "2"]
    assert main(["attack", *attack, "--out", str(root / "card"), "--no-progress"]) == 0
    assert main(["explain", str(run), "--method", "saliency,occlusion", "--seed", "1", "--no-progress"]) == 0
    shutil.copytree(tiny[1] / "tb", root / "logdir" / "study")
    shutil.copytree(run / "tb", root / "logdir" / "catch")
    return {"logdir": root / "logdir", "card": root / "card" / "results.json", "study": tiny[1], "catch": run}


@pytest.fixture(scope="module")
def server(logdir) -> str:
    """``tensorboard --logdir LOGDIR --load_fast=false`` on a free port, answering and done loading; killed after."""
    port = _free_port()
    log = (logdir["logdir"].parent / "tensorboard.log").open("w")
    proc = subprocess.Popen(
        [*_tensorboard(), "--logdir", str(logdir["logdir"]), "--port", str(port), "--host", "127.0.0.1"]
        + ["--load_fast=false", "--samples_per_plugin", "images=1000"],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    base = f"http://127.0.0.1:{port}"
    wanted = {"catch/explain-action-s1", "study/CartPole-v1-ppo-s0-vanilla/attack/clean"}
    try:
        deadline, last = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            try:
                last = _json(base, "/data/runs")
                if wanted <= set(last) and _json(base, "/data/plugin/images/tags").get("catch/explain-action-s1"):
                    break
            except OSError as exc:  # not listening yet
                last = exc
            assert proc.poll() is None, (
                f"tensorboard exited: {(logdir['logdir'].parent / 'tensorboard.log').read_text()}"
            )
            time.sleep(0.3)
        else:
            raise AssertionError(f"TensorBoard did not load {sorted(wanted)} within 60 s (last answer: {last!r})")
        time.sleep(1.0)  # a second reload pass picks up every event file of the runs it listed
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _curve(base: str, run: str, tag: str) -> dict[int, float]:
    """step -> value of one scalar series, from the scalars plugin."""
    return {step: value for _, step, value in _json(base, "/data/plugin/scalars/scalars", run=run, tag=tag)}


def test_attack_curves_have_eps_on_the_x_axis_and_the_cards_numbers(server, logdir):
    layout = _json(server, "/data/plugin/custom_scalars/layout")
    charts = {c["title"]: c["multiline"]["tag"] for cat in layout["category"] for c in cat["chart"]}
    titles = {cat["title"] for cat in layout["category"]}
    # one category per unit (the study's agents' layouts merged into one), one multiline chart per metric
    assert titles == {"attack curves, eps in pixel/255 (x: eps x 255)", "attack curves, eps in obs std (x: eps x 1000)"}
    assert charts == {
        "mean return vs eps (x: eps x 255)": ["mean_return_vs_eps_x255$"],
        "action-change rate vs eps (x: eps x 255)": ["action_change_rate_vs_eps_x255$"],
        "mean return vs eps (x: eps x 1000)": ["mean_return_vs_eps_x1000$"],
        "action-change rate vs eps (x: eps x 1000)": ["action_change_rate_vs_eps_x1000$"],
    }
    assert chart_title("mean return", 255) in charts

    # rllab attack: every row, step = eps x 255, values = the card's
    card = json.loads(logdir["card"].read_text())
    (attack_run,) = [r for r in _json(server, "/data/runs") if r.startswith("catch/attack-") and r.count("/") == 1]
    rows = {**card["results"], CLEAN: {k: card["clean"] for k in card["results"]["noise"]}}
    assert set(rows) == {"noise", "fgsm:action", "pgd-2:action", CLEAN}
    for name, by_eps in rows.items():
        run = f"{attack_run}/{run_name(name)}"
        want = {round(float(k) * 255): r["mean_return"] for k, r in by_eps.items()}
        assert set(want) == set(CATCH_EPS.values())
        assert _curve(server, run, curve_tag("mean_return", 255)) == pytest.approx(want, abs=1e-6), name
        rates = {round(float(k) * 255): r.get("action_change_rate", 0.0) for k, r in by_eps.items()}
        assert _curve(server, run, curve_tag("action_change_rate", 255)) == pytest.approx(rates, abs=1e-6), name
    # the chart's regex finds the tag in a row's run (what the Custom Scalars tab asks the server)
    found = _json(
        server, "/data/plugin/custom_scalars/scalars", run=f"{attack_run}/noise", tag="mean_return_vs_eps_x255$"
    )
    assert found["regex_valid"] and list(found["tag_to_events"]) == ["mean_return_vs_eps_x255"]

    # rllab lab: every agent's rows, step = eps x 1000; the learned adversary only at its own budget
    checked = 0
    for folder in sorted((logdir["study"] / "agents").iterdir()):
        card = json.loads((folder / "attacks" / "lab" / "results.json").read_text())
        for name, by_eps in {**card["results"], CLEAN: {k: card["clean"] for k in STUDY_EPS}}.items():
            got = _curve(server, f"study/{folder.name}/attack/{run_name(name)}", curve_tag("mean_return", 1000))
            assert got == pytest.approx({STUDY_EPS[k]: r["mean_return"] for k, r in by_eps.items()}, abs=1e-4)
            checked += 1
        if "learned" in card["results"]:
            assert list(_curve(server, f"study/{folder.name}/attack/learned", curve_tag("mean_return", 1000))) == [500]
    assert checked >= 3 * 3  # three agents, each with noise, fgsm and clean at least


def _png(base: str, run: str, tag: str) -> list[tuple[int, bytes]]:
    entries = _json(base, "/data/plugin/images/images", run=run, tag=tag, sample=0)
    return [(e["step"], _get(base, "/data/plugin/images/individualImage?" + e["query"])) for e in entries]


def test_maps_come_first_with_a_colour_scale_and_as_written(server, logdir):
    tags = _json(server, "/data/plugin/images/tags")
    catch = list(tags["catch/explain-action-s1"])
    # served in the order written: the maps first; the dashboards' own order opens the maps' groups first too
    assert catch[0].startswith("1_saliency/") and catch[-1].startswith("frame/")
    assert not any(t.startswith("activation_maximisation") for t in catch)  # on request only
    all_tags = sorted({t for run_tags in tags.values() for t in run_tags})
    groups = dashboard_groups(all_tags)
    assert groups[:2] == ["1_saliency", "2_occlusion"] and "frame" in groups[2:]

    png_dir = logdir["catch"] / "explain" / "explain-action-s1"
    overlays = _png(server, "catch/explain-action-s1", "1_saliency/ep0/overlay")
    assert [s for s, _ in overlays] == list(range(9))  # every step of a 10-row Catch episode
    for step, data in overlays:
        img = Image.open(io.BytesIO(data))
        assert img.format == "PNG" and img.size == (160, 320 + SCALE_HEIGHT)  # 5x10 enlarged x32, then the scale
        pixels = np.asarray(img.convert("RGB"))
        on_disk = np.asarray(Image.open(png_dir / f"saliency__ep0__overlay__t{step:04d}.png").convert("RGB"))
        np.testing.assert_array_equal(pixels, on_disk)
        bar = pixels[320 + 4, 4:156]  # the colour bar: inferno from 0 (left) to the map's peak (right)
        np.testing.assert_array_equal(bar, colormap(np.linspace(0.0, 1.0, 152)[None, :])[0])
        assert (pixels[320 + 10 :] < 128).any()  # its numbers and the explained action are drawn under it
    ((_, heat),) = _png(server, "catch/explain-action-s1", "2_occlusion/ep0/heatmap")[:1]
    assert Image.open(io.BytesIO(heat)).size == (160, 320 + SCALE_HEIGHT)

    # the study's vector agents: per-method figures (matplotlib, 100 dpi) in the same first group
    study_tags = list(tags["study/CartPole-v1-ppo-s0-vanilla/explain"])
    assert dashboard_groups(study_tags) == ["1_saliency"]
    ((_, fig),) = _png(server, "study/CartPole-v1-ppo-s0-vanilla/explain", "1_saliency/ep0/feature_time")
    assert Image.open(io.BytesIO(fig)).format == "PNG" and Image.open(io.BytesIO(fig)).size == (800, 310)


def test_the_images_dashboard_opens_the_maps_first_in_a_real_browser(server):
    """TensorBoard's own frontend (headless Chromium): the Images tab's groups, in order, and which are open."""
    from tests.browser import chromium_or_reason, open_browser

    chromium, why_not = chromium_or_reason()
    if chromium is None:
        if os.environ.get("RLLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"RLLAB_REQUIRE_BROWSER=1 but there is no headless browser: {why_not}")
        pytest.skip(f"no headless browser: {why_not}")
    with open_browser(chromium) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server + "/#images")
        page.wait_for_selector("tf-image-loader", state="attached", timeout=30_000)
        panes = page.evaluate(
            """() => { const out = []; const walk = (root) => { for (const el of root.querySelectorAll('*')) {
                 if (el.localName === 'tf-category-paginated-view' && el.category && el.category.name)
                   out.push([el.category.name, el.opened]);
                 if (el.shadowRoot) walk(el.shadowRoot); } }; walk(document); return out; }"""
        )
        page.close()
    assert [name for name, _ in panes][:2] == ["1_saliency", "2_occlusion"]
    assert [name for name, is_open in panes if is_open] == ["1_saliency", "2_occlusion"]  # the rest start closed
