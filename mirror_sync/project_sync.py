"""Bring one project up to date: read its page, select files, download what is new, render pages.

Runs in worker threads; touches no sqlite. Pages are only staged here: the publisher renames them
into place after the files they link to are durable.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .download import Downloader
from .errors import FilesystemError
from .fsutil import TempNames, make_dirs, stage, write_atomic
from .metadata import file_requires, requires_dist, wheel_metadata
from .models import MirroredFile, ProjectPage, UpstreamFile
from .render import project_html, project_json
from .selection import Selector, Want
from .upstream import Upstream

log = logging.getLogger(__name__)

PAGE_NAMES = ("index.html", "index.v1_html", "index.v1_json")
STAGING = ".staging"  # pages wait here (under web/, same file system) until the publisher renames them


@dataclass
class ProjectTask:
    canonical: str
    display: str
    root_serial: Optional[int]
    want: Optional[Want]
    selection: str
    previous: list[MirroredFile]
    previous_fingerprint: Optional[str]
    previous_selection: Optional[str]
    local_serial: Optional[int] = None  # the serial to publish when upstream has none


@dataclass
class ProjectResult:
    """What a worker hands back; kept small, it crosses a process boundary (the parent holds the task)."""

    page_serial: Optional[int] = None  # the serial upstream's page carries
    fingerprint: Optional[str] = None
    status: Optional[dict[str, str]] = None  # PEP 792 project-status
    unchanged: bool = False  # same upstream page and selection: nothing to publish
    files: list[MirroredFile] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    serial: Optional[int] = None
    staged: list[tuple[str, str]] = field(default_factory=list)  # (temp, final)
    html_sha256: str = ""
    json_sha256: str = ""
    downloaded: int = 0
    downloaded_bytes: int = 0
    plan_fetch: list[dict[str, object]] = field(default_factory=list)
    plan_delete: list[dict[str, object]] = field(default_factory=list)


class ProjectSyncer:
    def __init__(
        self,
        upstream: Upstream,
        downloader: Downloader,
        selector: Selector,
        simple_dir: Path,
        web: Path,
        *,
        need_requires: bool,
        fsync: bool,
        dry_run: bool,
        file_pool: Optional[Executor] = None,
    ) -> None:
        self.upstream = upstream
        self.downloader = downloader
        self.selector = selector
        self.simple_dir = simple_dir
        self.web = web
        self.staging = web / STAGING
        # the hot paths join strings: pathlib's parsing costs more than the system calls it wraps
        self.web_s = os.fspath(web)
        self.simple_s = os.fspath(simple_dir)
        self.staging_s = os.fspath(self.staging)
        self.names = TempNames()
        self.need_requires = need_requires
        self.fsync = fsync
        self.dry_run = dry_run
        self.file_pool = file_pool

    def run(self, task: ProjectTask) -> ProjectResult:
        page = self.upstream.project(task.canonical, min_serial=task.root_serial)
        result = ProjectResult(page_serial=page.serial, fingerprint=page.fingerprint, status=page.status)
        result.serial = page.serial if page.serial is not None else task.root_serial
        if result.serial is None:
            result.serial = task.local_serial
        if (
            task.previous_fingerprint is not None
            and page.fingerprint == task.previous_fingerprint
            and task.previous_selection == task.selection
            and self._pages_present(task.canonical)
        ):
            result.unchanged = True
            result.files = task.previous
            return result
        selected, versions = self.selector.select(page, task.want)
        result.versions = versions
        if self.dry_run:
            self._plan(task, selected, result)
            return result
        previous = {(f.filename, f.sha256): f for f in task.previous}
        previous_by_name = {f.filename: f for f in task.previous}
        jobs = [(f, previous.get((f.filename, f.sha256)) if f.sha256 else previous_by_name.get(f.filename)) for f in selected]
        if self.file_pool is not None and sum(1 for _, old in jobs if old is None) > 2:
            futures = [self.file_pool.submit(self._one_file, f, old) for f, old in jobs]
            outcomes = [fut.result() for fut in futures]
        else:
            outcomes = [self._one_file(f, old) for f, old in jobs]
        for mirrored, fetched_bytes in outcomes:
            result.files.append(mirrored)
            if fetched_bytes:
                result.downloaded += 1
                result.downloaded_bytes += fetched_bytes
        result.files.sort(key=lambda f: f.filename)
        self._stage_pages(page, result)
        return result

    # -- files --------------------------------------------------------------------------------
    def _one_file(self, f: UpstreamFile, old: Optional[MirroredFile]) -> tuple[MirroredFile, int]:
        fetched = 0
        held = _regular_file(os.path.join(self.web_s, old.path)) if old is not None else None
        if old is not None and held is not None:
            path, size, sha256, mtime_ns = old.path, old.size, old.sha256, held.st_mtime_ns
            body: Optional[bytes] = None
            meta_sha, meta_size, requires = old.metadata_sha256, old.metadata_size, old.requires_dist
            if meta_sha is not None and not os.path.isfile(os.path.join(self.web_s, path + ".metadata")):
                meta_sha = meta_size = None
        else:
            got = self.downloader.fetch(f.url, f.filename, f.sha256, f.size)
            path, size, sha256, body, mtime_ns = got.path, got.size, got.sha256, got.data, got.mtime_ns
            fetched = 0 if got.adopted else size
            meta_sha = meta_size = None
            requires = None
        if meta_sha is None:
            meta_sha, meta_size, requires = self._metadata(f, path, body)
        if requires is None and self.need_requires:
            requires = file_requires(self.web / path, f.filename)
        return (
            MirroredFile(
                project="",
                filename=f.filename,
                path=path,
                url=f.url,
                size=size,
                sha256=sha256,
                requires_python=f.requires_python,
                yanked=f.yanked,
                upload_time=f.upload_time,
                metadata_sha256=meta_sha,
                metadata_size=meta_size,
                version=f.version,
                requires_dist=requires,
                mtime_ns=mtime_ns,
            ),
            fetched,
        )

    def _metadata(self, f: UpstreamFile, path: str, body: Optional[bytes]) -> tuple[Optional[str], Optional[int], Optional[list[str]]]:
        """Put <file>.metadata beside the file: upstream's when advertised, else a wheel's own METADATA."""
        data: Optional[bytes] = None
        if f.filename.endswith(".whl"):
            data = wheel_metadata(body if body is not None else self.web / path)
            if f.metadata and f.metadata_sha256 and (data is None or hashlib.sha256(data).hexdigest() != f.metadata_sha256):
                data = None  # upstream serves other bytes than the wheel holds: take upstream's
        if f.metadata and data is None:
            # PEP 658: the .metadata file is the wheel's METADATA; when the hashes agree the
            # request is saved, otherwise upstream's document is fetched and checked
            data = self.downloader.fetch_bytes(f.url + ".metadata", f"metadata of {f.filename}", f.metadata_sha256)
        if data is None:
            return None, None, None
        write_atomic(os.path.join(self.web_s, path + ".metadata"), data, self.fsync)
        requires = requires_dist(data) if self.need_requires else None
        return hashlib.sha256(data).hexdigest(), len(data), requires

    # -- pages --------------------------------------------------------------------------------
    def _pages_present(self, canonical: str) -> bool:
        directory = os.path.join(self.simple_s, canonical)
        return all(os.path.isfile(os.path.join(directory, name)) for name in PAGE_NAMES)

    def _stage_pages(self, page: ProjectPage, result: ProjectResult) -> None:
        directory = os.path.join(self.simple_s, page.canonical)
        try:
            make_dirs(directory)
        except OSError as exc:
            if exc.errno == 28:
                raise FilesystemError(f"the disk holding {self.simple_s} is full") from None
            raise
        html = project_html(page.name, result.files, page.status)
        js = project_json(page.canonical, result.serial, result.files, result.versions, page.status)
        result.html_sha256 = hashlib.sha256(html).hexdigest()
        result.json_sha256 = hashlib.sha256(js).hexdigest()
        final_html = os.path.join(directory, "index.html")
        html_tmp = stage(self.staging_s, final_html, html, self.names)
        v1_html_tmp = html_tmp + ".v1"
        os.link(html_tmp, v1_html_tmp)  # index.v1_html: the same bytes, no second write
        final_json = os.path.join(directory, "index.v1_json")
        result.staged = [
            (html_tmp, final_html),
            (v1_html_tmp, os.path.join(directory, "index.v1_html")),
            (stage(self.staging_s, final_json, js, self.names), final_json),
        ]

    def _plan(self, task: ProjectTask, selected: list[UpstreamFile], result: ProjectResult) -> None:
        """Dry run: what would be fetched and deleted. Reads upstream, writes nothing."""
        previous = {f.sha256: f for f in task.previous}
        previous_by_name = {f.filename: f for f in task.previous}
        kept: set[str] = set()
        for f in selected:
            old = previous.get(f.sha256) if f.sha256 else previous_by_name.get(f.filename)
            if old is not None:
                kept.add(old.path)
                result.files.append(old)
                continue
            result.plan_fetch.append({"project": task.canonical, "filename": f.filename, "size": f.size})
            requires = None
            if self.need_requires and f.metadata:
                data = self.downloader.fetch_bytes(f.url + ".metadata", f"metadata of {f.filename}", f.metadata_sha256)
                requires = requires_dist(data)
            result.files.append(
                MirroredFile(
                    project=task.canonical, filename=f.filename, path="", url=f.url, size=f.size or 0,
                    sha256=f.sha256 or "", requires_python=f.requires_python, yanked=f.yanked,
                    upload_time=f.upload_time, metadata_sha256=None, metadata_size=None,
                    version=f.version, requires_dist=requires,
                )
            )
        for old in task.previous:
            if old.path not in kept:
                result.plan_delete.append({"project": task.canonical, "path": old.path, "size": old.size})


def _regular_file(path: str) -> Optional[os.stat_result]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None
