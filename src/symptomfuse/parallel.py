"""Run jobs across processes: independent ones in order with a progress bar (synth and curate), or jobs
that wait for others (training: a fused model-fold after its fold's single-modality ones).

Workers are started fresh (``spawn``), never forked from a process that may already run threads (torch,
BLAS, a benchmark that trained first): a fork of a threaded process can deadlock in the child. Workers
die with their parent: on Linux each asks the kernel for SIGKILL when the process that started it ends
(``prctl(PR_SET_PDEATHSIG)``), so killing curate or train, even with SIGKILL, leaves no orphaned worker
writing on. SIGKILL, not SIGTERM: Lightning catches SIGTERM during a fit and raises SystemExit, which the
pool's worker loop catches and reports to the dead parent, then waits for its next job forever (an
orphan of about 1 GB). Neither signal runs Python's cleanup, so nothing is lost by SIGKILL: every
artifact is written atomically.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, Hashable, Sequence, TypeVar

from tqdm import tqdm

J = TypeVar("J")
K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Worker initializer: SIGKILL when the parent ends (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass
    if os.getppid() != parent:
        os._exit(1)


def run_jobs(fn: Callable[[J], R], jobs: Sequence[J], workers: int | None, desc: str,
             progress: bool = True, ray: str | None = None) -> list[R]:
    """``[fn(job) for job in jobs]``, spread over ``workers`` processes (default: one per core), or over a
    Ray cluster (``ray``: its address, or "local" for a Ray instance on this machine alone, on 127.0.0.1,
    with ``workers`` CPUs).

    ``fn`` must be a module-level function so that it can be sent to the worker processes. With one
    worker everything runs in this process, which keeps tracebacks and monkeypatching simple.
    """
    if ray is not None:
        return _run_on_ray(fn, jobs, workers, desc, progress, ray)
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    results: list[R] = []
    with tqdm(total=len(jobs), desc=desc, unit="rec", disable=not progress) as bar:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(fn(job))
                bar.update()
        else:
            with _pool(workers) as pool:
                for result in pool.map(fn, jobs):
                    results.append(result)
                    bar.update()
    return results


def _run_on_ray(fn: Callable[[J], R], jobs: Sequence[J], workers: int | None, desc: str, progress: bool,
                address: str) -> list[R]:
    """``run_jobs`` on Ray: one task per job (one CPU each), results in the jobs' order. Ray is started
    here and shut down after: on this machine alone for "local", else joined at ``address``."""
    try:
        import ray
    except ImportError:
        from symptomfuse.errors import UsageError

        raise UsageError("--ray needs Ray: pip install ray") from None
    if address == "local":
        ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, _node_ip_address="127.0.0.1")
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        task = ray.remote(num_cpus=1)(fn)
        refs = [task.remote(job) for job in jobs]
        position = {ref: i for i, ref in enumerate(refs)}
        results: list = [None] * len(refs)
        pending = list(refs)
        with tqdm(total=len(jobs), desc=f"{desc} (Ray)", unit="rec", disable=not progress) as bar:
            while pending:
                finished, pending = ray.wait(pending, num_returns=1)
                for ref in finished:
                    results[position[ref]] = ray.get(ref)
                    bar.update()
        return results
    finally:
        ray.shutdown()


def _start_worker(parent: int, setup: Callable | None, setup_args: tuple) -> None:
    _die_with_parent(parent)
    if setup is not None:
        setup(*setup_args)


def _pool(workers: int, setup: Callable | None = None, setup_args: tuple = ()) -> ProcessPoolExecutor:
    """Spawned workers that die with this process, each running ``setup(*setup_args)`` first."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                               initargs=(os.getpid(), setup, setup_args))


def _timed(fn: Callable[[J], R], job: J) -> tuple[R, float]:
    """In a worker: ``fn(job)`` and the seconds it took (not counting the worker's start)."""
    t0 = time.perf_counter()
    result = fn(job)
    return result, time.perf_counter() - t0


def run_graph(fn: Callable[[J], R], jobs: dict[K, J], needs: dict[K, list[K]], workers: int,
              setup: Callable | None = None, setup_args: tuple = (),
              on_done: Callable[[K], None] | None = None, kind: Callable[[K], Hashable] | None = None) -> dict[K, R]:
    """``fn(job)`` for every job, over ``workers`` spawned processes; a job starts once every job it
    ``needs`` has finished. ``setup(*setup_args)`` runs once in each worker before its first job (loading
    data, setting threads); ``on_done(key)`` runs here as each job finishes. The first job to fail cancels
    those not started and raises its error.

    Each worker holds one job at a time. When one frees, it takes the ready job whose ``kind(key)`` has
    taken longest so far (a kind not yet seen first; ties in the order given; without ``kind``, the order
    given): long jobs start early and short ones fill the end, so that no worker is left alone with a long
    job that started last (longest-processing-time-first)."""
    unknown = {d for ds in needs.values() for d in ds} - set(jobs)
    if unknown:
        raise ValueError(f"jobs depend on jobs that are not given: {sorted(map(str, unknown))}")
    position = {key: i for i, key in enumerate(jobs)}
    took: dict[Hashable, list[float]] = {}  # seconds each finished job of a kind took

    def longest_first(key: K) -> tuple[float, int]:
        seconds = took.get(kind(key)) if kind is not None else None
        return (-(sum(seconds) / len(seconds)) if seconds else -math.inf, position[key])

    results: dict[K, R] = {}
    waiting, running = dict(jobs), {}
    with _pool(workers, setup, setup_args) as pool:
        try:
            while waiting or running:
                ready = sorted((k for k in waiting if all(d in results for d in needs.get(k, ()))), key=longest_first)
                for key in ready[:workers - len(running)]:
                    running[pool.submit(_timed, fn, waiting.pop(key))] = key
                if not running:
                    raise ValueError(f"jobs wait on each other in a cycle: {sorted(map(str, waiting))}")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    key = running.pop(future)
                    results[key], seconds = future.result()
                    if kind is not None:
                        took.setdefault(kind(key), []).append(seconds)
                    if on_done is not None:
                        on_done(key)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return results
