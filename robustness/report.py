"""The evaluation report: ``results.json`` (the card), ``report.md`` and a self-contained ``report.html``.

Also the sanity flags, in the spirit of AutoAttack's checks (Croce & Hein 2020): a report
that shows any of these is more likely to reflect a weak attack or gradient masking than a
robust agent.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from rllab.checkpoint import atomic_write, read_json
from rllab.errors import RllabError
from rllab.schema import ResultCard
from rllab.units import STD, format_budget
from robustness.plots import TIE_TOLERANCE, Series, clip_ci, eps_plot, feasible_range

GRADIENT_KINDS = ("white-box",)


def _strongest(card: dict[str, Any], eps_key: str) -> tuple[str, dict[str, Any]] | None:
    """The worst case at one eps: the row with the lowest mean return over every row of the card that has
    this eps, uniform noise included (noise is an adversary within the same budget; when it wins, a sanity
    flag says so). The clean row is not a candidate; ties go to the row that comes first in the card
    (``strongest_names`` names them all)."""
    rows = [(name, by_eps[eps_key]) for name, by_eps in card["results"].items() if eps_key in by_eps]
    return min(rows, key=lambda r: r[1]["mean_return"]) if rows else None


def strongest_names(card: dict[str, Any], eps_key: str) -> list[str]:
    """Every row that reaches the worst case at one eps (ties kept, in card order); none when no row fell
    below the clean return (then no attack is the strongest)."""
    worst = _strongest(card, eps_key)
    if worst is None:
        return []
    low = worst[1]["mean_return"]
    if low >= card["clean"]["mean_return"] - TIE_TOLERANCE * max(1.0, abs(low)):
        return []
    return [
        n
        for n, by_eps in card["results"].items()
        if eps_key in by_eps and by_eps[eps_key]["mean_return"] - low <= TIE_TOLERANCE * max(1.0, abs(low))
    ]


def strongest_label(card: dict[str, Any], eps_key: str) -> str:
    """The strongest attack at one eps as tables name it: one row, ``tie: a, b`` or that none lowered it."""
    names = strongest_names(card, eps_key)
    if not names:
        return "none (no row below clean)"
    return names[0] if len(names) == 1 else "tie: " + ", ".join(names)


def eps_label(card: dict[str, Any], key: str) -> str:
    """``0.12549`` -> ``32/255`` for pixel budgets; other units as they are."""
    return format_budget(key, card.get("threat_model", {}).get("unit"))


def _eps_values(card: dict[str, Any]) -> list[float]:
    """The card's eps ascending, one per result key (older cards kept them in the order typed)."""
    return sorted({f"{float(e):g}": float(e) for e in card["threat_model"]["eps"]}.values())


def _eps_keys(card: dict[str, Any]) -> list[str]:
    return [f"{e:g}" for e in _eps_values(card)]


def _ci(row: dict[str, Any] | None) -> tuple[float, float] | None:
    """A row's 95% interval, or None where it has none (fewer than 2 episodes: JSON null)."""
    ci = (row or {}).get("ci95_return")
    if ci is None or len(ci) != 2 or any(v is None for v in ci):
        return None
    return float(ci[0]), float(ci[1])


def _ci_text(row: dict[str, Any], feasible: tuple[float, float] | None = None) -> str:
    ci, clipped = clip_ci(_ci(row), feasible)
    return "[n/a]" if ci is None else f"[{ci[0]:.3g}, {ci[1]:.3g}]" + ("*" if clipped else "")


def sanity_flags(card: dict[str, Any]) -> list[str]:
    """Warnings about the card. Comparisons that need a confidence interval skip rows without one."""
    flags: list[str] = []
    eps_keys = _eps_keys(card)
    lab = {k: eps_label(card, k) for k in eps_keys}
    kinds = {name: s.get("kind", "") for name, s in card["attacks"].items()}
    for name, by_eps in card["results"].items():
        means = [by_eps[k]["mean_return"] for k in eps_keys if k in by_eps]
        keys = [k for k in eps_keys if k in by_eps]
        for a, b, ka, kb in zip(means, means[1:], keys, keys[1:], strict=False):
            # only a rise beyond both 95% intervals: the same episodes at every eps, so a few episodes that
            # differ by chance (484 -> 500 over 10 CartPole episodes) are not a finding
            ci_a, ci_b = _ci(by_eps[ka]), _ci(by_eps[kb])
            if ci_a and ci_b and ci_b[0] > ci_a[1] and name != "noise":
                flags.append(
                    f"{name}: return rises from {a:.3g} at eps {lab[ka]} to {b:.3g} at eps {lab[kb]} "
                    "(a stronger budget should not help the agent)"
                )
    for k in eps_keys:
        noise = card["results"].get("noise", {}).get(k)
        grads = {n: r[k] for n, r in card["results"].items() if kinds.get(n) in GRADIENT_KINDS and k in r}
        if noise and grads and all(noise["mean_return"] < r["mean_return"] for r in grads.values()):
            flags.append(
                f"eps {lab[k]}: random noise ({noise['mean_return']:.3g}) beats every gradient attack "
                "(gradient masking or a broken attack)"
            )
        black = {n: r[k] for n, r in card["results"].items() if "black-box" in kinds.get(n, "") and k in r}
        if black and grads:
            best_black = min(black.items(), key=lambda kv: kv[1]["mean_return"])
            best_grad = min(grads.values(), key=lambda r: r["mean_return"])
            if best_black[1]["mean_return"] < best_grad["mean_return"]:
                flags.append(
                    f"eps {lab[k]}: black-box {best_black[0]} ({best_black[1]['mean_return']:.3g}) beats the best "
                    f"white-box attack ({best_grad['mean_return']:.3g}): a sign of gradient masking"
                )
        steps = {}
        for n, s in card["attacks"].items():
            if s.get("attack") in ("pgd", "fgsm") and k in card["results"].get(n, {}):
                objective = s.get("objective")
                if s.get("target_action") is not None:
                    objective = f"{objective}={s['target_action']}"
                steps.setdefault(objective, []).append((s.get("steps", 1), card["results"][n][k]))
        for objective, runs in steps.items():
            runs.sort(key=lambda r: r[0])
            for (s1, r1), (s2, r2) in zip(runs, runs[1:], strict=False):
                ci1, ci2 = _ci(r1), _ci(r2)
                if s2 > s1 and ci1 and ci2 and ci2[0] > ci1[1]:
                    flags.append(
                        f"eps {lab[k]}: {s2}-step PGD ({objective}) leaves a higher return than {s1} steps "
                        f"({r2['mean_return']:.3g} > {r1['mean_return']:.3g})"
                    )
        # a defense that only holds against the non-adaptive version of an attack masks gradients
        for n, s in card["attacks"].items():
            if not (s.get("bpda") or (s.get("eot") or 1) > 1) or k not in card["results"].get(n, {}):
                continue
            adaptive_row = card["results"][n][k]
            for m, t in card["attacks"].items():
                same = all(t.get(key) == s.get(key) for key in ("attack", "objective", "target_action"))
                if m == n or not same or t.get("bpda") or (t.get("eot") or 1) > 1:
                    continue
                plain = card["results"].get(m, {}).get(k)
                if plain and _ci(plain) and adaptive_row["mean_return"] < _ci(plain)[0]:
                    why = (
                        "it attacks the bare network and ignores the defense"
                        if t.get("defense_aware") is False
                        else "the defense masks its gradients"
                    )
                    flags.append(
                        f"eps {lab[k]}: {m} ({plain['mean_return']:.3g}) overstates robustness ({why}): the adaptive "
                        f"{n} brings the return to {adaptive_row['mean_return']:.3g}; trust the adaptive row"
                    )
    for n, s in card["attacks"].items():
        if s.get("attack") != "timed":
            continue
        idle = [lab[k] for k in eps_keys if card["results"].get(n, {}).get(k, {}).get("fraction_attacked") == 0]
        if idle:
            flags.append(
                f"{n} attacked no step at eps {', '.join(idle)} (threshold {s.get('threshold')} on the "
                f"action-preference gap, at most {s.get('max_fraction')} of steps): that row is the clean return; "
                "lower --threshold (for DQN the gap is taken on softmax(Q), often flat)"
            )
    if any(d.get("differentiable") is False or d.get("random") for d in card["agent"].get("defenses", [])):
        adaptive = [n for n, s in card["attacks"].items() if s.get("bpda") or (s.get("eot") or 1) > 1]
        if not adaptive:
            flags.append(
                "the agent has non-differentiable or random defenses and no attack here was adaptive "
                "(BPDA/EOT): these numbers are non-adaptive only"
            )
    return flags


def card_plot(card: dict[str, Any], full_caption: bool = True) -> str:
    """The card's return-vs-eps plot (every row, the clean return at eps 0), as an inline ``<figure>``."""
    feasible = feasible_range(card["agent"].get("env"))
    series = []
    for name, by_eps in card["results"].items():
        eps = [e for e in _eps_values(card) if f"{e:g}" in by_eps]
        rows = [by_eps[f"{e:g}"] for e in eps]
        series.append(Series(name, eps, [r["mean_return"] for r in rows], [_ci(r) for r in rows]))
    tm = card["threat_model"]
    clean = (card["clean"]["mean_return"], _ci(card["clean"]))
    return eps_plot(series, tm["unit"], tm["norm"], clean=clean, feasible=feasible, full_caption=full_caption)


def _table(card: dict[str, Any]) -> tuple[list[str], list[list[str]], set[tuple[int, int]]]:
    eps_keys = _eps_keys(card)
    feasible = feasible_range(card["agent"].get("env"))
    header = ["attack", "kind", "adaptive", *[f"eps {eps_label(card, k)}" for k in eps_keys]]
    clean = card["clean"]
    # the clean row in the same form as every other cell: mean [95% CI]
    rows = [["clean", "-", "-", *[f"{clean['mean_return']:.3g} {_ci_text(clean, feasible)}"] * len(eps_keys)]]
    strongest = {k: strongest_names(card, k) for k in eps_keys}  # every tied row is bold
    bold: set[tuple[int, int]] = set()
    for name, by_eps in card["results"].items():
        settings = card["attacks"].get(name, {})
        adaptive = (["BPDA"] if settings.get("bpda") else []) + (
            [f"EOT x{settings['eot']}"] if (settings.get("eot") or 1) > 1 else []
        )
        if settings.get("defense_aware") is False:
            adaptive = ["no: defense-unaware"]
        cells = [name, settings.get("kind", ""), " + ".join(adaptive) or "-"]
        for j, k in enumerate(eps_keys):
            r = by_eps.get(k)
            if r is None:
                cells.append("-")
                continue
            extra = f", changed {r['action_change_rate']:.0%}" if "action_change_rate" in r else ""
            if r.get("attacked_steps", r.get("steps")) != r.get("steps"):  # only some steps attacked (timed)
                share = r["attacked_steps"] / max(r["steps"], 1)
                extra += f" ({r['attacked_action_change_rate']:.0%} of the {share:.0%} attacked)"
            cells.append(f"{r['mean_return']:.3g} {_ci_text(r, feasible)}{extra}")
            if name in strongest[k]:
                bold.add((len(rows), j + 3))
        rows.append(cells)
    return header, rows, bold


def explanations(card: dict[str, Any]) -> list[str]:
    """What the report's numbers mean, one paragraph each (report.md and report.html both carry them)."""
    tm = card["threat_model"]
    feasible = feasible_range(card["agent"].get("env"))
    out = [
        f"Threat model: {tm['norm']} ball on the observation the agent sees; eps in {tm['unit']}. "
        f"{card['episodes']} episodes per row (seeds {card['seed']}..{card['seed'] + card['episodes'] - 1}).",
        "Each cell: mean return [a, b], where [a, b] is the 95% confidence interval of the mean (Student t over "
        "the episodes; n/a with a single episode)"
        + (
            f"; intervals are clipped to the returns an episode can have, [{feasible[0]:g}, {feasible[1]:g}], "
            "and * marks one that clipping changed."
            if feasible is not None
            else "; this environment's return range is unknown to the lab, so intervals are not clipped."
        ),
        "changed: the fraction of all steps whose action the attack changed (for an attack that perturbs only "
        "some steps, the timed one, also the fraction among the attacked steps, in brackets).",
        "Bold (highlighted): the strongest attack at that eps, the lowest return over every row, uniform noise "
        "included; every row that ties for it is marked, and no row is when none fell below the clean return.",
        "kind: what the attack may use: white-box (the agent's gradients), black-box (only its actions: queries, "
        "or a surrogate whose attack transfers), planning (the environment's dynamics), learned adversary (a "
        "policy trained to lower the return), random (uniform noise in the same ball, the floor every attack "
        "must beat).",
        "adaptive: BPDA (the defense's non-differentiable filters are bypassed on the backward pass) and/or EOT "
        "(gradients averaged over its randomness); defense-unaware: the attack differentiates the bare network "
        "and ignores the defense.",
    ]
    out += [f"Strongest attack at eps {eps_label(card, k)}: {strongest_label(card, k)}." for k in _eps_keys(card)]
    if tm.get("image_inputs"):
        out.append(f"Image observations: {tm['image_inputs']}.")
    if tm["unit"] == STD:
        for d in tm["per_eps"]:
            raw = ", ".join(f"{v:.3g}" for v in d["raw_budget_per_feature"])
            out.append(f"eps {d['eps']:g} std = raw per-feature budget [{raw}].")
    return out


def render_markdown(card: dict[str, Any]) -> str:
    """``report.md``: the threat model, the table (mean [95% CI] per attack and eps), flags and settings."""
    header, rows, bold = _table(card)
    lines = [f"# Attacked evaluation: {card['agent']['algo']} on {card['agent']['env']}", ""]
    lines += [f"- {p}" for p in explanations(card)]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(rows):
        cells = [f"**{c}**" if (i, j) in bold else c for j, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    flags = card.get("flags", [])
    lines += ["", "## Sanity flags", ""] + ([f"- ⚠ {f}" for f in flags] or ["- none raised"])
    lines += ["", "## Attack settings", "", "```json", json.dumps(card["attacks"], indent=2), "```"]
    return "\n".join(lines) + "\n"


def agent_summary(card: dict[str, Any]) -> str:
    """Which agent a report is about, in one line: its run folder, defenses and how it was made."""
    agent = card.get("agent", {})
    parts = [f"agent: {Path(str(agent['run'])).name}"] if agent.get("run") else []
    defenses = [str(d.get("name", "?")) for d in agent.get("defenses") or []]
    parts.append("defenses: " + (", ".join(defenses) or "none"))
    steps = [s for s in agent.get("lineage") or [] if isinstance(s, dict)]
    if steps:
        parent = steps[0].get("parent")
        made = ([Path(str(parent)).name] if parent else []) + [str(s.get("transform", "?")) for s in steps]
        parts.append("made by: " + " > ".join(made))
    tm = card["threat_model"]
    parts.append(f"{tm['norm']} threat, eps in {tm['unit']}, {card['episodes']} episodes per row")
    return "; ".join(parts)


def render_html(card: dict[str, Any]) -> str:
    """``report.html``: the markdown report's content, self-contained: the table, a plot of return against eps,
    the notes that say what every number means, the sanity flags and the attack settings (collapsed)."""
    header, rows, bold = _table(card)
    table = ['<table class="attacks"><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="{"best" if (i, j) in bold else ""}">{html.escape(c)}</td>' for j, c in enumerate(row)
        )
        table.append(f"<tr>{cells}</tr>")
    table.append("</table>")
    flags = card.get("flags", [])
    flag_html = "".join(f"<li>{html.escape(f)}</li>" for f in flags) or "<li>none raised</li>"
    notes = "".join(f"<li>{html.escape(p)}</li>" for p in explanations(card))
    env, algo = html.escape(card["agent"]["env"]), html.escape(card["agent"]["algo"])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>rllab attack report: {env}</title>
<style>{PAGE_CSS}</style>
</head><body>
<h1>Attacked evaluation: {algo} on {env}</h1>
<p class="agent">{html.escape(agent_summary(card))}</p>
<div class="scroll">{"".join(table)}</div>
{card_plot(card)}
<h2>What the numbers mean</h2><ul class="notes">{notes}</ul>
<h2>Sanity flags</h2><ul class="flags">{flag_html}</ul>
<details><summary>Attack settings (JSON)</summary>
<pre>{html.escape(json.dumps(card["attacks"], indent=2))}</pre></details>
</body></html>
"""


PAGE_CSS = (
    "body{font-family:sans-serif;margin:1.5em auto;padding:0 1em;max-width:1100px;line-height:1.35}"
    " table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}"
    " th{background:#f3f3f3} td.best{background:#fdd;font-weight:bold} .scroll{overflow-x:auto;max-width:100%}"
    " figure.plot{margin:1em 0;max-width:680px} figure.plot svg{display:block;width:100%;height:auto}"
    " figcaption{font-size:12px;color:#444} pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px}"
    " code{overflow-wrap:anywhere} img{max-width:100%;height:auto} p.agent{color:#333}"
)
"""The reports' stylesheet (the study page reuses it): plots shrink with the window, wide tables scroll."""


def write_report(card: dict[str, Any], out: Path) -> dict[str, Path]:
    """Writes results.json, report.md and report.html into ``out`` (flags refreshed); returns their paths."""
    card["flags"] = sanity_flags(card)
    paths = {"json": out / "results.json", "md": out / "report.md", "html": out / "report.html"}
    atomic_write(paths["json"], json.dumps(card, indent=2) + "\n")
    atomic_write(paths["md"], render_markdown(card))
    atomic_write(paths["html"], render_html(card))
    return paths


# ------------------------------------------------------------------ leaderboard
def load_card(path: Path) -> dict[str, Any]:
    """A run folder (its latest attack card) or a results.json file."""
    if path.is_dir():
        cards = sorted((path / "attacks").glob("*/results.json"), key=lambda p: p.stat().st_mtime)
        if not cards:
            raise RllabError(
                f"{path} has no attack results in {path / 'attacks'}; run `rllab attack {path}` first, or, for an "
                "attack written elsewhere with --out DIR, pass DIR/results.json"
            )
        path = cards[-1]
    return read_json(path, ResultCard)  # one line naming the file (and field) when it is not a card


def leaderboard(cards: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Agents side by side: clean, noise and worst-case return at each eps (sorted by worst case).

    The worst case is the lowest mean return over every row of the card at that eps, uniform noise
    included (``_strongest``)."""
    for what, key in (("environments", "env"), ("eps units", "unit"), ("norms", "norm")):
        groups: dict[str, list[str]] = {}
        for name, c in cards.items():
            value = c["agent"].get("env") if key == "env" else c["threat_model"].get(key)
            groups.setdefault(str(value), []).append(name)
        if len(groups) > 1:
            shown = "; ".join(f"{v}: {', '.join(names)}" for v, names in groups.items())
            raise RllabError(
                f"these results are for different {what} ({shown}); a leaderboard compares agents of one "
                "environment attacked in the same unit and norm"
            )
    eps_sets = [set(f"{e:g}" for e in c["threat_model"]["eps"]) for c in cards.values()]
    common = sorted(set.intersection(*eps_sets), key=float)
    if not common:
        raise RllabError("the results share no eps value to compare")
    units = {c["threat_model"]["unit"] for c in cards.values()}
    board: dict[str, Any] = {"eps": [float(e) for e in common], "unit": sorted(units), "by_eps": {}}
    for k in common:
        entries = []
        for name, c in cards.items():
            worst = _strongest(c, k)
            entries.append(
                {
                    "agent": name,
                    "lineage": [s.get("transform") for s in c["agent"].get("lineage", [])],
                    "clean": c["clean"]["mean_return"],
                    "noise": c["results"].get("noise", {}).get(k, {}).get("mean_return"),
                    "worst_case": worst[1]["mean_return"] if worst else None,
                    "worst_attack": strongest_label(c, k) if worst else None,
                }
            )
        entries.sort(key=lambda e: -(e["worst_case"] if e["worst_case"] is not None else -1e18))
        board["by_eps"][k] = entries
    return board


def render_leaderboard(board: dict[str, Any]) -> str:
    """The leaderboard as Markdown, one table per eps."""
    lines = [
        "# Robustness leaderboard",
        "",
        f"Sorted by worst-case mean return at each eps ({', '.join(board['unit'])}): the lowest mean return "
        "over every attack row, uniform noise included.",
        "",
    ]
    for k, entries in board["by_eps"].items():
        lines += [
            f"## eps {k}",
            "",
            "| rank | agent | lineage | clean | noise | worst case | strongest attack |",
            "|---|---|---|---|---|---|---|",
        ]
        for i, e in enumerate(entries, 1):
            lineage = " > ".join(t for t in e["lineage"] if t) or "-"
            noise = f"{e['noise']:.3g}" if e["noise"] is not None else "-"
            worst = f"{e['worst_case']:.3g}" if e["worst_case"] is not None else "-"
            lines.append(
                f"| {i} | {e['agent']} | {lineage} | {e['clean']:.3g} | {noise} | {worst} | "
                f"{e['worst_attack'] or '-'} |"
            )
        lines.append("")
    return "\n".join(lines)
