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

from rllab.errors import RllabError

COMMAND_MODULES = [
    "rllab.cli.commands",
    "rllab.sweep",
    "rllab.cli.transforms",
    "robustness.commands",
    "robustness.certify",
    "explain.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RllabError as exc:
        print(f"rllab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rllab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
