"""Where the work of a build runs: this process, a local process pool, or SLURM.

One small interface: :func:`run_tasks` calls ``fn(task)`` for every task and
yields ``(task, result)`` pairs as they finish (in any order). The caller
records each result at once, so whatever finished survives a crash.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterator, Sequence

EXECUTORS = ("local", "slurm")


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
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    if jobs == 1 or len(tasks) <= 1:
        for task in tasks:
            yield task, fn(task)
        return
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx) as pool:
        futures = {pool.submit(fn, task): task for task in tasks}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise

