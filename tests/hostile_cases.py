"""Hostile and careless inputs to every ``rllab`` command (issue 15): each case builds what it needs in a
scratch folder and gives the command line to run.

Shared by ``tests/test_hostile_inputs.py`` (every case in-process through ``rllab.cli.main``) and
``bench/hostile_inputs.py`` (every case as a real subprocess, with a results table). A case expects either
``"error"`` (a non-zero exit with one clean line, never a traceback) or ``"ok"`` (exit 0). Every case runs on
copies of the good agents: ``prepare`` copies what it corrupts with ``shutil.copytree``, never touching the
originals, and a runner checks afterwards that

- no good checkpoint changed: the originals in the agents folder, and every regular ``agent.json`` /
  ``weights.safetensors`` the case prepared (unless the case is a resume that is meant to write);
- no code ran: the payloads of the "hostile payloads" cases would create ``MARKER`` in the scratch folder;
- nothing hung (the runners' timeouts).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER = "pwned"  # a payload that runs creates this file in the case's scratch folder
CARTPOLE, CATCH, SB3_ZIP = "cartpole", "catch", "sb3.zip"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

TINY = {"n_steps": 32, "batch_size": 32, "n_epochs": 1}


# ------------------------------------------------------------------ the good agents
def build_agents(root: Path) -> Path:
    """Train the tiny good agents into ``root`` (a few seconds): ``cartpole/`` (PPO, vector observations),
    ``catch/`` (PPO, pixel observations) and ``sb3.zip`` (an untrained Stable-Baselines3 PPO on CartPole).
    Kept as they are when already there and complete."""
    import torch

    torch.set_num_threads(1)
    import rllab

    root.mkdir(parents=True, exist_ok=True)
    for name, env in ((CARTPOLE, "CartPole-v1"), (CATCH, "Catch-v0")):
        run = root / name
        if (run / "agent.json").is_file():
            continue
        rllab.train(
            algo="ppo",
            env=env,
            seed=0,
            steps=256,
            out=run,
            progress=False,
            eval_freq=0,
            save_freq=0,
            final_eval_episodes=1,
            threads=1,
            overrides=TINY,
        )
    if not (root / SB3_ZIP).is_file():
        from stable_baselines3 import PPO

        PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0, device="cpu").save(root / SB3_ZIP)
    return root


def regular_file_hashes(root: Path, names: tuple[str, ...] | None = None) -> dict[str, str]:
    """SHA-256 of every regular file under ``root`` (only those called one of ``names`` when given), by path
    relative to ``root``. Special files and symlinks to them are skipped, never opened (a FIFO would block)."""
    out = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        if names is not None and path.name not in names:
            continue
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                continue
        except OSError:
            continue
        out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


CHECKPOINT_FILES = ("agent.json", "weights.safetensors")


@contextlib.contextmanager
def held_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s run lock as another rllab process would (``flock`` on its ``.rllab.lock``, on a file
    description of its own, so that even this process's rllab calls are refused)."""
    from rllab.files import LOCK_FILE

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------ one case
@dataclass(frozen=True)
class Case:
    """One hostile input: ``prepare(tmp, agents)`` builds its files under ``tmp`` and returns ``rllab``'s argv."""

    id: str
    family: str
    description: str
    prepare: Callable[[Path, Path], list[str]]
    expect: str = "error"  # "error": exit 2, one clean line; "ok": exit 0; "interrupted": exit 2 or 130, one line
    match: str | None = None  # a word the error line must hold (that it is the right refusal)
    writes: bool = False  # a case meant to succeed by writing the checkpoint it prepared (a resume)
    lock: str | None = None  # a folder under tmp whose run lock another "process" holds while the case runs
    skip: str | None = None  # why this case cannot run here (e.g. as root)
    known: str | None = None  # an open bug this case still finds ("hangs: ..." if it would block the runner)
    cwd: str | None = None  # a folder under tmp to run in, first on sys.path (as ``python -m rllab.cli`` has it)
    interrupt: float | None = None  # seconds after the process starts to send it SIGINT (real processes only)
    file_limit: int | None = None  # bytes a written file may reach (RLIMIT_FSIZE: a full disk; real processes only)


CASES: list[Case] = []


def case(family: str, id: str, description: str, expect: str = "error", **kw: Any):
    """Register the decorated ``prepare`` function as a case."""

    def add(prepare: Callable[[Path, Path], list[str]]) -> Callable[[Path, Path], list[str]]:
        CASES.append(Case(id, family, description, prepare, expect, **kw))
        return prepare

    return add


# ------------------------------------------------------------------ helpers for prepare functions
def copy_agent(agents: Path, tmp: Path, name: str = CARTPOLE, as_name: str | None = None) -> Path:
    """A copy of a good agent folder in ``tmp`` (the copy is what a case may corrupt)."""
    dst = tmp / (as_name or name)
    shutil.copytree(agents / name, dst, symlinks=True)
    return dst


def read_spec(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "agent.json").read_text())


def write_spec(folder: Path, spec: Any) -> None:
    (folder / "agent.json").write_text(json.dumps(spec))


DELETE = object()


def set_field(spec: dict[str, Any], path: str, value: Any) -> None:
    """Set (or with ``DELETE`` remove) the dotted field ``path`` (list indices as numbers)."""
    *keys, last = [int(k) if k.isdigit() else k for k in path.split(".")]
    node: Any = spec
    for k in keys:
        node = node[k]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


def edited(agents: Path, tmp: Path, edits: dict[str, Any], name: str = CARTPOLE) -> Path:
    """A copy of agent ``name`` with ``agent.json`` fields set (the weights' hash stays right)."""
    folder = copy_agent(agents, tmp, name)
    spec = read_spec(folder)
    for path, value in edits.items():
        set_field(spec, path, value)
    write_spec(folder, spec)
    return folder


def eval_argv(folder: Path) -> list[str]:
    return ["eval", str(folder), "--episodes", "1", "--n-envs", "1"]


def attack_argv(folder: Path, eps: str = "0.1", *extra: str) -> list[str]:
    argv = ["attack", str(folder), "--attack", "pgd", "--eps", eps, "--steps", "2", "--episodes", "1"]
    return [*argv, "--n-envs", "1", "--no-progress", "--out", str(folder.parent / "report"), *extra]


def certify_argv(folder: Path, eps: str = "0.1", *extra: str) -> list[str]:
    return ["certify", str(folder), "--eps", eps, "--episodes", "1", *extra]


TRAIN = ["train", "--algo", "ppo", "--env", "CartPole-v1", "--no-progress", "--eval-freq", "0", "--threads", "1"]


def train_argv(out: Path, steps: str = "64", *extra: str) -> list[str]:
    return [*TRAIN, "--steps", steps, "--save-freq", "0", "--out", str(out), "--set", "n_steps=32", *extra]


def resume_argv(run: Path) -> list[str]:
    return [*TRAIN, "--out", str(run), "--resume", "--steps", "512", "--save-freq", "0"]


def payload(tmp: Path) -> str:
    """A shell command that proves code ran: it creates ``tmp/MARKER``."""
    return f"touch {tmp / MARKER}"


def yaml_tag(tmp: Path) -> str:
    """A YAML value that runs ``payload`` under ``yaml.load`` (never under ``yaml.safe_load``)."""
    return f'!!python/object/apply:os.system ["{payload(tmp)}"]'


def fifo(path: Path) -> Path:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


def to_dev_zero(path: Path) -> Path:
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# ------------------------------------------------------------------ CLI values
@case("CLI values", "train-steps-inf", "train --steps inf", match="--steps")
def _(tmp, agents):
    return train_argv(tmp / "run", "inf")


@case("CLI values", "train-steps-nan", "train --steps nan", match="--steps")
def _(tmp, agents):
    return train_argv(tmp / "run", "nan")


@case("CLI values", "eval-episodes-inf", "eval --episodes inf", match="--episodes")
def _(tmp, agents):
    return ["eval", str(copy_agent(agents, tmp)), "--episodes", "inf"]


@case("CLI values", "eval-episodes-huge", "eval --episodes 1e12", match="--episodes")
def _(tmp, agents):
    return ["eval", str(copy_agent(agents, tmp)), "--episodes", "1e12"]


@case("CLI values", "attack-eps-1e308", "attack --eps 1e308 (vector agent, obs-std units)")
def _(tmp, agents):
    return attack_argv(copy_agent(agents, tmp), "1e308")


@case("CLI values", "attack-eps-nan", "attack --eps nan", match="eps")
def _(tmp, agents):
    return attack_argv(copy_agent(agents, tmp), "nan")


@case("CLI values", "certify-eps-1e308", "certify --eps 1e308")
def _(tmp, agents):
    return certify_argv(copy_agent(agents, tmp), "1e308")


@case("CLI values", "train-defense-eps-1e308", "train --defense adv-obs --eps 1e308", match="--eps")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--defense", "adv-obs", "--eps", "1e308")


@case("CLI values", "defend-smooth-huge-n", "defend --smooth n=1000000000000", match="n <=")
def _(tmp, agents):
    return ["defend", str(copy_agent(agents, tmp)), "--smooth", "sigma=0.1,n=1000000000000", "--out", str(tmp / "d")]


@case("CLI values", "defend-smooth-sigma-nan", "defend --smooth sigma=nan", match="sigma")
def _(tmp, agents):
    return ["defend", str(copy_agent(agents, tmp)), "--smooth", "sigma=nan,n=4", "--out", str(tmp / "d")]


@case("CLI values", "distill-lr-negative", "distill --lr -1", match="--lr")
def _(tmp, agents):
    return ["distill", str(copy_agent(agents, tmp)), "--lr", "-1", "--steps", "64", "--out", str(tmp / "s")]


@case("CLI values", "distill-lr-nan", "distill --lr nan", match="--lr")
def _(tmp, agents):
    return ["distill", str(copy_agent(agents, tmp)), "--lr", "nan", "--steps", "64", "--out", str(tmp / "s")]


@case("CLI values", "prune-lr-nan", "prune --lr nan", match="--lr")
def _(tmp, agents):
    return ["prune", str(copy_agent(agents, tmp)), "--lr", "nan", "--out", str(tmp / "p")]


@case("CLI values", "prune-sparsity-2", "prune --sparsity 2", match="sparsity")
def _(tmp, agents):
    return ["prune", str(copy_agent(agents, tmp)), "--sparsity", "2", "--out", str(tmp / "p")]


@case("CLI values", "attack-steps-float", "attack --steps 1e9x (not a number)", match="--steps")
def _(tmp, agents):
    return [*attack_argv(copy_agent(agents, tmp)), "--steps", "1e9x"]


@case("CLI values", "attack-max-fraction-nan", "attack --attack timed --max-fraction nan", match="fraction")
def _(tmp, agents):
    return [*attack_argv(copy_agent(agents, tmp)), "--attack", "timed", "--max-fraction", "nan"]


@case("CLI values", "certify-alpha-nan", "certify --method smoothing --alpha nan", match="alpha")
def _(tmp, agents):
    return certify_argv(copy_agent(agents, tmp), "0.1", "--method", "smoothing", "--samples", "10", "--alpha", "nan")


@case("CLI values", "certify-sigma-inf", "certify --method smoothing --sigma inf", match="sigma")
def _(tmp, agents):
    return certify_argv(copy_agent(agents, tmp), "0.1", "--method", "smoothing", "--samples", "10", "--sigma", "inf")


@case("CLI values", "train-seed-negative", "train --seed -1", match="--seed")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--seed", "-1")


# ------------------------------------------------------------------ output paths
@case("output paths", "train-out-file", "train --out FILE", match="is a file")
def _(tmp, agents):
    (tmp / "afile").write_text("keep me")
    return train_argv(tmp / "afile")


@case("output paths", "train-out-file-sub", "train --out FILE/sub", match="is a file")
def _(tmp, agents):
    (tmp / "afile").write_text("keep me")
    return train_argv(tmp / "afile" / "sub")


def _read_only(tmp: Path, agents: Path) -> list[str]:
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return train_argv(ro / "run")


CASES.append(
    Case(
        "train-out-read-only",
        "output paths",
        "train --out under a read-only folder",
        _read_only,
        match="not writable",
        skip="running as root: a read-only folder does not stop root" if IS_ROOT else None,
    )
)


@case("output paths", "lab-out-file", "lab --out FILE", match="is a file")
def _(tmp, agents):
    (tmp / "afile").write_text("keep me")
    return ["lab", "--out", str(tmp / "afile"), "--no-attack", "--episodes", "1"]


@case("output paths", "train-out-existing-checkpoint", "train --out a finished run, without --resume", match="--resume")
def _(tmp, agents):
    return train_argv(copy_agent(agents, tmp))


@case("output paths", "eval-json-folder", "eval --json into a folder", match="directory")
def _(tmp, agents):
    (tmp / "dir").mkdir()
    return [*eval_argv(copy_agent(agents, tmp)), "--json", str(tmp / "dir")]


@case("output paths", "eval-json-under-file", "eval --json FILE/x.json", match="is a file")
def _(tmp, agents):
    (tmp / "afile").write_text("keep me")
    return [*eval_argv(copy_agent(agents, tmp)), "--json", str(tmp / "afile" / "x.json")]


@case("output paths", "attack-out-file", "attack --out FILE", match="is a file")
def _(tmp, agents):
    (tmp / "afile").write_text("keep me")
    return [*attack_argv(copy_agent(agents, tmp)), "--out", str(tmp / "afile")]


@case("output paths", "distill-out-file", "distill --out FILE", match="file")
def _(tmp, agents):
    (tmp / "afile").write_text("keep me")
    return ["distill", str(copy_agent(agents, tmp)), "--steps", "64", "--out", str(tmp / "afile")]


@case("output paths", "quantize-out-self", "quantize --out the input checkpoint", match="--out")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    return ["quantize", str(folder), "--episodes", "0", "--out", str(folder)]


@case("output paths", "prune-out-other-checkpoint", "prune --out another checkpoint", match="already holds")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    other = copy_agent(agents, tmp, as_name="other")
    return ["prune", str(folder), "--finetune", "none", "--episodes", "0", "--out", str(other)]


@case("output paths", "defend-out-file", "defend --out FILE", match="file")
def _(tmp, agents):
    (tmp / "afile").write_text("keep me")
    return ["defend", str(copy_agent(agents, tmp)), "--smooth", "sigma=0.1,n=4", "--out", str(tmp / "afile")]


def valid_result_card() -> dict[str, Any]:
    """A minimal valid ``results.json`` card of ``rllab attack`` (what ``rllab report`` reads back)."""
    row = {"mean_return": 10.0, "episodes": 2, "ci95_return": [9.0, 11.0]}
    return {
        "agent": {"algo": "ppo", "env": "CartPole-v1"},
        "threat_model": {"norm": "linf", "unit": "obs std", "eps": [0.1]},
        "episodes": 2,
        "seed": 0,
        "clean": row,
        "results": {"pgd": {"0.1": row}},
    }


def result_card(tmp: Path) -> Path:
    """A valid ``results.json`` of ``rllab attack`` (what ``rllab report`` reads)."""
    card = valid_result_card()
    path = tmp / "results.json"
    path.write_text(json.dumps(card))
    return path


@case("output paths", "report-out-file", "report --out FILE", match="is a file")
def _(tmp, agents):
    (tmp / "afile").write_text("keep me")
    return ["report", str(result_card(tmp)), "--out", str(tmp / "afile")]


# ------------------------------------------------------------------ corrupt checkpoints (rllab eval)
_SPEC_EDITS: list[tuple[str, str, dict[str, Any], str | None]] = [
    ("huge-action-count", "a huge action count", {"action_space.n": 10**9}, "action_space.n"),
    ("missing-policy-class", "a missing policy class", {"policy.class": DELETE}, "policy.class"),
    ("policy-class-os-system", "policy class 'os.system'", {"policy.class": "os.system"}, "policy.class"),
    ("huge-net-arch", "net_arch [10**7]", {"policy.kwargs.net_arch": [10**7]}, "net_arch"),
    (
        "wide-net-arch",
        "net_arch [65536, 65536] (fits the limit, not the weights)",
        {"policy.kwargs.net_arch": [65536, 65536]},
        "net_arch",
    ),
    ("net-arch-mismatch", "net_arch [8] that does not fit the weights", {"policy.kwargs.net_arch": [8]}, None),
    ("obs-stats-wrong-shape", "obs_stats of the wrong shape", {"obs_stats.mean": [0.0, 1.0]}, "obs_stats.mean"),
    (
        "obs-normalization-wrong-shape",
        "obs_normalization of the wrong shape",
        {"preprocessing.obs_normalization": {"mean": [0.0] * 3, "var": [1.0] * 3}},
        "obs_normalization",
    ),
    (
        "transpose-on-vector",
        "transpose_image on a vector agent",
        {"preprocessing.transpose_image": True},
        "transpose_image",
    ),
    (
        "fake-quantization",
        "a quantization entry for float weights",
        {"quantization": {"dtype": "int8", "modules": ["mlp_extractor.policy_net.0"]}},
        None,
    ),
    (
        "quantization-unknown-module",
        "quantization of a module that does not exist",
        {"quantization": {"dtype": "int8", "modules": ["no.such.module"]}},
        None,
    ),
    (
        "quantization-wrong-type",
        "quantization modules of the wrong type",
        {"quantization": {"dtype": "int8", "modules": [7]}},
        "quantization",
    ),
    ("env-a-list", "env as a list", {"env": []}, "env"),
    ("algo-a-number", "algo as a number", {"algo": 3}, "algo"),
    ("shape-a-string", "observation_space.shape as a string", {"observation_space.shape": "4"}, "observation_space"),
    (
        "obs-shape-mismatch",
        "observation_space of shape [5] on CartPole",
        {
            "observation_space.shape": [5],
            "observation_space.low": -1.0,
            "observation_space.high": 1.0,
            "obs_stats": None,
        },
        None,
    ),
    ("training-a-list", "training as a list", {"training": []}, "training"),
    ("lineage-an-object", "lineage as an object", {"lineage": {"a": 1}}, "lineage"),
    ("weights-sha-number", "weights.sha256 a number", {"weights.sha256": 5}, "weights.sha256"),
    ("weights-bytes-negative", "weights.bytes negative", {"weights.bytes": -1}, "weights.bytes"),
    ("schema-missing", "no schema field", {"schema": DELETE}, "schema"),
    ("algo-sac", 'agent.json claiming "algo": "sac"', {"algo": "sac"}, "sac"),
    (
        "smoothing-huge-n",
        "a smoothing defense with n = 10**12 (what the huge-n defend wrote)",
        {"preprocessing.smoothing": {"sigma": 0.1, "n": 10**12}},
        "smoothing.n",
    ),
    (
        "filter-unknown",
        "an input filter named 'os.system'",
        {"preprocessing.filters": [{"name": "os.system", "params": {}}]},
        "filters",
    ),
    (
        "filter-huge-kernel",
        "a median filter of size 10**6",
        {"preprocessing.filters": [{"name": "median", "params": {"size": 10**6}}]},
        "size",
    ),
    (
        "env-wrapper-os-system",
        "env wrapper named 'os.system'",
        {"env.wrappers": [{"name": "os.system", "kwargs": {"command": "true"}}]},
        None,
    ),
    ("env-id-unknown", "env id that is not registered", {"env.id": "NoSuchEnv-v0"}, "NoSuchEnv-v0"),
    ("activation-unknown", "activation_fn 'os.system'", {"policy.kwargs.activation_fn": "os.system"}, "activation_fn"),
    ("obs-stats-std-nan", "obs_stats.std NaN", {"obs_stats.std": [float("nan")] * 4}, "obs_stats.std"),
    ("huge-integer", "a 5000-digit integer", {"training.timesteps": 10**5000}, None),
]


def _spec_case(id: str, description: str, edits: dict[str, Any], match: str | None) -> None:
    @case("corrupt checkpoint", f"eval-{id}", f"rllab eval of a checkpoint with {description}", match=match)
    def _(tmp, agents):
        import sys

        limit = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(0)  # to write the 5000-digit integer (rllab reads with the default limit)
        try:
            return eval_argv(edited(agents, tmp, edits))
        finally:
            sys.set_int_max_str_digits(limit)


for _args in _SPEC_EDITS:
    _spec_case(*_args)


@case("corrupt checkpoint", "eval-deeply-nested-json", "agent.json nested 100000 deep", match="nested")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    (folder / "agent.json").write_text('{"schema": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return eval_argv(folder)


@case("corrupt checkpoint", "eval-nested-kwargs", "env.kwargs nested 1000 deep (valid JSON)", match="nested")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    spec = read_spec(folder)
    text = json.dumps(spec).replace('"kwargs": {}', '"kwargs": ' + '{"a": ' * 1000 + "1" + "}" * 1000, 1)
    (folder / "agent.json").write_text(text)
    return eval_argv(folder)


@case("corrupt checkpoint", "eval-spec-dev-zero", "agent.json a symlink to /dev/zero", match="device")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    to_dev_zero(folder / "agent.json")
    return eval_argv(folder)


@case("corrupt checkpoint", "eval-weights-dev-zero", "weights a symlink to /dev/zero", match="device")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    to_dev_zero(folder / "weights.safetensors")
    return eval_argv(folder)


@case("corrupt checkpoint", "eval-spec-folder", "agent.json a folder", match="folder")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    (folder / "agent.json").unlink()
    (folder / "agent.json").mkdir()
    return eval_argv(folder)


@case("hangs", "eval-weights-fifo", "weights.safetensors a FIFO (must not hang)", match="FIFO")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    fifo(folder / "weights.safetensors")
    return eval_argv(folder)


@case("hangs", "eval-spec-fifo", "agent.json a FIFO (must not hang)", match="FIFO")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    fifo(folder / "agent.json")
    return eval_argv(folder)


@case("corrupt checkpoint", "eval-spec-oversized", "agent.json a (sparse) 65 MiB file", match="bytes")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    with open(folder / "agent.json", "r+b") as f:
        f.truncate(65 << 20)
    return eval_argv(folder)


@case("corrupt checkpoint", "eval-spec-truncated", "agent.json cut in half", match="agent.json")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    truncate(folder / "agent.json")
    return eval_argv(folder)


@case("corrupt checkpoint", "eval-spec-not-utf8", "agent.json not UTF-8", match="agent.json")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    (folder / "agent.json").write_bytes(b"\xff\xfe{" + bytes(range(128, 256)))
    return eval_argv(folder)


@case("corrupt checkpoint", "eval-spec-a-list", "agent.json holding a JSON list", match="schema")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    (folder / "agent.json").write_text("[1, 2, 3]")
    return eval_argv(folder)


@case("corrupt checkpoint", "eval-weights-truncated", "weights.safetensors cut in half", match="hash")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    truncate(folder / "weights.safetensors")
    return eval_argv(folder)


@case("corrupt checkpoint", "eval-weights-missing", "weights.safetensors missing", match="weights")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    (folder / "weights.safetensors").unlink()
    return eval_argv(folder)


@case(
    "corrupt checkpoint",
    "eval-weights-garbage-matching-hash",
    "garbage weights whose hash agent.json records",
    match="safetensors",
)
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    junk = (1 << 40).to_bytes(8, "little") + b"{}" + bytes(4096)
    (folder / "weights.safetensors").write_bytes(junk)
    spec = read_spec(folder)
    spec["weights"].update(sha256=hashlib.sha256(junk).hexdigest(), bytes=len(junk))
    write_spec(folder, spec)
    return eval_argv(folder)


@case("corrupt checkpoint", "eval-weights-wrong-tensors", "valid safetensors of the wrong tensors, hash matching")
def _(tmp, agents):
    import torch
    from safetensors.torch import save

    folder = copy_agent(agents, tmp)
    data = save({"mlp_extractor.policy_net.0.weight": torch.zeros(3, 3)})
    (folder / "weights.safetensors").write_bytes(data)
    spec = read_spec(folder)
    spec["weights"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    write_spec(folder, spec)
    return eval_argv(folder)


@case("corrupt checkpoint", "eval-weights-nan", "weights full of NaN, hash matching", match="finite")
def _(tmp, agents):
    import torch
    from safetensors.torch import load, save

    folder = copy_agent(agents, tmp)
    tensors = load((folder / "weights.safetensors").read_bytes())
    data = save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in tensors.items()})
    (folder / "weights.safetensors").write_bytes(data)
    spec = read_spec(folder)
    spec["weights"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    write_spec(folder, spec)
    return eval_argv(folder)


@case("corrupt checkpoint", "eval-not-a-checkpoint", "eval of a folder without agent.json", match="agent.json")
def _(tmp, agents):
    (tmp / "empty").mkdir()
    return eval_argv(tmp / "empty")


@case(
    "corrupt checkpoint",
    "quantize-missing-policy-class",
    "quantize of a checkpoint without a policy class",
    match="policy.class",
)
def _(tmp, agents):
    folder = edited(agents, tmp, {"policy.class": DELETE})
    return ["quantize", str(folder), "--episodes", "0", "--out", str(tmp / "q")]


@case("corrupt checkpoint", "explain-weights-fifo", "explain of a checkpoint whose weights are a FIFO", match="FIFO")
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    fifo(folder / "weights.safetensors")
    return ["explain", str(folder), "--episodes", "1", "--no-progress"]


@case(
    "corrupt checkpoint", "report-card-wrong-types", "report of a results.json with wrong types", match="results.json"
)
def _(tmp, agents):
    card = tmp / "results.json"
    card.write_text(json.dumps({"agent": {"algo": 1, "env": []}, "episodes": "2", "clean": {}, "results": 5}))
    return ["report", str(card), "--out", str(tmp / "board")]


@case("corrupt checkpoint", "report-card-fifo", "report of a results.json that is a FIFO", match="FIFO")
def _(tmp, agents):
    card = fifo(tmp / "results.json")
    return ["report", str(card), "--out", str(tmp / "board")]


@case(
    "corrupt checkpoint", "eval-stale-saving-folder", "a stale .saving-* folder beside a good checkpoint", expect="ok"
)
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    stale = folder / ".saving-dead"
    stale.mkdir()
    (stale / "weights.safetensors").write_bytes(b"partial")
    os.utime(stale, (0, 0))
    return eval_argv(folder)


# ------------------------------------------------------------------ resume state
def _resume_copy(agents: Path, tmp: Path) -> tuple[Path, Path, int]:
    run = copy_agent(agents, tmp)
    step = int(read_spec(run)["training"]["timesteps"])
    return run, run / "resume", step


@case(
    "resume state", "resume-ok", "--resume of a good finished run with more --steps (control)", expect="ok", writes=True
)
def _(tmp, agents):
    return resume_argv(_resume_copy(agents, tmp)[0])


@case("resume state", "resume-optimizer-truncated", "a truncated optimizer file", match="resume")
def _(tmp, agents):
    run, resume, step = _resume_copy(agents, tmp)
    truncate(resume / f"optimizer.{step}.safetensors")
    return resume_argv(run)


@case(
    "resume state",
    "resume-optimizer-fifo",
    "the optimizer file a FIFO (must not hang)",
    match="FIFO",
)
def _(tmp, agents):
    run, resume, step = _resume_copy(agents, tmp)
    fifo(resume / f"optimizer.{step}.safetensors")
    return resume_argv(run)


@case("resume state", "resume-optimizer-dev-zero", "the optimizer file a symlink to /dev/zero", match="resume")
def _(tmp, agents):
    run, resume, step = _resume_copy(agents, tmp)
    to_dev_zero(resume / f"optimizer.{step}.safetensors")
    return resume_argv(run)


def _rewrite_optimizer(resume: Path, step: int, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    from safetensors.torch import load_file, save_file

    path = resume / f"optimizer.{step}.safetensors"
    tensors = change(load_file(str(path)))
    save_file(tensors, str(path))


@case("resume state", "resume-optimizer-wrong-shape", "an optimizer tensor of the wrong shape", match="shape")
def _(tmp, agents):
    import torch

    run, resume, step = _resume_copy(agents, tmp)
    _rewrite_optimizer(resume, step, lambda t: {**t, "0.exp_avg": torch.zeros(3, 3)})
    return resume_argv(run)


@case(
    "resume state",
    "resume-optimizer-scalar-tensor",
    "an optimizer moment stored as a 0-d tensor",
    match="shape",
)
def _(tmp, agents):
    import torch

    run, resume, step = _resume_copy(agents, tmp)
    _rewrite_optimizer(resume, step, lambda t: {**t, "0.exp_avg": torch.tensor(0.0)})
    return resume_argv(run)


@case(
    "resume state",
    "resume-optimizer-wrong-dtype",
    "an optimizer moment of integers",
    match="dtype",
)
def _(tmp, agents):
    run, resume, step = _resume_copy(agents, tmp)
    _rewrite_optimizer(resume, step, lambda t: {**t, "0.exp_avg": t["0.exp_avg"].to(dtype=__import__("torch").int64)})
    return resume_argv(run)


@case("resume state", "resume-optimizer-nan", "optimizer moments full of NaN (would train NaN weights)", match="finite")
def _(tmp, agents):
    import torch

    run, resume, step = _resume_copy(agents, tmp)
    _rewrite_optimizer(resume, step, lambda t: {k: torch.full_like(v, float("nan")) for k, v in t.items()})
    return resume_argv(run)


@case(
    "resume state",
    "resume-optimizer-unknown-entry",
    "an optimizer entry for a parameter that does not exist",
    match="resume",
)
def _(tmp, agents):
    import torch

    run, resume, step = _resume_copy(agents, tmp)
    _rewrite_optimizer(resume, step, lambda t: {**t, "999.exp_avg": torch.zeros(2)})
    return resume_argv(run)


def _edit_state(resume: Path, step: int, change: Callable[[dict[str, Any]], Any]) -> None:
    path = resume / f"state.{step}.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


@case("resume state", "resume-state-wrong-type", "state num_timesteps a string", match="num_timesteps")
def _(tmp, agents):
    run, resume, step = _resume_copy(agents, tmp)
    _edit_state(resume, step, lambda s: {**s, "num_timesteps": str(step)})
    return resume_argv(run)


@case("resume state", "resume-state-a-list", "state.json holding a list")
def _(tmp, agents):
    run, resume, step = _resume_copy(agents, tmp)
    _edit_state(resume, step, lambda s: [s])
    return resume_argv(run)


@case("resume state", "resume-state-nested", "state.json nested 100000 deep", match="nested")
def _(tmp, agents):
    run, resume, step = _resume_copy(agents, tmp)
    (resume / f"state.{step}.json").write_text('{"scalars": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return resume_argv(run)


@case("resume state", "resume-state-param-groups", "state param_groups naming parameters that do not exist")
def _(tmp, agents):
    run, resume, step = _resume_copy(agents, tmp)
    _edit_state(resume, step, lambda s: {**s, "param_groups": [{**s["param_groups"][0], "params": [0, 1, 99999]}]})
    return resume_argv(run)


@case(
    "resume state",
    "resume-state-lr-string",
    "state param_groups with lr a string (harmless: SB3 sets the rate from its schedule)",
    expect="ok",
    writes=True,
)
def _(tmp, agents):
    run, resume, step = _resume_copy(agents, tmp)
    _edit_state(resume, step, lambda s: {**s, "param_groups": [{**s["param_groups"][0], "lr": "fast"}]})
    return resume_argv(run)


@case("resume state", "resume-state-missing", "the resume folder removed", match="resume")
def _(tmp, agents):
    run, resume, step = _resume_copy(agents, tmp)
    shutil.rmtree(resume)
    return resume_argv(run)


@case("resume state", "resume-state-step-mismatch", "state.N.json recording another step", match="step")
def _(tmp, agents):
    run, resume, step = _resume_copy(agents, tmp)
    _edit_state(resume, step, lambda s: {**s, "num_timesteps": step + 8})
    return resume_argv(run)


@case(
    "resume state",
    "resume-state-ahead",
    "resume state of a later step than the checkpoint (a failed save)",
    expect="ok",
    writes=True,
)
def _(tmp, agents):
    run, resume, step = _resume_copy(agents, tmp)
    later = step + 64
    shutil.copy(resume / f"optimizer.{step}.safetensors", resume / f"optimizer.{later}.safetensors")
    _edit_state(resume, step, lambda s: s)
    state = json.loads((resume / f"state.{step}.json").read_text())
    (resume / f"state.{later}.json").write_text(json.dumps({**state, "num_timesteps": later}))
    return resume_argv(run)


@case("resume state", "resume-missing-config", "agent.json without training.config", match="config")
def _(tmp, agents):
    return resume_argv(edited(agents, tmp, {"training.config": DELETE}))


@case("resume state", "resume-config-a-string", "agent.json with training.config a string", match="config")
def _(tmp, agents):
    return resume_argv(edited(agents, tmp, {"training.config": "ppo-CartPole-v1"}))


@case("resume state", "resume-config-missing-keys", "training.config without its hyperparameters", match="config")
def _(tmp, agents):
    return resume_argv(edited(agents, tmp, {"training.config.hyperparams": DELETE}))


@case("resume state", "resume-config-wrong-types", "training.config with n_envs a string", match="config")
def _(tmp, agents):
    return resume_argv(edited(agents, tmp, {"training.config.n_envs": "eight"}))


@case("resume state", "resume-timesteps-missing", "agent.json without training.timesteps", match="resume")
def _(tmp, agents):
    return resume_argv(edited(agents, tmp, {"training.timesteps": DELETE}))


@case("resume state", "resume-not-a-run", "--resume into an empty folder", match="agent.json")
def _(tmp, agents):
    (tmp / "empty").mkdir()
    return resume_argv(tmp / "empty")


# ------------------------------------------------------------------ hyperparameter files
def _hp_file(tmp: Path, text: str) -> Path:
    path = tmp / "hp.yml"
    path.write_text(text)
    return path


@case("hyperparams file", "hp-nested-deep", "--hyperparams nested beyond the recursion limit", match="nested")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--hyperparams", str(_hp_file(tmp, "a: " + "[" * 100_000 + "]" * 100_000)))


@case("hyperparams file", "hp-not-a-mapping", "--hyperparams holding a list", match="mapping")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--hyperparams", str(_hp_file(tmp, "- 1\n- 2\n")))


@case("hyperparams file", "hp-bad-yaml", "--hyperparams that is not YAML", match="hp.yml")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--hyperparams", str(_hp_file(tmp, "a: [1, 2\nb: {")))


@case("hyperparams file", "hp-unknown-key", "--hyperparams with an unknown hyperparameter", match="no_such_key")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--hyperparams", str(_hp_file(tmp, "no_such_key: 3\n")))


@case("hyperparams file", "hp-wrong-type", "--hyperparams with batch_size a string", match="batch_size")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--hyperparams", str(_hp_file(tmp, "batch_size: lots\n")))


@case("hyperparams file", "hp-learning-rate-nan", "--hyperparams with learning_rate .nan", match="learning_rate")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--hyperparams", str(_hp_file(tmp, "learning_rate: .nan\n")))


@case("hyperparams file", "set-learning-rate-inf", "--set learning_rate=inf", match="learning_rate")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--set", "learning_rate=.inf")


@case("hyperparams file", "set-n-envs-huge", "--set n_envs=100000000", match="1 to 4096")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--set", "n_envs=100000000")


@case("hyperparams file", "hp-missing", "--hyperparams naming no file", match="not found")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--hyperparams", str(tmp / "none.yml"))


@case("hyperparams file", "hp-fifo", "--hyperparams a FIFO (must not hang)")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--hyperparams", str(fifo(tmp / "hp.yml")))


@case("hyperparams file", "hp-dev-zero", "--hyperparams /dev/zero")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--hyperparams", "/dev/zero")


@case("hyperparams file", "hp-oversized", "--hyperparams a (sparse) 2 GiB file")
def _(tmp, agents):
    path = tmp / "hp.yml"
    with open(path, "wb") as f:
        f.truncate(2 << 30)
    return train_argv(tmp / "run", "64", "--hyperparams", str(path))


# ------------------------------------------------------------------ SB3 zips
def _zip_with(agents: Path, tmp: Path, change: Callable[[str, bytes], bytes | None], name: str = "m.zip") -> Path:
    """A copy of the good SB3 zip whose members pass through ``change(name, content)`` (None drops one)."""
    out = tmp / name
    with zipfile.ZipFile(agents / SB3_ZIP) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            content = change(item.filename, src.read(item.filename))
            if content is not None:
                dst.writestr(item, content)
    return out


def import_argv(zip_path: Path, tmp: Path) -> list[str]:
    return ["import-sb3", str(zip_path), "--env", "CartPole-v1", "--out", str(tmp / "imported")]


def _data(change: Callable[[dict[str, Any]], Any]) -> Callable[[str, bytes], bytes | None]:
    def edit(name: str, content: bytes) -> bytes | None:
        return json.dumps(change(json.loads(content))).encode() if name == "data" else content

    return edit


class _Payload:
    """Unpickling this object runs ``command``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@case("SB3 zip", "sb3-ok", "a good SB3 zip (control)", expect="ok")
def _(tmp, agents):
    return import_argv(shutil.copy(agents / SB3_ZIP, tmp / "m.zip"), tmp)


@case("SB3 zip", "sb3-not-a-zip", "a file that is not a zip", match="cannot read")
def _(tmp, agents):
    (tmp / "m.zip").write_bytes(b"PK\x03\x04 not really a zip")
    return import_argv(tmp / "m.zip", tmp)


@case("SB3 zip", "sb3-truncated", "a zip cut in half", match="m.zip")
def _(tmp, agents):
    return import_argv(truncate(Path(shutil.copy(agents / SB3_ZIP, tmp / "m.zip"))), tmp)


@case("SB3 zip", "sb3-missing-policy", "a zip without policy.pth", match="policy.pth")
def _(tmp, agents):
    return import_argv(_zip_with(agents, tmp, lambda n, c: None if n == "policy.pth" else c), tmp)


@case("SB3 zip", "sb3-missing-data", "a zip without its data member", match="data")
def _(tmp, agents):
    return import_argv(_zip_with(agents, tmp, lambda n, c: None if n == "data" else c), tmp)


@case("SB3 zip", "sb3-data-bad-json", "a data member that is not JSON", match="m.zip")
def _(tmp, agents):
    return import_argv(_zip_with(agents, tmp, lambda n, c: b"{not json" if n == "data" else c), tmp)


@case("SB3 zip", "sb3-data-not-utf8", "a data member that is not UTF-8", match="m.zip")
def _(tmp, agents):
    return import_argv(_zip_with(agents, tmp, lambda n, c: b"\xff\xfe\x00" if n == "data" else c), tmp)


@case("SB3 zip", "sb3-data-a-list", "a data member holding a JSON list")
def _(tmp, agents):
    return import_argv(_zip_with(agents, tmp, _data(lambda d: [d])), tmp)


@case("SB3 zip", "sb3-data-nested", "a data member nested 100000 deep", match="nested")
def _(tmp, agents):
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    return import_argv(_zip_with(agents, tmp, lambda n, c: deep if n == "data" else c), tmp)


@case("SB3 zip", "sb3-no-observation-space", "a data member without observation_space", match="observation")
def _(tmp, agents):
    return import_argv(
        _zip_with(agents, tmp, _data(lambda d: {k: v for k, v in d.items() if k != "observation_space"})), tmp
    )


@case("SB3 zip", "sb3-space-fields-wrong-types", "space fields of the wrong types")
def _(tmp, agents):
    def change(d):
        d["observation_space"]["_shape"] = {"a": 1}
        d["action_space"] = "Discrete(2)"
        return d

    return import_argv(_zip_with(agents, tmp, _data(change)), tmp)


@case("SB3 zip", "sb3-policy-class-a-number", "policy_class a number")
def _(tmp, agents):
    return import_argv(_zip_with(agents, tmp, _data(lambda d: {**d, "policy_class": 7})), tmp)


@case("SB3 zip", "sb3-policy-kwargs-a-list", "policy_kwargs a list")
def _(tmp, agents):
    return import_argv(_zip_with(agents, tmp, _data(lambda d: {**d, "policy_kwargs": [1, 2]})), tmp)


@case("SB3 zip", "sb3-net-arch-huge", "policy_kwargs net_arch [10**7]", match="net_arch")
def _(tmp, agents):
    return import_argv(_zip_with(agents, tmp, _data(lambda d: {**d, "policy_kwargs": {"net_arch": "[10000000]"}})), tmp)


@case(
    "SB3 zip", "sb3-net-arch-vast", "policy_kwargs net_arch of 8 layers of 60000 (would be ~100 GB)", match="net_arch"
)
def _(tmp, agents):
    arch = {"net_arch": str([60_000] * 8)}
    return import_argv(_zip_with(agents, tmp, _data(lambda d: {**d, "policy_kwargs": arch})), tmp)


@case("SB3 zip", "sb3-policy-garbage", "policy.pth that is garbage bytes", match="policy.pth")
def _(tmp, agents):
    return import_argv(_zip_with(agents, tmp, lambda n, c: b"garbage" * 100 if n == "policy.pth" else c), tmp)


@case("SB3 zip", "sb3-policy-wrong-tensors", "policy.pth of tensors of the wrong shapes", match="do not fit")
def _(tmp, agents):
    import torch

    buf = io.BytesIO()
    torch.save({"mlp_extractor.policy_net.0.weight": torch.zeros(3, 3)}, buf)
    return import_argv(_zip_with(agents, tmp, lambda n, c: buf.getvalue() if n == "policy.pth" else c), tmp)


@case("SB3 zip", "sb3-is-fifo", "the zip a FIFO (must not hang)")
def _(tmp, agents):
    return import_argv(fifo(tmp / "m.zip"), tmp)


# ------------------------------------------------------------------ hostile payloads (must not run)
@case(
    "hostile payloads", "sb3-policy-pth-os-system", "policy.pth a pickle calling os.system", match="not plain tensors"
)
def _(tmp, agents):
    import torch

    buf = io.BytesIO()
    torch.save({"x": _Payload(payload(tmp))}, buf)
    return import_argv(_zip_with(agents, tmp, lambda n, c: buf.getvalue() if n == "policy.pth" else c), tmp)


@case(
    "hostile payloads",
    "sb3-data-pickle-os-system",
    "a cloudpickled os.system in data's policy_class (ignored: imports)",
    expect="ok",
)
def _(tmp, agents):
    import cloudpickle

    def change(d):
        d["policy_class"][":serialized:"] = base64.b64encode(cloudpickle.dumps(_Payload(payload(tmp)))).decode()
        return d

    return import_argv(_zip_with(agents, tmp, _data(change)), tmp)


@case("hostile payloads", "sb3-policy-kwargs-code", "policy_kwargs holding Python code", match="not plain data")
def _(tmp, agents):
    code = f"__import__('os').system('{payload(tmp)}')"
    return import_argv(_zip_with(agents, tmp, _data(lambda d: {**d, "policy_kwargs": {"net_arch": code}})), tmp)


@case("hostile payloads", "yaml-tag-hyperparams", "a !!python/object/apply:os.system tag in --hyperparams")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--hyperparams", str(_hp_file(tmp, f"n_steps: {yaml_tag(tmp)}\n")))


@case("hostile payloads", "yaml-tag-env-kwargs", "a !!python/object/apply:os.system tag in --env-kwargs")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--env-kwargs", f"{{a: {yaml_tag(tmp)}}}")


@case("hostile payloads", "yaml-tag-wrappers", "a !!python/object/apply:os.system tag in eval --wrappers")
def _(tmp, agents):
    return [*eval_argv(copy_agent(agents, tmp)), "--wrappers", f"[{{name: ObservationShift, kwargs: {yaml_tag(tmp)}}}]"]


@case("hostile payloads", "yaml-tag-set", "a !!python/object/apply:os.system tag in --set")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--set", f"learning_rate={yaml_tag(tmp)}")


@case("hostile payloads", "yaml-tag-sweep-grid", "a !!python/object/apply:os.system tag in sweep --grid")
def _(tmp, agents):
    argv = ["sweep", "--algo", "ppo", "--env", "CartPole-v1", "--seeds", "0", "--steps", "64"]
    return [*argv, "--grid", f"{{learning_rate: {yaml_tag(tmp)}}}", "--out", str(tmp / "sweep")]


@case("hostile payloads", "hp-policy-kwargs-code", "policy_kwargs in --hyperparams as a Python expression string")
def _(tmp, agents):
    text = f"policy_kwargs: \"dict(net_arch=__import__('os').system('{payload(tmp)}'))\"\n"
    return train_argv(tmp / "run", "64", "--hyperparams", str(_hp_file(tmp, text)))


@case("hostile payloads", "distill-policy-kwargs-code", "distill --policy-kwargs naming os.system")
def _(tmp, agents):
    kwargs = json.dumps({"activation_fn": "os.system", "features_extractor_kwargs": {"cmd": payload(tmp)}})
    return [
        "distill",
        str(copy_agent(agents, tmp)),
        "--steps",
        "64",
        "--policy-kwargs",
        kwargs,
        "--out",
        str(tmp / "s"),
    ]


@case(
    "hostile payloads",
    "train-env-module-import",
    "train --env 'json:CartPole-v1' (Gymnasium's module:id syntax, typed by the user: imported)",
    expect="ok",
)
def _(tmp, agents):
    return [*train_argv(tmp / "run"), "--env", "json:CartPole-v1"]


@case("hostile payloads", "eval-wrapper-os-system", "eval --wrappers naming os.system")
def _(tmp, agents):
    return [
        *eval_argv(copy_agent(agents, tmp)),
        "--wrappers",
        f"[{{name: os.system, kwargs: {{command: '{payload(tmp)}'}}}}]",
    ]


# ------------------------------------------------------------------ resources
@case("resources", "sweep-huge-seed-range", "sweep --seeds 0-99999999 (must refuse before listing them)", match="seeds")
def _(tmp, agents):
    return ["sweep", "--algo", "ppo", "--env", "CartPole-v1", "--seeds", "0-99999999", "--out", str(tmp / "sweep")]


@case("resources", "sweep-huge-grid", "sweep --grid of 4 million combinations", match="at most")
def _(tmp, agents):
    grid = (
        "{learning_rate: ["
        + ",".join(str(i) for i in range(2000))
        + "], n_steps: ["
        + ",".join(str(i) for i in range(1, 2001))
        + "]}"
    )
    return [
        "sweep",
        "--algo",
        "ppo",
        "--env",
        "CartPole-v1",
        "--seeds",
        "0",
        "--grid",
        grid,
        "--out",
        str(tmp / "sweep"),
    ]


@case("resources", "eval-n-envs-huge", "eval --n-envs 1000000000 (capped by the episodes)", expect="ok")
def _(tmp, agents):
    return [*eval_argv(copy_agent(agents, tmp)), "--n-envs", "1000000000"]


@case("resources", "attack-n-envs-huge", "attack --n-envs 1000000000 (capped by the episodes)", expect="ok")
def _(tmp, agents):
    return [*attack_argv(copy_agent(agents, tmp)), "--n-envs", "1000000000"]


@case("resources", "attack-steps-huge", "attack --steps 1000000000000 (PGD steps)")
def _(tmp, agents):
    return [*attack_argv(copy_agent(agents, tmp)), "--steps", "1000000000000"]


@case("resources", "certify-samples-huge", "certify --method smoothing --samples 1000000000000")
def _(tmp, agents):
    return certify_argv(copy_agent(agents, tmp), "0.1", "--method", "smoothing", "--samples", "1000000000000")


@case("resources", "distill-steps-huge", "distill --steps 10000000000 (states held in memory)")
def _(tmp, agents):
    return ["distill", str(copy_agent(agents, tmp)), "--steps", "10000000000", "--out", str(tmp / "s")]


@case("resources", "explain-episodes-huge", "explain --episodes 1000000000", match="--episodes")
def _(tmp, agents):
    argv = ["explain", str(copy_agent(agents, tmp)), "--method", "saliency", "--episodes", "1000000000"]
    return [*argv, "--no-progress"]


# ------------------------------------------------------------------ silently wrong
@case("silently wrong", "distill-temperature-nan", "distill --temperature nan", match="--temperature")
def _(tmp, agents):
    return ["distill", str(copy_agent(agents, tmp)), "--temperature", "nan", "--steps", "64", "--out", str(tmp / "s")]


@case("silently wrong", "distill-temperature-inf", "distill --temperature inf", match="--temperature")
def _(tmp, agents):
    return ["distill", str(copy_agent(agents, tmp)), "--temperature", "inf", "--steps", "64", "--out", str(tmp / "s")]


def _adapt(tmp: Path, agents: Path, *extra: str) -> list[str]:
    argv = [
        "adapt",
        str(copy_agent(agents, tmp)),
        "--steps",
        "4",
        "--states",
        "100",
        "--episodes",
        "1",
        "--no-progress",
    ]
    return [*argv, "--out", str(tmp / "a"), *extra]


@case("silently wrong", "adapt-offset-nan", "adapt to an ObservationShift with a NaN offset", match="offset")
def _(tmp, agents):
    return _adapt(tmp, agents, "--target-wrappers", "[{name: ObservationShift, kwargs: {offset: .nan}}]")


@case("silently wrong", "adapt-coef-nan", "adapt --coef nan", match="--coef")
def _(tmp, agents):
    return _adapt(
        tmp, agents, "--target-wrappers", "[{name: ObservationShift, kwargs: {offset: 0.1}}]", "--coef", "nan"
    )


@case("silently wrong", "adapt-lr-inf", "adapt --lr inf", match="--lr")
def _(tmp, agents):
    return _adapt(tmp, agents, "--target-wrappers", "[{name: ObservationShift, kwargs: {offset: 0.1}}]", "--lr", "inf")


@case("silently wrong", "eval-wrapper-offset-nan", "eval --wrappers with a NaN offset", match="offset")
def _(tmp, agents):
    return [*eval_argv(copy_agent(agents, tmp)), "--wrappers", "[{name: ObservationShift, kwargs: {offset: .nan}}]"]


@case("silently wrong", "eval-wrapper-scale-inf", "eval --wrappers with an infinite scale", match="scale")
def _(tmp, agents):
    return [*eval_argv(copy_agent(agents, tmp)), "--wrappers", "[{name: ObservationShift, kwargs: {scale: .inf}}]"]


@case("silently wrong", "attack-obs-std-zero", "attack of a checkpoint whose obs_stats.std is all 0", match="std")
def _(tmp, agents):
    return attack_argv(edited(agents, tmp, {"obs_stats.std": [0.0] * 4}))


@case("silently wrong", "certify-obs-std-zero", "certify of a checkpoint whose obs_stats.std is all 0", match="std")
def _(tmp, agents):
    return certify_argv(edited(agents, tmp, {"obs_stats.std": [0.0] * 4}))


@case(
    "silently wrong", "attack-obs-std-nan", "attack of a checkpoint whose obs_stats.std is NaN", match="obs_stats.std"
)
def _(tmp, agents):
    return attack_argv(edited(agents, tmp, {"obs_stats.std": [float("nan")] * 4}))


@case(
    "silently wrong", "certify-obs-std-nan", "certify of a checkpoint whose obs_stats.std is NaN", match="obs_stats.std"
)
def _(tmp, agents):
    return certify_argv(edited(agents, tmp, {"obs_stats.std": [float("nan")] * 4}))


@case("silently wrong", "attack-no-obs-stats", "attack of a vector checkpoint without obs_stats", match="obs_stats")
def _(tmp, agents):
    return attack_argv(edited(agents, tmp, {"obs_stats": DELETE}))


@case("silently wrong", "attack-pixel-eps-8", "attack --eps 8 on a pixel agent (8 meant 8/255)", match="8/255")
def _(tmp, agents):
    return attack_argv(copy_agent(agents, tmp, CATCH), "8")


@case("silently wrong", "certify-pixel-eps-8", "certify --eps 8 on a pixel agent", match="8/255")
def _(tmp, agents):
    return certify_argv(copy_agent(agents, tmp, CATCH), "8")


@case(
    "silently wrong", "defend-pixel-sigma-8", "defend --filter gaussian_noise:sigma=8 on a pixel agent", match="8/255"
)
def _(tmp, agents):
    folder = copy_agent(agents, tmp, CATCH)
    return ["defend", str(folder), "--filter", "gaussian_noise:sigma=8", "--out", str(tmp / "d")]


@case("silently wrong", "train-pixel-eps-8", "train --defense adv-obs --eps 8 on Catch", match="8/255")
def _(tmp, agents):
    argv = ["train", "--algo", "ppo", "--env", "Catch-v0", "--steps", "64", "--no-progress", "--threads", "1"]
    return [*argv, "--defense", "adv-obs", "--eps", "8", "--out", str(tmp / "run")]


@case("silently wrong", "prune-algo-sac", 'prune of an agent.json claiming "algo": "sac"', match="sac")
def _(tmp, agents):
    return [
        "prune",
        str(edited(agents, tmp, {"algo": "sac"})),
        "--finetune",
        "none",
        "--episodes",
        "0",
        "--out",
        str(tmp / "p"),
    ]


@case("silently wrong", "eval-ok", "eval of the good vector agent (control)", expect="ok")
def _(tmp, agents):
    return eval_argv(copy_agent(agents, tmp))


@case("silently wrong", "attack-pixel-eps-ok", "attack --eps 8/255 on a pixel agent (control)", expect="ok")
def _(tmp, agents):
    return attack_argv(copy_agent(agents, tmp, CATCH), "8/255")


# ------------------------------------------------------------------ hangs
@case("hangs", "train-steps-1e30", "train --steps 1e30", match="--steps")
def _(tmp, agents):
    return train_argv(tmp / "run", "1e30")


@case("hangs", "train-steps-huge", "train --steps 1e11 (above the 1e10 cap)", match="--steps")
def _(tmp, agents):
    return train_argv(tmp / "run", "1e11")


# ------------------------------------------------------------------ data loss
@case(
    "data loss",
    "train-into-locked-run",
    "a second train into an --out another process is writing",
    match="in use",
    lock="run",
)
def _(tmp, agents):
    return train_argv(tmp / "run")


@case("data loss", "resume-locked-run", "--resume of a run another process is writing", match="in use", lock=CARTPOLE)
def _(tmp, agents):
    return resume_argv(copy_agent(agents, tmp))


@case("data loss", "prune-into-locked-out", "prune into an --out another process is writing", match="in use", lock="p")
def _(tmp, agents):
    return ["prune", str(copy_agent(agents, tmp)), "--finetune", "none", "--episodes", "0", "--out", str(tmp / "p")]


@case(
    "data loss", "eval-interrupted-save", "eval of a checkpoint whose save was killed between its renames", expect="ok"
)
def _(tmp, agents):
    folder = copy_agent(agents, tmp)
    save = folder / ".saving-killed"
    save.mkdir()
    os.utime(save, (0, 0))
    spec_text = (folder / "agent.json").read_text()
    # the killed save had moved the previous weights aside and its new weights in; agent.json still the old one
    os.link(folder / "weights.safetensors", save / "previous.safetensors")
    data = (folder / "weights.safetensors").read_bytes()
    (folder / "weights.safetensors").unlink()
    (folder / "weights.safetensors").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    (folder / "agent.json").write_text(spec_text)
    os.utime(save, (0, 0))
    return eval_argv(folder)


# ------------------------------------------------------------------ more found while probing
@case("hyperparams file", "set-n-steps-inf", "--set n_steps=.inf (a count)", match="n_steps")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--set", "n_steps=.inf")


@case("hyperparams file", "set-schedule-nan", "--set learning_rate=lin_nan", match="learning_rate")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--set", "learning_rate=lin_nan")


@case("hyperparams file", "set-gamma-nan", "--set gamma=.nan", match="gamma")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--set", "gamma=.nan")


@case("hyperparams file", "set-learning-rate-huge", "--set learning_rate=1e30 (finite, diverges)", match="diverged")
def _(tmp, agents):
    return train_argv(tmp / "run", "512", "--set", "learning_rate=1e30")


@case("resources", "train-n-envs-huge", "train --n-envs 100000000", match="--n-envs")
def _(tmp, agents):
    return train_argv(tmp / "run", "64", "--n-envs", "100000000")


@case("resources", "attack-episodes-huge", "attack --episodes 1e12", match="--episodes")
def _(tmp, agents):
    return [*attack_argv(copy_agent(agents, tmp)), "--episodes", "1e12"]


@case("resources", "certify-episodes-huge", "certify --episodes 1e12", match="--episodes")
def _(tmp, agents):
    return [*certify_argv(copy_agent(agents, tmp)), "--episodes", "1e12"]


@case("resources", "adapt-states-huge", "adapt --states 1e10 (states held in memory)")
def _(tmp, agents):
    shift = "[{name: ObservationShift, kwargs: {offset: 0.1}}]"
    return [*_adapt(tmp, agents), "--target-wrappers", shift, "--states", "10000000000"]


@case("resources", "prune-steps-huge", "prune --steps 1e10 (fine-tuning states held in memory)")
def _(tmp, agents):
    return ["prune", str(copy_agent(agents, tmp)), "--steps", "10000000000", "--out", str(tmp / "p")]


@case("SB3 zip", "sb3-member-corrupt-deflate", "a data member whose compressed bytes are damaged", match="m.zip")
def _(tmp, agents):
    out = tmp / "m.zip"
    with zipfile.ZipFile(agents / SB3_ZIP) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item.filename))
        start = dst.getinfo("data").header_offset + 30 + len("data")
    raw = bytearray(out.read_bytes())
    raw[start + 2 : start + 40] = b"\xff" * 38
    out.write_bytes(bytes(raw))
    return import_argv(out, tmp)


@case("SB3 zip", "sb3-member-encrypted", "a zip whose members are flagged as encrypted", match="m.zip")
def _(tmp, agents):
    raw = bytearray((agents / SB3_ZIP).read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
        at = raw.find(signature)
        while at >= 0:
            raw[at + flags_at] |= 0x1
            at = raw.find(signature, at + 4)
    (tmp / "m.zip").write_bytes(bytes(raw))
    return import_argv(tmp / "m.zip", tmp)


@case("SB3 zip", "sb3-data-bomb", "a data member of 128 MiB of zeros (a zip bomb; at most 64 MiB)", match="more than")
def _(tmp, agents):
    out = tmp / "m.zip"
    with zipfile.ZipFile(agents / SB3_ZIP) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if item.filename != "data":
                dst.writestr(item.filename, src.read(item.filename))
        with dst.open("data", "w", force_zip64=True) as member:
            chunk = bytes(1 << 24)
            for _ in range(8):
                member.write(chunk)
    return import_argv(out, tmp)


@case("CLI values", "attack-target-action-out-of-range", "attack --target-action 99 on a 2-action agent", match="99")
def _(tmp, agents):
    return [*attack_argv(copy_agent(agents, tmp)), "--target-action", "99"]


@case(
    "CLI values",
    "eval-env-kwargs-unknown",
    "eval --env-kwargs with an argument the env does not take",
    match="cannot make",
)
def _(tmp, agents):
    return [*eval_argv(copy_agent(agents, tmp)), "--env-kwargs", "{no_such_kwarg: 1}"]


@case("output paths", "eval-video-under-file", "eval --video FILE/x.gif", match="is a file")
def _(tmp, agents):
    (tmp / "afile").write_text("keep me")
    return [*eval_argv(copy_agent(agents, tmp)), "--video", str(tmp / "afile" / "x.gif")]


@case(
    "hostile payloads",
    "eval-env-id-installed-module",
    "env.id 'json:CartPole-v1' in agent.json (an installed module: imported, as Gymnasium's syntax does)",
    expect="ok",
)
def _(tmp, agents):
    return eval_argv(edited(agents, tmp, {"env.id": "json:CartPole-v1"}))


def _payload_module(folder: Path, name: str, tmp: Path) -> None:
    """A Python file in the checkpoint folder whose import runs ``payload``."""
    (folder / f"{name}.py").write_text(f"import os\nos.system({payload(tmp)!r})\n")


@case(
    "hostile payloads",
    "eval-env-id-module-in-folder",
    "env.id 'mod:Payload-v0' naming a .py file the checkpoint ships, evaluated from inside its folder",
    cwd=CARTPOLE,
)
def _(tmp, agents):
    folder = edited(agents, tmp, {"env.id": "rllab_payload_a:Payload-v0"})
    _payload_module(folder, "rllab_payload_a", tmp)
    return eval_argv(folder)


@case(
    "hostile payloads",
    "eval-env-module-in-folder",
    "env.module naming a .py file the checkpoint ships, evaluated from inside its folder",
    cwd=CARTPOLE,
)
def _(tmp, agents):
    folder = edited(agents, tmp, {"env.id": "Payload-v0", "env.module": "rllab_payload_b"})
    _payload_module(folder, "rllab_payload_b", tmp)
    return eval_argv(folder)


for _seconds in (0.3, 1.5, 4.0):

    @case(
        "data loss",
        f"eval-sigint-{_seconds:g}s",
        f"Ctrl-C {_seconds:g} s after `rllab eval` starts (start-up imports)",
        expect="interrupted",
        interrupt=_seconds,
    )
    def _(tmp, agents):
        return ["eval", str(copy_agent(agents, tmp)), "--episodes", "1000"]


@case(
    "data loss",
    "train-sigint-8s",
    "Ctrl-C 8 s after `rllab train` starts (setting up or training; the run folder stays consistent)",
    expect="interrupted",
    interrupt=8.0,
)
def _(tmp, agents):
    return train_argv(tmp / "run", "100000")


@case(
    "data loss",
    "resume-disk-full",
    "--resume with every file write capped at 16 KiB (a full disk: EFBIG mid-save)",
    match="cannot write",
    file_limit=16 << 10,
)
def _(tmp, agents):
    return resume_argv(copy_agent(agents, tmp))


@case(
    "data loss",
    "train-disk-full",
    "a fresh train with every file write capped at 16 KiB (a full disk: EFBIG)",
    match="cannot write",
    file_limit=16 << 10,
)
def _(tmp, agents):
    return train_argv(tmp / "run", "512")


@case(
    "data loss",
    "prune-disk-full",
    "prune into a new --out with every file write capped at 16 KiB",
    match="cannot write",
    file_limit=16 << 10,
)
def _(tmp, agents):
    return ["prune", str(copy_agent(agents, tmp)), "--finetune", "none", "--episodes", "0", "--out", str(tmp / "p")]


def by_id() -> dict[str, Case]:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return {c.id: c for c in CASES}


FAMILIES = list(dict.fromkeys(c.family for c in CASES))
