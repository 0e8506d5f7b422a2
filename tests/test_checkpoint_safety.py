"""Checkpoint I/O under faults: special files, a full disk, kill -9 mid-save, loads racing saves, the run lock.

Every agent here is built from a spec without training (a few milliseconds), so the whole module runs in
seconds; the subprocesses import rllab once each.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import pytest

import rllab
import rllab.checkpoint as ckpt
from rllab.agent import agent_from_spec
from rllab.checkpoint import SPEC_FILE, WEIGHTS_FILE, lock_run, read_json
from rllab.errors import RllabError
from rllab.schema import ResultCard, ResumeState, SweepRecord
from rllab.spec import spec_skeleton
from tests.hostile_cases import valid_result_card

ROOT = Path(__file__).resolve().parents[1]


def tiny_agent(seed: int = 0, width: int = 8) -> rllab.Agent:
    """A CartPole actor-critic with random weights: a complete checkpoint in milliseconds."""
    import torch

    torch.manual_seed(seed)
    env = gym.make("CartPole-v1")
    spec = spec_skeleton(
        "ppo",
        "CartPole-v1",
        {},
        [],
        env.observation_space,
        env.action_space,
        "ActorCriticPolicy",
        {"net_arch": [width]},
        has_critic=True,
    )
    env.close()
    return agent_from_spec(spec)


@pytest.fixture
def saved(tmp_path) -> Path:
    return tiny_agent().save(tmp_path / "ckpt")


def _state(folder: Path) -> tuple[bytes, bytes]:
    return (folder / WEIGHTS_FILE).read_bytes(), (folder / SPEC_FILE).read_bytes()


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert text and "\n" not in text
    return text


@pytest.fixture
def alarm():
    """Fail instead of hanging: a read that blocks (a FIFO) is interrupted after 10 s."""

    def timeout(*_):
        raise TimeoutError("blocked")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------ special files
@pytest.mark.parametrize("which", [SPEC_FILE, WEIGHTS_FILE])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder"])
def test_special_files_are_refused_before_reading(saved, which, kind, alarm):
    target = saved / which
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "dev-zero":
        target.symlink_to("/dev/zero")
    else:
        target.mkdir()
    started = time.monotonic()
    with pytest.raises(RllabError) as exc:
        rllab.load(saved)
    words = {"fifo": "a FIFO", "dev-zero": "a device", "folder": "a folder"}[kind]
    assert words in _one_line(exc) and str(target) in str(exc.value)
    assert time.monotonic() - started < 5


def test_a_symlink_to_a_regular_checkpoint_file_still_loads(saved, tmp_path):
    other = tmp_path / "elsewhere.json"
    shutil.move(saved / SPEC_FILE, other)
    (saved / SPEC_FILE).symlink_to(other)
    rllab.load(saved)


def test_an_oversized_agent_json_is_refused_before_parsing(saved, monkeypatch):
    monkeypatch.setattr(ckpt, "MAX_SPEC_BYTES", 100)
    with pytest.raises(RllabError, match="more than") as exc:
        rllab.load(saved)
    _one_line(exc)


def test_garbage_weights_with_a_matching_hash_are_one_line(saved):
    import hashlib

    junk = (1 << 40).to_bytes(8, "little") + b"{}" + bytes(4096)
    (saved / WEIGHTS_FILE).write_bytes(junk)
    spec = json.loads((saved / SPEC_FILE).read_text())
    spec["weights"].update(sha256=hashlib.sha256(junk).hexdigest(), bytes=len(junk))
    (saved / SPEC_FILE).write_text(json.dumps(spec))
    with pytest.raises(RllabError, match="safetensors header") as exc:
        rllab.load(saved)
    _one_line(exc)


# ------------------------------------------------------------------ a full disk, no permission
def test_enospc_while_writing_the_weights_keeps_the_previous_checkpoint(saved, monkeypatch):
    import rllab.agent as agent_mod

    before = _state(saved)

    def full(model, filename, *a, **k):
        Path(filename).write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(agent_mod, "save_model", full)
    with pytest.raises(RllabError) as exc:
        tiny_agent(seed=1).save(saved)
    assert "No space left on device" in _one_line(exc) and "previous checkpoint there is unchanged" in str(exc.value)
    assert _state(saved) == before
    assert not list(saved.glob(".saving-*"))
    rllab.load(saved)


def test_enospc_into_a_new_folder_says_nothing_was_saved(tmp_path, monkeypatch):
    import rllab.agent as agent_mod

    def full(model, filename, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(agent_mod, "save_model", full)
    with pytest.raises(RllabError, match="nothing was saved") as exc:
        tiny_agent().save(tmp_path / "new")
    _one_line(exc)
    assert not (tmp_path / "new" / SPEC_FILE).exists()


def test_a_failed_agent_json_rename_rolls_the_weights_back(saved, monkeypatch):
    before = _state(saved)
    real = os.replace

    def failing(src, dst):
        if Path(dst).name == SPEC_FILE:
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        return real(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", failing)
    with pytest.raises(RllabError, match="Permission denied; the previous checkpoint there is unchanged"):
        tiny_agent(seed=1).save(saved)
    monkeypatch.undo()
    assert _state(saved) == before
    rllab.load(saved)


def test_atomic_write_enospc_keeps_the_previous_file(tmp_path):
    target = ckpt.write_json(tmp_path / "state.json", {"a": 1})

    def full(tmp):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(RllabError, match="No space left on device; the previous file is unchanged"):
        ckpt.atomic_write(target, full)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


# ------------------------------------------------------------------ kill -9 and concurrent loads
def _python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


SAVER = """
import sys, torch
sys.path.insert(0, "tests")
from test_checkpoint_safety import tiny_agent
torch.set_num_threads(1)
agents = [tiny_agent(seed=s) for s in (1, 2)]
print("ready", flush=True)
i = 0
while True:
    agents[i % 2].save(sys.argv[1])
    i += 1
"""


def _wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read()


def test_kill_between_the_two_renames_is_recovered(saved):
    code = """
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, "tests")
    import rllab.checkpoint as ckpt
    from test_checkpoint_safety import tiny_agent
    real = os.replace
    def replace(src, dst):
        real(src, dst)
        if Path(dst).name == "weights.safetensors":
            os.kill(os.getpid(), signal.SIGKILL)  # dies with new weights beside the old agent.json
    ckpt.os.replace = replace
    tiny_agent(seed=3).save(sys.argv[1])
    """
    proc = _python(code, str(saved))
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert list(saved.glob(".saving-*"))  # the killed save's folder is still there
    loaded = rllab.load(saved)  # a consistent pair, completed in memory
    assert loaded.spec["weights"]["sha256"] == ckpt.sha256_file(saved / WEIGHTS_FILE)
    tiny_agent(seed=4).save(saved)  # the next save completes or removes the leftovers
    assert not list(saved.glob(".saving-*"))
    rllab.load(saved)


def test_loads_racing_a_save_loop_never_report_tampering_and_kill_9_keeps_one(saved):
    proc = _python(SAVER, str(saved))
    try:
        _wait_ready(proc)
        hashes, deadline = set(), time.monotonic() + 3
        while time.monotonic() < deadline:
            hashes.add(rllab.load(saved).spec["weights"]["sha256"])
    finally:
        proc.kill()  # kill -9 at whatever point of a save the loop is in
        proc.wait(timeout=60)
    assert len(hashes) >= 2  # the loads did see the saver's checkpoints change
    rllab.load(saved)


def test_a_stale_saving_folder_is_removed_by_the_next_save(saved, capsys):
    stale = saved / ".saving-dead"
    stale.mkdir()
    (stale / WEIGHTS_FILE).write_bytes(b"partial")
    os.utime(stale, (0, 0))
    rllab.load(saved)  # ignored by loads
    tiny_agent(seed=1).save(saved)
    assert not stale.exists()
    assert "removed .saving-dead" in capsys.readouterr().err


# ------------------------------------------------------------------ the run lock
def test_a_run_locked_by_another_process_is_refused_in_one_line(saved, monkeypatch):
    import fcntl

    code = """
    import sys, time
    from rllab.checkpoint import lock_run
    with lock_run(sys.argv[1]), lock_run(sys.argv[1]):  # re-entrant within a process
        print("ready", flush=True)
        time.sleep(120)
    """
    proc = _python(code, str(saved))
    try:
        _wait_ready(proc)
        with pytest.raises(RllabError) as exc:
            with lock_run(saved):
                pass
        held = f"{saved} is in use by another rllab process (pid {proc.pid})"
        assert _one_line(exc) == f"{held}; wait for it to finish or choose another --out"
        before = _state(saved)
        monkeypatch.setattr(ckpt, "SAVE_WAIT_SECONDS", 0.2)
        with pytest.raises(RllabError, match="is in use by another rllab process"):
            tiny_agent(seed=1).save(saved)
        assert _state(saved) == before
    finally:
        proc.kill()
        proc.wait(timeout=60)
    with lock_run(saved), lock_run(saved):
        with open(saved / ckpt.LOCK_FILE) as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held
    with open(saved / ckpt.LOCK_FILE) as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the outer block ends


# ------------------------------------------------------------------ other files read back
def test_read_json_validates_other_files(tmp_path):
    good = {"param_groups": [{"params": [0, 1], "lr": 3e-4}], "scalars": {}, "num_timesteps": 64, "n_updates": 2}
    path = ckpt.write_json(tmp_path / "state.json", good)
    assert read_json(path, ResumeState) == good
    for bad, field in (
        ({**good, "num_timesteps": "64"}, "num_timesteps: must be an integer"),
        ({**good, "param_groups": [{"params": [-1]}]}, "param_groups[0].params[0]: must be >= 0"),
        ({k: v for k, v in good.items() if k != "scalars"}, "scalars: missing"),
    ):
        ckpt.write_json(path, bad)
        with pytest.raises(RllabError) as exc:
            read_json(path, ResumeState)
        assert _one_line(exc) == f"{path}: {field}" or _one_line(exc).startswith(f"{path}: {field} (got")
    path.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(RllabError, match="nested") as exc:
        read_json(path)
    with pytest.raises(RllabError, match="no such file"):
        read_json(tmp_path / "missing.json")
    record = {"stages": [["train", "--algo", "ppo"]], "status": "running", "started": 1.0}
    assert read_json(ckpt.write_json(tmp_path / "job.json", record), SweepRecord) == record
    done = {"stages": record["stages"], "config": "ppo-CartPole-v1", "seed": 0, "run": "r", "status": "done"}
    done |= {"reused": ["train"], "ran": [], "wall_s": 0.5}
    assert read_json(ckpt.write_json(tmp_path / "job.json", done), SweepRecord) == done
    ckpt.write_json(tmp_path / "job.json", {**record, "status": "exploded"})
    with pytest.raises(RllabError, match="status: must be one of"):
        read_json(tmp_path / "job.json", SweepRecord)
    card = valid_result_card()
    assert read_json(ckpt.write_json(tmp_path / "results.json", card), ResultCard) == card
    ckpt.write_json(tmp_path / "results.json", {**card, "episodes": 0})
    with pytest.raises(RllabError, match="episodes: must be >= 1"):
        read_json(tmp_path / "results.json", ResultCard)
