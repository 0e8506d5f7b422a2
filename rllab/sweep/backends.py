"""Where a sweep's jobs run: a local pool of worker threads (the work is in subprocesses), or Ray tasks.

Both take the jobs as an iterator and draw from it only as workers free up, so a sweep never holds
more than the jobs in flight. ``on_done(result)`` returning False stops the sweep: the jobs already
running finish, the others never start. Ray is an optional extra, imported when asked for.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import os
from collections.abc import Callable, Iterable
from typing import Any

from rllab.errors import RllabError
from rllab.sweep.jobs import job_record, run_job
from rllab.sweep.plan import Job

OnDone = Callable[[dict[str, Any]], bool]


def run_local(jobs: Iterable[Job], workers: int, threads: int, on_done: OnDone) -> None:
    """Run the jobs on ``workers`` threads, each job a subprocess of ``threads`` PyTorch threads."""
    queue = iter(jobs)
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        running = {pool.submit(run_job, j) for j in itertools.islice(queue, workers)}
        while running:
            done, running = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                if not on_done(fut.result()):
                    return  # leaving the block waits for the jobs already running
                running |= {pool.submit(run_job, j) for j in itertools.islice(queue, 1)}


def run_ray(jobs: Iterable[Job], workers: int, threads: int, on_done: OnDone) -> None:
    """Run the jobs as Ray tasks: on a local instance with room for ``workers`` of them, or on the cluster
    ``RAY_ADDRESS`` names (as many at a time as it has CPUs for)."""
    try:
        import ray  # an optional extra: rllab[ray]
    except ModuleNotFoundError:
        raise RllabError("--backend ray needs Ray: pip install 'rllab[ray]' (or: pip install ray)") from None
    started_here = not ray.is_initialized()
    if started_here:
        address = os.environ.get("RAY_ADDRESS")
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if not address:  # a local instance with room for `workers` jobs at a time
            kwargs["num_cpus"] = workers * threads
        ray.init(address=address, **kwargs)
    try:
        remote = ray.remote(num_cpus=threads)(run_job)
        # enough tasks in flight to fill every CPU Ray has, and a few queued so none idles between jobs
        slots = max(workers, int(ray.cluster_resources().get("CPU", 0)) // threads)
        queue = iter(jobs)
        refs = [remote.remote(job_record(j)) for j in itertools.islice(queue, 2 * slots)]
        while refs:
            ready, refs = ray.wait(refs, num_returns=1)
            if not on_done(ray.get(ready[0])):
                for r in refs:
                    ray.cancel(r)
                break
            refs += [remote.remote(job_record(j)) for j in itertools.islice(queue, 1)]
    finally:
        if started_here:
            ray.shutdown()


BACKENDS = {"local": run_local, "ray": run_ray}
