"""The study's pages: ``STUDY/index.html`` (one self-contained offline page: leaderboard, plots, compression
and adaptation tables, saliency thumbnails, settings and versions, glossary) and ``STUDY/summary.md``."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from pathlib import Path
from typing import Any

from PIL import Image

from explain.tensorboard import tensorboard_command
from rllab.units import format_budget
from robustness.plots import Series, clip_ci, eps_plot, feasible_range
from robustness.report import PAGE_CSS, card_plot, strongest_label

GLOSSARY = {
    "rank": "place by worst-case mean return at that eps, highest first; agents with equal worst cases share a rank "
    "(=k)",
    "agent": "ENV-ALGO-sSEED-NAME: vanilla is the undefended agent; other names are the study's defenses, "
    "compressions and adaptations",
    "lineage": "how the agent was made from its parent: the transforms of its checkpoint's lineage (defend, "
    "distill, prune, quantize, adapt) or the training-time defense",
    "clean": "mean return with no attack: in the leaderboard over the attack's own episodes (the seeds every attack "
    "row uses); in the compression and adaptation tables over the separate clean evaluation",
    "[a, b]": "the 95% confidence interval of the mean return (Student t over the episodes), clipped to the returns "
    "an episode can have (CartPole-v1 [0, 500], Catch-v0 [-1, 1]); * marks an interval clipping changed",
    "noise": "mean return under uniform random noise of the same budget: the floor any attack must beat",
    "worst case": "the lowest mean return over every attack row at that eps, uniform noise included",
    "strongest attack": "the row that reached the worst case; 'tie: a, b' names every row that reached it, and "
    "'none (no row below clean)' says no attack lowered the return",
    "adaptive": "rows that attack the defense itself: BPDA (non-differentiable filters bypassed on the backward "
    "pass) and/or EOT (gradients averaged over the defense's randomness); the suite adds them for defended agents",
    "changed": "(in each agent's report) the fraction of steps whose action the attack changed",
    "eps": "the attack budget in threat units: k/255 of the pixel range for images, multiples of the per-feature "
    "observation std for vectors; plots use a true eps axis, eps 0 being the clean return",
    "parameters / file / latency": "the compressed checkpoint's non-zero and total policy parameters, weights file "
    "size and CPU latency at batch 1, beside its parent's",
    "target / source": "an adapted agent's mean return in the shifted (target) domain it was adapted to and in its "
    "original (source) domain, before -> after adaptation",
    "method": "the adaptation method rllab adapt used (its summary's method)",
    "domain gap": "held-out accuracy of a fresh classifier telling source from target features (0.5: the domains "
    "cannot be told apart)",
    "saliency thumbnail": "the agent's saliency map (|gradient| of the chosen action's score): for images the frame "
    "beside the map laid over it, for vectors the mean attribution per feature; it links to the agent's report",
    "faithfulness": "per method, the metrics of explain/faithfulness.py (deletion, insertion, ...); random is the "
    "floor every method is compared with",
}


PER_AGENT_NOTE = (
    "Each plot: one line per attack row of the agent's report, mean return against eps (eps 0: the clean return, "
    "also the black line and grey band); bands are 95% confidence intervals, clipped to the returns an episode can "
    "have; points are dodged sideways a little so equal values stay visible; the red ring marks the strongest "
    'attack at each eps, the colour and marker of the ringed point naming the row ("tie: k" when k rows share '
    "the lowest return; no ring where nothing fell below clean)."
)
PAGE_EXTRA_CSS = (
    ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(460px,100%),1fr));gap:1em 2em}"
    " .grid h4{margin:.5em 0 0} .thumbs{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}"
    " .thumb{font-size:12px;max-width:360px} .thumb img{display:block;border:1px solid #ccc}"
    " .thumb b{display:block;font-size:13px;margin-bottom:.3em} dt{font-weight:bold;margin-top:.5em}"
    " code{background:#f4f4f4;padding:2px 4px} nav{margin:.5em 0 1em} nav a{margin-right:1em}"
    " table.leaderboard td:nth-child(n+4):nth-child(-n+6){white-space:nowrap}"
)


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _ci_cell(row: dict[str, Any] | None, feasible: tuple[float, float] | None) -> str:
    if not row:
        return "-"
    ci, clipped = clip_ci(row.get("ci95_return"), feasible)
    text = "[n/a]" if ci is None else f"[{ci[0]:.3g}, {ci[1]:.3g}]" + ("*" if clipped else "")
    return f"{_num(row['mean_return'])} {text}"


def _table(header: list[str], rows: list[list[str]], raw: bool = False, cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else _e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table class="{cls}"><tr>{head}</tr>{body}</table></div>'


def _eps_keys(card: dict[str, Any]) -> list[str]:
    return [f"{e:g}" for e in sorted(float(e) for e in card["threat_model"]["eps"])]


def worst_row(card: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The row (mean and CI) of the worst case at one eps, noise included."""
    rows = [r[key] for r in card["results"].values() if key in r]
    return min(rows, key=lambda r: r["mean_return"]) if rows else None


def _adaptive_rows(card: dict[str, Any]) -> str:
    names = [n for n, s in card["attacks"].items() if s.get("bpda") or (s.get("eot") or 1) > 1]
    return ", ".join(names) or "-"


def _rel(path: str | Path, root: Path) -> str:
    return Path(os.path.relpath(Path(path), root)).as_posix()


def _lineage(agent: dict[str, Any]) -> str:
    """``PARENT > transform`` from the checkpoint's lineage (a training-time defense is its first step)."""
    plan = agent["plan"]
    steps = [s for s in agent.get("make", {}).get("lineage", []) if s]
    parent = [plan.parent.name] if plan.parent else []
    return " > ".join(parent + steps) or "-"


def _worst_list(card: dict[str, Any]) -> str:
    """``eps: worst case`` at every eps of a card."""
    unit = card["threat_model"]["unit"]
    return ", ".join(f"{format_budget(k, unit)}: {_num(worst_row(card, k)['mean_return'])}" for k in _eps_keys(card))


def leaderboard_html(env_id: str, agents: list[dict[str, Any]], root: Path) -> str:
    """The defense leaderboard of one environment: per eps, every agent ranked by its worst case."""
    feasible = feasible_range(env_id)
    carded = [a for a in agents if a.get("card_data")]
    if not carded:
        return "<p>No agent of this environment was attacked.</p>"
    keys = _eps_keys(carded[0]["card_data"])
    unit = carded[0]["card_data"]["threat_model"]["unit"]
    parts = []
    for k in keys:
        entries = []
        for a in carded:
            card = a["card_data"]
            worst = worst_row(card, k)
            entries.append((worst["mean_return"] if worst else float("-inf"), a, card, worst))
        entries.sort(key=lambda t: -t[0])
        rows, previous, rank = [], None, 0
        for i, (value, a, card, worst) in enumerate(entries, 1):
            rank = rank if value == previous else i
            shared = sum(1 for t in entries if t[0] == value) > 1
            previous = value
            report = _rel(a["plan"].folder / a["attack"]["report"], root)
            rows.append(
                [
                    f"={rank}" if shared else str(rank),
                    _e(a["plan"].label),
                    _e(_lineage(a)),
                    _e(_ci_cell(card["clean"], feasible)),
                    _e(_ci_cell(card["results"].get("noise", {}).get(k), feasible)),
                    f"<b>{_e(_ci_cell(worst, feasible))}</b>",
                    _e(strongest_label(card, k)),
                    _e(_adaptive_rows(card)),
                    f'<a href="{_e(report)}">report</a>',
                ]
            )
        header = ["rank", "agent", "lineage", "clean", "noise", "worst case", "strongest attack", "adaptive", "report"]
        title = f"<h4>eps {_e(format_budget(k, unit))} ({_e(unit)})</h4>"
        parts.append(title + _table(header, rows, raw=True, cls="leaderboard"))
    return "".join(parts)


def worst_case_plot(env_id: str, agents: list[dict[str, Any]]) -> str:
    """Worst case against eps, one line per agent (eps 0: its clean return)."""
    carded = [a for a in agents if a.get("card_data")]
    if not carded:
        return ""
    series = []
    for a in carded:
        card = a["card_data"]
        keys = _eps_keys(card)
        rows = [card["clean"], *[worst_row(card, k) for k in keys]]
        eps = [0.0, *[float(k) for k in keys]]
        name = a["plan"].label.removeprefix(f"{env_id}-")  # the plot's title names the environment
        series.append(Series(name, eps, [r["mean_return"] for r in rows], [r.get("ci95_return") for r in rows]))
    tm = carded[0]["card_data"]["threat_model"]
    return eps_plot(
        series,
        tm["unit"],
        tm["norm"],
        feasible=feasible_range(env_id),
        title=f"{env_id}: worst case over every attack, per agent",
        ylabel="worst-case mean return",
        mark_lowest=False,
    )


def compression_html(env_id: str, agents: list[dict[str, Any]], by_folder: dict[Path, dict[str, Any]]) -> str:
    """Compressed agents beside their parents: size, latency, clean and worst-case returns."""
    rows = []
    feasible = feasible_range(env_id)
    for a in agents:
        c = a.get("make", {}).get("compression")
        if not c:
            continue
        parent = by_folder.get(a["plan"].parent, {})
        p = c["parameters"]["policy"]
        pp = c["parent"]["parameters"]["policy"]
        worst = []
        for who in (a, parent):
            card = who.get("card_data")
            worst.append(_worst_list(card) if card else "-")
        rows.append(
            [
                a["plan"].label,
                _lineage(a),
                f"{p['nonzero']:,} of {p['total']:,} (parent {pp['nonzero']:,})",
                f"{c['file_bytes'] / 1024:.1f} KiB (parent {c['parent']['file_bytes'] / 1024:.1f})",
                f"{c['latency_s']['batch_1'] * 1e6:.0f} us (parent {c['parent']['latency_s']['batch_1'] * 1e6:.0f})",
                f"{_ci_cell(a.get('eval'), feasible)} (parent {_ci_cell(parent.get('eval'), feasible)})",
                f"{worst[0]} (parent {worst[1]})",
            ]
        )
    if not rows:
        return ""
    header = [
        "agent",
        "lineage",
        "parameters (non-zero of total)",
        "file",
        "latency b=1",
        "clean [95% CI]",
        "worst case per eps",
    ]
    return f"<h3>Compression</h3>{_table(header, rows)}"


def adaptation_html(env_id: str, agents: list[dict[str, Any]]) -> str:
    """Adapted agents: returns in both domains before and after, the domain gap, and the agent attacked there."""
    rows = []
    feasible = feasible_range(env_id)
    for a in agents:
        s = a.get("make", {}).get("adaptation")
        if not s:
            continue
        r, card = s["mean_return"], a.get("card_data")
        worst = _worst_list(card) if card else "-"
        target = s["target_env"] if isinstance(s["target_env"], str) else json.dumps(s["target_env"])
        rows.append(
            [
                a["plan"].label,
                _lineage(a),
                target,
                str(s.get("method", "-")),
                f"{r['target_before']:.3g} -> {r['target_after']:.3g}",
                f"{r['source_before']:.3g} -> {r['source_after']:.3g}",
                f"{s['domain_gap_before']['accuracy']:.2f} -> {s['domain_gap_after']['accuracy']:.2f}",
                _ci_cell(a.get("eval"), feasible),
                worst,
            ]
        )
    if not rows:
        return ""
    header = [
        "agent",
        "lineage",
        "target domain",
        "method",
        "target",
        "source",
        "domain gap",
        "clean in target [95% CI]",
        "worst case in target per eps",
    ]
    return f"<h3>Adaptation</h3>{_table(header, rows)}"


def thumbnail(paths: list[Path], width: int = 360) -> str:
    """PNGs side by side as one inline base64 ``data:`` URI, shrunk to at most ``width`` pixels across."""
    images = []
    for p in paths:
        with Image.open(p) as img:
            images.append(img.convert("RGB"))
    gap = 6 if len(images) > 1 else 0
    strip = Image.new("RGB", (sum(i.width for i in images) + gap * (len(images) - 1), max(i.height for i in images)))
    strip.paste((255, 255, 255), (0, 0, *strip.size))
    x = 0
    for img in images:
        strip.paste(img, (x, 0))
        x += img.width + gap
    strip.thumbnail((width, width * 4), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    strip.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def best_image(images: list[str]) -> str:
    """The map to show small: a saliency overlay (images, the latest step) or feature bars (vectors), else any
    saliency map."""
    for want in ("overlay", "feature_bars", ""):
        for p in reversed(images):  # sorted by name: the latest step last
            name = Path(p).name
            if name.startswith("saliency") and want in name:
                return p
    return images[0]


def _shown(folder: Path, pick: str) -> tuple[list[Path], str]:
    """The files of a thumbnail (an overlay gets the frame it explains beside it) and what they show."""
    m = re.match(r"(\w+?)__ep(\d+)__(\w+?)__t(\d+)\.png$", Path(pick).name)
    if not m:
        return [folder / pick], Path(pick).stem
    method, episode, kind, step = m.groups()
    frame = (folder / pick).with_name(f"frame__ep{episode}__t{step}.png")
    where = f"episode {episode}, step {int(step)}"
    if kind == "overlay" and frame.exists():
        return [frame, folder / pick], f"the frame | {method} laid over it ({where})"
    return [folder / pick], f"{method}, {kind.replace('_', ' ')} ({where})"


def explanations_html(agents: list[dict[str, Any]], root: Path) -> str:
    """A saliency thumbnail per agent, linking to its attack report, with its faithfulness metrics."""
    cells = []
    for a in agents:
        ex = a.get("explain")
        if ex and ex.get("skipped"):
            cells.append(f'<div class="thumb"><b>{_e(a["plan"].label)}</b><p>{_e(ex["skipped"])}</p></div>')
            continue
        if not ex or not ex["images"]:
            continue
        folder = a["plan"].folder
        files, what = _shown(folder, best_image(ex["images"]))
        report = a.get("attack")
        link = _rel(folder / report["report"], root) if report else _rel(files[-1], root)
        cols = ex.get("columns", {})
        metrics = "".join(
            f"<tr><td>{_e(m['method'])}</td>"
            + "".join(f"<td>{_num(m.get(k)) if isinstance(m.get(k), float) else '-'}</td>" for k in cols)
            + "</tr>"
            for m in ex["metrics"]
        )
        head = "".join(
            f"<th title='{_e(c['meaning'])} ({_e(c['better'])})'>{_e(c['header'])}</th>" for c in cols.values()
        )
        table = f"<table><tr><th>method</th>{head}</tr>{metrics}</table>" if metrics else ""
        cells.append(
            f'<div class="thumb"><b>{_e(a["plan"].label)}</b><a href="{_e(link)}"><img alt="saliency of '
            f'{_e(a["plan"].label)}" src="{thumbnail(files)}"></a><div>{_e(what)}; '
            f'<a href="{_e(link)}">{"attack report" if report else "full size"}</a></div>{table}</div>'
        )
    return f'<div class="thumbs">{"".join(cells)}</div>' if cells else "<p>No explanations in this study.</p>"


def render_index(results: dict[str, Any]) -> str:
    """``index.html``: the whole study on one offline page."""
    root = Path(results["out"])
    agents = list(results["agents"].values())
    by_folder = {a["plan"].folder: a for a in agents}
    sections = []
    for env_id in results["study"]["envs"]:
        mine = [a for a in agents if a["plan"].env == env_id]
        per_agent = "".join(
            f'<div><h4>{_e(a["plan"].label)} (<a href="{_e(_rel(a["plan"].folder / a["attack"]["report"], root))}">'
            f"report</a>)</h4>{card_plot(a['card_data'], full_caption=False)}</div>"
            for a in mine
            if a.get("card_data")
        )
        sections.append(
            f'<h2 id="{_e(env_id)}">{_e(env_id)}</h2><h3>Defense leaderboard</h3>{leaderboard_html(env_id, mine, root)}'
            f"<h3>Worst case against eps</h3>{worst_case_plot(env_id, mine)}"
            f"{compression_html(env_id, mine, by_folder)}{adaptation_html(env_id, mine)}"
            f"<h3>Every attack, per agent</h3><p>{PER_AGENT_NOTE}</p><div class='grid'>{per_agent}</div>"
            f"<h3>Explanations</h3>{explanations_html(mine, root)}"
        )
    nav = "".join(f'<a href="#{_e(e)}">{_e(e)}</a>' for e in results["study"]["envs"])
    nav += '<a href="#glossary">Glossary</a><a href="#details">Settings and versions</a>'
    timing_rows = [[t["stage"], t["status"], f"{t['seconds']:.1f}", f"{t['ran_s']:.1f}"] for t in results["timings"]]
    versions = [[k, v] for k, v in results["versions"].items()]
    glossary = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in GLOSSARY.items())
    tb = tensorboard_command(root)
    ran = sum(t["status"] == "ran" for t in results["timings"])
    settings = _e(json.dumps(results["study"], indent=2))
    timings = _table(["stage", "status", "seconds", "seconds when it ran"], timing_rows)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>rllab study: {_e(results["name"])}</title>
<style>{PAGE_CSS} {PAGE_EXTRA_CSS}</style>
</head><body>
<h1>rllab study: {_e(results["name"])}</h1>
<p>Written {_e(results["written"])} by <code>rllab lab</code> into <code>{_e(root)}</code>; stages this run:
{ran} ran, {len(results["timings"]) - ran} cached ({results["seconds"]:.0f} s). TensorBoard (training curves,
attack curves with eps as the step, attribution maps and faithfulness): <code>{_e(tb)}</code></p>
<nav>{nav}</nav>
{"".join(sections)}
<h2 id="glossary">Glossary</h2><dl>{glossary}</dl>
<h2 id="details">Settings and versions</h2>
<details><summary>Exact settings (the study as run)</summary><pre>{settings}</pre></details>
<details><summary>Versions</summary>{_table(["package", "version"], versions)}</details>
<details><summary>Stage timings</summary>{timings}</details>
</body></html>
"""


def render_summary(results: dict[str, Any]) -> str:
    """``summary.md``: per agent its clean evaluation, then at each eps the worst case beside the clean return
    of the same attack episodes, each mean [95% CI], with the strongest attack."""
    lines = [f"# rllab study: {results['name']}", ""]
    lines.append(
        "Mean return [95% CI, clipped to the feasible range; * where clipping changed it]. Under attack, clean is "
        "the return over the attack's own episodes (the same seeds as every attack row) and the worst case the "
        "lowest mean over every attack row at that eps, uniform noise included."
    )
    root = Path(results["out"])
    for env_id in results["study"]["envs"]:
        feasible = feasible_range(env_id)
        mine = [a for a in results["agents"].values() if a["plan"].env == env_id]
        lines += ["", f"## {env_id}", "", "| agent | lineage | clean | episodes |", "|---|---|---|---|"]
        for a in mine:
            ev = a.get("eval") or {}
            lines.append(
                f"| {a['plan'].label} | {_lineage(a)} | {_ci_cell(ev, feasible)} | {ev.get('episodes', '-')} |"
            )
        attacked = [a for a in mine if a.get("card_data")]
        if not attacked:
            continue
        lines += ["", "| agent | eps | clean | worst case | strongest attack | report |", "|---|---|---|---|---|---|"]
        for a in attacked:
            card = a["card_data"]
            clean = _ci_cell(card["clean"], feasible)
            for k in _eps_keys(card):
                label = format_budget(k, card["threat_model"]["unit"])
                lines.append(
                    f"| {a['plan'].label} | {label} | {clean} | {_ci_cell(worst_row(card, k), feasible)} | "
                    f"{strongest_label(card, k)} | {_rel(a['plan'].folder / a['attack']['report'], root)} |"
                )
    return "\n".join(lines) + "\n"
