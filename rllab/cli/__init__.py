"""The ``rllab`` command line.

Subcommands live in command modules (``register(subparsers)`` adds them); the
attack/defense and explanation packages contribute theirs by module name so that
``rllab`` itself never imports them (dependencies flow envs <- rllab <- others).
A user-caused error prints one line and exits with status 2.

Every command takes ``--threads N`` (PyTorch's intra-op CPU threads), applied in ``execute`` before any
torch work. Without it: ``OMP_NUM_THREADS`` where set (a sweep's jobs set it), else ``default_threads``:
1, or for CNN agents (NatureCNN, Atari ids) min(cores // 2, 4). On a busy 2-core host two threads made a
64x64 MLP's forward+backward 1.5x slower and NatureCNN's 7.6x slower than one
(bench/results/threads_default.md); half the cores, at most 4, keeps a CNN agent fast on a bigger host
without oversubscribing it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn


def _interrupted_at_start(signum: int, frame: object) -> None:
    """Ctrl-C while the command line loads (numpy and pydantic here, torch and every command module in
    ``build_parser``: seconds): nothing is written yet, so leave at once, in one line. A KeyboardInterrupt raised
    inside torch's C++ start-up would abort the process with a C++ message instead."""
    print("rllab: interrupted", file=sys.stderr, flush=True)
    os._exit(130)


def _exit_on_interrupt() -> Any:
    """Make Ctrl-C ``_interrupted_at_start``; the handler it replaces (None, and nothing changed, off the main
    thread or where SIGINT is ignored or not Python's)."""
    current = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or current in (None, signal.SIG_IGN):
        return None
    return signal.signal(signal.SIGINT, _interrupted_at_start)


def _restore(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


_LOADING = _exit_on_interrupt()  # for the first-party imports below (about 0.2 s)

from rllab.checkpoint import SPEC_FILE, read_json  # noqa: E402
from rllab.cli.options import thread_count  # noqa: E402
from rllab.errors import RllabError  # noqa: E402

_restore(_LOADING)

COMMAND_MODULES = [
    "rllab.cli.train",
    "rllab.cli.evaluate",
    "rllab.cli.import_sb3",
    "rllab.cli.defend",
    "study.commands",
    "study.tune.commands",
    "rllab.cli.sweep",
    "rllab.cli.transforms",
    "robustness.commands",
    "explain.commands",
]


class UsageExit(SystemExit):
    """argparse's exit on a bad command line (status 2), carrying its one-line message."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose error exit keeps its message (a sweep job records it), printed as usual."""

    def error(self, message: str) -> NoReturn:
        """Print the usage and ``PROG: error: MESSAGE`` as argparse does, then exit 2 keeping the message."""
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise UsageExit(message)


def build_parser() -> argparse.ArgumentParser:
    """The ``rllab`` parser with every installed command module's subcommands."""
    parser = Parser(
        prog="rllab",
        description="Train, attack, defend, explain and compress RL agents on one checkpoint format.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # that part of the lab is not installed
            raise
        module.register(sub)
    for command in sub.choices.values():
        if "--threads" not in command._option_string_actions:
            command.add_argument(
                "--threads",
                type=thread_count,
                help="PyTorch CPU threads (default: OMP_NUM_THREADS if set, else 1; min(cores // 2, 4) for CNN agents)",
            )
    return parser


CNN_EXTRACTORS = {"nature_cnn"}  # extractors big enough to gain from several threads (small_cnn, minatar_cnn: not)


def _cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(args: argparse.Namespace) -> int:
    """PyTorch threads for a command without ``--threads``: min(cores // 2, 4) when it works on a NatureCNN
    agent (its checkpoint's policy, or a training run on an ``ALE/`` id), else 1."""
    big = max(1, min(_cores() // 2, 4))
    env = getattr(args, "env", None)
    if isinstance(env, str) and env.partition(":")[2 if ":" in env else 0].startswith("ALE/"):
        return big
    run = getattr(args, "run", None)
    if isinstance(run, str):
        try:  # read as every file the lab reads: a FIFO, /dev/zero or deep nesting is refused, not read
            spec = read_json(Path(run) / SPEC_FILE)
            extractor = spec["policy"]["kwargs"].get("features_extractor")
        except (RllabError, KeyError, TypeError, AttributeError):
            return 1  # the command itself reports a missing or bad checkpoint
        return big if extractor in CNN_EXTRACTORS else 1
    return 1


def apply_threads(args: argparse.Namespace) -> int:
    """Set PyTorch's CPU thread count for the command (``--threads``, else OMP_NUM_THREADS, else the default)."""
    n = getattr(args, "threads", None)
    if n is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        n = max(1, int(os.environ["OMP_NUM_THREADS"]))
    if n is None:
        n = default_threads(args)
    import torch  # here, not at the top: a Ctrl-C while torch loads is then main's one line

    torch.set_num_threads(int(n))
    return int(n)


def execute(args: argparse.Namespace) -> tuple[int, str | None]:
    """Run a parsed command: its exit status, and its one-line error where it failed (printed as
    ``rllab COMMAND: error: ...``)."""
    before = None  # the thread count, given back after the command (tests and sweep jobs run several per process)
    try:
        import torch

        before = torch.get_num_threads()
        apply_threads(args)
        return int(args.func(args) or 0), None
    except RllabError as exc:
        print(f"rllab {args.command}: error: {exc}", file=sys.stderr)
        return 2, str(exc)
    except KeyboardInterrupt:
        print(f"rllab {args.command}: interrupted", file=sys.stderr)
        return 130, "interrupted"
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1, "broken pipe"
    finally:
        if before is not None:
            torch.set_num_threads(before)


def main(argv: list[str] | None = None) -> int:
    """The ``rllab`` console script: parse ``argv`` (argparse exits 2 on a bad one) and run the command."""
    previous = _exit_on_interrupt()
    try:
        args = build_parser().parse_args(argv)  # imports torch and every command module: seconds
    except KeyboardInterrupt:
        print("rllab: interrupted", file=sys.stderr)
        return 130
    finally:
        _restore(previous)
    return execute(args)[0]
