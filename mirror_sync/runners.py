"""Where project tasks run: worker threads in this process, or, for large runs, worker processes
that each run a share of the threads, so the engine uses every core instead of one GIL.

Both take tasks with `submit` and hand back each outcome, in completion order, from `next_done`:
(task, result, None) or (task, None, error). Outcomes travel through queues, not one Future per
task: on a run of tens of thousands of small projects the futures' condition variables and the
waiters of `concurrent.futures.wait` cost more than the bookkeeping they provide.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Union

from .cores import usable_cores
from .errors import FilesystemError, MirrorSyncError
from .project_sync import ProjectResult, ProjectSyncer, ProjectTask

# a run with at least this many projects to sync uses processes (when there is more than one core)
PROCESS_THRESHOLD = 256
PROCESS_BATCH = 16

Outcome = tuple[Optional[ProjectResult], Optional[BaseException]]
Done = tuple[ProjectTask, Optional[ProjectResult], Optional[BaseException]]
MakeSyncer = Callable[[Optional[ThreadPoolExecutor]], ProjectSyncer]


class Runner(Protocol):
    batch_size: int
    in_flight: int

    def submit(self, tasks: list[ProjectTask]) -> None: ...

    def next_done(self) -> Done: ...

    def close(self) -> None: ...


def _run_one(syncer: ProjectSyncer, task: ProjectTask) -> Outcome:
    try:
        return syncer.run(task), None
    except BaseException as exc:  # handed to the caller, which decides (one project, or the whole run)
        return None, exc


class _Workers:
    """`threads` threads running tasks from a queue; outcomes go to `out` as (key, task, outcome)."""

    def __init__(self, syncer: ProjectSyncer, threads: int, out: "queue.SimpleQueue[tuple[object, ProjectTask, Outcome]]") -> None:
        self.syncer = syncer
        self.todo: "queue.SimpleQueue[Optional[tuple[object, ProjectTask]]]" = queue.SimpleQueue()
        self.out = out
        self.threads = [threading.Thread(target=self._loop, name=f"project-{i}", daemon=True) for i in range(threads)]
        for t in self.threads:
            t.start()

    def _loop(self) -> None:
        while True:
            item = self.todo.get()
            if item is None:
                return
            key, task = item
            self.out.put((key, task, _run_one(self.syncer, task)))

    def put(self, key: object, task: ProjectTask) -> None:
        self.todo.put((key, task))

    def stop(self) -> None:
        """Let the running tasks end, skip those not started (there are none after a complete run)."""
        while True:
            try:
                self.todo.get_nowait()
            except queue.Empty:
                break
        for _ in self.threads:
            self.todo.put(None)
        for t in self.threads:
            t.join()


class ThreadRunner:
    """Project tasks on worker threads; big projects' files on a second pool."""

    def __init__(self, make_syncer: MakeSyncer, workers: int) -> None:
        self.batch_size = workers
        self.in_flight = workers * 4
        self.file_pool = ThreadPoolExecutor(workers, thread_name_prefix="file")
        self.syncer = make_syncer(self.file_pool)
        self.done: "queue.SimpleQueue[tuple[object, ProjectTask, Outcome]]" = queue.SimpleQueue()
        self.workers = _Workers(self.syncer, workers, self.done)

    def submit(self, tasks: list[ProjectTask]) -> None:
        for task in tasks:
            self.workers.put(None, task)

    def next_done(self) -> Done:
        _key, task, (result, error) = self.done.get()
        return task, result, error

    def close(self) -> None:
        self.workers.stop()
        self.file_pool.shutdown(wait=True, cancel_futures=True)
        self.syncer.upstream.client.close()


@dataclass
class _ChildContext:
    runner: ThreadRunner


# Process-local: set once in each worker process by the pool's initializer, never in the parent.
_CHILD: Optional[_ChildContext] = None


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """In a forked worker, first thing: never outlive the run. The kernel kills the worker when
    its parent dies (PR_SET_PDEATHSIG; the parent forks from its main thread, which lives as long
    as the process); a parent that died before that took effect shows as a changed parent pid.
    Where prctl is missing, a thread watches the parent pid. Ctrl-C and SIGTERM are the parent's
    to handle: it stops the workers itself (a worker dying of its own SIGTERM would report its
    whole batch as failed). The run's lock is not inherited (fsutil closes it at fork)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _child_init(parent: int, make_syncer: MakeSyncer, threads: int) -> None:
    global _CHILD
    die_with_parent(parent)
    _CHILD = _ChildContext(ThreadRunner(make_syncer, threads))


def _portable(error: BaseException) -> BaseException:
    """Errors cross the process boundary as plain messages of the engine's own types."""
    if isinstance(error, FilesystemError):
        return FilesystemError(str(error))
    if isinstance(error, MirrorSyncError):
        return MirrorSyncError(str(error))
    return MirrorSyncError(f"unexpected {error.__class__.__name__}: {error}")


def _child_run(tasks: list[ProjectTask]) -> list[Outcome]:
    """Runs in a worker process: the batch on its threads; outcomes in the order of `tasks`."""
    assert _CHILD is not None, "worker process was not initialised"
    runner = _CHILD.runner
    for i, task in enumerate(tasks):
        runner.workers.put(i, task)
    out: list[Outcome] = [(None, None)] * len(tasks)
    for _ in tasks:
        key, _task, (result, error) = runner.done.get()
        out[key] = (result, None if error is None else _portable(error))  # type: ignore[call-overload]
    return out


class ProcessRunner:
    """Batches of tasks to worker processes, each running `workers / processes` threads."""

    def __init__(self, make_syncer: MakeSyncer, workers: int, processes: int) -> None:
        threads = max(1, -(-workers // processes))
        self.batch_size = max(1, min(PROCESS_BATCH, threads * 4))
        self.in_flight = processes * self.batch_size * 3
        self.done: "queue.SimpleQueue[Done]" = queue.SimpleQueue()
        self.pool = ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_child_init,
            initargs=(os.getpid(), make_syncer, threads),
        )

    def submit(self, tasks: list[ProjectTask]) -> None:
        batch = self.pool.submit(_child_run, tasks)

        def settle(done: "Future[list[Outcome]]") -> None:
            try:
                outcomes = done.result()
            except BaseException as exc:  # the worker process died: every task of its batch failed
                error: Union[BaseException, None] = MirrorSyncError(f"worker process failed ({exc.__class__.__name__}: {exc})")
                for task in tasks:
                    self.done.put((task, None, error))
                return
            for task, (result, err) in zip(tasks, outcomes):
                self.done.put((task, result, err))

        batch.add_done_callback(settle)

    def next_done(self) -> Done:
        return self.done.get()

    def close(self) -> None:
        """Wait for the workers to finish what they hold; when the run is being abandoned (an
        exception on its way out: Ctrl-C, SIGTERM, a fatal error), kill them instead: whatever
        they were doing is thrown away anyway, and a file they were writing is scratch that the
        next run clears."""
        if sys.exc_info()[1] is not None:
            self.abort()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        processes = list((getattr(self.pool, "_processes", None) or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.kill()
        for process in processes:
            process.join(10)


def choose_runner(make_syncer: MakeSyncer, workers: int, tasks: int) -> Runner:
    cores = usable_cores()
    processes = min(cores, workers)
    if processes > 1 and tasks >= PROCESS_THRESHOLD:
        return ProcessRunner(make_syncer, workers, processes)
    return ThreadRunner(make_syncer, workers)
