"""What the rllab commands share in reading their options: argparse types of counts (bounded: a count that
sizes time or memory has a ceiling) and fractions, and the check of an output folder made before any work
(a run that trains for an hour and then cannot save is the costliest way to learn that ``--out`` names a
file)."""

from __future__ import annotations

import os
from pathlib import Path

from rllab.errors import RllabError
from rllab.parsing import MAX_EPISODES, MAX_STEPS, float_arg, int_arg

MAX_THREADS = 1024  # threads of one run, or runs at a time: more than any machine the lab runs on has cores

episode_count = int_arg(1, MAX_EPISODES, "episode_count")
"""argparse type of a number of episodes: 1 to ``MAX_EPISODES``."""

step_count = int_arg(0, MAX_STEPS, "step_count")
"""argparse type of an every-N-steps frequency: 0 (never) or a count up to ``MAX_STEPS``."""

thread_count = int_arg(1, MAX_THREADS, "thread_count")
"""argparse type of a number of threads or parallel jobs: 1 to ``MAX_THREADS``."""

fraction = float_arg(0.0, 1.0, name="fraction")
"""argparse type of a fraction: a finite number in [0, 1]."""


def check_output_folder(path: str | Path) -> Path:
    """An output folder's path, refused in one line if it is a file, sits under a file, or cannot be made."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RllabError(f"cannot write {path}: it is a file, not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RllabError(f"cannot write {path}: {parent} is a file, not a folder")
            break
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RllabError(f"cannot write {path}: {existing} is not writable")
    return path
