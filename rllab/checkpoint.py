"""The agent checkpoint: a folder with ``agent.json`` and ``weights.safetensors``, read and written safely.

Loading reads JSON and safetensors only, so a checkpoint from a stranger cannot run code; ``agent.json`` is
validated against ``rllab.schema`` and records the SHA-256 of the weights file, so a truncated or tampered
file is refused. Only regular files are read (a FIFO, a device or a folder is refused before it is read),
with a size limit and a JSON nesting limit.

A save writes both files into a hidden ``.saving-*`` folder inside the checkpoint, fsyncs them, then renames
the weights and ``agent.json`` into place (the previous weights kept as a hard link until the second rename
is done). A save that fails or is killed never damages the previous checkpoint: a load that meets the
instant between the two renames retries, or completes the interrupted save from its ``.saving-*`` folder;
the next save removes such leftovers.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from rllab.errors import RllabError
from rllab.files import (
    LOCK_FILE,
    atomic_write,
    check_output_path,
    file_kind,
    file_mode,
    fsync_path,
    loads,
    lock_run,
    os_reason,
    read_json,
    read_regular_file,
    write_json,
)
from rllab.schema import SCHEMA, validate_spec

# the file helpers are importable from here too, as before the split into rllab.files
__all__ = [
    "SCHEMA",
    "SPEC_FILE",
    "WEIGHTS_FILE",
    "atomic_write",
    "check_output_path",
    "file_mode",
    "lock_run",
    "read_json",
    "read_regular_file",
    "write_json",
]

SPEC_FILE = "agent.json"
WEIGHTS_FILE = "weights.safetensors"
SAVING_PREFIX = ".saving-"
_PREVIOUS = "previous.safetensors"  # the replaced weights, kept in the saving folder until agent.json is swapped

MAX_SPEC_BYTES = 64 << 20  # a raw-Atari agent.json with statistics and a purifier holds a few MiB
MAX_WEIGHTS_BYTES = 16 << 30
LOAD_ATTEMPTS = 40  # a load meeting a concurrent save retries this often ...
RETRY_SECONDS = 0.05  # ... this long apart before calling the weights damaged
STALE_SECONDS = 60.0  # a .saving-* folder without a lock file is a dead save's after this long
SAVE_WAIT_SECONDS = 5.0  # a save waits this long for another process's save into the same folder


# ------------------------------------------------------------------ safetensors
def check_safetensors_header(data: bytes, shown: Any) -> None:
    """Refuse bytes that cannot be a safetensors file (header length and JSON) in one line; the
    ``safetensors`` library checks the tensors themselves when it loads them."""
    if len(data) < 8:
        raise RllabError(f"cannot read weights of {shown}: {len(data)} bytes, too short for a safetensors file")
    n = int.from_bytes(data[:8], "little")
    if n > min(len(data) - 8, 100_000_000):  # safetensors' own limit on the header
        raise RllabError(f"cannot read weights of {shown}: the safetensors header claims {n} bytes")
    header = loads(data[8 : 8 + n], f"safetensors header of {shown}")
    if not isinstance(header, dict):
        raise RllabError(f"cannot read weights of {shown}: the safetensors header is not a JSON object")


def new_output(out: str | Path, parent: str | Path) -> Path:
    """Where a transform writes its checkpoint: never over its input, never over another checkpoint."""
    out = Path(out)
    if out.resolve() == Path(parent).resolve():
        raise RllabError("--out must differ from the input checkpoint")
    if (out / SPEC_FILE).exists():
        raise RllabError(f"{out} already holds a checkpoint; choose another --out")
    return out


@contextmanager
def removed_on_failure(out: Path, keep_checkpoint: bool = False) -> Iterator[Path]:
    """Within this block, a failure removes ``out`` if the block created it: nothing half-made is left.

    ``keep_checkpoint=True`` keeps it when it holds a checkpoint by then (a training run interrupted
    after its first save is resumable, not half-made).
    """
    created = not out.exists()
    try:
        yield out
    except BaseException:
        if created and not (keep_checkpoint and (out / SPEC_FILE).exists()):
            shutil.rmtree(out, ignore_errors=True)
        raise


def now() -> str:
    """The current UTC time as ISO 8601 (seconds)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    """The SHA-256 of the file ``path`` (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_checkpoint(path: str | Path, spec: dict[str, Any], write_weights) -> Path:
    """Atomically write ``spec`` and the weights produced by ``write_weights(tmp_path)``.

    A failure (a full disk, no permission) is one line saying what was kept; the previous checkpoint
    in ``path`` is never damaged. A folder another process holds with ``lock_run`` is refused.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RllabError(f"cannot write the checkpoint {path}: it is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with lock_run(path, wait=SAVE_WAIT_SECONDS):
            clean_stale_saves(path)
            return _write_checkpoint(path, spec, write_weights)
    except (OSError, SafetensorError) as exc:
        kept = "the previous checkpoint there is unchanged" if (path / SPEC_FILE).exists() else "nothing was saved"
        raise RllabError(f"cannot write the checkpoint {path}: {os_reason(exc)}; {kept}") from None


def _write_checkpoint(path: Path, spec: dict[str, Any], write_weights) -> Path:
    tmp_dir = Path(tempfile.mkdtemp(prefix=SAVING_PREFIX, dir=path))
    guard = os.open(tmp_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)  # tells loads and later saves that this folder is a live save
        tmp_weights = tmp_dir / WEIGHTS_FILE
        write_weights(tmp_weights)
        fsync_path(tmp_weights)
        spec = dict(spec)
        spec["schema"] = SCHEMA
        spec["weights"] = {
            "file": WEIGHTS_FILE,
            "sha256": sha256_file(tmp_weights),
            "bytes": tmp_weights.stat().st_size,
        }
        tmp_spec = tmp_dir / SPEC_FILE
        tmp_spec.write_text(json.dumps(spec, indent=2, sort_keys=False) + "\n")
        fsync_path(tmp_spec)
        for f in (tmp_weights, tmp_spec):
            os.chmod(f, file_mode())
        previous = tmp_dir / _PREVIOUS
        try:  # keep the weights agent.json still vouches for until it is replaced too
            os.link(path / WEIGHTS_FILE, previous)
        except OSError:
            previous = None
        os.replace(tmp_weights, path / WEIGHTS_FILE)
        try:
            os.replace(tmp_spec, path / SPEC_FILE)
        except BaseException:
            if previous is not None:  # roll back: the previous pair stays complete
                os.replace(previous, path / WEIGHTS_FILE)
            raise
        fsync_path(path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        os.close(guard)
    return path


def _live(save: Path) -> bool:
    """Whether the ``.saving-*`` folder ``save`` belongs to a save still running (its lock is held)."""
    try:
        fd = os.open(save / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        try:
            return time.time() - save.stat().st_mtime < STALE_SECONDS  # a save between mkdtemp and locking
        except OSError:
            return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return True
    finally:
        os.close(fd)


def clean_stale_saves(path: Path) -> None:
    """Finish or remove what a killed save left in checkpoint folder ``path`` (a message for each)."""
    for save in sorted(path.glob(SAVING_PREFIX + "*")):
        if not save.is_dir() or _live(save):
            continue
        found = _interrupted_pair(path, save)
        if found is not None and found[0] is not None:  # the new weights are in place: finish the swap
            os.replace(save / SPEC_FILE, path / SPEC_FILE)
            print(f"[rllab] {path}: completed a save that was interrupted", file=sys.stderr)
        elif found is not None:  # only the previous weights match agent.json: put them back
            os.replace(save / _PREVIOUS, path / WEIGHTS_FILE)
            print(f"[rllab] {path}: restored the checkpoint an interrupted save had left inconsistent", file=sys.stderr)
        shutil.rmtree(save, ignore_errors=True)
        print(f"[rllab] {path}: removed {save.name}, left by an interrupted save", file=sys.stderr)


# ------------------------------------------------------------------ reading a checkpoint
def checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint folder ``path`` names (the folder itself or its ``agent.json``)."""
    path = Path(path)
    if not path.exists():
        raise RllabError(f"no checkpoint at {path}")
    if path.is_file():
        if path.name == SPEC_FILE:
            return path.parent
        raise RllabError(f"{path} is a file; a checkpoint is a folder holding {SPEC_FILE} and {WEIGHTS_FILE}")
    return path


def _identity(folder: Path) -> tuple[Any, ...]:
    out: list[Any] = []
    for name in (SPEC_FILE, WEIGHTS_FILE):
        try:
            st = os.stat(folder / name)
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _read_spec_file(folder: Path) -> dict[str, Any]:
    spec_path = folder / SPEC_FILE
    try:
        text = read_regular_file(spec_path, MAX_SPEC_BYTES, SPEC_FILE)
    except FileNotFoundError:
        raise RllabError(f"{folder} is not an rllab checkpoint (no {SPEC_FILE})") from None
    return validate_spec(loads(text, str(spec_path)), str(spec_path))


def _read_once(folder: Path) -> tuple[dict[str, Any], bytes | None]:
    """agent.json and the weights' bytes (None when their size is not the one agent.json records)."""
    spec = _read_spec_file(folder)
    weights = folder / WEIGHTS_FILE
    try:
        size = os.stat(weights).st_size
        recorded = spec["weights"].get("bytes")
        if recorded is not None and size != recorded and file_kind(os.stat(weights).st_mode) is None:
            return spec, None  # truncated, appended to, or a save in progress: not worth reading
        return spec, read_regular_file(weights, MAX_WEIGHTS_BYTES, "weights file")
    except FileNotFoundError:
        raise RllabError(f"checkpoint {folder} has no {WEIGHTS_FILE}") from None
    except OSError as exc:
        raise RllabError(f"cannot read weights of {folder}: {os_reason(exc)}") from None


def _interrupted_pair(folder: Path, save: Path) -> tuple[dict[str, Any] | None, bytes | None] | None:
    """When the pair in ``folder`` is inconsistent, the other half from the dead save ``save``: (its agent.json,
    None) when that vouches for the weights in place, or (None, the previous weights) when those are what the
    agent.json in place vouches for. None when the pair in place is complete or nothing fits."""
    try:
        current = hashlib.sha256(read_regular_file(folder / WEIGHTS_FILE, MAX_WEIGHTS_BYTES)).hexdigest()
        try:
            vouched = _read_spec_file(folder)["weights"]["sha256"]
        except RllabError:  # a first save killed before its agent.json was in place
            vouched = None
        if vouched == current:
            return None
        if (save / SPEC_FILE).is_file():
            spec = _read_spec_file(save)
            if spec["weights"]["sha256"] == current:
                return spec, None
        if vouched is not None and (save / _PREVIOUS).is_file():
            data = read_regular_file(save / _PREVIOUS, MAX_WEIGHTS_BYTES)
            if hashlib.sha256(data).hexdigest() == vouched:
                return None, data
    except (OSError, RllabError):
        pass
    return None


def read_checkpoint(path: str | Path) -> tuple[Path, dict[str, Any], bytes]:
    """The checkpoint folder, its validated ``agent.json`` and the bytes of its weights file.

    The weights are read once and the hash is checked on those very bytes, so a caller that
    loads them gets exactly what was hashed, even if a concurrent save replaces the file. A load
    that meets a save between its two renames reads again; one that finds a killed save's
    leftovers completes that save in memory (the next save completes it on disk).
    """
    folder = checkpoint_dir(path)
    for _ in range(LOAD_ATTEMPTS):
        before = _identity(folder)
        spec, data = _read_once(folder)
        if data is not None and spec["weights"].get("sha256") == hashlib.sha256(data).hexdigest():
            check_safetensors_header(data, folder)
            return folder, spec, data
        time.sleep(RETRY_SECONDS)  # a save may be between its two renames: look again
        saving = [s for s in folder.glob(SAVING_PREFIX + "*") if s.is_dir()]
        if _identity(folder) == before and not any(_live(s) for s in saving):
            for save in saving:  # a killed save: its folder holds the other half of a complete pair
                found = _interrupted_pair(folder, save)
                if found is not None:
                    spec, data = (
                        found[0] or spec,
                        found[1] or read_regular_file(folder / WEIGHTS_FILE, MAX_WEIGHTS_BYTES),
                    )
                    check_safetensors_header(data, folder)
                    return folder, spec, data
            break
    raise RllabError(
        f"{folder / WEIGHTS_FILE} does not match the hash recorded in {SPEC_FILE} (truncated, tampered or half-written)"
    )


def read_spec(path: str | Path) -> dict[str, Any]:
    """Read and validate ``agent.json`` and check the weights' hash."""
    return read_checkpoint(path)[1]
