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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, TypeVar

from .download import Downloader, Fetched
from .errors import FilesystemError, NotFoundError, UpstreamError
from .fsutil import TempNames, make_dirs, stage, write_atomic
from .metadata import file_requires, requires_dist, wheel_metadata
from .models import MirroredFile, ProjectPage, UpstreamFile
from .plan.project import Job as _Job
from .plan.project import plan_project
from .plan.selection import Selector, Want
from .render import project_html, project_json
from .upstream import Upstream, Validators

if TYPE_CHECKING:
    from .local import LocalProject

log = logging.getLogger(__name__)

PAGE_NAMES = ("index.html", "index.v1_html", "index.v1_json")
PROVENANCE_LIMIT = 4 * 1024 * 1024  # a PEP 740 provenance document is kilobytes; more is hostile
# scratch space of a run, beside web/ (same file system, never served): pages wait in STAGING
# until the publisher renames them into place, files are downloaded into INCOMING
STAGING = ".staging"
INCOMING = ".incoming"


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
    validators: Optional[Validators] = None  # what upstream sent with the page last time
    page: Optional[ProjectPage] = None  # already read in this run (by the closure walk)
    not_modified: bool = False  # upstream answered this run's conditional request with 304
    matured: bool = False  # a file the policy held back last time has matured: select again
    local: Optional[LocalProject] = None  # the organisation's own files of this name (the `local` directory)
    merge_upstream: bool = False  # ... and upstream's too (`merge_upstream`); otherwise the name is reserved

    @property
    def same_selection(self) -> bool:
        return self.previous_selection == self.selection and not self.matured

    @property
    def narrower_selection(self) -> bool:
        """Same filters, and the want asks for no more than last time (the closure walk meets
        most projects first with part of what it will end up wanting of them)."""
        if self.same_selection:
            return True
        if self.want is None or self.previous_selection is None or self.matured:
            return False
        filters, _, rest = self.selection.partition(":")
        prev_filters, _, prev_rest = self.previous_selection.partition(":")
        return filters == prev_filters and self.want.within(prev_rest)


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
    etag: Optional[str] = None
    last_modified: Optional[str] = None
    conflicts: list[str] = field(default_factory=list)  # filenames upstream lists twice, differently
    refused: list[dict[str, object]] = field(default_factory=list)  # what the policy keeps out, and why
    held_until: Optional[float] = None  # when the earliest held file matures


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
        mirror_web: Optional[Path] = None,
        public_url: Optional[str] = None,
    ) -> None:
        self.upstream = upstream
        self.downloader = downloader
        self.selector = selector
        self.simple_dir = simple_dir
        self.web = web
        self.staging = web.parent / STAGING
        # the hot paths join strings: pathlib's parsing costs more than the system calls it wraps
        self.web_s = os.fspath(web)
        # where the mirror's files are (a dry run downloads into a scratch `web`, but plans from these)
        self.mirror_web_s = os.fspath(mirror_web if mirror_web is not None else web)
        # the mirror's own base URL: PEP 740 links must be fully qualified (None: no links)
        self.public_url = public_url
        self.simple_s = os.fspath(simple_dir)
        self.staging_s = os.fspath(self.staging)
        self.names = TempNames()
        self.need_requires = need_requires
        self.fsync = fsync
        self.dry_run = dry_run
        self.file_pool = file_pool
        # what this run learnt of files, shared by its threads (one project is on one thread at
        # a time): downloads, metadata documents, Requires-Dist lines; kept from the closure
        # walk's visits until the project's run (see _forget)
        self.fetched: dict[tuple[str, Optional[str]], Fetched] = {}
        self.metadata_docs: dict[tuple[str, Optional[str]], bytes] = {}
        self.requires: dict[tuple[str, Optional[str]], list[str]] = {}

    def read_page(self, task: ProjectTask) -> Optional[ProjectPage]:
        """The task's page: the one this run already read, else upstream's (conditional when
        the mirror's copy was made for the same selection). None: upstream says it is unchanged."""
        if task.page is not None or task.not_modified:
            return task.page
        if task.local is not None:
            return self._local_page(task)
        if task.narrower_selection and self._pages_present(task.canonical):
            return self.upstream.project(task.canonical, min_serial=task.root_serial, validators=task.validators,
                                         fingerprint=task.previous_fingerprint)
        return self.upstream.project(task.canonical, min_serial=task.root_serial)

    def _local_page(self, task: ProjectTask) -> ProjectPage:
        """The page of one of the organisation's own projects: never upstream's files, unless
        the name is in `merge_upstream`. The requirements of its files are known from their
        validation: the closure follows them without copying a file."""
        assert task.local is not None
        upstream = None
        if task.merge_upstream:
            try:
                upstream = self.upstream.project(task.canonical, min_serial=task.root_serial)
            except NotFoundError:
                upstream = None
        from .local import local_page

        for d in task.local.files:
            self.requires.setdefault((d.filename, d.sha256), list(d.requires_dist))
        return local_page(task.local, upstream)

    def _page(self, task: ProjectTask) -> Optional[ProjectPage]:
        """The page, or None when the mirror's pages are those of an unchanged upstream page."""
        page = self.read_page(task)
        if page is None:
            if task.same_selection and self._pages_present(task.canonical):
                return None
            page = self._local_page(task) if task.local is not None else self.upstream.project(task.canonical, min_serial=task.root_serial)
            assert page is not None
        if (
            task.previous_fingerprint is not None
            and page.fingerprint == task.previous_fingerprint
            and task.same_selection
            and self._pages_present(task.canonical)
        ):
            return None
        return page

    def visit(self, task: ProjectTask) -> tuple[Optional[ProjectPage], bool, list[str]]:
        """For the closure walk: (the page, whether upstream said 304, the Requires-Dist lines of
        the files the task's want selects). Files whose requirements nobody advertises are
        downloaded here (they are mirrored anyway) and their own metadata is read."""
        page = self.read_page(task)
        not_modified = page is None and task.page is None
        if page is None:
            if task.same_selection and _requires_known(task.previous):
                return None, True, requires_lines(task.previous)
            if task.narrower_selection and _requires_known(task.previous):
                # the page is what it was, and this want selects part of what the last one did:
                # selecting from last time's files is selecting from the page
                chosen = {f.filename for f in self.selector.select(_page_of(task), task.want)[0]}
                return None, True, requires_lines([f for f in task.previous if f.filename in chosen])
            page = self.upstream.project(task.canonical, min_serial=task.root_serial)
            assert page is not None
            not_modified = False
        if task.same_selection and page.fingerprint == task.previous_fingerprint and _requires_known(task.previous):
            return page, not_modified, requires_lines(task.previous)
        plan = plan_project(page, task.want, task.previous, self.selector.select)
        lines = self._map(lambda job: self._requires(*job), plan.jobs())
        return page, not_modified, sorted({line for ls in lines for line in ls})

    def run(self, task: ProjectTask) -> ProjectResult:
        page = self._page(task)
        if page is None:
            return ProjectResult(page_serial=task.root_serial, fingerprint=task.previous_fingerprint, unchanged=True,
                                 files=task.previous, serial=task.root_serial)
        result = ProjectResult(page_serial=page.serial, fingerprint=page.fingerprint, status=page.status,
                               etag=page.etag, last_modified=page.last_modified, conflicts=page.conflicts)
        result.serial = page.serial if page.serial is not None else task.root_serial
        if result.serial is None:
            result.serial = task.local_serial
        on_disk = self._on_disk(task.previous)
        plan = plan_project(page, task.want, task.previous, self.selector.select, on_disk, self.selector.refusals)
        result.versions = list(plan.versions)
        result.refused = plan.refused_report()
        result.held_until = plan.matures
        try:
            if self.dry_run:  # the plan is the answer: what the run would fetch and delete
                result.plan_fetch = plan.fetch_report()
                result.plan_delete = plan.delete_report()
                return result
            for mirrored, fetched_bytes in self._map(lambda job: self._one_file(task.canonical, *job, on_disk), plan.jobs()):
                result.files.append(mirrored)
                if fetched_bytes:
                    result.downloaded += 1
                    result.downloaded_bytes += fetched_bytes
            result.files.sort(key=lambda f: f.filename)
            self._stage_pages(page, result)
            return result
        finally:
            self._forget([f for f, _old in plan.jobs()])

    def _on_disk(self, previous: list[MirroredFile]) -> dict[str, int]:
        """The mirrored files that are really there: path -> mtime_ns."""
        held: dict[str, int] = {}
        for f in previous:
            st = _regular_file(os.path.join(self.mirror_web_s, f.path))
            if st is not None:
                held[f.path] = st.st_mtime_ns
        return held

    def _forget(self, files: list[UpstreamFile]) -> None:
        """A run syncs each project once: what it learnt of the project's files is not needed
        again (a full mirror would otherwise keep every file's METADATA until the run ends)."""
        for f in files:
            key = _key(f)
            self.fetched.pop(key, None)
            self.metadata_docs.pop(key, None)
            self.requires.pop(key, None)

    def _map(self, fn: Callable[[_Job], _T], jobs: list[_Job]) -> list[_T]:
        """`fn` over the jobs, on the file pool when several need a download."""
        if self.file_pool is not None and sum(1 for f, old in jobs if old is None and _key(f) not in self.fetched) > 2:
            return [fut.result() for fut in [self.file_pool.submit(fn, job) for job in jobs]]
        return [fn(job) for job in jobs]

    def _requires(self, f: UpstreamFile, old: Optional[MirroredFile]) -> list[str]:
        """Requires-Dist of one selected file: what the state knows, upstream's advertised
        metadata, or the file's own (downloading it when nothing else tells)."""
        if old is not None and old.requires_dist is not None:
            return old.requires_dist
        key = _key(f)
        known = self.requires.get(key)
        if known is not None:
            return known
        lines: list[str]
        if f.metadata:
            data = self._upstream_metadata(f)
            lines = requires_dist(data)
        else:
            got = self._download(f)
            own = self.metadata_docs.get(key)
            lines = requires_dist(own) if own is not None else (file_requires(self.web / got.path, f.filename) or [])
        self.requires[key] = lines
        return lines

    def _upstream_metadata(self, f: UpstreamFile) -> bytes:
        key = _key(f)
        data = self.metadata_docs.get(key)
        if data is None:
            data = self.downloader.fetch_bytes(f.url + ".metadata", f"metadata of {f.filename}", f.metadata_sha256)
            self.metadata_docs[key] = data
        return data

    def _download(self, f: UpstreamFile) -> Fetched:
        """The file on disk in its content-addressed place, downloaded at most once a run; a
        wheel's own METADATA is read while its bytes are at hand."""
        key = _key(f)
        got = self.fetched.get(key)
        if got is None:
            got = self.downloader.fetch(f.url, f.filename, f.sha256, f.size)
            if f.filename.endswith(".whl") and key not in self.metadata_docs:
                data = wheel_metadata(got.data if got.data is not None else self.web / got.path)
                if data is not None:
                    self.metadata_docs[key] = data
            got = replace(got, data=None)  # the cache keeps no file bodies
            self.fetched[key] = got
        return got

    # -- files --------------------------------------------------------------------------------
    def _one_file(self, project: str, f: UpstreamFile, old: Optional[MirroredFile], on_disk: dict[str, int]) -> tuple[MirroredFile, int]:
        """One file of the plan: the mirror's copy (a keep), else a download (a fetch)."""
        fetched = 0
        if old is not None:
            path, size, sha256, mtime_ns = old.path, old.size, old.sha256, on_disk[old.path]
            meta_sha, meta_size, requires = old.metadata_sha256, old.metadata_size, old.requires_dist
            if meta_sha is not None and not os.path.isfile(os.path.join(self.web_s, path + ".metadata")):
                meta_sha = meta_size = None
        else:
            got = self._download(f)  # or already downloaded by this run's closure walk
            path, size, sha256, mtime_ns = got.path, got.size, got.sha256, got.mtime_ns
            fetched = 0 if got.adopted else size
            meta_sha = meta_size = None
            requires = self.requires.get(_key(f))
        if meta_sha is None:
            meta_sha, meta_size, meta_requires = self._metadata(f, path)
            requires = requires if requires is not None else meta_requires
        if requires is None and self.need_requires:
            requires = file_requires(self.web / path, f.filename)
        prov_sha = self._provenance(f, path, old)
        prov_url = self.public_url + path + ".provenance" if prov_sha is not None and self.public_url else None
        return (
            MirroredFile(
                project=project,
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
                provenance_url=prov_url,
                provenance_sha256=prov_sha,
            ),
            fetched,
        )

    def _provenance(self, f: UpstreamFile, path: str, old: Optional[MirroredFile]) -> Optional[str]:
        """PEP 740: upstream's provenance of the file, kept beside it as <path>.provenance (its
        sha256), or None. Optional data: a provenance that cannot be fetched leaves the file
        published without one (and is tried again by the next run that syncs the project)."""
        if not f.provenance:
            return None
        target = os.path.join(self.web_s, path + ".provenance")
        if old is not None and old.provenance_sha256 is not None and os.path.isfile(target):
            return old.provenance_sha256
        try:
            data = self.downloader.fetch_bytes(f.provenance, f"provenance of {f.filename}", None, limit=PROVENANCE_LIMIT)
        except UpstreamError as exc:
            log.warning("event=provenance-failed file=%s error=%r", f.filename, str(exc))
            return None
        write_atomic(target, data, self.fsync)
        return hashlib.sha256(data).hexdigest()

    def _metadata(self, f: UpstreamFile, path: str) -> tuple[Optional[str], Optional[int], Optional[list[str]]]:
        """Put <file>.metadata beside the file: upstream's when advertised, else a wheel's own METADATA."""
        key = _key(f)
        data: Optional[bytes] = None
        if f.filename.endswith(".whl"):
            data = self.metadata_docs.get(key)
            if data is None:
                data = wheel_metadata(self.web / path)
            if f.metadata and f.metadata_sha256 and (data is None or hashlib.sha256(data).hexdigest() != f.metadata_sha256):
                data = None  # upstream serves other bytes than the wheel holds: take upstream's
        if f.metadata and data is None:
            # PEP 658: the .metadata file is the wheel's METADATA; when the hashes agree the
            # request is saved, otherwise upstream's document is fetched and checked
            data = self._upstream_metadata(f)
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


_T = TypeVar("_T")


def _key(f: UpstreamFile) -> tuple[str, Optional[str]]:
    return (f.filename, f.sha256)


def _page_of(task: ProjectTask) -> ProjectPage:
    """The files the mirror holds of a project, as a page to select from."""
    files = [UpstreamFile(f.filename, f.url, f.sha256, f.size, f.requires_python, f.yanked, f.upload_time, version=f.version)
             for f in task.previous]
    return ProjectPage(name=task.display, canonical=task.canonical, serial=task.root_serial, files=files)


def _requires_known(files: list[MirroredFile]) -> bool:
    return all(f.requires_dist is not None for f in files)


def requires_lines(files: list[MirroredFile]) -> list[str]:
    """The distinct Requires-Dist lines of a project's mirrored files."""
    return sorted({line for f in files for line in (f.requires_dist or [])})


def _regular_file(path: str) -> Optional[os.stat_result]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None
