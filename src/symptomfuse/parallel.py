"""Run independent jobs across processes, in order, with a progress bar (synth and curate use it).

Workers are started fresh (``spawn``), never forked from a process that may already run threads (torch,
BLAS, a benchmark that trained first): a fork of a threaded process can deadlock in the child. Workers
die with their parent: on Linux each asks the kernel for SIGTERM when the process that started it ends
(``prctl(PR_SET_PDEATHSIG)``), so killing curate, even with SIGKILL, leaves no orphaned worker writing
on.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence, TypeVar

from tqdm import tqdm

J = TypeVar("J")
R = TypeVar("R")


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Worker initializer: SIGTERM when the parent ends (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass
    if os.getppid() != parent:
        os._exit(1)


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
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
                for result in pool.map(fn, jobs):
                    results.append(result)
                    bar.update()
    return results
