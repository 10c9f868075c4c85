"""The sync run: compare upstream's root with the state, bring changed projects up to date,
follow the dependency closure, delete what upstream deleted (behind a guard), publish the root."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import queue
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Container, Iterable, Iterator, Optional

from packaging.utils import canonicalize_name

from .config import Config
from .deadline import abort_requests
from .download import Downloader
from .errors import DeleteGuardError, FilesystemError, MirrorSyncError, NotFoundError
from .fsutil import Flusher, MirrorLock, clear_dir, preflight, shared_lock
from .http import HttpClient
from .models import MirroredFile, ProjectPage, RootIndex, UpstreamFile
from .progress import Progress
from .project_sync import INCOMING, STAGING, ProjectResult, ProjectSyncer, ProjectTask
from .publish import Publisher, discard_staged
from .selection import Selector, Want
from .state import Known, State
from .upstream import Upstream, Validators

if TYPE_CHECKING:
    from packaging.requirements import Requirement

    from .closure import DependencyEvaluator, Visit
    from .runners import Runner

log = logging.getLogger("mirror_sync")

MAX_CLOSURE_VISITS = 1_000_000
ROOT_REPUBLISH_SECONDS = 300.0


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def filter_fingerprint(config: Config) -> str:
    """Changes whenever a setting that decides which files are mirrored changes."""
    envs = None if config.environments is None else [repr(e) for e in config.environments]
    doc = {
        "exclude": sorted(str(r) for r in config.exclude),
        "environments": envs,
        "prereleases": config.prereleases,
        "latest": config.latest,
        "max_file_size": config.max_file_size,
        "dependencies": config.dependencies and config.projects is not None,
        "v": 1,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class RunStats:
    synced: int = 0
    unchanged: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    downloaded: int = 0
    downloaded_bytes: int = 0
    deleted_projects: int = 0
    plan_fetch: list[dict[str, Any]] = field(default_factory=list)
    plan_delete: list[dict[str, Any]] = field(default_factory=list)
    max_page_serial: Optional[int] = None  # the newest serial of the pages read (an allowlist reads no root)

    def saw_serial(self, serial: Optional[int]) -> None:
        if serial is not None and (self.max_page_serial is None or serial > self.max_page_serial):
            self.max_page_serial = serial


class Syncer:
    def __init__(self, config: Config, *, dry_run: bool = False, allow_mass_delete: bool = False) -> None:
        self.config = config
        self.dry_run = dry_run
        self.allow_mass_delete = allow_mass_delete
        self.stats = RunStats()
        self.selector = Selector(config)
        self.fingerprint = filter_fingerprint(config)
        self.allowlist = config.projects is not None
        self.root_header_serial: Optional[int] = None  # an allowlist's root, as its headers announce it
        self.scratch: Optional[Path] = None  # a dry run's downloads, outside the mirror
        self.client: Optional[HttpClient] = None  # the run's HTTP client (this process's requests)
        self.closure_mode = self.allowlist and config.dependencies
        self.evaluator: Optional[DependencyEvaluator] = None
        if self.closure_mode:  # the requirement and marker machinery loads only for a closure
            from . import closure, environments

            self.evaluator = closure.DependencyEvaluator(environments.marker_environments(config.environments))

    # -- entry point --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.config
        started = time.time()
        if self.dry_run:
            return self._run_dry(started)
        for warning in preflight(cfg.directory):
            log.warning("event=preflight warning=%r", warning)
        with MirrorLock(cfg.lock_path):
            cfg.web.mkdir(parents=True, exist_ok=True)
            (cfg.simple_dir).mkdir(parents=True, exist_ok=True)
            state = State(cfg.state_path)
            flusher = Flusher(cfg.directory) if cfg.fsync else None
            try:
                return self._run_locked(state, flusher, started)
            finally:
                if flusher is not None:
                    flusher.close()
                state.close()

    def _run_dry(self, started: float) -> dict[str, Any]:
        with shared_lock(self.config.lock_path) as quiet:
            # no run can write while we hold the shared lock: read the state without a trace;
            # while a sync runs, read it the ordinary read-only way
            return self._plan(started, immutable=quiet)

    def _plan(self, started: float, immutable: bool) -> dict[str, Any]:
        cfg = self.config
        state = State(cfg.state_path, readonly=True, immutable=immutable) if cfg.state_path.exists() else None
        client = self.client = HttpClient(cfg.workers, cfg.timeout, cfg.retries, deadline=cfg.deadline)
        self.scratch = Path(tempfile.mkdtemp(prefix="mirror-sync-plan-")) / "web"
        try:
            root = None if self.allowlist else Upstream(cfg.upstream, client, cfg.max_page_size, cfg.max_root_size).root()
            projects, gone = self._sync_projects(state, None, root)
            deleted = self._deletions(state, root, projects, gone)
            for name in deleted:
                for f in state.files_of(name) if state else []:
                    self.stats.plan_delete.append({"project": name, "path": f.path, "size": f.size})
            return self._summary(state, root, started, deleted)
        finally:
            client.close()
            shutil.rmtree(self.scratch.parent, ignore_errors=True)
            self.scratch = None
            if state is not None:
                state.close()

    def _run_locked(self, state: State, flusher: Optional[Flusher], started: float) -> dict[str, Any]:
        cfg = self.config
        publisher = Publisher(state, cfg.web, flusher, fsync=cfg.fsync)
        clear_dir(cfg.directory / STAGING)  # what an interrupted run staged or half-downloaded
        clear_dir(cfg.directory / INCOMING)
        for old in (cfg.web / STAGING, cfg.packages_dir / INCOMING):  # where releases before 0.2 kept them
            shutil.rmtree(old, ignore_errors=True)
        if state.garbage():  # an interrupted run left deletions half done: finish them first
            publisher.publish_root(state.get_meta_int("mirror_serial"))
            publisher.collect_garbage()
        state.set_meta("last_sync_started", utc_iso(started))
        client = self.client = HttpClient(cfg.workers, cfg.timeout, cfg.retries, deadline=cfg.deadline)
        ok = False
        root: Optional[RootIndex] = None
        deleted: list[str] = []
        run_key = self._run_key()
        completed = None
        last_complete = (
            state.get_meta("last_result") == "ok"
            and state.get_meta("run_key") == run_key
            and (cfg.simple_dir / "index.v1_json").is_file()
        )
        if last_complete:
            completed = state.get_meta_int("mirror_serial")  # the serial the last complete run reached
        try:
            if not self.allowlist:
                root = Upstream(cfg.upstream, client, cfg.max_page_size, cfg.max_root_size).root(unchanged_at=completed)
                if root.unchanged:  # same serial, same settings, last run complete: nothing to do
                    ok = True
                    return self._summary(state, root, started, [])
            elif state.get_meta("root_header_serial") != "absent" or not last_complete:
                # an upstream that announces its serial on the root (a warehouse, a mirror of
                # one) tells in one request, from the headers alone, that nothing changed
                header = Upstream(cfg.upstream, client, cfg.max_page_size, cfg.max_root_size).root_serial()
                if header is not None and header == state.get_meta_int("root_header_serial") and last_complete:
                    ok = True
                    return self._summary(state, None, started, [])
                self.root_header_serial = header
            projects, gone = self._sync_projects(state, publisher, root)
            deleted = self._deletions(state, root, projects, gone)
            publisher.delete_projects(deleted)
            self.stats.deleted_projects = len(deleted)
            changed = bool(publisher.published or deleted or self.stats.synced)
            ok = not self.stats.failed
            # an allowlist reads no root: its serial is the newest of the projects it holds
            upstream_serial = root.serial if root is not None else self.stats.max_page_serial
            if root is None:
                serial = max((s for _c, _d, s in state.root_entries() if s is not None), default=None)
            else:
                serial = root.serial if ok else state.get_meta_int("mirror_serial")
            if changed or not (cfg.simple_dir / "index.v1_json").is_file() or (ok and serial != state.get_meta_int("mirror_serial")):
                publisher.publish_root(serial if serial is not None else upstream_serial)
            publisher.collect_garbage()
            if root is None and upstream_serial is None:  # no page was read (304s): what the last run saw
                upstream_serial = state.get_meta_int("upstream_serial")
            _set_if_changed(state, "upstream_serial", None if upstream_serial is None else str(upstream_serial))
            if ok and self.allowlist:
                header = self.root_header_serial
                _set_if_changed(state, "root_header_serial", "absent" if header is None else str(header))
            if ok:
                _set_if_changed(state, "mirror_serial", None if serial is None else str(serial))
                _set_if_changed(state, "run_key", run_key)
            return self._summary(state, root, started, deleted, files_deleted=publisher.files_deleted)
        except MirrorSyncError as exc:
            self.stats.failed.append({"project": "", "error": str(exc)})
            raise
        except KeyboardInterrupt:
            # Ctrl-C, or SIGTERM from systemd or cron's timeout: what is complete goes live (its
            # files are on disk), with a root that lists it, so that a run cut short at the same
            # place every time still moves the mirror forward
            try:
                publisher.flush()
                if publisher.published:
                    publisher.publish_root(state.get_meta_int("mirror_serial"))
            except MirrorSyncError as exc:
                log.error("event=publish-on-stop-failed error=%r", str(exc))
            raise
        finally:
            publisher.discard()
            finished = time.time()
            state.begin()
            state.set_meta("last_sync_finished", utc_iso(finished))
            state.set_meta("last_result", state.run_result(ok))
            state.set_meta("last_duration_s", f"{finished - started:.3f}")
            state.set_meta("last_failures", str(len(self.stats.failed)))
            state.set_meta("last_downloaded", str(self.stats.downloaded))
            state.set_meta("last_downloaded_bytes", str(self.stats.downloaded_bytes))
            state.set_meta("last_deleted_files", str(publisher.files_deleted))
            state.set_meta("upstream", self.config.upstream)
            if ok:
                state.set_meta("last_success", utc_iso(finished))
            state.commit()
            client.close()

    def _run_key(self) -> str:
        """Changes with anything that decides what the mirror holds besides upstream's content."""
        cfg = self.config
        projects = None if cfg.projects is None else sorted(str(r) for r in cfg.projects)
        doc = {"filters": self.fingerprint, "projects": projects, "dependencies": cfg.dependencies, "upstream": cfg.upstream, "delete": cfg.delete}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    # -- which projects -----------------------------------------------------------------------
    def _sync_projects(
        self, state: Optional[State], publisher: Optional[Publisher], root: Optional[RootIndex]
    ) -> tuple[Container[str], set[str]]:
        """Sync what changed; returns (the projects the mirror should hold, those upstream no
        longer has). A full mirror takes its list from the root; an allowlist reads only the
        pages of its projects and of their dependency closure."""
        cfg = self.config
        known = state.project_serials() if state is not None else {}
        runner = _Runner(self, state, publisher, root, known, self._syncer_factory())
        if root is None:
            assert cfg.projects is not None
            return runner.run_closure(cfg.projects)
        projects = root.projects
        excluded = self.selector.project_excluded if self.selector.excluded else None
        runner.run_wave(lambda: (c for c in projects if excluded is None or not excluded(c)))
        gone = {n for n in known if n not in projects}
        return _Wanted(projects, excluded), gone

    def _syncer_factory(self) -> Callable[[Optional[ThreadPoolExecutor]], ProjectSyncer]:
        """Builds a ProjectSyncer with its own HTTP client: in this process, or in a worker process."""
        cfg = self.config
        threads = cfg.workers
        selector = self.selector
        closure_mode = self.closure_mode
        dry_run = self.dry_run

        # a dry run writes nothing to the mirror: files it must read (for requirements nobody
        # advertises) go to a scratch directory that the plan removes
        web = self.scratch if self.scratch is not None else cfg.web

        parent, shared = os.getpid(), self.client

        def make(file_pool: Optional[ThreadPoolExecutor]) -> ProjectSyncer:
            # in this process, the run's own client: `workers` connections in all, the root's
            # included; a worker process makes its own (sockets do not survive a fork)
            client = shared if shared is not None and os.getpid() == parent else HttpClient(
                threads, cfg.timeout, cfg.retries, deadline=cfg.deadline)
            # no fsync per file: the publisher's syncfs makes a whole batch durable before its pages go live
            downloader = Downloader(client, web, retries=cfg.retries, fsync=False, max_file_size=cfg.max_file_size)
            return ProjectSyncer(
                Upstream(cfg.upstream, client, cfg.max_page_size, cfg.max_root_size),
                downloader,
                selector,
                cfg.simple_dir,
                web,
                need_requires=closure_mode,
                fsync=False,
                dry_run=dry_run,
                file_pool=file_pool,
            )

        return make

    def _deletions(self, state: Optional[State], root: Optional[RootIndex], wanted: Container[str], gone: set[str]) -> list[str]:
        if state is None:
            return []
        held = [r[0] for r in state.root_entries()]
        failed = {f["project"] for f in self.stats.failed}
        gone_upstream = [n for n in held if n in gone]
        unselected = [n for n in held if n not in gone and n not in wanted and n not in failed]
        if self.config.projects is not None and self.stats.failed:
            unselected = []  # an incomplete closure must not prune what it did not reach
        to_delete = sorted((gone_upstream if self.config.delete else []) + unselected)
        if not to_delete or self.allow_mass_delete:
            return to_delete
        if root is not None and not root.projects and held:
            raise DeleteGuardError(
                f"upstream's root index lists no projects while the mirror holds {len(held)}; refusing to delete "
                "them all (an upstream outage?); run with --allow-mass-delete if this is intended"
            )
        share = len(to_delete) / len(held)
        if share > self.config.max_delete_ratio:
            raise DeleteGuardError(
                f"this run would delete {len(to_delete)} of {len(held)} projects ({share:.0%}), more than "
                f"max_delete_ratio {self.config.max_delete_ratio:.0%}; refusing (run with --allow-mass-delete if this is intended)"
            )
        return to_delete

    # -- summary ------------------------------------------------------------------------------
    def _summary(self, state: Optional[State], root: Optional[RootIndex], started: float, deleted: list[str], files_deleted: int = 0) -> dict[str, Any]:
        finished = time.time()
        projects, files, size = state.totals() if state is not None else (0, 0, 0)
        mirror_serial = state.get_meta_int("mirror_serial") if state is not None else None
        s = self.stats
        summary: dict[str, Any] = {
            "command": "sync",
            "ok": not s.failed,
            "dry_run": self.dry_run,
            "upstream": self.config.upstream,
            "directory": str(self.config.directory),
            "started": utc_iso(started),
            "finished": utc_iso(finished),
            "duration_s": round(finished - started, 3),
            "upstream_serial": root.serial if root else s.max_page_serial,
            "mirror_serial": mirror_serial,
            "projects": {"total": projects, "synced": s.synced, "deleted": len(deleted), "failed": len(s.failed)},
            "files": {
                "total": files,
                "downloaded": s.downloaded,
                "deleted": files_deleted,
                "failed": sum(1 for f in s.failed if f.get("file")),
                "bytes_total": size,
                "bytes_downloaded": s.downloaded_bytes,
            },
            "changed": bool(s.downloaded or files_deleted or deleted or s.synced),
            "failures": s.failed,
        }
        if self.dry_run:
            fetch_bytes = sum(int(p.get("size") or 0) for p in s.plan_fetch)
            delete_bytes = sum(int(p.get("size") or 0) for p in s.plan_delete)
            summary["plan"] = {"fetch": s.plan_fetch, "delete": s.plan_delete, "fetch_bytes": fetch_bytes, "delete_bytes": delete_bytes}
            summary["changed"] = bool(s.plan_fetch or s.plan_delete or deleted or s.synced)
        return summary


class _Runner:
    """Submits project tasks to the pool, hands finished ones to the publisher, follows the closure."""

    def __init__(
        self,
        sync: Syncer,
        state: Optional[State],
        publisher: Optional[Publisher],
        root: Optional[RootIndex],
        known: dict[str, Known],
        make_syncer: Callable[[Optional[ThreadPoolExecutor]], ProjectSyncer],
    ) -> None:
        self.sync = sync
        self.state = state
        self.publisher = publisher
        self.root = root
        self.known = known
        self.make_syncer = make_syncer
        self.local_serial = state.get_meta_int("local_serial") if state is not None else None
        self.local_serial_start = self.local_serial
        self.last_root_publish = time.monotonic()
        self.displays = {c: d for c, d, _s in state.root_entries()} if state is not None and root is None else {}
        # an allowlist reads its (small) file table once; a full mirror, project by project
        self.files: Optional[dict[str, list[MirroredFile]]] = state.files_by_project() if state is not None and root is None else None

    def _selection_key(self, want: Optional[Want]) -> str:
        return self.sync.fingerprint + ("" if want is None else ":" + want.key())

    def _needs_sync(self, canonical: str, selection: str) -> bool:
        root_serial = self.root.projects[canonical][1] if self.root is not None else None
        prev = self.known.get(canonical)
        if prev is None or root_serial is None:
            return True
        return prev.upstream_serial is None or prev.upstream_serial < root_serial or prev.selection != selection

    def _task(self, canonical: str, want: Optional[Want], selection: str) -> ProjectTask:
        if self.root is not None:
            display, root_serial = self.root.projects[canonical]
        else:
            display, root_serial = self.displays.get(canonical, canonical), None
        previous: list[MirroredFile] = []
        fingerprint = prev_selection = None
        validators = None
        prev = self.known.get(canonical)
        if self.state is not None and prev is not None:
            previous = self.files.get(canonical, []) if self.files is not None else self.state.files_of(canonical)
            prev_selection, fingerprint = prev.selection, prev.fingerprint
            if prev.etag or prev.last_modified:
                validators = Validators(prev.etag, prev.last_modified)
        local = None
        if root_serial is None:
            self.local_serial = (self.local_serial or 0) + 1
            local = self.local_serial
        return ProjectTask(canonical, display, root_serial, want, selection, previous, fingerprint, prev_selection, local, validators)

    def run_wave(self, names: Callable[[], Iterator[str]]) -> None:
        """A full mirror: sync every project that changed. `names` gives the projects (twice: a
        count, then the work), and nothing is kept per project: on a 700,000-project index a
        list of them, or of their tasks, would cost more than the rest of the run."""
        fingerprint = self._selection_key(None)
        count = sum(1 for c in names() if self._needs_sync(c, fingerprint))
        if not count:
            return
        from .runners import choose_runner  # worker processes: not loaded by a run with nothing to do

        todo = (self._task(c, None, fingerprint) for c in names() if self._needs_sync(c, fingerprint))
        runner = choose_runner(self.make_syncer, self.sync.config.workers, count)
        try:
            with _aborting_on_exit():
                self._drive(runner, todo, count)
        finally:
            runner.close()

    def _drive(self, runner: Runner, todo: Iterable[ProjectTask], count: int) -> None:
        """Run the tasks on the runner, keeping it fed; publish each result as it comes."""
        progress = Progress(count, "sync")
        fatal: Optional[BaseException] = None
        tasks = iter(todo)
        in_flight = 0

        def submit_more() -> int:
            submitted = 0
            while in_flight + submitted < runner.in_flight:
                batch = list(islice(tasks, runner.batch_size))
                if not batch:
                    break
                runner.submit(batch)
                submitted += len(batch)
            return submitted

        in_flight += submit_more()
        while in_flight:
            task, result, error = runner.next_done()
            in_flight -= 1
            if error is not None:
                if isinstance(error, FilesystemError):
                    fatal = fatal or error
                elif isinstance(error, MirrorSyncError):
                    self._fail(task.canonical, str(error))
                elif isinstance(error, Exception):  # a bug or an unexpected library error: one project, not the run
                    log.error("event=project-error project=%s", task.canonical, exc_info=error)
                    self._fail(task.canonical, f"unexpected {error.__class__.__name__}: {error}")
                else:
                    raise error
                progress.step(failed=True)
            elif result is not None:
                if fatal is not None:
                    discard_staged(result)
                    progress.step(failed=True)
                else:
                    self._record(task, result)
                    progress.step()
            if fatal is None:
                in_flight += submit_more()
        if fatal is not None:
            raise fatal
        if self.publisher is not None:
            self.publisher.flush()
            if self.state is not None and self.local_serial is not None and self.sync.stats.synced:
                _set_if_changed(self.state, "local_serial", str(self.local_serial))

    def _record(self, task: ProjectTask, result: ProjectResult) -> None:
        s = self.sync.stats
        s.saw_serial(result.page_serial)
        for filename in result.conflicts:
            error = f"project {task.canonical}: upstream lists {filename!r} twice with different sha256; not mirrored"
            log.error("event=file-failed project=%s file=%s error=%r", task.canonical, filename, error)
            s.failed.append({"project": task.canonical, "file": filename, "error": error})
        if not result.unchanged:
            s.synced += 1
            s.downloaded += result.downloaded
            s.downloaded_bytes += result.downloaded_bytes
        s.plan_fetch.extend(result.plan_fetch)
        s.plan_delete.extend(result.plan_delete)
        if self.publisher is not None:
            self.publisher.add(task, result)
            if time.monotonic() - self.last_root_publish > ROOT_REPUBLISH_SECONDS:
                self.publisher.flush()
                self.publisher.publish_root(self.state.get_meta_int("mirror_serial") if self.state else None)
                self.last_root_publish = time.monotonic()
        if not result.unchanged:
            log.debug("event=project-synced project=%s files=%d downloaded=%d", task.canonical, len(result.files), result.downloaded)

    def _fail(self, project: str, error: str) -> None:
        log.error("event=project-failed project=%s error=%r", project, error)
        self.sync.stats.failed.append({"project": project, "error": error})

    # -- closure --------------------------------------------------------------------------------
    def run_closure(self, requirements: tuple[Requirement, ...]) -> tuple[set[str], set[str]]:
        """An allowlist: walk its dependency closure to the fixpoint (reading pages and the
        requirements of selected files, nothing published), then sync each project once with
        what the whole closure wants of it. Returns (wanted, gone upstream)."""
        from .closure import Visit, walk
        from .runners import ThreadRunner

        cfg = self.sync.config
        selector = self.sync.selector
        evaluator = self.sync.evaluator
        runner = ThreadRunner(self.make_syncer, cfg.workers)
        syncer = runner.syncer
        pages: dict[str, tuple[Optional[ProjectPage], bool]] = {}  # canonical -> (page, upstream said 304)
        gone: set[str] = set()

        def task_for(canonical: str, want: Want) -> ProjectTask:
            task = self._task(canonical, want, self._selection_key(want))
            if canonical in pages:
                task.page, task.not_modified = pages[canonical]
            if task.page is not None:
                task.display = task.page.name
            return task

        def visit(task: ProjectTask) -> Visit:
            name = task.canonical
            try:
                page, not_modified, lines = syncer.visit(task)
            except NotFoundError:
                gone.add(name)
                return Visit(missing=True)
            except MirrorSyncError as exc:
                if isinstance(exc, FilesystemError):
                    fatal.append(exc)
                return Visit(error=str(exc))
            except Exception as exc:  # a bug or an unexpected library error: one project, not the run
                log.error("event=project-error project=%s", name, exc_info=exc)
                return Visit(error=f"unexpected {exc.__class__.__name__}: {exc}")
            if page is not None and selector.config.filtered:
                # kept until the walk ends: only the files some want could select
                page = dataclasses.replace(page, files=[f for f in page.files if selector.admits(f)])
            pages[name] = (page, not_modified)
            return Visit(requires=tuple(lines))

        fatal: list[FilesystemError] = []
        progress = Progress(0, "resolve")
        try:
            with ThreadPoolExecutor(cfg.workers, thread_name_prefix="resolve") as pool, _aborting_on_exit():
                closure = walk(
                    requirements,
                    _PoolVisitor(pool, task_for, visit, progress),
                    evaluator.needed if evaluator is not None else (lambda lines, extras: []),
                    excluded=selector.project_excluded,
                    follow=cfg.dependencies,
                    max_visits=MAX_CLOSURE_VISITS,
                )
            progress.close()
            if fatal:
                raise fatal[0]
            for name, error in sorted(closure.failures.items()):
                self._fail(name, error)
            todo = [task_for(c, w) for c, w in sorted(closure.wants.items()) if c not in closure.failures]
            for task in todo:
                if task.page is not None:
                    self.sync.stats.saw_serial(task.page.serial)
            self._check_installable(todo, requirements)
            if todo:
                with _aborting_on_exit():
                    self._drive(runner, todo, len(todo))
        finally:
            runner.close()
        return set(closure.wants) - gone, gone

    def _check_installable(self, tasks: list[ProjectTask], requirements: tuple[Requirement, ...]) -> None:
        """An allowlisted project must offer every configured environment something to install."""
        allowlisted = {canonicalize_name(r.name) for r in requirements}
        for task in tasks:
            if task.canonical not in allowlisted:
                continue
            if task.page is None:  # upstream said 304: its mirrored files are what it selects
                files = [UpstreamFile(f.filename, f.url, f.sha256, f.size, f.requires_python) for f in task.previous]
            else:
                files = self.sync.selector.select(task.page, task.want)[0]
            missing = self.sync.selector.uninstallable(files)
            if missing:
                specs = sorted(s for s in (task.want.specifiers if task.want else set()) if s)
                matching = f" matching {' or '.join(repr(s) for s in specs)}" if specs and None not in task.want.specifiers else ""  # type: ignore[union-attr]
                self._fail(task.canonical, f"project {task.canonical}: no release{matching} has a file installable on {', '.join(missing)}")


@contextmanager
def _aborting_on_exit() -> Iterator[None]:
    """A stop or a fatal error inside the block shuts down every request in flight, so that the
    threads reading them return at once (before a pool or runner waits for its threads)."""
    try:
        yield
    except BaseException:
        abort_requests()
        raise


class _Wanted:
    """The projects a full mirror wants: upstream's, less the blocklist (a view, not a copy)."""

    def __init__(self, projects: Container[str], excluded: Optional[Callable[[str], bool]]) -> None:
        self.projects = projects
        self.excluded = excluded

    def __contains__(self, name: object) -> bool:
        return name in self.projects and not (self.excluded is not None and isinstance(name, str) and self.excluded(name))


class _PoolVisitor:
    """The closure walk's visitor: visits on a thread pool, reported in the order they finish."""

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        task_for: Callable[[str, Want], ProjectTask],
        visit: Callable[[ProjectTask], Visit],
        progress: Progress,
    ) -> None:
        self.pool = pool
        self.task_for = task_for  # on the walk's thread: it reads the state
        self.visit = visit
        self.progress = progress
        self.done: "queue.SimpleQueue[tuple[str, Visit]]" = queue.SimpleQueue()

    def submit(self, name: str, want: Want) -> None:
        self.progress.grow(1)
        self.pool.submit(self._one, self.task_for(name, want))

    def _one(self, task: ProjectTask) -> None:
        from .closure import Visit

        try:
            outcome = self.visit(task)
        except BaseException as exc:  # never lose a visit: the walk waits for every one
            outcome = Visit(error=f"unexpected {exc.__class__.__name__}: {exc}")
        self.done.put((task.canonical, outcome))

    def next_done(self) -> tuple[str, Visit]:
        name, outcome = self.done.get()
        self.progress.step(failed=outcome.error is not None or outcome.missing)
        return name, outcome


def _set_if_changed(state: State, key: str, value: Optional[str]) -> None:
    """A run that changed nothing writes nothing."""
    if state.get_meta(key) != value:
        state.set_meta(key, value)
