"""``rllab sweep``: many runs (algorithms x environments x a hyperparameter grid x seeds), in parallel,
reported across seeds.

Each run is a job: the ``rllab`` command line, run as subprocesses, stage after stage — ``train``,
``eval`` and, when asked, ``attack`` — into ``OUT/<config>/s<seed>/``. Jobs run on a local pool of
``--jobs`` workers or as Ray tasks (``--backend ray``; a local Ray instance, or the cluster that
``RAY_ADDRESS`` names, whose nodes must all see ``OUT``). Every job trains with a pinned PyTorch thread
count (``--threads``, 1 by default), so a run's weights do not depend on how many jobs ran beside it or
on the backend: the same seed gives the same checkpoint as ``rllab train --threads 1``.

A job records what it ran in ``RUN/sweep-job.json``. Run again, the sweep reuses finished stages of jobs
whose commands are unchanged, resumes an interrupted training from its last checkpoint, and starts over
a job whose commands changed. The summary (``OUT/sweep.json``, ``OUT/sweep.md``) reports each config
across its seeds — mean, Student-t 95% CI, median, interquartile mean, min, max, and every seed's value.
The sweep imports nothing from ``robustness`` (nor the command line): it runs ``rllab attack`` and reads
its ``results.json``.

- ``plan``: seeds, grid, config names and the jobs (generated lazily; the sweep's size is capped);
- ``jobs``: one job, its stages run in a subprocess that reports through exit status and a JSON outcome;
- ``backends``: the local worker pool and Ray (and ``POOLS``: worker processes running a function on tasks);
- ``stats``: figures across seeds; ``markdown``: the summary table; ``run``: ``sweep``, top to bottom.
"""

from rllab.sweep.backends import BACKENDS, POOLS
from rllab.sweep.jobs import run_job
from rllab.sweep.markdown import render_markdown
from rllab.sweep.plan import MAX_RUNS, MAX_SEEDS, Job, config_name, parse_grid, parse_seeds, plan
from rllab.sweep.run import sweep
from rllab.sweep.stats import attack_summary, seed_stats, summarise

__all__ = [
    "BACKENDS",
    "MAX_RUNS",
    "MAX_SEEDS",
    "POOLS",
    "Job",
    "attack_summary",
    "config_name",
    "parse_grid",
    "parse_seeds",
    "plan",
    "render_markdown",
    "run_job",
    "seed_stats",
    "summarise",
    "sweep",
]
