"""The runners: `workers` is what runs at once, across worker processes, with no batch barrier.

The scheduling tests drive the real ProcessRunner (forked processes, pipes, signals) with a
scripted syncer whose `run` does what the task's name says: wait at a barrier, wait for a release,
or kill its own process. The cap on requests and connections is then checked end to end: a real
sync of enough projects to use worker processes, against the loopback upstream that counts them.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from mirror_sync.project_sync import ProjectResult, ProjectTask
from mirror_sync.runners import PROCESS_THRESHOLD, ProcessRunner, split_workers, worker_processes
from tests.support.index_tree import IndexTree
from tests.support.upstream_server import UpstreamServer
from tests.syncutil import run_cli, write_config

WAIT = 60.0  # s: the bound on every wait in these tests (they never need it)
CTX = multiprocessing.get_context("fork")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


needs_two_cores = pytest.mark.skipif(_cores() < 2, reason="worker processes need two cores")


# -- split_workers ------------------------------------------------------------------------------
@given(st.integers(1, 512), st.integers(1, 64))
def test_the_shares_add_up_to_workers_and_differ_by_at_most_one(workers: int, processes: int) -> None:
    shares = split_workers(workers, processes)
    assert sum(shares) == workers
    assert len(shares) == min(workers, processes)
    assert min(shares) >= 1 and max(shares) - min(shares) <= 1


@given(st.integers(1, 256), st.integers(0, 100_000), st.integers(1, 64), st.one_of(st.none(), st.floats(1e-6, 1.0)))
def test_worker_processes_only_for_big_runs_that_one_process_cannot_serve(workers: int, tasks: int, cores: int,
                                                                         rtt: Optional[float]) -> None:
    n = worker_processes(workers, tasks, cores, rtt)
    assert n in (0, min(cores, workers))
    if tasks < PROCESS_THRESHOLD or min(cores, workers) < 2:
        assert n == 0
    elif rtt is None:
        assert n == min(cores, workers)  # no measure: the processes, as for a near upstream
    else:
        # more workers, or a nearer upstream, never takes the processes away
        assert worker_processes(workers + 1, tasks, cores, rtt) >= min(n, 1) * min(cores, workers + 1)
        assert worker_processes(workers, tasks, cores, rtt / 2) >= n


def test_the_module_doctests_hold() -> None:
    import doctest

    import mirror_sync.runners

    assert doctest.testmod(mirror_sync.runners).failed == 0


def test_a_client_measures_the_round_trip_of_its_connections(index_tree: IndexTree) -> None:
    from mirror_sync import http

    index_tree.write()
    with UpstreamServer(index_tree.root) as server:
        client = http.HttpClient(1, 10, 0)
        try:
            with client.get(server.url) as response:
                assert response.status_code == 200
        finally:
            client.close()
    rtt = http.round_trip()
    if not hasattr(socket, "TCP_INFO"):
        assert rtt is None
    else:
        assert rtt is not None and 0 < rtt < 1.0  # loopback: microseconds


def test_split_workers_examples() -> None:
    assert split_workers(10, 2) == [5, 5]
    assert split_workers(5, 2) == [3, 2]
    assert split_workers(1, 2) == [1]
    assert split_workers(64, 3) == [22, 21, 21]


# -- the process runner, scripted ---------------------------------------------------------------
class _Scripted:
    """A syncer whose run() does what the task's name says (see the module docstring)."""

    def __init__(self, barrier: Any, release: Any, running: Any, peak: Any) -> None:
        self.barrier, self.release, self.running, self.peak = barrier, release, running, peak
        self.upstream = SimpleNamespace(client=SimpleNamespace(close=lambda: None))

    def run(self, task: ProjectTask) -> ProjectResult:
        name = task.canonical
        if name == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        if name.startswith("held") and not self.release.wait(WAIT):
            raise AssertionError("never released")
        if name.startswith("together"):
            with self.running.get_lock():
                self.running.value += 1
                self.peak.value = max(self.peak.value, self.running.value)
            try:
                self.barrier.wait(WAIT)
            finally:
                with self.running.get_lock():
                    self.running.value -= 1
        if name.startswith("fails"):
            raise ValueError(f"{name} went wrong")
        return ProjectResult(serial=os.getpid(), downloaded=int(name.rsplit("-", 1)[-1]) if name[-1].isdigit() else 0)


def _task(name: str) -> ProjectTask:
    return ProjectTask(canonical=name, display=name, root_serial=None, want=None, selection="",
                       previous=[], previous_fingerprint=None, previous_selection=None)


class _Flag:
    """A release flag that a killed waiter cannot wedge: multiprocessing.Event.set() waits for
    every sleeper to acknowledge its wake-up, forever when one of them was killed while waiting
    (as the tests that kill or abort workers do). A shared byte, polled within the bound."""

    def __init__(self) -> None:
        self._value = CTX.RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._value.value and time.monotonic() < deadline:
            time.sleep(0.005)
        return bool(self._value.value)


class _Harness:
    def __init__(self, workers: int, processes: int, together: Optional[int] = None) -> None:
        self.release = _Flag()
        self.running = CTX.Value("i", 0)
        self.peak = CTX.Value("i", 0)
        self.barrier = CTX.Barrier(together or workers)
        syncer = _Scripted(self.barrier, self.release, self.running, self.peak)

        def make(_pool: Any) -> Any:  # called in each worker, after the fork
            return syncer

        self.runner = ProcessRunner(make, workers, processes)

    def outcomes(self, count: int) -> list[tuple[ProjectTask, Optional[ProjectResult], Optional[BaseException]]]:
        """The next `count` outcomes, each within the bound (queue.Empty if one does not come)."""
        return [self.runner.done.get(timeout=WAIT) for _ in range(count)]

    def close(self) -> None:
        self.release.set()
        self.runner.close()


Harnesses = Callable[..., "_Harness"]


@pytest.fixture
def harness() -> Iterator[Harnesses]:
    made: list[_Harness] = []

    def make(workers: int, processes: int, together: Optional[int] = None) -> _Harness:
        made.append(_Harness(workers, processes, together))
        return made[-1]

    yield make
    for h in made:
        h.close()
        for child in h.runner.children:
            assert not child.process.is_alive()


@needs_two_cores
def test_a_project_that_takes_long_holds_back_no_other_outcome(harness: Harnesses) -> None:
    """No batch barrier: while one project is held, every other one's outcome comes back, from
    both processes, including the process that holds it."""
    h = harness(4, 2)
    h.runner.submit([_task("held")] + [_task(f"quick-{i}") for i in range(40)])
    quick = h.outcomes(40)
    assert sorted(t.canonical for t, _r, _e in quick) == sorted(f"quick-{i}" for i in range(40))
    assert all(e is None and r is not None for _t, r, e in quick)
    pids = {r.serial for _t, r, _e in quick if r is not None}
    assert pids == {c.process.pid for c in h.runner.children}
    assert h.runner.done.empty()  # the held one is still running
    h.release.set()
    [(task, result, error)] = h.outcomes(1)
    assert task.canonical == "held" and error is None and result is not None


@needs_two_cores
def test_workers_projects_run_at_once_across_processes(harness: Harnesses) -> None:
    """5 workers over 2 processes (shares 3 and 2): five projects at once — the barrier lets
    them through only when all five are there (the bound on requests is checked end to end below)."""
    h = harness(5, 2)
    assert h.runner.shares == [3, 2]
    h.runner.submit([_task(f"together-{i}") for i in range(5)])
    got = h.outcomes(5)
    assert all(e is None for _t, _r, e in got), [e for _t, _r, e in got if e]
    assert h.peak.value == 5
    assert len({r.serial for _t, r, _e in got if r is not None}) == 2  # both processes


@needs_two_cores
def test_errors_cross_the_process_boundary_as_the_engines_own(harness: Harnesses) -> None:
    from mirror_sync.errors import MirrorSyncError

    h = harness(2, 2)
    h.runner.submit([_task("fails-1"), _task("ok-2")])
    by_name = {t.canonical: (r, e) for t, r, e in h.outcomes(2)}
    assert by_name["ok-2"][1] is None and by_name["ok-2"][0] is not None and by_name["ok-2"][0].downloaded == 2
    error = by_name["fails-1"][1]
    assert isinstance(error, MirrorSyncError) and str(error) == "unexpected ValueError: fails-1 went wrong"


@needs_two_cores
def test_a_worker_process_that_dies_fails_what_it_held_and_the_other_goes_on(harness: Harnesses) -> None:
    h = harness(2, 2)  # one thread per process
    h.runner.submit([_task("die")] + [_task(f"quick-{i}") for i in range(30)])
    got = h.outcomes(31)
    assert sorted(t.canonical for t, _r, _e in got) == sorted(["die"] + [f"quick-{i}" for i in range(30)])
    failed = {t.canonical: str(e) for t, _r, e in got if e is not None}
    dead = [c for c in h.runner.children if not c.alive]
    assert len(dead) == 1
    assert failed["die"] == f"project die: the worker process syncing it (pid {dead[0].process.pid}) was killed by SIGKILL"
    assert all("was killed by SIGKILL" in why for why in failed.values())
    assert len(failed) <= 1 + 2  # what it held: its thread's task and its read-ahead
    h.runner.submit([_task("after-1")])  # the survivor takes the rest of the run
    [(task, _result, error)] = h.outcomes(1)
    assert task.canonical == "after-1" and error is None


@needs_two_cores
def test_when_no_worker_process_is_left_every_task_fails_at_once(harness: Harnesses) -> None:
    h = harness(2, 2)
    for child in h.runner.children:
        child.process.kill()
    for child in h.runner.children:
        child.process.join(WAIT)
    deadline = time.monotonic() + WAIT
    while any(c.alive for c in h.runner.children):  # the reader sees them go
        assert time.monotonic() < deadline
        time.sleep(0.01)
    h.runner.submit([_task("late-1"), _task("late-2")])
    got = h.outcomes(2)
    assert [str(e) for _t, _r, e in got] == [f"project late-{i}: no worker process is left to sync it" for i in (1, 2)]


@needs_two_cores
def test_close_ends_the_workers_and_abort_kills_them(harness: Harnesses) -> None:
    h = harness(2, 2)
    h.runner.submit([_task("quick-1")])
    h.outcomes(1)
    h.runner.close()
    assert [c.process.exitcode for c in h.runner.children] == [0, 0]

    h2 = harness(2, 2)
    h2.runner.submit([_task("held-1"), _task("held-2")])
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        h2.runner.close()  # on the way out of a stopped run: killed, not waited for
    assert [c.process.exitcode for c in h2.runner.children] == [-signal.SIGKILL, -signal.SIGKILL]


# -- the cap, end to end ------------------------------------------------------------------------
def test_the_upstream_counts_requests_in_flight(index_tree: IndexTree) -> None:
    """The counter the cap test relies on: three requests held at once count three."""
    index_tree.add_wheel("alpha", "1.0")
    index_tree.write()
    with UpstreamServer(index_tree.root) as server:
        server.add_fault("/simple/alpha/", delay=30, times=3)
        errors: queue.SimpleQueue[BaseException] = queue.SimpleQueue()

        def get() -> None:
            try:
                requests.get(server.url + "alpha/", timeout=WAIT)
            except requests.RequestException as exc:  # the server's stop ends the held answers
                errors.put(exc)

        threads = [threading.Thread(target=get) for _ in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + WAIT
        while server.peak_requests < 3:
            assert time.monotonic() < deadline, server.peak_requests
            time.sleep(0.01)
        server.stop()
        for t in threads:
            t.join(WAIT)
    assert server.peak_requests == 3


@needs_two_cores
def test_workers_bounds_requests_and_connections_across_worker_processes(index_tree: IndexTree, tmp_path: Path) -> None:
    """A run big enough for worker processes: 3 workers are 3 requests and 3 connections to
    upstream at any moment, pages and files together, whatever the processes (shares 2 + 1)."""
    count = PROCESS_THRESHOLD + 20
    for i in range(count):
        index_tree.add_wheel(f"bulk-{i:04d}", "1.0")
    for i in range(0, count, 25):
        index_tree.add_wheel(f"bulk-{i:04d}", "2.0")
        index_tree.add_sdist(f"bulk-{i:04d}", "2.0")
    index_tree.write()
    with UpstreamServer(index_tree.root) as server:
        server.add_fault("/packages/", delay=0.02, times=100_000)  # requests overlap
        server.add_fault("/simple/bulk", delay=0.02, times=100_000)
        cfg = write_config(tmp_path / "m.yml", server.url, tmp_path / "mirror", workers=3, retries=0)
        rc, summary, stderr = run_cli(cfg, "sync", timeout=300)
        assert rc == 0, (summary, stderr)
        assert summary["projects"]["synced"] == count
        assert server.peak_requests <= 3, server.peak_requests
        assert server.peak_connections <= 3, server.peak_connections
        assert server.connections_accepted <= 3 + 1, server.connections_accepted  # the root's, then the workers'
