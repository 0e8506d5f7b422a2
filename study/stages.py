"""Stages of a study, each cached by its inputs: a stage's key is the SHA-256 of its settings and of the
checkpoints it reads (``agent.json`` and ``weights.safetensors``), so a rerun skips every stage whose key
is unchanged and a changed setting reruns that stage and what reads its output. A stage is finished when
its record ``STUDY/stages/<id>.json`` is written, last: an interrupted stage has none and runs again (its
half-written outputs removed first), so an interrupted study resumes at the stage it was in."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rllab.checkpoint import SPEC_FILE, WEIGHTS_FILE
from rllab.errors import RllabError
from rllab.files import read_json, write_json


def checkpoint_digest(folder: Path) -> str:
    """SHA-256 of a checkpoint's spec and weights (the identity a stage's key depends on)."""
    h = hashlib.sha256()
    for name in (SPEC_FILE, WEIGHTS_FILE):
        path = folder / name
        if not path.is_file():
            raise RllabError(f"{folder} is not a finished checkpoint (no {name}); its stage did not complete")
        h.update(name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@dataclass
class Stage:
    """One unit of work: ``run()`` writes ``outputs`` and returns a JSON record of what it found."""

    id: str  # "attack/CartPole-v1-ppo-s0-vanilla"
    settings: dict[str, Any]
    run: Callable[[], dict[str, Any]]
    inputs: list[Path] = field(default_factory=list)  # checkpoint folders it reads
    outputs: list[Path] = field(default_factory=list)  # folders it writes (removed before it runs)

    def key(self) -> str:
        """The cache key: settings and input checkpoints' digests."""
        blob = json.dumps(
            {"id": self.id, "settings": self.settings, "inputs": [checkpoint_digest(p) for p in self.inputs]},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()


class StageRunner:
    """Runs stages in order, skipping those already done with the same key; prints one progress line each
    and keeps each stage's status (``ran`` or ``cached``) and seconds in ``timings``."""

    def __init__(self, root: Path, total: int, fresh: bool = False, log: Callable[[str], None] = print) -> None:
        self.root = root
        self.total = total
        self.fresh = fresh
        self.log = log
        self.done = 0
        self.started = time.perf_counter()
        self.timings: list[dict[str, Any]] = []
        self.needs: dict[str, list[str]] = {}  # stage id -> the stages that write its inputs (run_all)

    def record_path(self, stage_id: str) -> Path:
        """Where a finished stage's record lives."""
        return self.root / "stages" / (re.sub(r"[^A-Za-z0-9_.+-]", "__", stage_id) + ".json")

    def cached(self, stage: Stage, key: str) -> dict[str, Any] | None:
        """The record of ``stage`` when it finished with ``key`` and its outputs are still there."""
        path = self.record_path(stage.id)
        if self.fresh or not path.is_file():
            return None
        try:
            record = read_json(path)
        except RllabError:
            return None
        if not isinstance(record, dict) or record.get("key") != key:
            return None
        if not all(Path(o).exists() for o in stage.outputs):
            return None
        return record

    def begin(self, stage: Stage) -> tuple[str, str, dict[str, Any] | None]:
        """Count the stage in: its progress prefix, its key, and its record when it is cached (logged so)."""
        self.done += 1
        where = f"[lab {self.done}/{self.total} {time.perf_counter() - self.started:.0f}s]"
        key = stage.key()
        record = self.cached(stage, key)
        if record is not None:
            self.log(f"{where} {stage.id}: cached")
            self.timings.append(
                {"stage": stage.id, "status": "cached", "seconds": 0.0, "ran_s": record["seconds"], "cpu_s": 0.0}
            )
        else:
            self.log(f"{where} {stage.id}: running")
        return where, key, record

    def run(self, stage: Stage) -> dict[str, Any]:
        """The stage's record: read back when cached, else made by running it."""
        where, key, record = self.begin(stage)
        if record is not None:
            return record["result"]
        record = self.execute(stage, key)
        self.finished(stage, record, where)
        return record["result"]

    def execute(self, stage: Stage, key: str) -> dict[str, Any]:
        """Run ``stage`` (its old outputs removed first) and write its record, last; returns the record."""
        self.record_path(stage.id).unlink(missing_ok=True)
        for out in stage.outputs:
            if out.exists():
                shutil.rmtree(out) if out.is_dir() else out.unlink()
        t0, c0 = time.perf_counter(), time.process_time()
        result = stage.run()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        record = {"id": stage.id, "key": key, "settings": stage.settings, "seconds": seconds, "cpu_s": cpu}
        record["result"] = result
        write_json(self.record_path(stage.id), record)
        return record

    def finished(self, stage: Stage, record: dict[str, Any], where: str) -> None:
        """Log a stage that ran and keep its timing."""
        seconds, cpu = record["seconds"], record["cpu_s"]
        self.log(f"{where} {stage.id}: done in {seconds:.1f} s (CPU {cpu:.1f} s)")
        self.timings.append({"stage": stage.id, "status": "ran", "seconds": seconds, "ran_s": seconds, "cpu_s": cpu})
        self.timings[-1]["needs"] = self.needs.get(stage.id, [])

    def run_all(self, stages: list[Stage], jobs: int = 1) -> dict[str, dict[str, Any]]:
        """Every stage's result, by id. ``jobs=1``: one after the other, in this process. More: up to ``jobs``
        stages at once, each in a forked process, a stage starting once the stages that write its inputs have
        finished, the earliest ready stage of the list first. Each stage is seeded by its own settings, so the
        results are the same either way. A failed stage stops the study with its one-line error; the stages
        running beside it are stopped and, having no record, run again next time."""
        writer = {out: s.id for s in stages for out in s.outputs}
        needs = {s.id: {writer[i] for i in s.inputs if i in writer} for s in stages}
        self.needs.update({k: sorted(v) for k, v in needs.items()})  # kept in timings: bench/lab_budget.py replays it
        if jobs <= 1:
            return {s.id: self.run(s) for s in stages}
        waiting, results = list(stages), {}
        running: dict[Any, tuple[Stage, Any]] = {}
        context = multiprocessing.get_context("fork")  # the stage's closure is not pickled: the child inherits it
        try:
            while waiting or running:
                while len(running) < jobs:
                    stage = next((s for s in waiting if needs[s.id] <= results.keys()), None)
                    if stage is None:
                        break
                    waiting.remove(stage)
                    _, key, record = self.begin(stage)
                    if record is not None:
                        results[stage.id] = record["result"]
                        continue
                    self.error_path(stage.id).unlink(missing_ok=True)
                    process = context.Process(target=self._child, args=(stage, key), name=stage.id)
                    process.start()
                    running[process.sentinel] = (stage, process)
                if not running:
                    if waiting:  # nothing runs and nothing can start: an input no stage writes is missing
                        raise RllabError(f"stage {waiting[0].id} waits for inputs no stage of the study writes")
                    continue
                for sentinel in multiprocessing.connection.wait(list(running)):
                    stage, process = running.pop(sentinel)
                    process.join()
                    if process.exitcode != 0:
                        raise RllabError(self._failure(stage, process.exitcode))
                    record = read_json(self.record_path(stage.id))
                    where = f"[lab {self.done}/{self.total} {time.perf_counter() - self.started:.0f}s]"
                    self.finished(stage, record, where)
                    results[stage.id] = record["result"]
        finally:
            for _, process in running.values():  # an error or Ctrl-C: stop the others; they resume next time
                process.terminate()
                process.join()
        return {s.id: results[s.id] for s in stages}

    def error_path(self, stage_id: str) -> Path:
        """Where a forked stage leaves its one-line error."""
        return self.record_path(stage_id).with_suffix(".error")

    def _child(self, stage: Stage, key: str) -> None:
        try:
            self.execute(stage, key)
        except KeyboardInterrupt:
            os._exit(130)
        except Exception as exc:  # the parent reads it and stops the study with it
            self.error_path(stage.id).write_text(" ".join(f"{type(exc).__name__}: {exc}".split()) + "\n")
            os._exit(1)

    def _failure(self, stage: Stage, exitcode: int | None) -> str:
        path = self.error_path(stage.id)
        if path.is_file():
            message = path.read_text().strip()
            path.unlink()
            return f"stage {stage.id} failed: {message.removeprefix('RllabError: ')}"
        return f"stage {stage.id} stopped (exit code {exitcode}); run the study again to resume it"
