"""A sweep's figures across seeds: each config's clean return and, per eps, its worst case under attack —
mean, sample std, Student-t 95% CI, median, interquartile mean, min, max and every seed's value, because
one seed's figure says little about an algorithm or a setting (Henderson et al. 2018; Agarwal et al. 2021).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from rllab.evaluation import confidence_interval
from rllab.sweep.jobs import read_json
from rllab.sweep.plan import ATTACK_DIR, EVAL_FILE, Job


def seed_stats(values: list[float]) -> dict[str, Any] | None:
    """Across seeds: mean, sample std, Student-t 95% CI (None for one seed), median, IQM, min, max."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n == 0:
        return None
    ci = confidence_interval(x)  # Student-t; None for one seed
    return {
        "n": int(n),
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)) if n > 1 else 0.0,
        "ci95": list(ci) if ci is not None else None,
        "median": float(np.median(x)),
        "iqm": float(stats.trim_mean(x, 0.25)),
        "min": float(x.min()),
        "max": float(x.max()),
        "values": [float(v) for v in x],
    }


def attack_summary(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per eps: the worst case (lowest mean return over every row, uniform noise included: it is an
    adversary within the same budget), the attack that reached it, and noise's return."""
    out = {}
    for e in card["threat_model"]["eps"]:
        key = f"{float(e):g}"
        rows = {n: r[key] for n, r in card["results"].items() if key in r}
        if not rows:
            continue
        name, row = min(rows.items(), key=lambda kv: kv[1]["mean_return"])
        out[key] = {"worst_case": row["mean_return"], "by": name, "noise": rows.get("noise", {}).get("mean_return")}
    return out


def _run_entry(job: Job) -> dict[str, Any] | None:
    """A finished run's figures read back from its folder (None without its evaluation)."""
    ev = read_json(Path(job.run) / EVAL_FILE)
    if ev is None:
        return None
    entry: dict[str, Any] = {"seed": job.seed, "run": job.run, "mean_return": ev["mean_return"], "log": job.log}
    spec = read_json(Path(job.run) / "agent.json") or {}
    entry["train_wall_s"] = spec.get("training", {}).get("wall_time_s")
    card = read_json(Path(job.run) / ATTACK_DIR / "results.json")
    if card is not None:
        entry["attack"] = attack_summary(card)
        entry["attack_unit"] = card["threat_model"].get("unit")
    return entry


def summarise(jobs: Iterable[Job], results: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """Per config: its runs, its failures, and the clean and attacked figures across seeds; configs ranked
    by mean clean return."""
    configs: dict[str, dict[str, Any]] = {}
    for job in jobs:
        c = configs.setdefault(job.config, {"params": job.params, "runs": [], "failed": []})
        res = results.get((job.config, job.seed))
        entry = _run_entry(job) if res is not None and res.get("status") == "done" else None
        if entry is None:
            if res is not None:
                c["failed"].append({"seed": job.seed, "log": job.log, "error": res.get("error", "not run")})
            continue
        c["runs"].append(entry)
    for c in configs.values():
        runs = c["runs"]
        c["clean"] = seed_stats([r["mean_return"] for r in runs]) if runs else None
        eps_keys = sorted({k for r in runs for k in r.get("attack", {})}, key=float)
        c["attacked"] = {}
        for k in eps_keys:
            with_k = [r["attack"][k] for r in runs if k in r.get("attack", {})]
            c["attacked"][k] = {
                "worst_case": seed_stats([a["worst_case"] for a in with_k]),
                "noise": seed_stats([a["noise"] for a in with_k if a["noise"] is not None]),
                "reached_by": [a["by"] for a in with_k],
            }
        c["attack_unit"] = next((r["attack_unit"] for r in runs if r.get("attack_unit")), None)
    ranked = sorted(configs, key=lambda n: -(configs[n]["clean"] or {"mean": -math.inf})["mean"])
    return {"configs": configs, "ranking": ranked}
