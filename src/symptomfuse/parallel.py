"""Run independent jobs across processes, in order, with a progress bar (synth and curate use it)."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence, TypeVar

from tqdm import tqdm

J = TypeVar("J")
R = TypeVar("R")


def run_jobs(fn: Callable[[J], R], jobs: Sequence[J], workers: int | None, desc: str,
             progress: bool = True) -> list[R]:
    """``[fn(job) for job in jobs]``, spread over ``workers`` processes (default: one per core).

    ``fn`` must be a module-level function so that it can be sent to the worker processes. With one
    worker everything runs in this process, which keeps tracebacks and monkeypatching simple.
    """
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    results: list[R] = []
    with tqdm(total=len(jobs), desc=desc, unit="rec", disable=not progress) as bar:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(fn(job))
                bar.update()
        else:
            with ProcessPoolExecutor(workers) as pool:
                for result in pool.map(fn, jobs):
                    results.append(result)
                    bar.update()
    return results
