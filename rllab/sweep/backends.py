"""Where a sweep's jobs run: a local pool of worker threads (the work is in subprocesses), or Ray tasks; and
pools of worker processes (local or Ray) that run a function on plain-data tasks (``rllab tune``'s trials).

Both take the jobs as an iterator and draw from it only as workers free up, so a sweep never holds
more than the jobs in flight. ``on_done(result)`` returning False stops the sweep: the jobs already
running finish, the others never start. Ray is an optional extra, imported when asked for.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import multiprocessing
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


# ---------------------------------------------------------------- pools of worker processes
# A sweep's jobs are subprocesses of the command line; other callers (``rllab tune``) run a Python function
# on plain-data tasks, each in a worker process that lives as long as the pool (torch and SB3 load once per
# worker, not once per task). Results come back in task order, whatever order they finished in.

OnResult = Callable[[int, Any], None]


def _pin_threads(threads: int) -> None:
    """A worker's start: ``threads`` PyTorch (and OpenMP) threads for every task it runs."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch  # after OMP_NUM_THREADS is set

    torch.set_num_threads(threads)


class LocalPool:
    """``workers`` worker processes on this machine (spawned, so no torch state is forked); one worker is this
    process itself (no start-up of seconds), its PyTorch thread count pinned for each task and given back."""

    def __init__(self, workers: int, threads: int = 1) -> None:
        self._threads = threads
        self._pool = (
            None
            if workers == 1
            else cf.ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_pin_threads,
                initargs=(threads,),
            )
        )

    def map(self, fn: Callable[[Any], Any], tasks: list[Any], on_result: OnResult | None = None) -> list[Any]:
        """``[fn(t) for t in tasks]``, run in the workers; ``on_result(i, result)`` as each finishes."""
        if self._pool is None:
            return [self._inline(fn, i, t, on_result) for i, t in enumerate(tasks)]
        futures = {self._pool.submit(fn, t): i for i, t in enumerate(tasks)}
        results: list[Any] = [None] * len(tasks)
        for fut in cf.as_completed(futures):
            results[futures[fut]] = fut.result()
            if on_result is not None:
                on_result(futures[fut], results[futures[fut]])
        return results

    def _inline(self, fn: Callable[[Any], Any], i: int, task: Any, on_result: OnResult | None) -> Any:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self._threads)
        try:
            result = fn(task)
        finally:
            torch.set_num_threads(before)
        if on_result is not None:
            on_result(i, result)
        return result

    def close(self) -> None:
        """Stop the workers (tasks not started are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class RayPool:
    """Ray tasks of ``threads`` CPUs each: a local instance with room for ``workers`` of them, or the cluster
    ``RAY_ADDRESS`` names (whose nodes must see the files the tasks read and write)."""

    def __init__(self, workers: int, threads: int = 1) -> None:
        try:
            import ray  # an optional extra: rllab[ray]
        except ModuleNotFoundError:
            raise RllabError("--backend ray needs Ray: pip install 'rllab[ray]' (or: pip install ray)") from None
        self._ray, self._threads = ray, threads
        self._started_here = not ray.is_initialized()
        if self._started_here:
            address = os.environ.get("RAY_ADDRESS")
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if not address:
                kwargs["num_cpus"] = workers * threads
            ray.init(address=address, **kwargs)  # Ray sets a task's OMP_NUM_THREADS to its num_cpus

    def map(self, fn: Callable[[Any], Any], tasks: list[Any], on_result: OnResult | None = None) -> list[Any]:
        """``[fn(t) for t in tasks]`` as Ray tasks; ``on_result(i, result)`` as each finishes."""
        remote = self._ray.remote(num_cpus=self._threads)(fn)
        refs = [remote.remote(t) for t in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(tasks)
        pending = list(refs)
        while pending:
            ready, pending = self._ray.wait(pending, num_returns=1)
            i = index[ready[0]]
            results[i] = self._ray.get(ready[0])
            if on_result is not None:
                on_result(i, results[i])
        return results

    def close(self) -> None:
        """Shut down the Ray instance this pool started (a cluster it joined is left running)."""
        if self._started_here:
            self._ray.shutdown()


POOLS = {"local": LocalPool, "ray": RayPool}
