"""Where project tasks run: worker threads in this process, or, for large runs, worker processes
that each run a share of the threads, so the engine uses every core instead of one GIL.

Both take tasks with `submit` and hand back each outcome, in completion order, from `next_done`:
(task, result, None) or (task, None, error). Outcomes travel through queues, not one Future per
task: on a run of tens of thousands of small projects the futures' condition variables and the
waiters of `concurrent.futures.wait` cost more than the bookkeeping they provide.

`workers` is the number of requests in flight to upstream, pages and files together, and of
connections: in one process its client keeps to it; with worker processes each has an exact share
(`split_workers`: the shares add up to `workers`), runs that many project threads, and its client
keeps to the share. Work flows one task at a time: the parent sends a worker process a task
whenever it holds fewer than its share (and a small read-ahead), and each outcome comes back as
soon as it is done — no batch waits for its slowest project.
"""
from __future__ import annotations

import ctypes
import gc
import itertools
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Callable, Optional, Protocol

from .cores import usable_cores
from .errors import FilesystemError, MirrorSyncError
from .project_sync import ProjectResult, ProjectSyncer, ProjectTask

# a run with at least this many projects to sync uses processes (when there is more than one core)
PROCESS_THRESHOLD = 256
PROCESS_BATCH = 16  # tasks per submit: how the caller hands them over, not a unit of work
READ_AHEAD = 2  # tasks a worker process holds beyond its threads, so none waits for the next one
RESULT_WAIT = 1.0  # s: the parent's reader wakes at least this often (a bounded wait)
CLOSE_WAIT = 30.0  # s: a worker process told to end gets this long, then it is killed
# what a request costs the engine in CPU, all in (request, hash, write, metadata, page, publish):
# 0.74-0.86 ms on the loopback benchmark; and how much of a core one process's threads may need
# before worker processes pay for their memory (see worker_processes)
CPU_PER_REQUEST = 0.001
ONE_PROCESS_CPU = 0.5

Outcome = tuple[Optional[ProjectResult], Optional[BaseException]]
Done = tuple[ProjectTask, Optional[ProjectResult], Optional[BaseException]]
MakeSyncer = Callable[[Optional[ThreadPoolExecutor]], ProjectSyncer]


class Runner(Protocol):
    batch_size: int
    in_flight: int

    def submit(self, tasks: list[ProjectTask]) -> None: ...

    def next_done(self, timeout: Optional[float] = None) -> Optional[Done]:
        """The next finished task; None when none finished within `timeout` seconds."""
        ...

    def close(self) -> None: ...


def _run_one(syncer: ProjectSyncer, task: ProjectTask) -> Outcome:
    try:
        return syncer.run(task), None
    except BaseException as exc:  # handed to the caller, which decides (one project, or the whole run)
        return None, exc


class _Sink(Protocol):
    def put(self, item: tuple[object, ProjectTask, Outcome]) -> None: ...


class _Workers:
    """`threads` threads running tasks from a queue; outcomes go to `out` as (key, task, outcome)."""

    def __init__(self, syncer: ProjectSyncer, threads: int, out: _Sink) -> None:
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
        keep_malloc_lean()
        self.batch_size = workers
        self.in_flight = workers * 4
        self.file_pool = ThreadPoolExecutor(workers, thread_name_prefix="file")
        self.syncer = make_syncer(self.file_pool)
        self.done: "queue.SimpleQueue[tuple[object, ProjectTask, Outcome]]" = queue.SimpleQueue()
        self.workers = _Workers(self.syncer, workers, self.done)

    def submit(self, tasks: list[ProjectTask]) -> None:
        for task in tasks:
            self.workers.put(None, task)

    def next_done(self, timeout: Optional[float] = None) -> Optional[Done]:
        try:
            _key, task, (result, error) = self.done.get(timeout=timeout)
        except queue.Empty:
            return None
        return task, result, error

    def close(self) -> None:
        self.workers.stop()
        self.file_pool.shutdown(wait=True, cancel_futures=True)
        self.syncer.upstream.client.close()


PR_SET_PDEATHSIG = 1
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters
M_ARENA_MAX = -8
MALLOC_ARENAS = 2
MMAP_THRESHOLD = 128 * 1024


def keep_malloc_lean() -> None:
    """Before a process starts its worker threads: glibc's malloc would give each thread an arena
    of its own (up to 8 per core) and, once a freed 256 KB download chunk has raised its sliding
    mmap threshold, keep such chunks in those arenas instead of handing them back: memory held and
    not used, 11 MB per worker process at W=10 and 18 MB at W=32 (two workers, the latency
    benchmark's 500 projects: peak tree PSS 77 -> 55 MB and 95 -> 58 MB). Two arenas, and the
    default threshold held fixed, so buffers of 128 KB and more are mapped and unmapped."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):  # not glibc: its own defaults
        pass


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


def _portable(error: BaseException) -> BaseException:
    """Errors cross the process boundary as plain messages of the engine's own types."""
    if isinstance(error, FilesystemError):
        return FilesystemError(str(error))
    if isinstance(error, MirrorSyncError):
        return MirrorSyncError(str(error))
    return MirrorSyncError(f"unexpected {error.__class__.__name__}: {error}")


def split_workers(workers: int, processes: int) -> list[int]:
    """`workers` requests in flight shared out over worker processes: as even as can be, each at
    least 1, and the shares add up to exactly `workers` (so do the processes' connections).

    >>> split_workers(10, 2), split_workers(5, 2), split_workers(3, 4)
    ([5, 5], [3, 2], [1, 1, 1])
    """
    count = max(1, min(processes, workers))
    base, extra = divmod(max(1, workers), count)
    return [base + (1 if i < extra else 0) for i in range(count)]


class _ChildQueue:
    """A worker process's outcomes: (key, task, outcome), or None once its threads have ended."""

    def __init__(self) -> None:
        self.items: queue.SimpleQueue[Optional[tuple[object, ProjectTask, Outcome]]] = queue.SimpleQueue()

    def put(self, item: Optional[tuple[object, ProjectTask, Outcome]]) -> None:
        self.items.put(item)


def _child_main(parent: int, share: int, make_syncer: MakeSyncer, tasks: Connection, results: Connection,
                inherited: list[Connection]) -> None:
    """A worker process: `share` project threads (and as many file threads) take the tasks the
    parent sends, one at a time, and each outcome goes back as soon as it is done, as
    (key, result, error) with the error made portable. (None, None, error): the process could not
    start. None from the parent, or its end of the pipe closing: finish and exit."""
    die_with_parent(parent)
    keep_malloc_lean()
    for conn in inherited:  # the other workers' pipe ends, inherited at fork
        conn.close()
    from .http import limit_process_requests

    limit_process_requests(share)  # this process's clients keep to its share of `workers`
    try:
        file_pool = ThreadPoolExecutor(share, thread_name_prefix="file")
        syncer = make_syncer(file_pool)
    except Exception as exc:
        try:
            results.send((None, None, _portable(exc)))
        except OSError:
            pass
        raise SystemExit(1)
    out = _ChildQueue()
    workers = _Workers(syncer, share, out)

    def send_outcomes() -> None:
        while True:
            item = out.items.get()
            if item is None:
                return
            key, task, (result, error) = item
            try:
                try:
                    results.send((key, result, None if error is None else _portable(error)))
                except OSError:
                    raise
                except Exception as exc:  # an outcome that does not pickle is still an outcome
                    results.send((key, None, MirrorSyncError(
                        f"project {task.canonical}: its outcome could not be handed over ({exc.__class__.__name__}: {exc})")))
            except OSError:  # the parent is gone (this process is about to be killed with it)
                os._exit(1)

    sender = threading.Thread(target=send_outcomes, name="outcomes", daemon=True)
    sender.start()
    while True:
        try:
            item = tasks.recv()
        except (EOFError, OSError):
            break
        if item is None:
            break
        key, task = item
        workers.put(key, task)
    workers.stop()
    out.put(None)
    sender.join()
    file_pool.shutdown(wait=True, cancel_futures=True)
    syncer.upstream.client.close()


@dataclass(eq=False)
class _Child:
    """The parent's view of one worker process."""

    share: int
    process: BaseProcess
    tasks: Connection  # parent -> worker: (key, task), None to end
    results: Connection  # worker -> parent: (key, result, error)
    capacity: int  # tasks it may hold at once
    outstanding: dict[int, ProjectTask] = field(default_factory=dict)
    alive: bool = True
    failure: Optional[str] = None  # what it reported before it ended


def _how_it_ended(child: _Child) -> str:
    code = child.process.exitcode
    if child.failure is not None:
        return f"could not start ({child.failure})"
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    if code is not None:
        return f"ended with exit status {code}"
    return "stopped answering"


class ProcessRunner:
    """Tasks to worker processes one at a time, each process with an exact share of `workers`."""

    def __init__(self, make_syncer: MakeSyncer, workers: int, processes: int) -> None:
        self.shares = split_workers(workers, processes)
        self.batch_size = PROCESS_BATCH
        held = sum(share + READ_AHEAD for share in self.shares)
        self.in_flight = 2 * held  # what the processes hold, and as much again ready in the parent
        self.done: queue.SimpleQueue[Done] = queue.SimpleQueue()
        self._pending: deque[tuple[int, ProjectTask]] = deque()
        self._keys = itertools.count()
        self._lock = threading.Lock()
        from .http import close_idle_connections

        close_idle_connections()  # no socket of this process's clients is inherited (see there)
        # what this process holds now (modules, the root index, the state's tables) is never
        # collected by the workers' garbage collectors: a collection writes to every object it
        # visits, which would copy each inherited page into every worker
        gc.freeze()
        for stream in (sys.stdout, sys.stderr):  # a worker would write out what is buffered again
            if stream is not None:
                stream.flush()
        ctx = multiprocessing.get_context("fork")
        parent = os.getpid()
        self.children: list[_Child] = []
        mine: list[Connection] = []
        for i, share in enumerate(self.shares):
            task_r, task_w = ctx.Pipe(duplex=False)
            result_r, result_w = ctx.Pipe(duplex=False)
            process = ctx.Process(target=_child_main, name=f"mirror-sync-worker-{i}", daemon=True,
                                  args=(parent, share, make_syncer, task_r, result_w, list(mine)))
            process.start()
            task_r.close()
            result_w.close()
            mine += [task_w, result_r]
            self.children.append(_Child(share, process, task_w, result_r, share + READ_AHEAD))
        self._reader = threading.Thread(target=self._read, name="worker-outcomes", daemon=True)
        self._reader.start()

    # -- the caller's side ------------------------------------------------------------------
    def submit(self, tasks: list[ProjectTask]) -> None:
        with self._lock:
            self._pending.extend((next(self._keys), task) for task in tasks)
            self._dispatch()

    def next_done(self, timeout: Optional[float] = None) -> Optional[Done]:
        try:
            return self.done.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Tell the workers to end once they are done (they hold nothing after a complete run)
        and wait for them, bounded; when the run is being abandoned (an exception on its way
        out: Ctrl-C, SIGTERM, a fatal error), kill them instead: whatever they were doing is
        thrown away anyway, and a file they were writing is scratch that the next run clears."""
        if sys.exc_info()[1] is not None:
            self.abort()
            return
        with self._lock:
            for child in self.children:
                if child.alive:
                    try:
                        child.tasks.send(None)
                    except OSError:
                        pass
        deadline = time.monotonic() + CLOSE_WAIT
        for child in self.children:
            child.process.join(max(0.0, deadline - time.monotonic()))
        self._end()

    def abort(self) -> None:
        for child in self.children:
            if child.process.is_alive():
                child.process.kill()
        for child in self.children:
            child.process.join(10)
        self._end()

    def _end(self) -> None:
        for child in self.children:
            if child.process.is_alive():  # did not end in time: nothing it does is wanted now
                child.process.kill()
                child.process.join(10)
        self._reader.join(RESULT_WAIT * 5)
        for child in self.children:
            child.tasks.close()
            child.results.close()

    # -- the parent's reader thread -----------------------------------------------------------
    def _dispatch(self) -> None:
        """With the lock held: pending tasks to the live workers with room, the emptiest first."""
        while self._pending:
            room = [c for c in self.children if c.alive and len(c.outstanding) < c.capacity]
            if not room:
                if not any(c.alive for c in self.children):
                    self._fail_pending("no worker process is left to sync it")
                return
            child = max(room, key=lambda c: (c.capacity - len(c.outstanding)) / c.capacity)
            key, task = self._pending.popleft()
            child.outstanding[key] = task
            try:
                child.tasks.send((key, task))
            except (OSError, ValueError):  # it died: the reader buries it; the task goes elsewhere
                del child.outstanding[key]
                self._pending.appendleft((key, task))
                child.capacity = len(child.outstanding)

    def _fail_pending(self, why: str) -> None:
        while self._pending:
            _key, task = self._pending.popleft()
            self.done.put((task, None, MirrorSyncError(f"project {task.canonical}: {why}")))

    def _read(self) -> None:
        """Outcomes as they come; a worker process that ends fails the tasks it held."""
        try:
            while True:
                with self._lock:
                    live = [c for c in self.children if c.alive]
                if not live:
                    return
                by_handle: dict[Any, _Child] = {}
                for child in live:
                    by_handle[child.results] = child
                for child in live:
                    by_handle[child.process.sentinel] = child
                ready = wait(list(by_handle), timeout=RESULT_WAIT)
                for handle in sorted(ready, key=lambda h: not isinstance(h, Connection)):  # outcomes first
                    child = by_handle[handle]
                    if not child.alive:
                        continue
                    if isinstance(handle, Connection):
                        self._receive(child)
                        while child.alive and child.results.poll(0):  # all that is there, in one wake
                            self._receive(child)
                    else:  # the process ended: what it sent before is still in the pipe
                        while child.alive and child.results.poll(0):
                            self._receive(child)
                        self._bury(child)
        except Exception as exc:  # never leave the caller waiting for outcomes that cannot come
            with self._lock:
                for child in self.children:
                    child.alive = False
                    for task in child.outstanding.values():
                        self._pending.append((-1, task))
                    child.outstanding.clear()
                self._fail_pending(f"the worker processes were lost (unexpected {exc.__class__.__name__}: {exc})")
            for child in self.children:
                if child.process.is_alive():
                    child.process.kill()

    def _receive(self, child: _Child) -> None:
        try:
            key, result, error = child.results.recv()
        except (EOFError, OSError):
            self._bury(child)
            return
        if key is None:
            child.failure = str(error)
            return
        with self._lock:
            task = child.outstanding.pop(key)
            self.done.put((task, result, error))
            self._dispatch()

    def _bury(self, child: _Child) -> None:
        """A worker process ended: the tasks it held fail with one sentence, the rest go to the others."""
        child.process.join(RESULT_WAIT)
        with self._lock:
            if not child.alive:
                return
            child.alive = False
            lost = list(child.outstanding.values())
            child.outstanding.clear()
            how = _how_it_ended(child)
            for task in lost:
                self.done.put((task, None, MirrorSyncError(
                    f"project {task.canonical}: the worker process syncing it (pid {child.process.pid}) {how}")))
            self._dispatch()


def worker_processes(workers: int, tasks: int, cores: int, round_trip: Optional[float]) -> int:
    """How many worker processes a run gets; 0: threads in this process.

    Processes are for runs that would keep one interpreter's lock busy: enough projects
    (PROCESS_THRESHOLD), more than one core, and requests that can complete faster than one
    process handles them. `workers` requests in flight over a round trip of `round_trip` seconds
    complete at most workers / round_trip times a second; at CPU_PER_REQUEST each, one process
    serves them when that is under ONE_PROCESS_CPU of a core (a far upstream: over a 50 ms round
    trip up to 25 workers), and saves the memory of the workers' interpreters.

    >>> worker_processes(10, 5000, 2, 0.050), worker_processes(32, 5000, 2, 0.050), worker_processes(8, 5000, 2, 0.0001)
    (0, 2, 2)
    >>> worker_processes(8, 100, 2, None), worker_processes(8, 5000, 1, None), worker_processes(8, 5000, 4, None)
    (0, 0, 4)
    """
    processes = min(cores, workers)
    if processes < 2 or tasks < PROCESS_THRESHOLD:
        return 0
    if round_trip is not None and workers * CPU_PER_REQUEST < ONE_PROCESS_CPU * round_trip:
        return 0
    return processes


def choose_runner(make_syncer: MakeSyncer, workers: int, tasks: int) -> Runner:
    from .http import round_trip

    processes = worker_processes(workers, tasks, usable_cores(), round_trip())
    if processes:
        return ProcessRunner(make_syncer, workers, processes)
    return ThreadRunner(make_syncer, workers)
