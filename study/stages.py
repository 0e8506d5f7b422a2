"""Stages of a study, each cached by its inputs: a stage's key is the SHA-256 of its settings and of the
checkpoints it reads (``agent.json`` and ``weights.safetensors``), so a rerun skips every stage whose key
is unchanged and a changed setting reruns that stage and what reads its output. A stage is finished when
its record ``STUDY/stages/<id>.json`` is written, last: an interrupted stage has none and runs again (its
half-written outputs removed first), so an interrupted study resumes at the stage it was in."""

from __future__ import annotations

import hashlib
import json
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

    def run(self, stage: Stage) -> dict[str, Any]:
        """The stage's record: read back when cached, else made by running it."""
        self.done += 1
        where = f"[lab {self.done}/{self.total} {time.perf_counter() - self.started:.0f}s]"
        key = stage.key()
        record = self.cached(stage, key)
        if record is not None:
            self.log(f"{where} {stage.id}: cached")
            self.timings.append(
                {"stage": stage.id, "status": "cached", "seconds": 0.0, "ran_s": record["seconds"], "cpu_s": 0.0}
            )
            return record["result"]
        self.log(f"{where} {stage.id}: running")
        self.record_path(stage.id).unlink(missing_ok=True)
        for out in stage.outputs:
            if out.exists():
                shutil.rmtree(out) if out.is_dir() else out.unlink()
        t0, c0 = time.perf_counter(), time.process_time()
        result = stage.run()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        write_json(
            self.record_path(stage.id),
            {
                "id": stage.id,
                "key": key,
                "settings": stage.settings,
                "seconds": seconds,
                "cpu_s": cpu,
                "result": result,
            },
        )
        self.log(f"{where} {stage.id}: done in {seconds:.1f} s (CPU {cpu:.1f} s)")
        self.timings.append({"stage": stage.id, "status": "ran", "seconds": seconds, "ran_s": seconds, "cpu_s": cpu})
        return result
