"""Where the work of a build runs: this process, a local process pool, or SLURM.

One small interface: :func:`run_tasks` (local) and :func:`run_submitit`
(SLURM job arrays through submitit) call ``fn(task)`` for every task and
yield ``(task, result)`` pairs as they finish (in any order). The caller
records each result at once, so whatever finished survives a crash. In a job
array a failed job does not stop the others: :class:`ClusterError` names it after
every other result has been yielded.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import signal
import subprocess
import sys
import time
from functools import partial
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from .errors import EigdistError

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


class ClusterError(EigdistError):
    """SLURM refused a job array, or some of its jobs ended without a result.

    A user error, so the command line reports it in one line.
    """


#: squeue states of a job that may still write its result (any other state: it has ended).
_ACTIVE = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
    "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
})


def run_submitit(
    fn: Callable[[Any], Any], tasks: Sequence[Any], options: SlurmOptions, poll_s: float = 2.0,
    grace_s: float = 10.0,
) -> Iterator[tuple[Any, Any]]:
    """Run ``fn`` on each task as one job of a submitit job array; yield (task, result) as jobs end.

    On SLURM the jobs are watched with ``squeue`` and their result files, never
    with ``sacct`` (submitit's way), which fails on clusters without accounting
    storage: submitit would print a warning at every poll and wait for ever on
    a job that was cancelled. A job that has left the active states for
    ``grace_s`` seconds (time for a shared file system to show its result)
    without a result counts as failed. Failed jobs do not stop the others: every
    result is yielded first, then :class:`ClusterError` names each failed job
    and its log, and a rerun of the build computes only what is missing.
    """
    import submitit

    if options.cluster not in ("slurm", "local", "debug"):
        raise EigdistError(f"cluster must be slurm, local or debug, got {options.cluster!r}")
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
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):  # submitit prints sbatch's refusal, which our error repeats
            jobs = executor.map_array(_Requeued(fn), tasks)
    except submitit.core.utils.FailedJobError as exc:  # sbatch said no: its message names the reason
        raise ClusterError(_refusal(str(exc), options.partition)) from None
    sys.stderr.write(said.getvalue())
    queue = _SlurmQueue(grace_s, every_s=5 * poll_s) if options.cluster == "slurm" else None
    pending = dict(zip(jobs, tasks))
    failures: list[str] = []
    while pending:
        _refresh({job.paths.folder for job in pending})
        finished = [job for job in pending if job.paths.result_pickle.exists() or (queue is None and job.done())]
        for job in finished:
            task = pending.pop(job)
            try:
                result = job.result()
            except submitit.core.utils.UncompletedJobError as exc:  # raised in the job, or killed (local)
                failures.append(f"{job.job_id} failed: {_error_line(str(exc))} (log: {job.paths.stderr})")
                continue
            yield task, result
        if queue is not None:
            for job, state in queue.lost(pending):
                pending.pop(job)
                failures.append(f"{job.job_id} ended {state} without a result (log: {job.paths.stderr})")
        if pending and not finished:
            time.sleep(poll_s)
    if failures:
        raise ClusterError(
            f"{len(failures)} of {len(jobs)} jobs failed: " + "; ".join(failures)
            + ". The other jobs' results are recorded: run the same command again to compute only the missing ones."
        )


def _refresh(folders: Iterable[Path]) -> None:
    """Make a shared file system show the folders' new files (a metadata change drops NFS's cached listing)."""
    for folder in folders:
        try:
            folder.chmod(folder.stat().st_mode)
        except OSError:
            pass


def _error_line(message: str) -> str:
    """The line that says what went wrong in a submitit error: the exception of its traceback, or its first line."""
    parts = message.split("-" * 22)  # submitit puts the job's traceback between two dashed lines
    lines = [line.strip() for line in (parts[1] if len(parts) > 2 else message).splitlines() if line.strip()]
    if not lines:
        return "no message"
    return lines[-1] if len(parts) > 2 else lines[0]


def _refusal(sbatch_error: str, partition: str | None) -> str:
    """The message for a refused job array: sbatch's own words, and the partitions when one was wrong."""
    said = "; ".join(line.strip() for line in sbatch_error.strip().splitlines() if line.strip())
    message = f"SLURM refused the job array ({said})"
    if partition and "partition" in said.lower():
        known = _partitions()
        listed = f"this cluster's partitions are {', '.join(known)}" if known else "sinfo lists the cluster's partitions"
        message += f": partition {partition!r} was not accepted; {listed} (--partition)"
    return message


def _partitions() -> list[str]:
    """The partition names ``sinfo`` reports (empty when it cannot be asked)."""
    try:
        out = subprocess.run(["sinfo", "--noheader", "--format=%R"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(set(out.stdout.split()))


class _SlurmQueue:
    """Which jobs of an array have ended without a result, from ``squeue`` (needs no accounting storage).

    squeue is asked at most every ``every_s`` seconds (it loads the controller); the result
    files, which cost nothing to look for, are checked at every poll.
    """

    def __init__(self, grace_s: float, every_s: float) -> None:
        self.grace_s, self.every_s = grace_s, every_s
        self.asked = -float("inf")
        self.ended_since: dict[str, float] = {}

    def lost(self, jobs: Iterable[Any]) -> list[tuple[Any, str]]:
        """(job, last state) of each job that left the active states over ``grace_s`` ago without a result."""
        now = time.monotonic()
        if now - self.asked < self.every_s:
            return []
        self.asked = now
        jobs = list(jobs)
        states = self.states(sorted({job.job_id.split("_")[0] for job in jobs}))
        if states is None:  # squeue did not answer: ask again later
            return []
        lost = []
        for job in jobs:
            state = states.get(job.job_id, "(gone from the queue)")
            if state in _ACTIVE:
                self.ended_since.pop(job.job_id, None)
            elif now - self.ended_since.setdefault(job.job_id, now) >= self.grace_s and not job.paths.result_pickle.exists():
                lost.append((job, state))
        return lost

    @staticmethod
    def states(array_ids: Sequence[str]) -> dict[str, str] | None:
        """``{"<array>_<task>": state}`` of the jobs squeue still knows; ``None`` when squeue failed."""
        cmd = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T", f"--jobs={','.join(array_ids)}"]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        if out.returncode != 0:
            # Every id is past squeue's memory (MinJobAge): all have ended.
            return {} if "invalid job id" in out.stderr.lower() else None
        return dict(line.strip().split("|", 1) for line in out.stdout.splitlines() if "|" in line)
