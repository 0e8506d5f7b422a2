"""Attack curves in TensorBoard: return and action-change rate against eps, one writer for ``rllab attack`` and
``rllab lab``.

TensorBoard's x axis is an integer step and cannot be relabelled, so the step is eps counted in the unit's
ticks and the tick is named in every tag and chart title: grey levels for pixel agents (step = eps x 255, so
step 8 is 8/255), thousandths for the std and absolute [0, 1] units (step = eps x 1000, so step 75 is 0.075;
a finer power of ten where a budget is not a whole number of thousandths). The tags are
``mean_return_vs_eps_x255`` and ``action_change_rate_vs_eps_x255``; each row of the card, every attack and
``clean`` (the clean return at every eps, the flat reference line), is its own run ``LOGDIR/ROW`` (TensorBoard
colours lines by run: rows as tags of one run would all draw in one colour).

A custom-scalars layout (the Custom Scalars tab), written in ``LOGDIR`` itself with the settings, holds per unit
one multiline chart per metric, titled with its axis (``mean return vs eps (x: eps x 255)``), whose lines are
every row of every selected run; every agent of a study writes the same layout, which TensorBoard merges into
one (it drops exact duplicates). The Scalars tab shows the same chart under the tag's name. Why custom scalars
and not the alternatives: the hparams plugin compares runs by their hyperparameters at one final value (eps
would be a hyperparameter of one run per agent x eps, and no view draws return against it as a line per
attack); one tag per eps gives a one-point chart per budget, with no curve at all. A multiline chart keeps the
curve, every attack beside clean, and the axis in its title. Both dashboards smooth lines by default (weight
0.6), which bends a three-point curve: ``#custom_scalars&_smoothingWeight=0`` after the address turns it off.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from rllab.units import PIXEL

#: the metrics drawn against eps: (row key, words in the chart title)
METRICS = (("mean_return", "mean return"), ("action_change_rate", "action-change rate"))
CLEAN = "clean"
MAX_REFINE = 3  # at most 1000 x more ticks than the unit's base (10^6 per unit for std budgets)
SMOOTHING_OFF = "#custom_scalars&_smoothingWeight=0"  # after TensorBoard's address: the Custom Scalars tab, unsmoothed
_UNSAFE = re.compile(r'[<>:"/\\|?*\s]')  # characters a run folder's name cannot hold everywhere


def eps_ticks(unit: str, eps: Iterable[float]) -> int:
    """Steps per unit of eps: 255 for pixel budgets (one step per grey level), 1000 for the others, times the
    smallest power of ten (at most 1000) that makes every budget of ``eps`` a whole number of steps."""
    base = 255 if unit == PIXEL else 1000
    values = [float(e) for e in eps]
    for k in range(MAX_REFINE + 1):
        ticks = base * 10**k
        if all(abs(e * ticks - round(e * ticks)) < 1e-6 * max(1.0, e * ticks) for e in values):
            return ticks
    return base * 10**MAX_REFINE


def eps_step(e: float, ticks: int) -> int:
    """A budget as a TensorBoard step: ``round(eps x ticks)``."""
    return int(round(float(e) * ticks))


def curve_tag(metric: str, ticks: int) -> str:
    """``mean_return_vs_eps_x255``: the tag of one metric's curves, its x axis named."""
    return f"{metric}_vs_eps_x{ticks}"


def run_name(row: str) -> str:
    """The run folder of one row of the card (``fgsm:action`` -> ``fgsm_action``)."""
    return _UNSAFE.sub("_", row) or "_"


def chart_title(words: str, ticks: int) -> str:
    """``mean return vs eps (x: eps x 255)``: a chart title stating what the step is."""
    return f"{words} vs eps (x: eps x {ticks})"


def category_title(unit: str, ticks: int) -> str:
    """The custom-scalars category of one unit's charts."""
    return f"attack curves, eps in {unit} (x: eps x {ticks})"


def layout(unit: str, ticks: int) -> dict[str, dict[str, list[Any]]]:
    """The custom-scalars layout (``SummaryWriter.add_custom_scalars``): one multiline chart per metric, matching
    its tag (a regex) in every run: every attack and clean, of every selected agent."""
    charts = {
        chart_title(words, ticks): ["Multiline", [re.escape(curve_tag(metric, ticks)) + "$"]]
        for metric, words in METRICS
    }
    return {category_title(unit, ticks): charts}


class AttackCurves:
    """A TensorBoard writer of attack curves into ``logdir``: rows as they are measured (``row``, the
    ``on_row`` callback of ``robustness.evaluate.evaluate``), each into its own run, the clean reference
    (``clean``), and the layout (written on opening, into ``logdir``). ``eps``: every budget the curves will
    hold (they fix the step unit)."""

    def __init__(self, logdir: str | Path, unit: str, eps: Sequence[float]) -> None:
        from torch.utils.tensorboard import SummaryWriter  # slow to import: only the writers of curves pay

        self._writer_class = SummaryWriter
        self.logdir = Path(logdir)
        self.unit = unit
        self.eps = sorted({float(e) for e in eps})
        self.ticks = eps_ticks(unit, self.eps)
        self.writer = SummaryWriter(str(self.logdir))  # the layout and the settings
        self.writer.add_custom_scalars(layout(unit, self.ticks))
        self.rows: dict[str, Any] = {}

    def row(self, name: str, e: float, row: dict[str, Any]) -> None:
        """One attack's numbers at budget ``e``: its mean return and, where measured, its action-change rate."""
        if name not in self.rows:
            self.rows[name] = self._writer_class(str(self.logdir / run_name(name)))
        step = eps_step(e, self.ticks)
        for metric, _ in METRICS:
            value = row.get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.rows[name].add_scalar(curve_tag(metric, self.ticks), float(value), step)

    def clean(self, row: dict[str, Any]) -> None:
        """The clean return at every budget (a flat reference line); an unattacked agent changes no action."""
        for e in self.eps:
            self.row(CLEAN, e, {"mean_return": row["mean_return"], "action_change_rate": 0.0})

    def card(self, card: dict[str, Any]) -> None:
        """Every row of a result card, and its clean reference."""
        for name, by_eps in card["results"].items():
            for key, r in by_eps.items():
                self.row(name, float(key), r)
        self.clean(card["clean"])

    def close(self) -> None:
        """Flush and close every event file."""
        for w in [self.writer, *self.rows.values()]:
            w.flush()
            w.close()

    def __enter__(self) -> AttackCurves:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def write_attack_curves(logdir: str | Path, card: dict[str, Any]) -> int:
    """A result card's curves (every attack and clean, at every eps) and layout into ``logdir``; returns the
    steps per unit of eps the curves use."""
    eps = [float(e) for e in card["threat_model"]["eps"]]
    eps += [float(k) for by_eps in card["results"].values() for k in by_eps]  # a row at its own budgets (learned)
    with AttackCurves(logdir, card["threat_model"]["unit"], eps) as curves:
        curves.card(card)
        return curves.ticks
