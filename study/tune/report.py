"""What ``rllab tune`` writes besides ``trials.json``: the trials table (``trials.md``) and the best trial's
hyperparameters as a file ``rllab train --hyperparams`` reads unchanged (``best.yml``)."""

from __future__ import annotations

from typing import Any

from study.tune.space import hyperparameter_file


def best_trials(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The finished trial of highest objective (``best``) and of highest clean return (``best_clean``); the
    lowest-numbered of equals."""
    done = [t for t in trials if t["state"] == "complete"]
    if not done:
        return {}

    def pick(key: Any) -> dict[str, Any]:
        t = max(done, key=lambda t: (key(t), -t["number"]))
        last = t["rungs"][-1]
        figures = {k: last[k] for k in ("clean", "worst", "worst_attack", "score") if k in last}
        return {"number": t["number"], "value": t["value"], **figures, "params": t["params"], "run": t["run"]}

    return {"best": pick(lambda t: t["value"]), "best_clean": pick(lambda t: t["rungs"][-1]["clean"])}


def _number(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def render_markdown(record: dict[str, Any]) -> str:
    """The trials table: state, objective, clean and worst-case return, each rung's score, the parameters."""
    s = record["settings"]
    robust = s["objective"] == "robust"
    objective = (
        f"robust: clean - {s['weight']:g} x (clean - worst case at eps {s['eps']:g} over {', '.join(s['attacks'])} "
        "and noise)"
        if robust
        else "clean mean return"
    )
    lines = [
        f"# rllab tune: {s['algo']} on {s['env']}",
        "",
        f"- search space: {s['space']}; {s['trials']} trials, seed {s['seed']}, batches of {s['batch']} "
        f"(TPE, {s['startup']} random trials first)",
        f"- training: {record['rung_steps'][-1]} steps per trial in rungs at {record['rung_steps']}; "
        f"pruner: {s['pruner']}",
        f"- objective: {objective}; {s['episodes']} evaluation episodes (rllab train's final-evaluation seeds)",
        f"- ran on: {record['backend']}, {record['jobs']} job(s) at a time",
        "",
    ]
    best = record.get("best")
    if best:
        lines += [f"Best trial: {best['number']} (objective {best['value']:.4g}); hyperparameters in best.yml.", ""]
        clean = record["best_clean"]
        lines += [f"Best clean return: trial {clean['number']} ({clean['clean']:.4g}).", ""]
    params = list(record["trials"][0]["params"]) if record["trials"] else []
    head = ["trial", "state", "objective", "clean", *(["worst", "worst attack"] if robust else []), "rung scores"]
    lines += ["| " + " | ".join(head + params) + " |", "|" + "---|" * (len(head) + len(params))]
    for t in record["trials"]:
        last = t["rungs"][-1] if t["rungs"] else {}
        cells = [
            str(t["number"]),
            t["state"] + (f" at rung {t['pruned_at']}" if t.get("pruned_at") else ""),
            _number(t.get("value")) if t["state"] == "complete" else "",
            _number(last.get("clean")),
            *([_number(last.get("worst")), last.get("worst_attack", "")] if robust else []),
            ", ".join(_number(r["score"]) for r in t["rungs"] if r["status"] == "done") or t.get("error", ""),
            *(_number(t["params"][p]) for p in params),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_best(record: dict[str, Any]) -> str:
    """``best.yml``: the best trial's hyperparameters (and the tune's budget as ``n_timesteps``) under the env id."""
    s, best = record["settings"], record["best"]
    trial = next(t for t in record["trials"] if t["number"] == best["number"])
    hp = {**trial["hyperparams"], "n_timesteps": record["rung_steps"][-1]}
    header = (
        f"rllab tune: trial {best['number']} of {s['trials']}, objective {s['objective']} = {best['value']:.6g}\n"
        f"its agent: {best['run']}\n"
        f"rllab train --algo {s['algo']} --env {s['env']} --hyperparams best.yml"
    )
    return hyperparameter_file(hp, s["env"], header)
