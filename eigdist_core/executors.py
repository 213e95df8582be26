"""Where the work of a build runs: this process, a local process pool, or SLURM.

One small interface: :func:`run_tasks` (local) and :func:`run_submitit`
(SLURM job arrays through submitit) call ``fn(task)`` for every task and
yield ``(task, result)`` pairs as they finish (in any order). The caller
records each result at once, so whatever finished survives a crash.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import time
from functools import partial
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from .validate import validate_number


def run_tasks(
    fn: Callable[[Any], Any], tasks: Sequence[Any], jobs: int = 1
) -> Iterator[tuple[Any, Any]]:
    """Run ``fn`` on each task with ``jobs`` local worker processes; yield (task, result) as each ends.

    ``jobs == 1`` runs in this process (no start-up cost). On Linux workers are
    forked (no second torch import: a spawned worker costs seconds of CPU);
    ``fn`` must pin torch to a fixed thread count before it computes, which
    also keeps a forked child clear of the parent's OpenMP pool. Elsewhere
    they are spawned; ``fn`` and the tasks must be picklable.
    """
    validate_number("jobs", jobs, integer=True, low=1)
    if jobs == 1 or len(tasks) <= 1:
        for task in tasks:
            yield task, fn(task)
        return
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    pool = ctx.Pool(min(jobs, len(tasks)), initializer=_leave_sigint)
    try:
        for i, result in pool.imap_unordered(partial(_indexed, fn), enumerate(tasks)):
            yield tasks[i], result
        pool.close()
    finally:
        # On Ctrl-C, an error or a consumer that stops: stop the workers at once, not after their
        # groups. Their files are written atomically; the next build removes stray temporary files.
        pool.terminate()
        pool.join()


def _indexed(fn: Callable[[Any], Any], item: tuple[int, Any]) -> tuple[int, Any]:
    """``(i, fn(task))`` for ``item = (i, task)``: tells the parent which task a result belongs to."""
    return item[0], fn(item[1])


def _leave_sigint() -> None:
    """In a worker: ignore Ctrl-C, which the parent handles (one message, no traceback per worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)



@dataclass(frozen=True)
class SlurmOptions:
    """Resources of a SLURM job array (one array task per group).

    Attributes
    ----------
    log_folder
        submitit's folder: job scripts, pickled tasks and results, logs.
    partition
        SLURM partition (``None``: the cluster's default).
    time_min
        Wall-time limit per job, minutes.
    gpus, cpus
        GPUs and CPUs per job; with ``gpus > 0`` a job computes on its GPU.
    array_parallelism
        At most this many array tasks run at once (SLURM's ``%`` throttle).
    mem_gb
        Memory per job (``None``: the cluster's default).
    cluster
        submitit back end: ``slurm``; ``local`` or ``debug`` run the same
        path on this machine (tests, trials).
    """

    log_folder: str
    partition: str | None = None
    time_min: int = 60
    gpus: int = 0
    cpus: int = 1
    array_parallelism: int = 64
    mem_gb: int | None = None
    cluster: str = "slurm"


class _Requeued:
    """A picklable callable that submitit requeues (same task) on preemption or timeout."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def __call__(self, task: Any) -> Any:
        return self.fn(task)

    def checkpoint(self, task: Any) -> Any:
        # The task starts again from scratch; its finished item files are rewritten with the same bytes.
        import submitit

        return submitit.helpers.DelayedSubmission(self, task)


def run_submitit(
    fn: Callable[[Any], Any], tasks: Sequence[Any], options: SlurmOptions, poll_s: float = 2.0
) -> Iterator[tuple[Any, Any]]:
    """Run ``fn`` on each task as one job of a submitit job array; yield (task, result) as jobs end."""
    import submitit

    if options.cluster not in ("slurm", "local", "debug"):
        raise ValueError(f"cluster must be slurm, local or debug, got {options.cluster!r}")
    if not tasks:
        return
    executor = submitit.AutoExecutor(folder=options.log_folder, cluster=options.cluster)
    params: dict[str, Any] = {
        "name": "eigdist-stimuli", "timeout_min": options.time_min, "cpus_per_task": options.cpus,
        "gpus_per_node": options.gpus, "slurm_array_parallelism": options.array_parallelism,
    }
    if options.partition:
        params["slurm_partition"] = options.partition
    if options.mem_gb:
        params["mem_gb"] = options.mem_gb
    executor.update_parameters(**params)
    jobs = executor.map_array(_Requeued(fn), tasks)
    pending = dict(zip(jobs, tasks))
    while pending:
        finished = [job for job in pending if job.done()]
        for job in finished:
            yield pending.pop(job), job.result()
        if pending and not finished:
            time.sleep(poll_s)
