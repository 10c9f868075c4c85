"""Check every published page and file against the state; optionally repair."""
from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar

from .clock import utc_iso
from .config import Config
from .cores import usable_cores
from .download import Downloader, hash_file
from .errors import MirrorSyncError
from .fsutil import MirrorLock, write_atomic
from .http import HttpClient
from .metadata import wheel_metadata
from .models import MirroredFile
from .project_sync import PAGE_NAMES
from .publish import Publisher
from .reports import Failure, VerifyReport
from .state import ProjectRow, State

log = logging.getLogger("mirror_sync")


T = TypeVar("T")

PARALLEL_VERIFY_FILES = 4000  # from this many files on, worker processes hash them
VERIFY_CHUNK = 512

# (path, size, sha256, mtime_ns, metadata sha256 or None)
CheckItem = tuple[str, int, str, int, Optional[str]]
# (problem: None | "missing" | "corrupt" | "touched", the file's mtime_ns when touched, the .metadata's problem)
FileCheck = tuple[Optional[str], Optional[int], Optional[str]]


def _check_item(f: MirroredFile) -> CheckItem:
    return (f.path, f.size, f.sha256, f.mtime_ns, f.metadata_sha256)


READ_AHEAD = 32  # files opened ahead of the one being hashed, with a read-ahead hint each


class _Opened:
    """A file (and its .metadata) opened ahead of use; -1 where opening failed as missing."""

    __slots__ = ("item", "fd", "meta_fd")

    def __init__(self, web: str, item: CheckItem, full: bool) -> None:
        self.item = item
        target = os.path.join(web, item[0])
        self.fd = _open_ahead(target) if full else -1
        self.meta_fd = _open_ahead(target + ".metadata") if item[4] is not None else -1

    def close(self) -> None:
        for fd in (self.fd, self.meta_fd):
            if fd >= 0:
                os.close(fd)


def _open_ahead(path: str) -> int:
    """Open `path` and ask the kernel to start reading it now (cold caches: many reads in flight
    instead of one per process); -1 when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return -1
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
    return fd


OPENER_THREADS = 8  # opening a file with a cold cache waits for its inode: several waits overlap
OPEN_GROUP = 8  # items opened per task on those threads

X = TypeVar("X")
Y = TypeVar("Y")


def _prefetched(items: list[X], open_one: Callable[[X], Y], close_one: Callable[[Y], None]) -> Iterator[Y]:
    """open_one(item) for each item, in order; the opening runs up to READ_AHEAD items ahead on
    a few threads. Whatever was opened and not consumed is closed when the iteration ends."""
    groups = [items[i:i + OPEN_GROUP] for i in range(0, len(items), OPEN_GROUP)]

    def open_group(group: list[X]) -> list[Y]:
        done: list[Y] = []
        try:
            for item in group:
                done.append(open_one(item))
        except BaseException:
            for opened in done:
                close_one(opened)
            raise
        return done

    window: deque[Future[list[Y]]] = deque()
    pending = iter(groups)
    with ThreadPoolExecutor(OPENER_THREADS, thread_name_prefix="open") as pool:
        try:
            for group in islice(pending, max(1, READ_AHEAD // OPEN_GROUP)):
                window.append(pool.submit(open_group, group))
            while window:
                batch = window.popleft().result()
                nxt = next(pending, None)
                if nxt is not None:
                    window.append(pool.submit(open_group, nxt))
                for i, opened in enumerate(batch):
                    try:
                        yield opened
                    except BaseException:
                        for rest in batch[i + 1:]:
                            close_one(rest)
                        raise
        finally:
            for fut in window:
                fut.cancel()
            for fut in window:
                if not fut.cancelled():
                    try:
                        for opened in fut.result():
                            close_one(opened)
                    except Exception:
                        pass


def _hash_fd(fd: int) -> str:
    digest = hashlib.sha256()
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return digest.hexdigest()
        digest.update(chunk)


def _check_opened(web: str, opened: _Opened, full: bool) -> FileCheck:
    """Size and mtime against the state (a changed mtime, or `full`, re-hashes); the .metadata
    file's hash. Pure: runs in worker processes too."""
    path, size, sha256, mtime_ns, meta_sha = opened.item
    target = os.path.join(web, path)
    problem: Optional[str] = None
    new_mtime: Optional[int] = None
    try:
        st = os.fstat(opened.fd) if opened.fd >= 0 else os.stat(target)
    except FileNotFoundError:
        problem = "missing"
    else:
        if st.st_size != size:
            problem = "corrupt"
        elif full or st.st_mtime_ns != mtime_ns:
            got = _hash_fd(opened.fd) if opened.fd >= 0 else hash_file(target)[1]
            if got != sha256:
                problem = "corrupt"
            elif st.st_mtime_ns != mtime_ns:
                problem, new_mtime = "touched", st.st_mtime_ns
    meta_problem: Optional[str] = None
    if meta_sha is not None:
        if opened.meta_fd < 0:
            meta_problem = "missing"
        elif _hash_fd(opened.meta_fd) != meta_sha:
            meta_problem = "corrupt"
    return problem, new_mtime, meta_problem


def check_files(web: str, items: list[CheckItem], full: bool) -> list[FileCheck]:
    """Check each item (see _check_opened), the next files already opened (and being read in)
    meanwhile."""
    out: list[FileCheck] = []
    for opened in _prefetched(items, lambda item: _Opened(web, item, full), _Opened.close):
        try:
            out.append(_check_opened(web, opened, full))
        finally:
            opened.close()
    return out


def _check_chunk(web: str, full: bool, chunk: list[MirroredFile]) -> list[FileCheck]:
    return check_files(web, [_check_item(f) for f in chunk], full)


# (project, expected sha256 of index.html / index.v1_html, of index.v1_json)
PageItem = tuple[str, Optional[str], Optional[str]]


def check_pages(simple: str, items: list[PageItem]) -> list[list[tuple[str, str]]]:
    """For each project, its page files that are missing or do not hash as the state says (the
    next projects' pages opened and being read in meanwhile)."""
    names = PAGE_NAMES  # index.html, index.v1_html (the same bytes), index.v1_json

    def open_pages(item: PageItem) -> tuple[PageItem, list[int]]:
        return item, [_open_ahead(os.path.join(simple, item[0], page)) for page in names]

    def close_pages(opened: tuple[PageItem, list[int]]) -> None:
        for fd in opened[1]:
            if fd >= 0:
                os.close(fd)

    out: list[list[tuple[str, str]]] = []
    for opened in _prefetched(items, open_pages, close_pages):
        (_name, html_sha, json_sha), fds = opened
        bad = []
        try:
            for page, expected, fd in zip(names, (html_sha, html_sha, json_sha), fds):
                if fd < 0:
                    bad.append((page, "missing"))
                elif _hash_fd(fd) != expected:
                    bad.append((page, "corrupt"))
        finally:
            close_pages(opened)
        out.append(bad)
    return out


def _check_page_chunk(simple: str, chunk: list[ProjectRow]) -> list[list[tuple[str, str]]]:
    return check_pages(simple, [(r.name, r.html_sha256, r.json_sha256) for r in chunk])


def _list_chunk(web: str, chunk: list[str]) -> list[list[str]]:
    return [list_files(web, top) for top in chunk]


def list_files(web: str, top: str) -> list[str]:
    """Every file under web/<top>, as paths relative to web/."""
    found: list[str] = []
    for dirpath, _dirnames, filenames in os.walk(os.path.join(web, top)):
        rel_dir = os.path.relpath(dirpath, web)
        found.extend(os.path.join(rel_dir, name) for name in filenames)
    return found


class Verifier:
    def __init__(self, config: Config, *, full: bool = False, repair: bool = False) -> None:
        self.config = config
        self.full = full
        self.repair = repair
        self.missing: list[str] = []
        self.corrupt: list[str] = []
        self.orphans: list[str] = []
        self.failures: list[Failure] = []
        self.repaired = 0
        self.removed = 0
        self.checked_files = 0
        self.checked_pages = 0
        self._pool: Optional[ProcessPoolExecutor] = None

    def run(self) -> VerifyReport:
        cfg = self.config
        if not cfg.state_path.exists():
            raise MirrorSyncError(f"{cfg.directory} holds no mirror state yet; run 'sync' first")
        started = time.time()
        with MirrorLock(cfg.lock_path):
            state = State(cfg.state_path)
            client: Optional[HttpClient] = None
            try:
                if self.repair:
                    client = HttpClient(cfg.workers, cfg.timeout, cfg.retries, deadline=cfg.deadline)
                downloader = (
                    Downloader(client, cfg.web, retries=cfg.retries, fsync=cfg.fsync, max_file_size=None) if client else None
                )
                # repair writes pages only through the publisher, after the files they link to
                publisher = Publisher(state, cfg.web, None, fsync=cfg.fsync) if self.repair else None
                self._pool = self._make_pool(state)
                try:
                    referenced = self._check_files(state, downloader)
                    self._check_pages(state, publisher)
                    self._check_root(state)
                    self._check_orphans(referenced)
                    self._check_orphan_pages(state, publisher)
                finally:
                    if self._pool is not None:
                        self._pool.shutdown(cancel_futures=True)
                        self._pool = None
                if publisher is not None:
                    publisher.publish_root(state.get_meta_int("mirror_serial"))
                report = VerifyReport(
                    full=self.full,
                    repair=self.repair,
                    duration_s=round(time.time() - started, 3),
                    checked_pages=self.checked_pages,
                    checked_files=self.checked_files,
                    missing=self.missing,
                    corrupt=self.corrupt,
                    orphans=self.orphans,
                    repaired=self.repaired,
                    removed=self.removed,
                    failures=self.failures,
                )
                state.set_meta("last_verify", utc_iso(time.time()))
                state.set_meta("last_verify_result", "ok" if report.ok else "failed")
            finally:
                if client is not None:
                    client.close()
                state.close()
        return report

    # -- files ----------------------------------------------------------------------------------
    def _check_files(self, state: State, downloader: Optional[Downloader]) -> set[str]:
        referenced: set[str] = set()
        updates: list[tuple[str, int]] = []  # (path, mtime_ns) of files found intact, or fetched again
        for f, (problem, mtime_ns, meta_problem) in self._file_checks(state):
            referenced.add(f.path)
            self.checked_files += 1
            if problem == "missing":
                self.missing.append(f.path)
            elif problem == "corrupt":
                self.corrupt.append(f.path)
            elif problem == "touched" and mtime_ns is not None:
                updates.append((f.path, mtime_ns))
            if problem in ("missing", "corrupt") and downloader is not None:
                self._refetch(f, downloader, updates)
            if f.provenance_sha256:
                referenced.add(f.path + ".provenance")  # an optional document: kept, not checked
            if f.metadata_sha256:
                referenced.add(f.path + ".metadata")
                if meta_problem is not None:
                    (self.missing if meta_problem == "missing" else self.corrupt).append(f.path + ".metadata")
                    if downloader is not None:
                        self._repair_metadata(f, downloader)
        state.record_mtimes(updates)
        return referenced

    def _make_pool(self, state: State) -> Optional[ProcessPoolExecutor]:
        """Worker processes for a large mirror: hashing and walking are CPU- and syscall-bound."""
        cores = usable_cores()
        if cores < 2 or state.totals()[1] < PARALLEL_VERIFY_FILES:
            return None
        from .runners import (
            die_with_parent,  # the workers never outlive the verify (kill -9)
        )

        return ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("fork"), initializer=die_with_parent, initargs=(os.getpid(),))

    def _ordered_map(self, fn: Callable[..., list[T]], chunks: Iterable[list[Any]], *args: Any) -> Iterator[tuple[list[Any], list[T]]]:
        """(chunk, fn(*args, chunk)) in order: on the worker pool with a bounded window of chunks
        in flight, or here when there is no pool."""
        if self._pool is None:
            for chunk in chunks:
                yield chunk, fn(*args, chunk)
            return
        window: deque[tuple[list[Any], Future[list[T]]]] = deque()
        chunk_iter = iter(chunks)
        while True:
            while len(window) < 4:
                todo: Optional[list[Any]] = next(chunk_iter, None)
                if todo is None:
                    break
                window.append((todo, self._pool.submit(fn, *args, todo)))
            if not window:
                return
            chunk, fut = window.popleft()
            yield chunk, fut.result()

    def _file_checks(self, state: State) -> Iterator[tuple[MirroredFile, FileCheck]]:
        """Each file with its check, in state order (a streamed cursor, chunk by chunk)."""
        files = state.all_files()
        chunks = iter(lambda: list(islice(files, VERIFY_CHUNK)), [])
        web = str(self.config.web)
        for chunk, results in self._ordered_map(_check_chunk, chunks, web, self.full):
            yield from zip(chunk, results)

    def _refetch(self, f: MirroredFile, downloader: Downloader, updates: list[tuple[str, int]]) -> None:
        target = self.config.web / f.path
        try:
            target.unlink()
        except FileNotFoundError:
            pass
        try:
            rel = downloader.fetch(f.url, f.filename, f.sha256, f.size).path
        except MirrorSyncError as exc:
            self.failures.append(Failure(str(exc), project=f.project, file=f.filename))
            return
        if rel != f.path:  # cannot happen for a file fetched by its sha256; never publish a mismatch
            self.failures.append(Failure("re-fetched file landed elsewhere", project=f.project, file=f.filename))
            return
        updates.append((f.path, target.stat().st_mtime_ns))
        self.repaired += 1

    def _repair_metadata(self, f: MirroredFile, downloader: Downloader) -> None:
        path = self.config.web / (f.path + ".metadata")
        try:
            data = downloader.fetch_bytes(f.url + ".metadata", f"metadata of {f.filename}", f.metadata_sha256)
        except MirrorSyncError:
            # what was published may be the wheel's own METADATA (upstream advertised none)
            data = wheel_metadata(self.config.web / f.path) or b""
            if hashlib.sha256(data).hexdigest() != f.metadata_sha256:
                self.failures.append(Failure("cannot restore metadata", project=f.project, file=f.filename + ".metadata"))
                return
        write_atomic(path, data, self.config.fsync)
        self.repaired += 1

    # -- pages ----------------------------------------------------------------------------------
    def _check_pages(self, state: State, publisher: Optional[Publisher]) -> None:
        rows = list(state.projects())
        chunks = (rows[i : i + VERIFY_CHUNK] for i in range(0, len(rows), VERIFY_CHUNK))
        for chunk, results in self._ordered_map(_check_page_chunk, chunks, str(self.config.simple_dir)):
            for row, bad in zip(chunk, results):
                self.checked_pages += 1
                for page, kind in bad:
                    (self.missing if kind == "missing" else self.corrupt).append(f"simple/{row.name}/{page}")
                if bad and publisher is not None:  # the files they link to were checked (and fetched) first
                    publisher.republish(row)
                    self.repaired += 1

    def _check_root(self, state: State) -> None:
        import json

        from packaging.utils import canonicalize_name

        expected = {name for name, _display, _serial in state.root_entries()}
        for page in ("index.v1_json", "index.html"):
            path = self.config.simple_dir / page
            if not path.is_file():
                self.missing.append(f"simple/{page}")
        try:
            listed = {canonicalize_name(p["name"]) for p in json.loads((self.config.simple_dir / "index.v1_json").read_bytes())["projects"]}
        except (OSError, ValueError, KeyError, TypeError):
            listed = None
        if listed is not None and listed != expected:
            self.corrupt.append("simple/index.v1_json")
        self.checked_pages += 1

    def _check_orphan_pages(self, state: State, publisher: Optional[Publisher]) -> None:
        simple = self.config.simple_dir
        if not simple.is_dir():
            return
        known = {name for name, _display, _serial in state.root_entries()}
        for entry in sorted(simple.iterdir()):
            if entry.is_dir() and entry.name not in known:
                self.orphans.append(f"simple/{entry.name}/")
                if publisher is not None:
                    publisher.remove_pages(entry.name)
                    self.removed += 1

    # -- orphans --------------------------------------------------------------------------------
    def _check_orphans(self, referenced: set[str]) -> None:
        web = self.config.web
        packages = web / "packages"
        if not packages.is_dir():
            return
        # .incoming is scratch space; the rest is walked one top-level directory per task
        tops = sorted(f"packages/{e.name}" for e in os.scandir(packages) if e.is_dir() and not e.name.startswith("."))
        loose = sorted(f"packages/{e.name}" for e in os.scandir(packages) if e.is_file())
        found: list[str] = list(loose)
        chunks = (tops[i : i + 8] for i in range(0, len(tops), 8))
        for _chunk, results in self._ordered_map(_list_chunk, chunks, str(web)):
            for paths in results:
                found.extend(paths)
        for rel in found:
            if rel not in referenced:
                self.orphans.append(rel)
                if self.repair:
                    try:
                        os.unlink(web / rel)
                        self.removed += 1
                    except OSError as exc:
                        self.failures.append(Failure(f"cannot remove: {exc.strerror}", project="", file=rel))
        if self.repair:
            for dirpath, dirnames, filenames in os.walk(packages, topdown=False):
                if dirpath != str(packages) and not os.listdir(dirpath):
                    try:
                        os.rmdir(dirpath)
                    except OSError:
                        pass
