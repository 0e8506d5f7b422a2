"""Issue 15's hostile and careless inputs as a user meets them: every case of ``tests/hostile_cases.py`` run as
a real ``rllab`` subprocess, classified, and tabulated in bench/results/hostile_inputs.{md,json}.

Each case builds its files (copies of two tiny agents, corrupted) in its own folder and runs
``python -m rllab.cli ARGV`` there with a timeout (each command picks its own thread count: 1 for these tiny
agents; OMP_NUM_THREADS is left unset so that this choice runs too). Outcomes:

- ``clean one-line error``: exit 2 and one ``rllab CMD: error: ...`` line (after argparse's usage block);
- ``ran correctly``: exit 0 where the case expects success;
- ``traceback``, ``hang`` (the timeout), ``wrong exit status`` (0 for a bad input, non-zero for a good one),
  ``error not one line``, ``code executed`` (the payload's marker file appeared), ``previous checkpoint changed``
  (a good agent, or a checkpoint the case prepared, hashed before and after);
- ``skipped``: the case cannot run here (read-only folders do not stop root).

    nice -n 10 .venv/bin/python bench/hostile_inputs.py --jobs 2
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(ROOT))

from tests import hostile_cases as hc  # noqa: E402  (the cases live beside the test that runs them in-process)

COMMAND = "nice -n 10 .venv/bin/python bench/hostile_inputs.py --jobs 2"
OUTCOMES = [
    "clean one-line error",
    "ran correctly",
    "traceback",
    "hang",
    "wrong exit status",
    "error not one line",
    "code executed",
    "previous checkpoint changed",
    "skipped",
]
BAD = OUTCOMES[2:8]


def one_line_error(err: str, word: str = ": error: ") -> bool:
    """Whether stderr is one ``rllab CMD: error:`` line (one saying ``word``), or argparse's usage block and it."""
    lines = err.strip().splitlines()
    if not lines or not (lines[-1].startswith("rllab") and word in lines[-1]):
        return False
    before = lines[:-1]
    return not before or (before[0].startswith("usage: rllab") and all(ln.startswith(" ") for ln in before[1:]))


def limit_files(size: int) -> None:
    """In the child: writes past ``size`` bytes fail with EFBIG (SIGXFSZ ignored), as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def run_case(case: hc.Case, agents: Path, work: Path, timeout: float) -> dict:
    row = {"id": case.id, "family": case.family, "case": case.description, "expect": case.expect}
    if case.skip:
        return {**row, "outcome": "skipped", "exit": None, "wall_s": 0.0, "message": case.skip}
    tmp = work / "cases" / case.id
    if tmp.exists():
        subprocess.run(["chmod", "-R", "u+rwx", str(tmp)], check=False)
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    argv = case.prepare(tmp, agents)
    originals = hc.regular_file_hashes(agents)
    prepared = hc.regular_file_hashes(tmp, hc.CHECKPOINT_FILES)
    # OMP_NUM_THREADS is left unset: each command's own choice of threads is part of what runs (1 for these agents)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "RLLAB_TEST_CACHE")}
    env |= {"MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    lock = hc.held_lock(tmp / case.lock) if case.lock else contextlib.nullcontext()
    started = time.perf_counter()
    with lock:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rllab.cli", *argv],
            cwd=tmp / case.cwd if case.cwd else tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=(lambda: limit_files(case.file_limit)) if case.file_limit else None,
        )
        if case.interrupt is not None:  # Ctrl-C at that moment of the run
            time.sleep(case.interrupt)
            proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            code = None
    wall = time.perf_counter() - started
    now = hc.regular_file_hashes(tmp, hc.CHECKPOINT_FILES)
    changed = hc.regular_file_hashes(agents) != originals or (
        not case.writes and {k: now.get(k) for k in prepared} != prepared
    )
    if code is None:
        outcome = "hang"
    elif (tmp / hc.MARKER).exists():
        outcome = "code executed"
    elif changed:
        outcome = "previous checkpoint changed"
    elif "Traceback" in out + err:
        outcome = "traceback"
    elif case.expect == "ok":
        outcome = "ran correctly" if code == 0 else "wrong exit status"
    elif case.expect == "interrupted":
        said = one_line_error(err, "interrupted")
        outcome = "clean one-line error" if code in (2, 130) and said else "wrong exit status"
    elif code == 0:
        outcome = "wrong exit status"
    else:
        outcome = "clean one-line error" if code == 2 and one_line_error(err) else "error not one line"
    lines = err.strip().splitlines() if code else out.strip().splitlines()
    if outcome == "traceback":
        lines = [ln for ln in err.strip().splitlines() if ln and not ln.startswith(" ")][-1:]
    message = (lines[-1] if code else (lines[0] if lines else "")) if lines else ""
    message = message.replace(str(tmp) + "/", "").replace(str(tmp), ".")
    row |= {"outcome": outcome, "exit": code, "wall_s": round(wall, 2), "message": message}
    if outcome in BAD:  # the end of what the user saw, for whoever fixes it
        row["stderr_tail"] = "\n".join(err.strip().splitlines()[-15:]).replace(str(tmp), ".")
    return row


def versions() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    libs = ", ".join(f"{m} {version(m)}" for m in ("torch", "stable-baselines3", "gymnasium", "pydantic", "PyYAML"))
    state = " (with uncommitted changes)" if dirty.strip() else ""
    return f"rllab at {commit.strip()}{state}; Python {platform.python_version()}, {libs}"


def cell(text: str, limit: int = 170) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render(rows: list[dict], header: dict) -> str:
    lines = [
        "# Hostile inputs: every bad input a clean one-line error (issue 15)",
        "",
        f"{header['date']}, {header['cpus']} CPUs, as {'root' if hc.IS_ROOT else 'a normal user'}, "
        f"{header['wall_s']:.0f} s of case wall time in all; {header['versions']}.",
        "Every case of `tests/hostile_cases.py` run as a real `python -m rllab.cli` subprocess in its own folder "
        f"(timeout {header['timeout']:g} s = a hang; OMP_NUM_THREADS unset, so each command picks its threads: 1 "
        "here) on copies of two tiny agents (PPO CartPole-v1, PPO Catch-v0) and a Stable-Baselines3 zip. "
        "`tests/test_hostile_inputs.py` runs the same cases in-process in CI (all but the Ctrl-C and full-disk "
        "ones, which need a real process).",
        "",
        f"Reproduce: `{COMMAND}`",
        "",
        "## Outcomes by family",
        "",
        "| family | cases | " + " | ".join(OUTCOMES) + " |",
        "|---|---:|" + "---:|" * len(OUTCOMES),
    ]
    family_of = {c.id: c.family for c in hc.CASES}  # as the cases file has them now (a --render after a move)
    rows = [{**r, "family": family_of.get(r["id"], r["family"])} for r in rows]
    families = list(dict.fromkeys(c.family for c in hc.CASES if c.family in {r["family"] for r in rows}))
    for fam in [*families, None]:
        sub = [r for r in rows if fam is None or r["family"] == fam]
        counts = [sum(r["outcome"] == o for r in sub) for o in OUTCOMES]
        name = "**all**" if fam is None else fam
        lines.append(f"| {name} | {len(sub)} | " + " | ".join(str(c) for c in counts) + " |")
    bad = [r for r in rows if r["outcome"] in BAD]
    totals = {o: sum(r["outcome"] == o for r in rows) for o in BAD}
    lines += [
        "",
        f"Tracebacks: {totals['traceback']}. Hangs: {totals['hang']}. Code executions: {totals['code executed']}. "
        f"Corrupted previous checkpoints: {totals['previous checkpoint changed']}. "
        f"Wrong exit status: {totals['wrong exit status']}. Errors over one line: {totals['error not one line']}.",
    ]
    if bad:
        lines += ["", "Not clean (open bugs, each a strict xfail in tests/test_hostile_inputs.py):", ""]
        known = {c.id: c.known for c in hc.CASES}
        lines += [f"- `{r['id']}`: {r['outcome']}. {known.get(r['id']) or ''}".rstrip() for r in bad]
    lines += [
        "",
        "## Every case",
        "",
        "| family | case | expected | outcome | exit | s | first line of the message |",
        "|---|---|---|---|---:|---:|---|",
    ]
    for r in sorted(rows, key=lambda r: families.index(r["family"])):  # (a stable sort: case order within a family)
        exit_code = "-" if r["exit"] is None else r["exit"]
        lines.append(
            f"| {r['family']} | {cell(r['case'], 90)} (`{r['id']}`) | {r['expect']} | {r['outcome']} | "
            f"{exit_code} | {r['wall_s']:.1f} | {cell(r['message'])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="cases at a time")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a case counts as a hang")
    parser.add_argument("--workdir", default="runs/bench-hostile", help="agents and case folders (kept)")
    parser.add_argument("--only", nargs="*", help="case ids (or id prefixes) to run; the results are not written")
    parser.add_argument("--render", action="store_true", help="only rewrite the .md from the .json of the last run")
    parser.add_argument(
        "--continue", dest="cont", action="store_true", help="keep the cases the .json already holds; run the rest"
    )
    args = parser.parse_args()
    if args.render:
        saved = json.loads((RESULTS / "hostile_inputs.json").read_text())
        (RESULTS / "hostile_inputs.md").write_text(render(saved.pop("cases"), saved))
        return
    import torch

    torch.set_num_threads(1)
    work = Path(args.workdir).resolve()
    agents = hc.build_agents(work / "agents")
    cases = [c for c in hc.CASES if not args.only or any(c.id.startswith(p) for p in args.only)]
    saved_path = RESULTS / "hostile_inputs.json"
    done = {}
    if args.cont and saved_path.exists():
        done = {r["id"]: r for r in json.loads(saved_path.read_text())["cases"]}
    header = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "versions": versions(),
        "timeout": args.timeout,
        "wall_s": 0.0,
        "command": COMMAND,
    }
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {c.id: pool.submit(run_case, c, agents, work, args.timeout) for c in cases if c.id not in done}
        for case_id, f in futures.items():
            done[case_id] = r = f.result()
            print(f"{r['outcome']:<28} {r['wall_s']:6.1f}s  {r['id']}: {r['message'][:110]}", flush=True)
            if not args.only:  # saved after every case: a long run interrupted keeps what it measured (--continue)
                RESULTS.mkdir(exist_ok=True)
                rows = [done[c.id] for c in hc.CASES if c.id in done]
                header["wall_s"] = round(sum(r["wall_s"] for r in rows), 1)
                saved_path.write_text(json.dumps({**header, "cases": rows}, indent=2) + "\n")
    if args.only:
        return
    rows = [done[c.id] for c in hc.CASES if c.id in done]
    text = render(rows, header)
    (RESULTS / "hostile_inputs.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
