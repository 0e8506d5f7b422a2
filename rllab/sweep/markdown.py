"""A sweep's summary as Markdown (``OUT/sweep.md``): one row per config across seeds, then every seed."""

from __future__ import annotations

from typing import Any


def _fmt(s: dict[str, Any] | None) -> str:
    if not s:
        return "—"
    text = f"{s['mean']:.4g}"
    if s["ci95"] is not None:
        text += f" [{s['ci95'][0]:.4g}, {s['ci95'][1]:.4g}]"
    return text


def render_markdown(summary: dict[str, Any], header: dict[str, Any]) -> str:
    """The summary ``rllab.sweep.stats.summarise`` made, under a header saying what was run."""
    configs = summary["configs"]
    eps_keys = sorted({k for c in configs.values() for k in c["attacked"]}, key=float)
    unit = next((c["attack_unit"] for c in configs.values() if c["attack_unit"]), "")
    lines = [
        f"# Sweep: {header['n_jobs']} runs, seeds {', '.join(map(str, header['seeds']))}",
        "",
        f"Clean return: each run's mean over {header['eval_episodes']} evaluation episodes (seeds "
        f"{header['eval_seed']}..{header['eval_seed'] + header['eval_episodes'] - 1}); across seeds: mean "
        "[Student-t 95% CI], median, interquartile mean, min-max. Sorted by mean clean return.",
    ]
    if eps_keys:
        lines.append(
            f"Attacked: each run's worst case per eps over every attack, noise included (eps in {unit}; `rllab attack "
            f"{' '.join(header.get('attack_args') or [])}`), noise of the same budget beside it."
        )
    cols = ["config", "seeds", "clean mean [95% CI]", "median", "IQM", "min-max"]
    for k in eps_keys:
        cols += [f"worst case eps {k}", f"noise eps {k}"]
    lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name in summary["ranking"]:
        c = configs[name]
        s = c["clean"]
        seeds = f"{s['n'] if s else 0}" + (f" ({len(c['failed'])} failed)" if c["failed"] else "")
        row = [name, seeds, _fmt(s)]
        row += [f"{s['median']:.4g}", f"{s['iqm']:.4g}", f"{s['min']:.4g}-{s['max']:.4g}"] if s else ["—"] * 3
        for k in eps_keys:
            a = c["attacked"].get(k)
            row += [_fmt(a["worst_case"]) if a else "—", _fmt(a["noise"]) if a else "—"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Per seed (clean mean return; worst case per eps and the attack that reached it):", ""]
    for name in summary["ranking"]:
        for r in configs[name]["runs"]:
            att = "; ".join(f"eps {k}: {a['worst_case']:.4g} ({a['by']})" for k, a in r.get("attack", {}).items())
            lines.append(f"- {name} s{r['seed']}: {r['mean_return']:.4g}" + (f"; {att}" if att else ""))
        for f in configs[name]["failed"]:
            lines.append(f"- {name} s{f['seed']}: FAILED: {f['error']} (log: {f['log']})")
    return "\n".join(lines) + "\n"
