"""The ``rllab`` command line.

Subcommands live in command modules (``register(subparsers)`` adds them); the
attack/defense and explanation packages contribute theirs by module name so that
``rllab`` itself never imports them (dependencies flow envs <- rllab <- others).
A user-caused error prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from rllab.errors import RllabError

COMMAND_MODULES = [
    "rllab.cli.train",
    "rllab.cli.evaluate",
    "rllab.cli.import_sb3",
    "rllab.cli.defend",
    "rllab.cli.lab",
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
    return parser


def execute(args: argparse.Namespace) -> tuple[int, str | None]:
    """Run a parsed command: its exit status, and its one-line error where it failed (printed as
    ``rllab COMMAND: error: ...``)."""
    try:
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


def main(argv: list[str] | None = None) -> int:
    """The ``rllab`` console script: parse ``argv`` (argparse exits 2 on a bad one) and run the command."""
    try:
        args = build_parser().parse_args(argv)  # imports torch and every command module: seconds
    except KeyboardInterrupt:
        print("rllab: interrupted", file=sys.stderr)
        return 130
    return execute(args)[0]
