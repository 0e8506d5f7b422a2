"""One job of a sweep (in a worker thread or a Ray task): its stages that are not done yet, run as one
``python`` subprocess of the ``rllab`` command line, and what came of them.

The subprocess (``python -m rllab.cli.sweep_job STAGES OUTCOME``) runs the stages one after another and
keeps ``OUTCOME``, a small JSON file, up to date: ``{"stage": i, "status": "running"}`` while stage ``i``
runs, then ``{"stage": i, "status": "failed", "returncode": ..., "error": ...}`` or ``{"status": "done"}``.
Its exit status is the failed stage's. A subprocess killed before it could write (out of memory, say)
leaves the stage it was running, and its exit status says the rest. The sweep imports no command line:
the subprocess is where ``rllab`` meets ``robustness``'s ``attack``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from rllab.checkpoint import read_json as read_checked_json
from rllab.checkpoint import write_json
from rllab.errors import RllabError
from rllab.schema import SweepRecord
from rllab.sweep.plan import ATTACK_DIR, EVAL_FILE, RECORD, Job

JOB_MODULE = "rllab.cli.sweep_job"  # run with python -m: the command line lives above the sweep


def read_json(path: Path, model: type[BaseModel] | None = None) -> dict[str, Any] | None:
    """A JSON file's content (valid for ``model`` when given), or None when it is missing, unreadable or invalid."""
    try:
        return read_checked_json(path, model)
    except RllabError:
        return None


def training_state(run: Path) -> str:
    """``none``, ``partial`` (an interrupted training: resumable) or ``complete``."""
    spec = read_json(run / "agent.json")
    if spec is None:
        return "none"
    return "complete" if spec.get("training", {}).get("complete") else "partial"


def stage_done(run: Path, stage: list[str]) -> bool:
    """Whether a stage's output is already in the run folder."""
    verb = stage[0]
    if verb == "train":
        return training_state(run) == "complete"
    if verb == "eval":
        return (run / EVAL_FILE).exists()
    if verb == "attack":
        return (run / ATTACK_DIR / "results.json").exists()
    return False


def _invalidate(run: Path, verb: str) -> None:
    if verb == "eval":
        (run / EVAL_FILE).unlink(missing_ok=True)
    elif verb == "attack":
        shutil.rmtree(run / ATTACK_DIR, ignore_errors=True)


def _prepare(job: Job) -> list[list[str]]:
    """Make the run folder fit the job's commands; the stages still to run."""
    run = Path(job.run)
    record = read_json(run / RECORD, SweepRecord)
    before = (record or {}).get("stages") or []
    if record is None or not before or before[0] != job.stages[0]:
        if run.exists():  # another training command, another sweep's job or an unknown folder: start over
            shutil.rmtree(run)
    else:  # same training: redo the stages whose command changed (evaluation and attack depend on the weights only)
        for stage in job.stages[1:]:
            if stage not in before:
                _invalidate(run, stage[0])
    run.mkdir(parents=True, exist_ok=True)
    todo = []
    for stage in job.stages:
        if stage_done(run, stage):
            continue
        if stage[0] == "train" and training_state(run) == "partial":
            # train --algo A --env E --seed S --out RUN, continued with its stored settings
            stage = [*stage[:9], "--resume", "--threads", str(job.threads), "--no-progress"]
        todo.append(stage)
    return todo


def run_stages(todo: list[list[str]], threads: int, log_path: Path) -> dict[str, Any]:
    """Run ``rllab`` command lines in one subprocess (one interpreter per job, not per stage: importing
    torch and SB3 costs seconds), its output appended to ``log_path``; the outcome it recorded."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    fd, name = tempfile.mkstemp(prefix=".sweep-outcome-", suffix=".json", dir=log_path.parent)
    os.close(fd)
    outcome_path = Path(name)
    try:
        with open(log_path, "a") as log:
            proc = subprocess.run(
                [sys.executable, "-m", JOB_MODULE, json.dumps(todo), str(outcome_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                check=False,
            )
        outcome = read_json(outcome_path) or {}
    finally:
        outcome_path.unlink(missing_ok=True)
    if proc.returncode == 0:
        return {"status": "done"}
    if outcome.get("status") != "failed":  # killed before it could say why
        outcome = {"stage": int(outcome.get("stage", 0)), "error": f"exit status {proc.returncode}"}
    return {"status": "failed", "stage": outcome["stage"], "returncode": proc.returncode, "error": outcome["error"]}


def run_job(job: Job | dict[str, Any]) -> dict[str, Any]:
    """Run the job's stages that are not done yet; returns ``{config, seed, run, status, ...}``.

    The stages run in one ``python`` subprocess with ``OMP_NUM_THREADS`` pinned, its output appended to
    the job's log. A stage that fails stops the job; the command's one-line error is returned with its
    exit status.
    """
    job = Job(**job) if isinstance(job, dict) else job
    run, log_path = Path(job.run), Path(job.log)
    started = time.time()
    todo = _prepare(job)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(run / RECORD, {"stages": job.stages, "status": "running", "started": time.time()})
    result: dict[str, Any] = {"config": job.config, "seed": job.seed, "run": job.run, "status": "done"}
    result["reused"] = [st[0] for st in job.stages if st[0] not in {t[0] for t in todo}]
    result["ran"] = []
    if todo:
        outcome = run_stages(todo, job.threads, log_path)
        if outcome["status"] == "failed":
            index = outcome["stage"]
            result.update(status="failed", stage=todo[index][0], returncode=outcome["returncode"])
            result["error"] = outcome["error"]
            result["ran"] = [t[0] for t in todo[:index]]
        else:
            result["ran"] = [t[0] for t in todo]
    result["wall_s"] = time.time() - started
    write_json(run / RECORD, {"stages": job.stages, **result})
    return result


def job_record(job: Job) -> dict[str, Any]:
    """A job as plain data (what a Ray task is sent)."""
    return asdict(job)
