"""A run's lock dies with the run: a large full-mirror sync (worker processes) killed with SIGKILL,
stopped with SIGTERM (alone, or with its whole process group, as cron's `timeout` and systemd do)
or with Ctrl-C leaves no process behind, and the next sync takes the lock at once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest

from mirror_sync.cores import usable_cores
from tests.support.index_tree import IndexTree
from tests.support.mirror_check import check_mirror
from tests.support.upstream_server import UpstreamServer
from tests.syncutil import cli_env, run_cli, write_config

PROJECTS = 300
STARTED_AFTER = 40  # file downloads seen upstream before the signal: the workers are busy by then


def session_processes(sid: int) -> dict[int, str]:
    """pid -> state of every process in session `sid` (a run started with start_new_session:
    its workers stay in it even when they are reparented)."""
    out: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after the command: state, ppid, pgrp, session
            out[int(entry)] = fields[0]
    return out


def living(sid: int) -> dict[int, str]:
    """The processes of the session that still run (a zombie is dead: its files are closed)."""
    return {pid: st for pid, st in session_processes(sid).items() if st not in ("Z", "X")}


def wait_until_dead(sid: int, timeout: float = 15.0) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    alive = living(sid)
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = living(sid)
    return alive


def large_upstream(tree: IndexTree) -> None:
    for i in range(PROJECTS):
        tree.add_wheel(f"bulk-{i:04d}", "1.0")
    tree.write()


class Run:
    """`mirror-sync sync` in its own session, stderr to a file."""

    def __init__(self, cfg: Path, tmp_path: Path, *args: str) -> None:
        self.stderr_path = tmp_path / f"stderr-{time.monotonic_ns()}.txt"
        self.stdout_path = self.stderr_path.with_suffix(".out")
        with open(self.stderr_path, "w") as err, open(self.stdout_path, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mirror_sync", "-c", str(cfg), "sync", *args],
                env=cli_env(), stdout=out, stderr=err, start_new_session=True,
            )
        self.sid = self.proc.pid

    def wait_for_downloads(self, upstream: UpstreamServer, count: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while len(upstream.requests("/packages/")) < count:
            assert self.proc.poll() is None, f"the run ended early: {self.stderr()}"
            assert time.monotonic() < deadline, "the run did not start downloading in time"
            time.sleep(0.02)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def kill_leftovers(self) -> None:
        for pid in living(self.sid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def big(index_tree: IndexTree, tmp_path: Path):
    if usable_cores() < 2:
        pytest.skip("worker processes need two cores")
    large_upstream(index_tree)
    with UpstreamServer(index_tree.root) as server:
        server.add_fault("/packages/", delay=0.05, times=100_000)  # slow enough to be stopped midway
        yield server


def _start(big: UpstreamServer, tmp_path: Path, *args: str) -> tuple[Path, Path, Run]:
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", big.url, mirror, workers=4, retries=0)
    run = Run(cfg, tmp_path, *args)
    run.wait_for_downloads(big, STARTED_AFTER)
    workers = session_processes(run.sid)
    assert len(workers) >= 3, f"expected the run and at least two worker processes, found {workers}"
    return cfg, mirror, run


def _next_sync_completes(cfg: Path, mirror: Path, big: UpstreamServer) -> dict:
    big.clear_faults()
    rc, summary, stderr = run_cli(cfg, "sync")
    assert rc == 0, (summary, stderr)  # not 3: nobody holds the lock
    assert summary["projects"]["total"] == PROJECTS and summary["ok"]
    assert len(check_mirror(mirror)) == PROJECTS
    return summary


def test_sigkill_of_a_large_run_leaves_no_worker_and_no_lock(big: UpstreamServer, tmp_path: Path) -> None:
    cfg, mirror, run = _start(big, tmp_path)
    try:
        os.kill(run.proc.pid, signal.SIGKILL)
        assert run.wait() == -signal.SIGKILL
        assert wait_until_dead(run.sid) == {}, "worker processes outlived their parent"
    finally:
        run.kill_leftovers()
    partial = check_mirror(mirror)  # pages published before the kill link only to good files
    assert len(partial) < PROJECTS
    _next_sync_completes(cfg, mirror, big)


def test_sigterm_stops_a_large_run_with_143_and_one_sentence(big: UpstreamServer, tmp_path: Path) -> None:
    cfg, mirror, run = _start(big, tmp_path, "--json")
    try:
        os.kill(run.proc.pid, signal.SIGTERM)
        assert run.wait() == 143
        assert wait_until_dead(run.sid) == {}
    finally:
        run.kill_leftovers()
    stderr = run.stderr()
    assert "Traceback" not in stderr, stderr
    said = [line for line in stderr.splitlines() if line.startswith("mirror-sync:")]
    assert said == ["mirror-sync: stopped by SIGTERM; the mirror stays consistent and the next run resumes"], stderr
    assert stderr.rstrip().endswith(said[0])
    assert "event=project-failed" not in stderr  # the workers were stopped, not failed
    [line] = run.stdout().splitlines()
    assert json.loads(line) == {"command": "sync", "ok": False, "error": said[0][len("mirror-sync: "):],
                                "exit_code": 143, "interrupted": True, "kind": "interrupted"}
    check_mirror(mirror)
    rc, status, _ = run_cli(cfg, "status")
    assert rc == 0 and status["last_result"] == "interrupted"
    _next_sync_completes(cfg, mirror, big)
    rc, status, _ = run_cli(cfg, "status")
    assert status["last_result"] == "ok"


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_whole_process_group(big: UpstreamServer, tmp_path: Path, signum: int, code: int) -> None:
    """cron's `timeout` and systemd signal every process of the run, a terminal's Ctrl-C too: the
    workers leave the stopping to the run."""
    cfg, mirror, run = _start(big, tmp_path)
    try:
        os.killpg(run.sid, signum)
        assert run.wait() == code
        assert wait_until_dead(run.sid) == {}
    finally:
        run.kill_leftovers()
    stderr = run.stderr()
    assert "Traceback" not in stderr and "event=project-failed" not in stderr, stderr
    last = stderr.rstrip().splitlines()[-1]
    assert last.startswith("mirror-sync: ") and "the next run resumes" in last
    check_mirror(mirror)
    _next_sync_completes(cfg, mirror, big)


HOLD_AND_FORK = r"""
import os, sys, time
from pathlib import Path
from mirror_sync.fsutil import MirrorLock, held_lock_fds
lock = MirrorLock(Path(sys.argv[1]))
lock.__enter__()
child = os.fork()
if child == 0:
    # the forked child keeps running after its parent is gone, as an orphaned worker would
    os.write(1, f"child-holds {sorted(held_lock_fds())}\n".encode())  # one write: the two processes share the pipe
    os.close(1)
    os.close(2)
    time.sleep(30)
    os._exit(0)
os.write(1, f"parent-holds {sorted(held_lock_fds())} {child}\n".encode())
os._exit(0)  # dies without unlocking, as under kill -9
"""


def test_a_forked_child_does_not_keep_the_lock(tmp_path: Path) -> None:
    """flock locks belong to the open file description, which fork shares: the child closes its
    copy at once (for every fork: the run's workers and verify's)."""
    from mirror_sync.errors import LockedError
    from mirror_sync.fsutil import MirrorLock

    lock_path = tmp_path / "mirror" / ".lock"
    lock_path.parent.mkdir()
    proc = subprocess.run([sys.executable, "-c", HOLD_AND_FORK, str(lock_path)], env=cli_env(),
                          capture_output=True, text=True, timeout=60)
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    child = int(lines["parent-holds"].rsplit(" ", 1)[1])
    try:
        assert not lines["parent-holds"].startswith("[]")
        assert lines["child-holds"] == "[]"
        assert os.path.exists(f"/proc/{child}"), "the forked child should still be running"
        with MirrorLock(lock_path):  # the parent is gone, the child lives: the lock is free
            pass
    except LockedError as exc:  # pragma: no cover - the failure this test is about
        pytest.fail(f"the lock stayed with the forked child: {exc}")
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_run_result_words() -> None:
    from mirror_sync.state import State

    assert State.run_result(True) == "ok"
    assert State.run_result(False) == "failed"
    for exc in (KeyboardInterrupt(), RuntimeError("x")):
        try:
            raise exc
        except BaseException:
            want: Optional[str] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            assert State.run_result(False) == want


VERIFY_IN_PROCESSES = """
import sys
import mirror_sync.verify as verify
verify.PARALLEL_VERIFY_FILES = 1  # worker processes for a small mirror too
from mirror_sync.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_sigkill_of_a_verify_leaves_no_worker(index_tree: IndexTree, upstream: UpstreamServer, tmp_path: Path) -> None:
    """verify hashes in worker processes too: they die with it. A FIFO in place of a file holds
    a worker in open(2) for as long as the test wants."""
    if usable_cores() < 2:
        pytest.skip("worker processes need two cores")
    for i in range(20):
        index_tree.add_wheel(f"p{i:02d}", "1.0")
    index_tree.write()
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror)
    assert run_cli(cfg, "sync")[0] == 0
    victim = sorted((mirror / "web" / "packages").rglob("*.whl"))[5]
    victim.unlink()
    os.mkfifo(victim)
    with open(tmp_path / "verify.err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", VERIFY_IN_PROCESSES, "-c", str(cfg), "verify", "--full"],
                                env=cli_env(), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(living(proc.pid)) < 3:  # the verify and its workers, one of them stuck on the FIFO
            assert proc.poll() is None, (tmp_path / "verify.err").read_text()
            assert time.monotonic() < deadline, "verify started no worker processes"
            time.sleep(0.02)
        time.sleep(0.5)
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        assert wait_until_dead(proc.pid) == {}, "verify's worker processes outlived it"
    finally:
        for pid in living(proc.pid):
            os.kill(pid, signal.SIGKILL)
    victim.unlink()
    rc, summary, _ = run_cli(cfg, "verify")  # the lock is free
    assert rc == 1 and summary["missing"] == [str(victim.relative_to(mirror / "web"))]
