"""Rebuild state.sqlite from the mirror on disk, without a download: the pages under web/simple/
say which files each project has (with their hashes, sizes and PEP 592/658/700 fields), and the
files under web/packages/ are re-hashed against them.

What the pages do not tell is left for the next sync to learn: the upstream URL of each file,
upstream's validators and page fingerprint, and the selection a project was mirrored with. That
sync therefore reads every project's page once; it downloads no file the mirror already holds.

A file that is missing or does not hash as its page says is left out, and its project's pages are
rewritten without it (they are rewritten only after every file they link to was checked): the next
sync fetches it again. A project whose JSON page cannot be read is left out altogether; the next
sync treats it as new (adopting its files from disk by their hashes).

The old state is kept beside the new one, as state.sqlite.before-rebuild-<time>.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import stat
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from .clock import utc_iso, utc_stamp
from .config import Config
from .cores import usable_cores
from .errors import FilesystemError, HostileDataError, MirrorSyncError
from .fsutil import Flusher, MirrorLock, pinned, raise_if_full, unwritable_reason
from .metadata import requires_dist
from .models import MirroredFile
from .names import (
    canonical_project,
    check_filename,
    check_sha256,
    package_path,
    version_of,
)
from .publish import Publisher
from .render import project_html, project_json
from .reports import Failure, RebuildReport
from .state import State

log = logging.getLogger("mirror_sync")

PAGE_HTML = "index.html"
PAGE_V1_HTML = "index.v1_html"
PAGE_JSON = "index.v1_json"
MAX_PAGE = 256 * 1024 * 1024  # a page of ours this size is not one: something else sits there
BATCH = 500  # projects per state transaction
WINDOW = 64  # projects being checked at a time
_TITLE = re.compile(rb"<title>Links for (.*?)</title>", re.DOTALL)


class PageError(Exception):
    """A project's page on disk cannot be read as one of ours (the message says why)."""


@dataclass
class PageEntry:
    """One file as a published JSON page lists it."""

    filename: str
    path: str  # relative to web/
    sha256: str
    size: int
    requires_python: Optional[str]
    yanked: Union[bool, str]
    upload_time: Optional[str]
    metadata_sha256: Optional[str]
    provenance: Optional[str] = None  # the PEP 740 link the page gives (our copy, under public_url)


@dataclass
class Page:
    canonical: str
    serial: Optional[int]
    versions: list[str]
    status: Optional[dict[str, str]]
    entries: list[PageEntry]
    invalid: list[str] = field(default_factory=list)  # entries left out, with why


def parse_page(data: bytes, canonical: str) -> Page:
    """A published index.v1_json (as render.project_json writes it) for project `canonical`.
    Entries that are not valid are left out and named in `invalid`; a page that is not one at all
    raises PageError."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise PageError(f"its JSON page is not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("meta"), dict) or not isinstance(doc.get("files"), list):
        raise PageError("its JSON page is not a PEP 691 project page")
    if doc.get("name") != canonical:
        raise PageError(f"its JSON page names project {doc.get('name')!r}")
    serial = doc["meta"].get("_last-serial")
    if serial is not None and (type(serial) is not int or serial < 0):
        raise PageError(f"its JSON page has a bad _last-serial {serial!r}")
    versions = doc.get("versions", [])
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        raise PageError("its JSON page has a bad versions list")
    status = doc.get("project-status")
    if status is not None and not (isinstance(status, dict) and isinstance(status.get("status"), str)
                                   and all(isinstance(v, str) for v in status.values())):
        raise PageError("its JSON page has a bad project-status")
    page = Page(canonical, serial, list(versions), status or None, [])
    seen: set[str] = set()
    for item in doc["files"]:
        try:
            entry = _entry(item)
        except (HostileDataError, PageError) as exc:
            name = item.get("filename") if isinstance(item, dict) else None
            page.invalid.append(f"{name!r}: {exc}")
            continue
        if entry.filename in seen:
            page.invalid.append(f"{entry.filename!r}: listed twice")
            continue
        seen.add(entry.filename)
        page.entries.append(entry)
    return page


def _entry(item: Any) -> PageEntry:
    if not isinstance(item, dict):
        raise PageError("not an object")
    filename = check_filename(item.get("filename"))
    hashes = item.get("hashes")
    sha256 = check_sha256(hashes.get("sha256") if isinstance(hashes, dict) else None)
    if sha256 is None:
        raise PageError("no sha256")
    size = item.get("size")
    if type(size) is not int or size < 0:
        raise PageError(f"bad size {size!r}")
    path = package_path(sha256, filename)
    if item.get("url") != "../../" + path:
        raise PageError(f"links to {item.get('url')!r}, not to its place under packages/")
    requires_python = item.get("requires-python")
    if requires_python is not None and not isinstance(requires_python, str):
        raise PageError("bad requires-python")
    yanked = item.get("yanked", False)
    if not isinstance(yanked, (bool, str)):
        raise PageError("bad yanked")
    upload_time = item.get("upload-time")
    if upload_time is not None and not isinstance(upload_time, str):
        raise PageError("bad upload-time")
    meta = item.get("core-metadata", item.get("data-dist-info-metadata", False))
    metadata_sha256 = None
    if isinstance(meta, dict):
        metadata_sha256 = check_sha256(meta.get("sha256"))
    elif meta not in (False, None, True):
        raise PageError("bad core-metadata")
    provenance = item.get("provenance")
    if provenance is not None and not (isinstance(provenance, str) and provenance.endswith("/" + path + ".provenance")):
        raise PageError("links a provenance that is not its own")
    return PageEntry(filename, path, sha256, size, requires_python, yanked, upload_time, metadata_sha256, provenance)


def _provenance(target: str, entry: PageEntry) -> dict[str, Optional[str]]:
    """The provenance kept beside a file (PEP 740), when it is there: its sha256, and the link
    the page gave (kept only when the document is on disk)."""
    data = _read_small(target + ".provenance", 4 * 1024 * 1024)
    if data is None:
        return {}
    return {"provenance_sha256": hashlib.sha256(data).hexdigest(), "provenance_url": entry.provenance}


def display_name(html: bytes, canonical: str) -> str:
    """The project's display name, from the title of its HTML page (render.project_html)."""
    match = _TITLE.search(html[:4096])
    if match is None:
        return canonical
    name = unescape(match.group(1).decode("utf-8", "replace")).strip()
    try:
        return name if canonical_project(name) == canonical else canonical
    except HostileDataError:
        return canonical


@dataclass
class Checked:
    """A project as rebuilt: its state row and files, and what had to be left out."""

    canonical: str
    display: str
    page: Optional[Page] = None
    files: list[MirroredFile] = field(default_factory=list)
    dropped: list[Failure] = field(default_factory=list)
    html_sha256: str = ""
    json_sha256: str = ""
    rewrite: Optional[tuple[bytes, bytes]] = None  # (html, json) to publish: the pages on disk differ
    synced_at: float = 0.0
    error: Optional[str] = None  # the project is left out


def _hash_file(path: str) -> Optional[tuple[int, str, int]]:
    """(size, sha256, mtime_ns) of a regular file, None when it is missing or not one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        digest = hashlib.sha256()
        size = 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            size += len(chunk)
            digest.update(chunk)
        return size, digest.hexdigest(), st.st_mtime_ns
    finally:
        os.close(fd)


def _read_small(path: str, limit: int) -> Optional[bytes]:
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError:
        return None
    return None if len(data) > limit else data


def check_project(web: str, canonical: str, listed: Optional[str] = None) -> Checked:
    """Read one project's pages and check every file they link to (runs on a worker thread).
    `listed`: the project's name as the root lists it (the state's display name)."""
    directory = os.path.join(web, "simple", canonical)
    html = _read_small(os.path.join(directory, PAGE_HTML), MAX_PAGE) or b""
    title = display_name(html, canonical)  # the page's own title: upstream's page name
    out = Checked(canonical, listed or title)
    js_path = os.path.join(directory, PAGE_JSON)
    js = _read_small(js_path, MAX_PAGE)
    if js is None:
        out.error = "its JSON page cannot be read"
        return out
    try:
        page = parse_page(js, canonical)
    except PageError as exc:
        out.error = str(exc)
        return out
    out.page = page
    try:
        out.synced_at = os.stat(js_path).st_mtime
    except OSError:
        out.synced_at = time.time()
    for reason in page.invalid:
        out.dropped.append(Failure(f"invalid page entry {reason}", project=canonical, file=reason.split(":", 1)[0].strip("'\"")))
    for entry in page.entries:
        target = os.path.join(web, entry.path)
        got = _hash_file(target)
        if got is None:
            out.dropped.append(Failure("missing", project=canonical, file=entry.filename))
            continue
        size, sha256, mtime_ns = got
        if size != entry.size or sha256 != entry.sha256:
            out.dropped.append(Failure("does not hash as its page says", project=canonical, file=entry.filename))
            continue
        metadata_sha256 = metadata_size = None
        requires: Optional[list[str]] = None
        if entry.metadata_sha256 is not None:
            data = _read_small(target + ".metadata", 64 * 1024 * 1024)
            if data is not None and hashlib.sha256(data).hexdigest() == entry.metadata_sha256:
                metadata_sha256, metadata_size = entry.metadata_sha256, len(data)
                try:
                    requires = requires_dist(data)
                except Exception:  # a .metadata that hashes right but does not parse: requirements unknown
                    requires = None
            else:
                out.dropped.append(Failure("missing" if data is None else "does not hash as its page says",
                                           project=canonical, file=entry.filename + ".metadata"))
        out.files.append(MirroredFile(
            project=canonical,
            filename=entry.filename,
            path=entry.path,
            url="",  # upstream's URL is not on our pages: the next sync sets it
            size=size,
            sha256=sha256,
            requires_python=entry.requires_python,
            yanked=entry.yanked,
            upload_time=entry.upload_time,
            metadata_sha256=metadata_sha256,
            metadata_size=metadata_size,
            version=version_of(entry.filename, canonical),
            requires_dist=requires,
            mtime_ns=mtime_ns,
            **_provenance(target, entry),
        ))
    out.files.sort(key=lambda f: f.filename)
    new_html = project_html(title, out.files, page.status)
    new_js = project_json(canonical, page.serial, out.files, page.versions, page.status)
    v1_html = _read_small(os.path.join(directory, PAGE_V1_HTML), MAX_PAGE)
    if new_html != html or new_js != js or v1_html != html:
        out.rewrite = (new_html, new_js)
    out.html_sha256 = hashlib.sha256(new_html).hexdigest()
    out.json_sha256 = hashlib.sha256(new_js).hexdigest()
    return out


def _project_dirs(simple: Path) -> Iterator[str]:
    """The canonical names of the project directories under web/simple/, sorted."""
    names = []
    with os.scandir(simple) as entries:
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False) or entry.name.startswith("."):
                continue
            try:
                if canonical_project(entry.name) == entry.name:
                    names.append(entry.name)
            except HostileDataError:
                continue
    yield from sorted(names)


def read_root(simple: Path) -> tuple[Optional[int], dict[str, str]]:
    """The published root's serial and its names (canonical -> as listed); (None, {}) when it
    cannot be read. It only lends the names: which projects there are, the pages tell."""
    data = _read_small(str(simple / "index.v1_json"), 1 << 31)
    try:
        doc = json.loads(data) if data else None
        serial = doc["meta"].get("_last-serial") if isinstance(doc, dict) else None
        entries = doc.get("projects", []) if isinstance(doc, dict) else []
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, {}
    names: dict[str, str] = {}
    for entry in entries if isinstance(entries, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        try:
            names[canonical_project(name)] = name
        except HostileDataError:
            continue
    return (serial if type(serial) is int and serial >= 0 else None), names


def _sidecars(path: Path) -> list[Path]:
    return [path, Path(f"{path}-wal"), Path(f"{path}-shm")]


class Rebuilder:
    def __init__(self, config: Config, threads: Optional[int] = None) -> None:
        self.config = config
        cores = usable_cores()
        self.threads = threads or max(4, min(16, cores * 2))

    def run(self) -> RebuildReport:
        cfg = self.config
        started = time.time()
        if not cfg.simple_dir.is_dir():
            raise MirrorSyncError(f"{cfg.simple_dir} does not exist: there is no mirror to rebuild the state from")
        for path in _sidecars(cfg.state_path):  # it is moved aside at the end: find out now if it cannot be
            if pinned(path):
                raise FilesystemError(f"{path} {unwritable_reason(path)}, so it cannot be moved aside for the rebuilt state")
        with MirrorLock(cfg.lock_path):
            return self._run_locked(started)

    def _run_locked(self, started: float) -> RebuildReport:
        cfg = self.config
        tmp = cfg.directory / (cfg.state_path.name + ".rebuild")
        for stale in _sidecars(tmp):
            _remove(stale)
        flusher = Flusher(cfg.directory) if cfg.fsync else None
        try:
            state = State(tmp)
            try:
                result = self._build(state, flusher)
            finally:
                state.close()
            if flusher is not None:  # the new state is on disk before it replaces the old one
                flusher.flush()
        finally:
            if flusher is not None:
                flusher.close()
        result = dataclasses.replace(result, previous_state=self._swap(tmp), duration_s=round(time.time() - started, 3))
        log.info("event=rebuilt projects=%d files=%d rewritten_pages=%d skipped=%d dropped=%d", result.projects,
                 result.files, result.rewritten_pages, len(result.skipped), len(result.dropped))
        return result

    def _build(self, state: State, flusher: Optional[Flusher]) -> RebuildReport:
        cfg = self.config
        skipped: list[Failure] = []
        dropped: list[Failure] = []
        rewritten = 0
        max_serial: Optional[int] = None
        pending: list[Checked] = []
        # the publisher writes every page: the projects' rewritten ones, then the root
        publisher = Publisher(state, cfg.web, flusher, fsync=cfg.fsync)
        root_serial, listed = read_root(cfg.simple_dir)
        for checked in self._checked(_project_dirs(cfg.simple_dir), listed):
            if checked.error is not None or checked.page is None:
                skipped.append(Failure(checked.error or "unreadable", project=checked.canonical))
                log.warning("event=rebuild-skipped project=%s error=%r", checked.canonical, checked.error)
                continue
            dropped.extend(checked.dropped)
            for item in checked.dropped:
                log.warning("event=rebuild-dropped project=%s file=%s error=%r", item.project, item.file, item.error)
            if checked.page.serial is not None:
                max_serial = checked.page.serial if max_serial is None else max(max_serial, checked.page.serial)
            pending.append(checked)
            if len(pending) >= BATCH:
                rewritten += self._save(state, publisher, pending)
                pending = []
        rewritten += self._save(state, publisher, pending)
        mirror_serial = root_serial if root_serial is not None else max_serial
        state.begin()
        for key, value in (
            ("mirror_serial", mirror_serial),
            ("upstream_serial", mirror_serial),
            ("local_serial", max_serial),
            ("upstream", cfg.upstream),
            ("last_rebuild", utc_iso(time.time())),
        ):
            state.set_meta(key, None if value is None else str(value))
        state.commit()
        # the root lists what the state holds: never a project whose pages were left out
        publisher.publish_root(mirror_serial)
        projects, files, size = state.totals()
        return RebuildReport(
            directory=str(cfg.directory),
            projects=projects,
            files=files,
            bytes=size,
            mirror_serial=mirror_serial,
            rewritten_pages=rewritten,
            skipped=skipped,
            dropped=dropped,
        )

    def _checked(self, names: Iterator[str], listed: dict[str, str]) -> Iterator[Checked]:
        """check_project for each name, in order, a bounded window of them on the threads."""
        web = str(self.config.web)
        window: deque[Future[Checked]] = deque()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="rebuild") as pool:
            try:
                for name in names:
                    window.append(pool.submit(check_project, web, name, listed.get(name)))
                    if len(window) >= WINDOW:
                        yield window.popleft().result()
                while window:
                    yield window.popleft().result()
            finally:
                for fut in window:
                    fut.cancel()

    def _save(self, state: State, publisher: Publisher, batch: list[Checked]) -> int:
        """Rewrite the pages that differ from what the checked files make (their files are all
        on disk), then record the batch."""
        rewrites = [c for c in batch if c.rewrite is not None]
        for checked in rewrites:
            assert checked.rewrite is not None
            html, js = checked.rewrite
            publisher.write_pages(checked.canonical, html, js)
        if not batch:
            return 0
        state.begin()
        try:
            for checked in batch:
                page = checked.page
                assert page is not None
                state.replace_files(checked.canonical, checked.files)
                state.save_project(
                    checked.canonical, checked.display, page.serial, page.serial, None, None, page.status,
                    page.versions, checked.html_sha256, checked.json_sha256, checked.synced_at,
                )
            state.commit()
        except BaseException:
            state.rollback()
            raise
        return len(rewrites)

    def _swap(self, tmp: Path) -> Optional[str]:
        """Move the old state (and its -wal/-shm, which belong to it) aside, the new one in."""
        cfg = self.config
        current = cfg.state_path
        aside: Optional[Path] = None
        if any(p.exists() or p.is_symlink() for p in _sidecars(current)):
            aside = cfg.directory / f"{current.name}.before-rebuild-{utc_stamp()}"
            for old, new in zip(_sidecars(current), _sidecars(aside)):
                if old.exists() or old.is_symlink():
                    try:
                        os.rename(old, new)
                    except OSError as exc:
                        raise_if_full(exc, old)
                        reason = unwritable_reason(old) if exc.errno in (errno.EPERM, errno.EACCES) else f"cannot be moved ({exc.strerror})"
                        raise FilesystemError(
                            f"the state was rebuilt as {tmp}, but {old} {reason}; then move it away and {tmp} to {current}"
                        ) from None
        os.replace(tmp, current)
        return str(aside) if aside is not None else None


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
