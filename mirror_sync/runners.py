"""Where project tasks run: worker threads in this process, or, for large runs, worker processes
that each run a share of the threads, so the engine uses every core instead of one GIL.

Both hand back one concurrent.futures.Future per task; results (and errors) are the same.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from .errors import FilesystemError, MirrorSyncError
from .project_sync import ProjectResult, ProjectSyncer, ProjectTask

# a run with at least this many projects to sync uses processes (when there is more than one core)
PROCESS_THRESHOLD = 256
PROCESS_BATCH = 16


class Runner(Protocol):
    batch_size: int
    in_flight: int

    def submit_many(self, tasks: list[ProjectTask]) -> list["Future[ProjectResult]"]: ...

    def close(self) -> None: ...


class ThreadRunner:
    """Project tasks on a thread pool; big projects' files on a second pool."""

    def __init__(self, make_syncer: Callable[[Optional[ThreadPoolExecutor]], ProjectSyncer], workers: int) -> None:
        self.batch_size = 1
        self.in_flight = workers * 4
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="project")
        self.file_pool = ThreadPoolExecutor(workers, thread_name_prefix="file")
        self.syncer = make_syncer(self.file_pool)

    def submit_many(self, tasks: list[ProjectTask]) -> list["Future[ProjectResult]"]:
        return [self.pool.submit(self.syncer.run, t) for t in tasks]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.file_pool.shutdown(wait=True, cancel_futures=True)
        self.syncer.upstream.client.close()


@dataclass
class _ChildContext:
    runner: ThreadRunner


# Process-local: set once in each worker process by the pool's initializer, never in the parent.
_CHILD: Optional[_ChildContext] = None


def _child_init(make_syncer: Callable[[Optional[ThreadPoolExecutor]], ProjectSyncer], threads: int) -> None:
    global _CHILD
    _CHILD = _ChildContext(ThreadRunner(make_syncer, threads))


def _child_run(tasks: list[ProjectTask]) -> list[tuple[Optional[ProjectResult], Optional[BaseException]]]:
    assert _CHILD is not None, "worker process was not initialised"
    out: list[tuple[Optional[ProjectResult], Optional[BaseException]]] = []
    for fut in _CHILD.runner.submit_many(tasks):
        try:
            out.append((fut.result(), None))
        except FilesystemError as exc:
            out.append((None, FilesystemError(str(exc))))
        except MirrorSyncError as exc:
            out.append((None, MirrorSyncError(str(exc))))
        except Exception as exc:  # errors must cross the process boundary as plain messages
            out.append((None, MirrorSyncError(f"unexpected {exc.__class__.__name__}: {exc}")))
    return out


class ProcessRunner:
    """Batches of tasks to worker processes, each running `workers / processes` threads."""

    def __init__(self, make_syncer: Callable[[Optional[ThreadPoolExecutor]], ProjectSyncer], workers: int, processes: int) -> None:
        threads = max(1, -(-workers // processes))
        self.batch_size = max(1, min(PROCESS_BATCH, threads * 4))
        self.in_flight = processes * self.batch_size * 3
        self.pool = ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_child_init,
            initargs=(make_syncer, threads),
        )

    def submit_many(self, tasks: list[ProjectTask]) -> list["Future[ProjectResult]"]:
        futures: list[Future[ProjectResult]] = [Future() for _ in tasks]
        batch = self.pool.submit(_child_run, tasks)

        def settle(done: "Future[list[tuple[Optional[ProjectResult], Optional[BaseException]]]]") -> None:
            try:
                outcomes = done.result()
            except BaseException as exc:  # the worker process died: every task of its batch failed
                for fut in futures:
                    fut.set_exception(MirrorSyncError(f"worker process failed ({exc.__class__.__name__}: {exc})"))
                return
            for fut, (result, error) in zip(futures, outcomes):
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(result)  # type: ignore[arg-type]

        batch.add_done_callback(settle)
        return futures

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def choose_runner(
    make_syncer: Callable[[Optional[ThreadPoolExecutor]], ProjectSyncer], workers: int, tasks: int
) -> Runner:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    processes = min(cores, workers)
    if processes > 1 and tasks >= PROCESS_THRESHOLD:
        return ProcessRunner(make_syncer, workers, processes)
    return ThreadRunner(make_syncer, workers)
