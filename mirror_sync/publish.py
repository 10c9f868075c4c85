"""Publish synced projects in batches: make files durable, rename pages into place, commit the
state, then collect what nothing links to any more. A client never sees a link to a missing file.

The publisher is the only writer of pages under web/simple/: a sync's staged pages, the root, and
the pages that `verify --repair` and `rebuild-state` write in place (after the files they link to)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from .fsutil import Flusher, write_atomic
from .project_sync import ProjectResult, ProjectTask
from .render import project_html, project_json, root_html, root_json, serials_map
from .state import ProjectRow, State

log = logging.getLogger(__name__)

# the body of an nginx `map` (page path -> serial) that the nginx role includes for X-PyPI-Last-Serial
SERIALS_MAP = "serials.map"
# the documents a file has beside it: PEP 658 core metadata, PEP 740 provenance
SIDECARS = (".metadata", ".provenance")
# A batch is published early when no result has come for IDLE_GAP seconds (the run is waiting on
# the network), at most every IDLE_INTERVAL seconds (each batch costs a syncfs or two).
IDLE_GAP = 0.02
IDLE_INTERVAL = 0.25


class Publisher:
    def __init__(
        self,
        state: State,
        web: Path,
        flusher: Optional[Flusher],
        *,
        fsync: bool,
        batch_size: int = 1000,
        batch_seconds: float = 2.0,
    ) -> None:
        self.state = state
        self.web = web
        self.simple_dir = web / "simple"
        self.flusher = flusher
        self.fsync = fsync
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.pending: list[tuple[ProjectTask, ProjectResult]] = []
        self.last_flush = time.monotonic()
        self.published = 0
        self.files_deleted = 0

    def add(self, task: ProjectTask, result: ProjectResult) -> None:
        self.pending.append((task, result))
        if len(self.pending) >= self.batch_size or time.monotonic() - self.last_flush >= self.batch_seconds:
            self.flush()

    def idle_wait(self) -> Optional[float]:
        """How long to wait for the next result before publishing what is pending (None: no
        need to, nothing is pending)."""
        if not self.pending:
            return None
        return max(IDLE_GAP, IDLE_INTERVAL - (time.monotonic() - self.last_flush))

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        changed = [r for _t, r in batch if not r.unchanged]
        if changed and self.flusher is not None:
            self.flusher.flush()  # the files and staged pages are on disk before any page links to them
        for r in changed:
            for tmp, final in r.staged:
                os.replace(tmp, final)
            r.staged = []
        if changed and self.flusher is not None:
            self.flusher.flush()  # the new pages are on disk before the state says so
        garbage: list[str] = []
        now = time.time()
        self.state.begin()
        try:
            for t, r in batch:
                if r.unchanged:
                    serial = t.root_serial if t.root_serial is not None else r.page_serial
                    if serial is not None:
                        self.state.mark_unchanged(t.canonical, serial, now)
                    continue
                for f in r.files:
                    f.project = t.canonical
                removed = self.state.replace_files(t.canonical, r.files)
                garbage.extend(removed)
                garbage.extend(p + suffix for p in removed for suffix in SIDECARS)
                self.state.save_project(
                    t.canonical,
                    t.display,
                    r.serial,
                    t.root_serial if t.root_serial is not None else r.page_serial,
                    r.fingerprint,
                    t.selection,
                    r.status,
                    r.versions,
                    r.html_sha256,
                    r.json_sha256,
                    now,
                    r.etag,
                    r.last_modified,
                    r.held_until,
                    r.refused,
                )
            self.state.add_garbage(garbage)
            self.state.commit()
        except BaseException:
            self.state.rollback()
            raise
        self.published += len(changed)
        if garbage:
            self.collect_garbage()

    def discard(self) -> None:
        """Drop staged pages of results that will not be published."""
        for _t, r in self.pending:
            discard_staged(r)
        self.pending = []

    def delete_projects(self, names: list[str]) -> None:
        if not names:
            return
        self.state.begin()
        try:
            for name in names:
                paths = self.state.delete_project(name)
                self.state.add_garbage(paths)
                self.state.add_garbage(p + suffix for p in paths for suffix in SIDECARS)
                self.state.add_garbage([f"simple/{name}/"])
            self.state.commit()
        except BaseException:
            self.state.rollback()
            raise

    def write_pages(self, name: str, html: bytes, js: bytes) -> None:
        """Replace a project's published pages in place, each atomically: the JSON page, then
        index.html and index.v1_html (one file, hard-linked). The files they link to must be on
        disk already (repair and rebuild-state check or fetch them first)."""
        directory = self.simple_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / "index.v1_json", js, self.fsync)
        write_atomic(directory / "index.html", html, self.fsync, also=directory / "index.v1_html")

    def republish(self, row: ProjectRow) -> None:
        """Render a project's pages again from the state and write them over what is published
        (verify --repair of a missing or corrupt page); the state then records what they hash to."""
        files = self.state.files_of(row.name)
        status = json.loads(row.status) if row.status else None
        versions = json.loads(row.versions) if row.versions else []
        html = project_html(row.display, files, status)
        js = project_json(row.name, row.serial, files, versions, status)
        self.write_pages(row.name, html, js)
        self.state.set_page_hashes(row.name, hashlib.sha256(html).hexdigest(), hashlib.sha256(js).hexdigest())

    def remove_pages(self, name: str) -> None:
        """Remove the page directory of a project the state does not hold (verify --repair)."""
        shutil.rmtree(self.simple_dir / name, ignore_errors=True)

    def publish_root(self, serial: Optional[int]) -> None:
        entries = self.state.root_entries()
        self.simple_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.simple_dir / "index.v1_json", root_json(entries, serial), self.fsync)
        write_atomic(self.simple_dir / "index.html", root_html(entries), self.fsync, also=self.simple_dir / "index.v1_html")
        write_atomic(self.web.parent / SERIALS_MAP, serials_map(entries, serial), self.fsync)

    def collect_garbage(self) -> int:
        """Unlink what the state no longer references (pages first rendered without it)."""
        # pages before files: a client asks for /simple/<name>/ directly, and must never be
        # served a page whose files are already gone
        paths = sorted(self.state.garbage(), key=lambda rel: (not rel.startswith("simple/"), rel))
        done: list[str] = []
        files: list[tuple[Path, bool]] = []
        for rel in paths:
            if rel.startswith("simple/") and rel.endswith("/"):
                name = rel[len("simple/"):-1]
                if self.state.project(name) is None:
                    self.remove_pages(name)
                done.append(rel)
                continue
            sidecar = rel.endswith(SIDECARS)
            base = rel.rsplit(".", 1)[0] if sidecar else rel
            if not self.state.path_referenced(base):
                files.append((self.web / rel, sidecar))
            done.append(rel)
        self.files_deleted += _unlink_files(files, self.web / "packages")
        self.state.begin()
        self.state.drop_garbage(done)
        self.state.commit()
        return len(done)


# Files are unlinked on this many threads: an unlink whose directory is not cached waits for the
# disk, and a run that deleted upstream's removals one after the other waited for each in turn.
UNLINK_THREADS = 8


def _unlink_files(files: list[tuple[Path, bool]], stop: Path) -> int:
    """Unlink each (path, is a sidecar) and the directories it leaves empty up to `stop`; how many
    files that were not sidecars were removed."""

    def unlink(item: tuple[Path, bool]) -> int:
        target, sidecar = item
        removed = 0
        try:
            target.unlink()
            removed = 0 if sidecar else 1
        except FileNotFoundError:
            pass
        _prune_dirs(target.parent, stop)
        return removed

    if len(files) < 2 * UNLINK_THREADS:
        return sum(map(unlink, files))
    with ThreadPoolExecutor(UNLINK_THREADS, thread_name_prefix="unlink") as pool:
        return sum(pool.map(unlink, files))


def discard_staged(result: ProjectResult) -> None:
    for tmp, _final in result.staged:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    result.staged = []


def _prune_dirs(directory: Path, stop: Path) -> None:
    """Remove empty directories from `directory` up to (not including) `stop`; bounded by depth."""
    for _ in range(4):
        if directory == stop or stop not in directory.parents:
            return
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent
