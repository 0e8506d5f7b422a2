"""The agent checkpoint: a folder with ``agent.json`` and ``weights.safetensors``.

Loading reads JSON and safetensors only, so a checkpoint from a stranger cannot
run code. ``agent.json`` records the SHA-256 of the weights file; a truncated or
tampered file is refused. Writes go to temporary files in the same folder that
are fsynced and renamed into place, weights first and ``agent.json`` last, so an
interrupted save leaves the previous checkpoint loadable (or, in the instant
between the two renames, detectably inconsistent, never silently mixed).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rllab.errors import RllabError

SCHEMA = "rllab.agent/1"
SPEC_FILE = "agent.json"
WEIGHTS_FILE = "weights.safetensors"


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


def _read_umask() -> int:
    umask = os.umask(0)  # the only portable way to read it: set, then restore at once
    os.umask(umask)
    return umask


# read once, at import (in the main thread): setting the umask to 0 even for an instant races with
# threads that create files or start processes meanwhile (rllab sweep's workers)
_UMASK = _read_umask()


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: 0o666 less the umask (mkstemp's files are 0o600)."""
    return 0o666 & ~_UMASK


def check_output_path(path: str | Path) -> Path:
    """An output file's path, refused in one line if it names a folder or sits under a file."""
    path = Path(path)
    if path.is_dir():
        raise RllabError(f"cannot write {path}: it is a directory; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RllabError(f"cannot write {path}: {parent} is a file, not a folder")
            break
    return path


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write ``path`` through ``write(tmp)``: a hidden, uniquely named file in ``path``'s own folder, given
    the normal file mode and renamed into place. An OS error is one line: ``cannot write PATH: reason``."""
    path = check_output_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            write(tmp)
            os.chmod(tmp, file_mode())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise RllabError(f"cannot write {path}: {_reason(exc)}") from None
    return path


def write_json(path: str | Path, data: Any) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(path: str | Path, spec: dict[str, Any], write_weights) -> Path:
    """Atomically write ``spec`` and the weights produced by ``write_weights(tmp_path)``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RllabError(f"cannot write the checkpoint {path}: it is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
        return _write_checkpoint(path, spec, write_weights)
    except OSError as exc:
        raise RllabError(f"cannot write the checkpoint {path}: {_reason(exc)}") from None


def _write_checkpoint(path: Path, spec: dict[str, Any], write_weights) -> Path:
    tmp_dir = Path(tempfile.mkdtemp(prefix=".saving-", dir=path))
    try:
        tmp_weights = tmp_dir / WEIGHTS_FILE
        write_weights(tmp_weights)
        _fsync(tmp_weights)
        spec = dict(spec)
        spec["schema"] = SCHEMA
        spec["weights"] = {
            "file": WEIGHTS_FILE,
            "sha256": sha256_file(tmp_weights),
            "bytes": tmp_weights.stat().st_size,
        }
        tmp_spec = tmp_dir / SPEC_FILE
        tmp_spec.write_text(json.dumps(spec, indent=2, sort_keys=False) + "\n")
        _fsync(tmp_spec)
        for f in (tmp_weights, tmp_spec):
            os.chmod(f, file_mode())
        os.replace(tmp_weights, path / WEIGHTS_FILE)
        os.replace(tmp_spec, path / SPEC_FILE)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


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


def read_checkpoint(path: str | Path) -> tuple[Path, dict[str, Any], bytes]:
    """The checkpoint folder, its validated ``agent.json`` and the bytes of its weights file.

    The weights are read once and the hash is checked on those very bytes, so a caller that
    loads them gets exactly what was hashed, even if a concurrent save replaces the file.
    """
    path = checkpoint_dir(path)
    spec_path = path / SPEC_FILE
    if not spec_path.exists():
        raise RllabError(f"{path} is not an rllab checkpoint (no {SPEC_FILE})")
    try:
        spec = json.loads(spec_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RllabError(f"corrupt {spec_path}: {exc}") from None
    if not isinstance(spec, dict) or spec.get("schema") != SCHEMA:
        found = spec.get("schema") if isinstance(spec, dict) else None
        raise RllabError(f"{spec_path} has schema {found!r}; this rllab reads {SCHEMA!r}")
    for key in ("algo", "env", "observation_space", "action_space", "policy", "weights"):
        if key not in spec:
            raise RllabError(f"corrupt {spec_path}: missing field {key!r}")
    weights = path / WEIGHTS_FILE
    try:
        data = weights.read_bytes()
    except FileNotFoundError:
        raise RllabError(f"checkpoint {path} has no {WEIGHTS_FILE}") from None
    except OSError as exc:
        raise RllabError(f"cannot read weights of {path}: {exc}") from None
    if spec["weights"].get("sha256") != hashlib.sha256(data).hexdigest():
        raise RllabError(
            f"{weights} does not match the hash recorded in {SPEC_FILE} (truncated, tampered or half-written)"
        )
    return path, spec, data


def read_spec(path: str | Path) -> dict[str, Any]:
    """Read and validate ``agent.json`` and check the weights' hash."""
    return read_checkpoint(path)[1]


def lineage_entry(parent_path: str | Path, parent_spec: dict[str, Any], transform: str, params: dict[str, Any]):
    """One step of a checkpoint's ancestry: which checkpoint, which transform, which settings."""
    return {
        "parent": str(parent_path),
        "parent_resolved": str(Path(parent_path).resolve()),
        "parent_sha256": parent_spec.get("weights", {}).get("sha256"),
        "transform": transform,
        "params": params,
        "time": now(),
    }
