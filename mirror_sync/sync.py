"""The sync run, orchestrated: take the lock, read upstream's root (a full mirror) or probe it
(an allowlist), let the scheduler bring the projects up to date, delete what the planner says
goes (behind the guard), publish the root and record how the run ended.

The decisions are the planner's (mirror_sync/plan/), the project work the scheduler's and the
project syncer's, the writes the publisher's, the bookkeeping the state's; this module only puts
them in order. A dry run takes the same path with no publisher: the plan is its answer.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Container, Iterator, Optional

from .clock import utc_iso
from .config import Config
from .download import Downloader
from .errors import ConfigError, MirrorSyncError
from .fsutil import Flusher, MirrorLock, clear_dir, preflight, shared_lock
from .http import HttpClient
from .models import RootIndex
from .plan.deletions import Deletions, guard_deletions, guard_policy, plan_deletions
from .plan.keys import filter_fingerprint, run_key
from .plan.project import REMOVED, UNSELECTED
from .plan.selection import Selector
from .project_sync import INCOMING, STAGING, ProjectSyncer
from .publish import Publisher
from .reports import MirrorTotals, PolicyReport, RunStats, SyncReport
from .scheduler import Scheduler, Wanted
from .state import RunOutcome, RunProgress, State
from .upstream import Upstream

if TYPE_CHECKING:
    from .local import LocalProject
    from .plan.closure import DependencyEvaluator
    from .policy.rules import Policy

log = logging.getLogger("mirror_sync")

__all__ = ["Syncer", "filter_fingerprint", "utc_iso"]


def load_policy(config: Config, cache: bool) -> Optional[Policy]:
    """The configured policy at this run's instant, with its advisories loaded (None: no policy).
    `cache`: keep the advisory export's compact index in the mirror directory."""
    settings = config.policy
    if not settings.active:
        return None
    from .policy.osv import ExportMissingError, load_advisories
    from .policy.osv_index import IndexFile
    from .policy.rules import Policy, clock_now

    db = None
    if settings.advisories is not None and settings.block.any:
        index = IndexFile(config.directory / "advisories.index") if cache and config.directory.is_dir() else None
        try:
            db = load_advisories(settings.advisories, cache=index)
        except ExportMissingError:
            raise ConfigError(
                f"{config.path}: key 'advisories': the OSV export {settings.advisories} does not exist; blocking "
                "releases needs it (download the per-ecosystem zip OSV publishes there, or set the role's "
                "pypi_mirror_sync_advisories_url)"
            ) from None
    return Policy(settings, db, clock_now())


def _local_digest(local: dict[str, LocalProject]) -> Optional[str]:
    """Changes with any file of the local directory (so that a run does not stop at an unchanged upstream)."""
    if not local:
        return None
    import hashlib

    lines = (f"{d.filename} {d.sha256} {d.mtime_ns}" for name in sorted(local) for d in local[name].files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _client_for(cfg: Config) -> HttpClient:
    """An HTTP client as the configuration asks: `workers` requests and connections at most."""
    return HttpClient(cfg.workers, cfg.timeout, cfg.retries, deadline=cfg.deadline)


class Syncer:
    def __init__(self, config: Config, *, dry_run: bool = False, allow_mass_delete: bool = False) -> None:
        self.config = config
        self.dry_run = dry_run
        self.allow_mass_delete = allow_mass_delete
        self.stats = RunStats()
        self.local: dict[str, LocalProject] = {}  # the `local` directory's projects, read at the start of the run
        self.policy = load_policy(config, cache=not dry_run)
        self.selector = Selector(config, self.policy)
        self.fingerprint = filter_fingerprint(config)
        self.allowlist = config.projects is not None
        self.root_header_serial: Optional[int] = None  # an allowlist's root, as its headers announce it
        self.scratch: Optional[Path] = None  # a dry run's downloads, outside the mirror
        self.client: Optional[HttpClient] = None  # the run's HTTP client (this process's requests)
        self.closure_mode = self.allowlist and config.dependencies
        self.evaluator: Optional[DependencyEvaluator] = None
        if self.closure_mode:  # the requirement and marker machinery loads only for a closure
            from . import environments
            from .plan import closure

            self.evaluator = closure.DependencyEvaluator(environments.marker_environments(config.environments))

    # -- entry point --------------------------------------------------------------------------
    def run(self) -> SyncReport:
        cfg = self.config
        started = time.time()
        self._read_local()
        if self.dry_run:
            with shared_lock(cfg.lock_path) as quiet:
                # no run can write while we hold the shared lock: read the state without a trace;
                # while a sync runs, read it the ordinary read-only way
                return self._run_dry(started, immutable=quiet)
        for warning in preflight(cfg.directory):
            log.warning("event=preflight warning=%r", warning)
        with self._locked() as (state, flusher):
            return self._run_locked(state, flusher, started)

    def publish_local(self, names: set[str]) -> SyncReport:
        """Publish the named projects of the local directory at once (after `mirror-sync add`):
        their pages and the root, nothing else; the next sync finds them up to date."""
        cfg = self.config
        started = time.time()
        assert cfg.local is not None
        self._read_local()
        with self._locked() as (state, flusher):
            publisher = Publisher(state, cfg.web, flusher, fsync=cfg.fsync)
            client = self._new_client()
            try:
                mine = {n: self.local[n] for n in sorted(names) if n in self.local}
                scheduler = Scheduler(cfg, self.selector, self.evaluator, self.fingerprint, self.stats, state, publisher,
                                      None, self._syncer_factory(), mine)
                scheduler.run_wave(lambda: ((n, None) for n in mine))
                publisher.publish_root(state.get_meta_int("mirror_serial"))
                return self._report(state, None, started, None)
            finally:
                publisher.discard()
                client.close()

    def _read_local(self) -> None:
        """The organisation's own projects (the `local` directory), read afresh every run."""
        if self.config.local is not None:
            from .local import scan_local

            self.local = scan_local(self.config.local)

    @contextmanager
    def _locked(self) -> Iterator[tuple[State, Optional[Flusher]]]:
        """The mirror, for writing: its lock, its directories, its state, and (with fsync) what
        makes a batch durable. Closed in that order's reverse, whatever happens."""
        cfg = self.config
        with MirrorLock(cfg.lock_path):
            cfg.web.mkdir(parents=True, exist_ok=True)
            cfg.simple_dir.mkdir(parents=True, exist_ok=True)
            state = State(cfg.state_path)
            flusher = Flusher(cfg.directory) if cfg.fsync else None
            try:
                yield state, flusher
            finally:
                if flusher is not None:
                    flusher.close()
                state.close()

    def _new_client(self) -> HttpClient:
        """The run's HTTP client (`workers` requests and connections at most); kept on the
        syncer, whose project syncers in this process share it."""
        client = self.client = _client_for(self.config)
        return client

    def _upstream(self, client: HttpClient) -> Upstream:
        cfg = self.config
        return Upstream(cfg.upstream, client, cfg.max_page_size, cfg.max_root_size)

    def _run_dry(self, started: float, immutable: bool) -> SyncReport:
        """The plan, from the same path as the run, with nothing published: files it must read
        (for requirements nobody advertises) go to a scratch directory removed at the end."""
        cfg = self.config
        state = State(cfg.state_path, readonly=True, immutable=immutable) if cfg.state_path.exists() else None
        client = self._new_client()
        self.scratch = Path(tempfile.mkdtemp(prefix="mirror-sync-plan-")) / "web"
        try:
            root = None if self.allowlist else self._upstream(client).root()
            self._guard_policy(state)
            wanted, gone = self._sync_projects(state, None, root)
            deletions = self._deletions(state, root, wanted, gone)
            for name in deletions.names:
                for f in state.files_of(name) if state else []:
                    why = REMOVED if name in deletions.gone_upstream else UNSELECTED
                    self.stats.plan_delete.append({"project": name, "path": f.path, "size": f.size, "reason": why})
            return self._report(state, root, started, deletions)
        finally:
            client.close()
            shutil.rmtree(self.scratch.parent, ignore_errors=True)
            self.scratch = None
            if state is not None:
                state.close()

    def _run_locked(self, state: State, flusher: Optional[Flusher], started: float) -> SyncReport:
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
        client = self._new_client()
        ok = False
        advisories = self.policy.advisories if self.policy is not None else None
        key = run_key(cfg, advisories.export_digest if advisories is not None else None, _local_digest(self.local))
        matured = state.earliest_maturity()
        last_complete = (
            state.get_meta("last_result") == "ok"
            and state.get_meta("run_key") == key
            and (cfg.simple_dir / "index.v1_json").is_file()
            # a file the policy held back has matured: look again, whatever upstream's serial says
            and (matured is None or self.policy is None or matured > self.policy.now.timestamp())
        )
        try:
            root: Optional[RootIndex] = None
            if not self.allowlist:
                completed = state.get_meta_int("mirror_serial") if last_complete else None  # the serial the last complete run reached
                root = self._upstream(client).root(unchanged_at=completed)
                if root.unchanged:  # same serial, same settings, last run complete: nothing to do
                    ok = True
                    return self._report(state, root, started, None)
            elif state.get_meta("root_header_serial") != "absent" or not last_complete:
                # an upstream that announces its serial on the root (a warehouse, a mirror of
                # one) tells in one request, from the headers alone, that nothing changed
                header = self._upstream(client).root_serial()
                if header is not None and header == state.get_meta_int("root_header_serial") and last_complete:
                    ok = True
                    return self._report(state, None, started, None)
                self.root_header_serial = header
            self._guard_policy(state)
            wanted, gone = self._sync_projects(state, publisher, root)
            deletions = self._deletions(state, root, wanted, gone)
            publisher.delete_projects(deletions.names)
            ok = not self.stats.failed
            self._publish_root(state, publisher, root, ok, changed=bool(publisher.published or deletions.names or self.stats.synced))
            publisher.collect_garbage()
            self.stats.files_deleted = publisher.files_deleted
            state.record_progress(self._progress(state, root, ok, key))
            return self._report(state, root, started, deletions)
        except MirrorSyncError as exc:
            self.stats.fail("", str(exc))
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
            state.record_run(RunOutcome(
                finished=utc_iso(finished),
                result=state.run_result(ok),
                duration_s=finished - started,
                failures=len(self.stats.failed),
                downloaded=self.stats.downloaded,
                downloaded_bytes=self.stats.downloaded_bytes,
                deleted_files=publisher.files_deleted,
                upstream=cfg.upstream,
            ))
            client.close()

    def _policy_key(self) -> Optional[str]:
        """Changes with the policy's settings and its advisory export."""
        if self.policy is None:
            return None
        advisories = self.policy.advisories
        return run_key(self.config, advisories.export_digest if advisories is not None else None)

    def _guard_policy(self, state: Optional[State]) -> None:
        """The deletion guard holds for the policy too: a changed policy or advisory export that
        would take more than max_delete_ratio of the mirror's files out (an export that names
        everything, a cooldown over an upstream that gives no upload times) is refused before
        anything changes. Checked when the policy or the export changed since the last complete run."""
        policy = self.policy
        if policy is None or state is None or self.allow_mass_delete or state.get_meta("policy_key") == self._policy_key():
            return
        from .download import LOCAL_SCHEME

        files = ((f.project, f.version, f.upload_time) for f in state.all_files() if not f.url.startswith(LOCAL_SCHEME))
        guard_policy(files, lambda p, v, t: policy.judge(p, v, t) is not None, max_ratio=self.config.max_delete_ratio)

    def _serials(self, state: State, root: Optional[RootIndex], ok: bool) -> tuple[Optional[int], Optional[int]]:
        """(the serial the mirror is at, the serial upstream was at). An allowlist reads no
        root: its serial is the newest of the projects it holds."""
        upstream_serial = root.serial if root is not None else self.stats.max_page_serial
        if root is None:
            serial = max((s for _c, _d, s in state.root_entries() if s is not None), default=None)
        else:
            serial = root.serial if ok else state.get_meta_int("mirror_serial")
        return serial, upstream_serial

    def _publish_root(self, state: State, publisher: Publisher, root: Optional[RootIndex], ok: bool, changed: bool) -> None:
        serial, upstream_serial = self._serials(state, root, ok)
        if changed or not (self.config.simple_dir / "index.v1_json").is_file() or (ok and serial != state.get_meta_int("mirror_serial")):
            publisher.publish_root(serial if serial is not None else upstream_serial)

    def _progress(self, state: State, root: Optional[RootIndex], ok: bool, key: str) -> RunProgress:
        serial, upstream_serial = self._serials(state, root, ok)
        if root is None and upstream_serial is None:  # no page was read (304s): what the last run saw
            upstream_serial = state.get_meta_int("upstream_serial")
        header = None
        if self.allowlist:
            header = "absent" if self.root_header_serial is None else str(self.root_header_serial)
        reserved = tuple(sorted(n for n in self.local if n not in self.config.merge_upstream))
        return RunProgress(upstream_serial, complete=ok, mirror_serial=serial, run_key=key, root_header=header,
                           reserved=reserved if reserved or self.config.local is not None else None,
                           policy_key=self._policy_key())

    # -- which projects -----------------------------------------------------------------------
    def _sync_projects(
        self, state: Optional[State], publisher: Optional[Publisher], root: Optional[RootIndex]
    ) -> tuple[Container[str], set[str]]:
        """Sync what changed; returns (the projects the mirror should hold, those upstream no
        longer has). A full mirror takes its list from the root; an allowlist reads only the
        pages of its projects and of their dependency closure."""
        cfg = self.config
        local = self.local
        scheduler = Scheduler(cfg, self.selector, self.evaluator, self.fingerprint, self.stats, state, publisher, root,
                              self._syncer_factory(), local)
        if root is None:
            assert cfg.projects is not None
            return scheduler.run_closure(cfg.projects)
        projects = root.projects
        excluded = self.selector.project_excluded if self.selector.excluded else None
        own = sorted(n for n in local if n not in projects)  # the organisation's projects upstream does not have

        def names() -> Iterator[tuple[str, Optional[int]]]:
            entries = projects.with_serials()
            yield from (e for e in entries if excluded is None or not excluded(e[0]))
            yield from ((n, None) for n in own)

        scheduler.run_wave(names)
        gone = {n for n in scheduler.known if n not in projects and n not in local}
        return Wanted(projects, excluded, frozenset(local)), gone

    def _syncer_factory(self) -> Callable[[Optional[ThreadPoolExecutor]], ProjectSyncer]:
        """Builds a ProjectSyncer with its own HTTP client: in this process, or in a worker process."""
        cfg = self.config
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
            client = shared if shared is not None and os.getpid() == parent else _client_for(cfg)
            # no fsync per file: the publisher's syncfs makes a whole batch durable before its pages go live
            downloader = Downloader(client, web, retries=cfg.retries, fsync=False, max_file_size=cfg.max_file_size,
                                    local_root=cfg.local)
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
                mirror_web=cfg.web,
                public_url=cfg.public_url,
            )

        return make

    def _deletions(self, state: Optional[State], root: Optional[RootIndex], wanted: Container[str], gone: set[str]) -> Deletions:
        if state is None:
            return Deletions((), ())
        held = [r[0] for r in state.root_entries()]
        deletions = plan_deletions(
            held, gone, wanted, {f["project"] for f in self.stats.failed},
            delete_gone=self.config.delete,
            closure_complete=not (self.allowlist and self.stats.failed),
        )
        guard_deletions(deletions, len(held), root_empty=root is not None and not root.projects,
                        max_ratio=self.config.max_delete_ratio, allow_mass_delete=self.allow_mass_delete)
        return deletions

    # -- report -------------------------------------------------------------------------------
    def _report(self, state: Optional[State], root: Optional[RootIndex], started: float, deletions: Optional[Deletions]) -> SyncReport:
        finished = time.time()
        projects, files, size = state.totals() if state is not None else (0, 0, 0)
        return SyncReport(
            dry_run=self.dry_run,
            upstream=self.config.upstream,
            directory=str(self.config.directory),
            started=utc_iso(started),
            finished=utc_iso(finished),
            duration_s=round(finished - started, 3),
            upstream_serial=root.serial if root else self.stats.max_page_serial,
            mirror_serial=state.get_meta_int("mirror_serial") if state is not None else None,
            totals=MirrorTotals(projects, files, size),
            stats=self.stats,
            deleted_projects=len(deletions.names) if deletions is not None else 0,
            policy=self._policy_report(state, deletions),
        )

    def _policy_report(self, state: Optional[State], deletions: Optional[Deletions]) -> Optional[PolicyReport]:
        """What the policy keeps out of the whole mirror: the state's record, with this run's
        findings for the projects it looked at (a dry run's too)."""
        if self.policy is None and not self.local:
            return None
        gone = set(deletions.names) if deletions is not None else set()
        by_project: dict[str, list[dict[str, Any]]] = {}
        for entry in state.refused_files() if state is not None else []:
            by_project.setdefault(str(entry["project"]), []).append(entry)
        by_project.update(self.stats.refused)
        entries = [e for name in sorted(by_project) if name not in gone for e in by_project[name]]
        reserved = sorted(n for n in self.local if n not in self.config.merge_upstream)
        return PolicyReport.from_entries(entries, reserved)
