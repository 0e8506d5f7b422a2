"""Reading and writing the lab's files safely: regular files only, bounded in size and JSON nesting, written
atomically, and the lock a process holds on a run folder while it writes there.

A FIFO, a device or a folder where a file is expected is refused before it is opened (a FIFO would block
a read forever, ``/dev/zero`` would fill memory); a failed write leaves the previous file as it was.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from safetensors import SafetensorError

from rllab.errors import RllabError
from rllab.schema import MAX_JSON_DEPTH, one_line, validate

LOCK_FILE = ".rllab.lock"
MAX_JSON_BYTES = 64 << 20  # any JSON file the lab reads back (agent.json of a raw-Atari agent: a few MiB)


# ------------------------------------------------------------------ reading
def file_kind(mode: int) -> str | None:
    """None for a regular file's ``st_mode``, else what it is in words (``a FIFO``, ``a folder``)."""
    if stat.S_ISREG(mode):
        return None
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def read_regular_file(path: str | Path, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of ``path``, refused in one line unless it is a regular file (a symlink is judged by its
    target) of at most ``max_bytes``. Never blocks on a FIFO. A missing file raises ``FileNotFoundError``."""
    path = Path(path)
    try:
        kind = file_kind(os.stat(path).st_mode)  # before opening: opening a device or FIFO may block or act
        if kind is not None:
            raise RllabError(f"refusing {path}: it is {kind}, not a regular {what}")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise RllabError(f"cannot read {path}: {os_reason(exc)}") from None
    try:
        info = os.fstat(fd)  # what was opened, should the path have been swapped since the check
        kind = file_kind(info.st_mode)
        if kind is not None:
            raise RllabError(f"refusing {path}: it is {kind}, not a regular {what}")
        if info.st_size > max_bytes:
            raise RllabError(f"refusing {path}: {info.st_size} bytes, more than a {what} may hold ({max_bytes})")
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 24, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise RllabError(f"refusing {path}: more than a {what} may hold ({max_bytes} bytes)")
        return b"".join(chunks)
    except OSError as exc:
        raise RllabError(f"cannot read {path}: {os_reason(exc)}") from None
    finally:
        os.close(fd)


def read_json(path: str | Path, model: type[BaseModel] | None = None, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The parsed JSON file ``path`` (validated against ``model`` when given): one ``RllabError`` line naming
    the file (and the field) when it is missing, not a regular file, too big, too deeply nested or invalid."""
    try:
        data = loads(read_regular_file(path, max_bytes, "JSON file"), str(path))
    except FileNotFoundError:
        raise RllabError(f"cannot read {path}: no such file") from None
    return data if model is None else validate(data, model, str(path))


def _bracket_depth(text: str) -> int:
    """The deepest nesting of ``[`` / ``{`` counting brackets inside strings too (never below the true depth)."""
    codes = np.frombuffer(re.sub(r"[^\[\]{}]", "", text).encode(), dtype=np.uint8)
    if codes.size == 0:
        return 0
    return int(np.cumsum(np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)).max())


def json_depth(data: Any) -> int:
    """The nesting depth of parsed JSON ``data`` (a scalar: 0), found without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            values = item.values() if isinstance(item, dict) else item
            stack.extend((v, depth + 1) for v in values if isinstance(v, (dict, list)))
    return deepest


def loads(text: str | bytes, shown: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON ``text`` read from ``shown``, refused in one line when it is invalid or nested more than
    ``max_depth`` deep (never a RecursionError)."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        data = json.loads(text)
    except RecursionError:
        raise RllabError(f"corrupt {shown}: JSON nested too deeply (at most {max_depth} levels)") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, integers of more than 4300 digits
        raise RllabError(f"corrupt {shown}: {one_line(str(exc))}") from None
    # the bracket count bounds the depth from above and is cheap; the exact walk only when it is not enough
    if _bracket_depth(text) > max_depth and (depth := json_depth(data)) > max_depth:
        raise RllabError(f"corrupt {shown}: JSON nested {depth} deep (at most {max_depth} levels)")
    return data


# ------------------------------------------------------------------ writing
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


def os_reason(exc: BaseException) -> str:
    """The short reason an OS error (or a safetensors error wrapping one) gives: ``No space left on device``."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    code = re.search(r"os error (\d+)", text)  # safetensors: "I/O error: No space left on device (os error 28)"
    return os.strerror(int(code.group(1))) if code else text


def atomic_write(path: str | Path, content: str | bytes | Callable[[Path], Any]) -> Path:
    """Write ``path``: ``content`` (text or bytes) or what ``content(tmp)`` writes to a hidden, uniquely named
    file in ``path``'s own folder, given the normal file mode and renamed into place. An OS error is one
    line, ``cannot write PATH: reason``, and leaves any previous file at ``path`` as it was."""
    path = check_output_path(path)
    if isinstance(content, str):
        text = content
        content = lambda tmp: tmp.write_text(text)  # noqa: E731
    elif isinstance(content, bytes):
        raw = content
        content = lambda tmp: tmp.write_bytes(raw)  # noqa: E731
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            content(tmp)
            os.chmod(tmp, file_mode())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except (OSError, SafetensorError) as exc:
        kept = "; the previous file is unchanged" if path.is_file() else ""
        raise RllabError(f"cannot write {path}: {os_reason(exc)}{kept}") from None
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path``, atomically."""
    return atomic_write(path, json.dumps(data, indent=2) + "\n")


def fsync_path(path: Path) -> None:
    """Flush ``path`` (a file or a folder) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ the run-folder lock
_HELD: dict[str, list[int]] = {}  # resolved folder -> [lock file descriptor, depth] held by this process
_HELD_GUARD = threading.Lock()


def _try_lock(key: str, folder: Path) -> bool:
    with _HELD_GUARD:
        if key in _HELD:
            _HELD[key][1] += 1
            return True
        try:
            fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, file_mode())
        except OSError:  # a folder this process may not write in: its first write says so, in its own words
            _HELD[key] = [-1, 1]
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError:  # a file system without locks (some network mounts): go on unlocked
            pass
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())  # for the message a second writer gets
        except OSError:
            pass
        _HELD[key] = [fd, 1]
        return True


def _unlock(key: str) -> None:
    with _HELD_GUARD:
        entry = _HELD[key]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[key]
            if entry[0] >= 0:
                os.close(entry[0])  # closing the descriptor releases the flock


def _holder(folder: Path) -> str:
    try:
        pid = (folder / LOCK_FILE).read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


@contextmanager
def lock_run(path: str | Path, wait: float = 0.0) -> Iterator[Path]:
    """Hold the run folder ``path`` (created if missing) for this process while the block runs.

    Another process holding it is waited for up to ``wait`` seconds, then refused in one line. Re-entrant
    within a process; the lock (``flock`` on ``.rllab.lock``) goes when the process dies.
    """
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RllabError(f"cannot create {folder}: {os_reason(exc)}") from None
    key = str(folder.resolve())
    deadline = time.monotonic() + wait
    while not _try_lock(key, folder):
        if time.monotonic() >= deadline:
            raise RllabError(
                f"{folder} is in use by another rllab process ({_holder(folder)}); wait for it to finish "
                "or choose another --out"
            )
        time.sleep(0.05)
    try:
        yield folder
    finally:
        _unlock(key)
