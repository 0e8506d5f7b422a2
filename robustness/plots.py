"""Return-against-eps plots (matplotlib, Agg canvas, inline SVG) and the feasible return range they clip to.

One plot shape serves the attack report (one line per attack row of a card) and the study page (one line
per agent's worst case): a true eps axis (eps = 0 is the clean return), 95% CI bands clipped to the range
of returns the environment can give (and the clipping said in the caption), a distinct colour + marker +
line style per series, series dodged sideways so equal values stay visible, and the lowest series at each
eps ringed (a tie says how many series share it).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib as mpl
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from rllab.units import format_budget

# Returns an episode can have, by environment: a CI is clipped to these (a mean of returns lies inside them).
RETURN_RANGES: dict[str, tuple[float, float]] = {
    "CartPole-v1": (0.0, 500.0),
    "CartPole-v0": (0.0, 200.0),
    "Catch-v0": (-1.0, 1.0),
    "Acrobot-v1": (-500.0, 0.0),
    "MountainCar-v0": (-200.0, 0.0),
    "Pendulum-v1": (-16.2736044 * 200, 0.0),
}
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h")
STYLES = ("-", "--", "-.", ":")
TIE_TOLERANCE = 1e-9
LEGEND_COLUMNS = 3  # at most; fewer when the names are long
LEGEND_FONT = 9
RING = "strongest attack (lowest return)"
FIG_WIDTH = 6.4  # inches; the page scales the SVG to its column


def feasible_range(env_id: str | None) -> tuple[float, float] | None:
    """The returns an episode of ``env_id`` can have, where the lab knows them (else None: nothing is clipped)."""
    return RETURN_RANGES.get(str(env_id)) if env_id is not None else None


def clip_ci(
    ci: Sequence[float] | None, feasible: tuple[float, float] | None
) -> tuple[tuple[float, float] | None, bool]:
    """A 95% CI clipped to the feasible range, and whether clipping changed it."""
    if ci is None or len(ci) != 2 or any(v is None for v in ci):
        return None, False
    lo, hi = float(ci[0]), float(ci[1])
    if feasible is None:
        return (lo, hi), False
    clipped = (max(lo, feasible[0]), min(hi, feasible[1]))
    return clipped, clipped != (lo, hi)


def style(i: int) -> dict[str, Any]:
    """The i-th series' colour, marker and line style: no two of the first 36 series share all three."""
    return {"color": COLORS[i % len(COLORS)], "marker": MARKERS[i % len(MARKERS)], "linestyle": STYLES[i % len(STYLES)]}


@dataclass
class Series:
    """One line: mean return at each eps, with its 95% CI (None where there is none)."""

    name: str
    eps: list[float]
    means: list[float]
    cis: list[tuple[float, float] | None] = field(default_factory=list)


def lowest_at(series: Sequence[Series], e: float) -> tuple[float, list[str]] | None:
    """The lowest mean at eps ``e`` over ``series`` and every series that reaches it (ties kept)."""
    values = [(s.means[s.eps.index(e)], s.name) for s in series if e in s.eps]
    if not values:
        return None
    low = min(v for v, _ in values)
    return low, [n for v, n in values if v - low <= TIE_TOLERANCE * max(1.0, abs(low))]


def eps_plot(
    series: Sequence[Series],
    unit: str,
    norm: str,
    clean: tuple[float, tuple[float, float] | None] | None = None,
    feasible: tuple[float, float] | None = None,
    title: str = "",
    ylabel: str = "mean return",
    mark_lowest: bool = True,
    full_caption: bool = True,
) -> str:
    """The plot as an inline ``<figure>``: an SVG (no external references) and its caption (with
    ``full_caption=False`` only what is particular to this plot, for a page that explains the plots once)."""
    n = len(series)
    labels = [s.name for s in series] + ["clean (no attack)"] * (clean is not None) + [RING] * mark_lowest
    # as many legend columns as fit across the figure (about 0.6 em a character, plus the line sample)
    column_pt = 0.6 * LEGEND_FONT * max(len(t) for t in labels) + 40
    columns = max(1, min(LEGEND_COLUMNS, int(FIG_WIDTH * 72 // column_pt)))
    legend_rows = -(-(n + (clean is not None) + mark_lowest) // columns)
    # the legend sits under the axes (a legend beside them squeezes the axes on a narrow window), and the
    # figure grows with its rows so the axes keep their height
    fig = Figure(figsize=(FIG_WIDTH, 3.7 + 0.22 * legend_rows), layout="constrained")
    FigureCanvasSVG(fig)
    ax = fig.subplots()
    all_eps = sorted({e for s in series for e in s.eps} | {0.0})
    span = (max(all_eps) - min(all_eps)) or 1.0
    dodge = 0.012 * span
    clipped_any = False
    if clean is not None:
        ax.axhline(clean[0], color="black", linewidth=1.2, label="clean (no attack)")
        band, clipped = clip_ci(clean[1], feasible)
        clipped_any |= clipped
        if band is not None:
            ax.axhspan(band[0], band[1], color="black", alpha=0.08, linewidth=0)
    drawn_at: dict[tuple[str, float], float] = {}  # (series, eps) -> where its point was drawn
    for i, s in enumerate(series):
        st = style(i)
        xs = [e + (i - (n - 1) / 2) * dodge for e in s.eps]
        drawn_at.update({(s.name, e): x for e, x in zip(s.eps, xs, strict=True)})
        ax.plot(xs, s.means, label=s.name, markersize=5, linewidth=1.4, **st)
        lows, highs, bx = [], [], []
        for x, ci in zip(xs, s.cis or [None] * len(xs), strict=True):
            band, clipped = clip_ci(ci, feasible)
            clipped_any |= clipped
            if band is not None:
                bx.append(x)
                lows.append(band[0])
                highs.append(band[1])
        if bx:
            ax.fill_between(bx, lows, highs, color=st["color"], alpha=0.10, linewidth=0)
    if feasible is not None:
        pad = 0.03 * (feasible[1] - feasible[0])
        ax.set_ylim(feasible[0] - pad, feasible[1] + pad)
    y_lo, y_hi = ax.get_ylim()
    ring = RING  # the legend names the ring once
    for e in all_eps if mark_lowest else []:
        low = lowest_at(series, e)
        if low is None:
            continue
        value, names = low
        if clean is not None and value >= clean[0] - TIE_TOLERANCE * max(1.0, abs(clean[0])):
            continue  # nothing lowered the return here: no strongest attack to mark
        x = drawn_at[(names[0], e)]
        ax.plot([x], [value], "o", ms=14, mfc="none", mec="red", label=ring)
        ring = "_nolegend_"
        if len(names) > 1:  # the ringed point's colour and marker name one row; a tie says how many share it
            right = e > 0.6 * max(all_eps)  # near the right edge the text runs leftwards, inside the axes
            up = value < y_lo + 0.15 * (y_hi - y_lo)  # near the bottom it sits above the ring
            ax.annotate(
                f"tie: {len(names)}",
                (x, value),
                textcoords="offset points",
                xytext=(-9 if right else 9, 9 if up else -15),
                ha="right" if right else "left",
                color="red",
                fontsize=9,
            )
    ax.set_xticks(all_eps, ["0\n(clean)" if e == 0 else format_budget(e, unit) for e in all_eps])
    ax.tick_params(labelsize=10)
    ax.set_xlabel(f"eps ({unit}, {norm}; true scale, 0 = clean)", fontsize=10)
    ax.set_ylabel(ylabel, fontsize=10)
    ax.grid(True, alpha=0.35)
    if title:
        ax.set_title(title, fontsize=11)
    fig.legend(loc="outside lower center", ncols=columns, fontsize=LEGEND_FONT, frameon=False)
    buf = io.StringIO()
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": "rllab"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    if not full_caption:
        note = (
            f"95% CI bands clipped to [{feasible[0]:g}, {feasible[1]:g}]"
            + (" (clipping changed some bands)" if clipped_any else "")
            if feasible is not None
            else "95% CI bands not clipped (feasible return range unknown)"
        )
        return f'<figure class="plot">{inline_svg(buf.getvalue())}<figcaption>{note}.</figcaption></figure>'
    caption = (
        "Lines: mean return; bands: 95% CI"
        + (
            f", clipped to the feasible return range [{feasible[0]:g}, {feasible[1]:g}]"
            + (" (clipping changed some bands)" if clipped_any else "")
            if feasible is not None
            else " (feasible return range unknown: not clipped)"
        )
        + "; points dodged sideways by up to "
        + f"{dodge * (n - 1) / 2:.3g} eps so equal values stay visible"
        + (
            "; red ring: the strongest attack at that eps, the lowest return (the ringed point's colour and marker "
            'name the row; "tie: k" when k rows share it; no ring where nothing fell below clean).'
            if mark_lowest
            else "."
        )
    )
    return f'<figure class="plot">{inline_svg(buf.getvalue())}<figcaption>{caption}</figcaption></figure>'


def inline_svg(svg: str) -> str:
    """matplotlib's SVG file as an element to put in HTML: no XML prolog, DOCTYPE, metadata or namespace URLs,
    scaled to its container (viewBox kept), and its ids (``figure_1``, clip paths, markers) prefixed by a hash
    of the plot so that many plots on one page share none."""
    svg = svg[svg.index("<svg") :]
    tag = "s" + hashlib.sha1(svg.encode()).hexdigest()[:8] + "-"
    svg = re.sub(r'(\sid="|url\(#|href="#)', lambda m: m.group(1) + tag, svg)
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = re.sub(r'(<svg[^>]*?)\swidth="[^"]*"\s+height="[^"]*"', r'\1 width="100%"', svg, count=1)
    return svg.replace("xlink:href", "href")
