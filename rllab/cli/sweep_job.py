"""One sweep job's process: ``python -m rllab.cli.sweep_job STAGES OUTCOME`` runs the ``rllab`` command
lines of the JSON list ``STAGES`` one after another in this process (one interpreter per job, not per
stage: importing torch and SB3 costs seconds) and stops at the first that fails.

It tells the sweep (``rllab.sweep.jobs``) what happened through its exit status (the failed stage's)
and the small JSON file ``OUTCOME``: ``{"stage": i, "status": "running"}`` while stage ``i`` runs, then
``{"stage": i, "status": "failed", "returncode": ..., "error": ...}`` or ``{"status": "done"}``.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from rllab.checkpoint import write_json
from rllab.cli import UsageExit, build_parser, execute


def run_stage(argv: list[str]) -> tuple[int, str | None]:
    """Run one ``rllab`` command line here: its exit status and one-line error (None when it succeeded)."""
    try:
        return execute(build_parser().parse_args(argv))
    except UsageExit as exc:  # argparse refused the command line (and printed why)
        return 2, exc.message
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
        return code, None if code == 0 else f"exit status {code}"
    except Exception as exc:  # a bug, not a user error: its traceback goes to the job's log
        traceback.print_exc()
        return 1, traceback.format_exception_only(exc)[-1].strip()


def run_stages(stages: list[list[str]], outcome: Path) -> int:
    """Run the stages in order, keeping ``outcome`` up to date; the exit status of the first that fails."""
    for i, argv in enumerate(stages):
        write_json(outcome, {"stage": i, "status": "running"})
        print(f"$ rllab {' '.join(argv)}", flush=True)
        code, error = run_stage(argv)
        sys.stdout.flush()
        sys.stderr.flush()
        if code:
            write_json(outcome, {"stage": i, "status": "failed", "returncode": code, "error": error})
            return code
    write_json(outcome, {"status": "done"})
    return 0


if __name__ == "__main__":
    sys.exit(run_stages(json.loads(sys.argv[1]), Path(sys.argv[2])))
