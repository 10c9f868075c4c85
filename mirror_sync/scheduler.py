"""Runs the projects of a sync: feeds project tasks to the runner (threads or worker processes),
hands each result to the publisher as it comes, and walks an allowlist's dependency closure
(the planner's `walk`, with a visitor that reads pages on a thread pool)."""
from __future__ import annotations

import dataclasses
import logging
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import islice
from typing import TYPE_CHECKING, Callable, Container, Iterable, Iterator, Optional

from packaging.utils import canonicalize_name

from .config import Config
from .deadline import abort_requests
from .errors import FilesystemError, MirrorSyncError, NotFoundError
from .models import MirroredFile, ProjectPage, RootIndex, UpstreamFile
from .plan.selection import Selector, Want
from .progress import Progress
from .project_sync import ProjectResult, ProjectSyncer, ProjectTask
from .publish import Publisher, discard_staged
from .reports import RunStats
from .state import Known, State
from .upstream import Validators

if TYPE_CHECKING:
    from packaging.requirements import Requirement

    from .local import LocalProject
    from .plan.closure import DependencyEvaluator, Visit
    from .runners import Runner

log = logging.getLogger("mirror_sync")

MAX_CLOSURE_VISITS = 1_000_000
ROOT_REPUBLISH_SECONDS = 300.0


class Scheduler:
    """Runs project tasks: submits them to the runner, keeps it fed, hands each finished one to
    the publisher and walks an allowlist's closure. It receives what it needs and never reaches
    back into the run that made it."""

    def __init__(
        self,
        config: Config,
        selector: Selector,
        evaluator: Optional[DependencyEvaluator],
        fingerprint: str,
        stats: RunStats,
        state: Optional[State],
        publisher: Optional[Publisher],
        root: Optional[RootIndex],
        make_syncer: Callable[[Optional[ThreadPoolExecutor]], ProjectSyncer],
        local: Optional[dict[str, LocalProject]] = None,
    ) -> None:
        self.config = config
        self.local: dict[str, LocalProject] = local or {}  # the organisation's own projects
        self.selector = selector
        self.evaluator = evaluator
        self.fingerprint = fingerprint
        self.stats = stats
        self.known: dict[str, Known] = state.project_serials() if state is not None else {}
        # the instant the policy judges at (a held file matures by it)
        self.now = selector.policy.now.timestamp() if selector.policy is not None else time.time()
        self.state = state
        self.publisher = publisher
        self.root = root
        self.make_syncer = make_syncer
        self.local_serial = state.get_meta_int("local_serial") if state is not None else None
        self.local_serial_start = self.local_serial
        self.last_root_publish = time.monotonic()
        self.displays = {c: d for c, d, _s in state.root_entries()} if state is not None and root is None else {}
        # an allowlist reads its (small) file table once; a full mirror, project by project
        self.files: Optional[dict[str, list[MirroredFile]]] = state.files_by_project() if state is not None and root is None else None

    def _selection_key(self, canonical: str, want: Optional[Want]) -> str:
        """What decides a project's files besides upstream's page: the filters, the policy's
        view of the project (its advisories), and what is asked of it."""
        key = self.fingerprint
        policy = self.selector.policy
        if policy is not None:
            key += "/" + policy.project_key(canonical)[:16]
        return key + ("" if want is None else ":" + want.key())

    def _matured(self, prev: Optional[Known]) -> bool:
        """A file the policy held back last time may now pass (its cooldown is over)."""
        return prev is not None and prev.held_until is not None and prev.held_until <= self.now

    def _needs_sync(self, canonical: str, root_serial: Optional[int]) -> bool:
        """`root_serial`: the serial the root gives the project (None: none, or no root)."""
        if canonical in self.local:  # the local directory is read every run (unchanged files: no work)
            return True
        prev = self.known.get(canonical)
        if prev is None or root_serial is None:
            return True
        if prev.upstream_serial is None or prev.upstream_serial < root_serial or self._matured(prev):
            return True
        return prev.selection != self._selection_key(canonical, None)

    def _task(self, canonical: str, want: Optional[Want], selection: str) -> ProjectTask:
        mine = self.local.get(canonical)
        merge = mine is not None and canonical in self.config.merge_upstream
        if mine is not None and not merge:  # reserved: upstream's serial says nothing of it
            display, root_serial = mine.name, None
        elif self.root is not None:
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
        return ProjectTask(canonical, display, root_serial, want, selection, previous, fingerprint, prev_selection, local, validators,
                           matured=self._matured(prev), local=mine, merge_upstream=merge)

    def run_wave(self, names: Callable[[], Iterator[tuple[str, Optional[int]]]]) -> None:
        """A full mirror: sync every project that changed. `names` gives the projects with the
        root's serial of each (twice: a count, then the work), and nothing is kept per project:
        on a 700,000-project index a list of them, or of their tasks, would cost more than the
        rest of the run."""
        count = sum(1 for c, serial in names() if self._needs_sync(c, serial))
        if not count:
            return
        from .runners import (
            choose_runner,  # worker processes: not loaded by a run with nothing to do
        )

        todo = (self._task(c, None, self._selection_key(c, None)) for c, serial in names() if self._needs_sync(c, serial))
        runner = choose_runner(self.make_syncer, self.config.workers, count)
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
        publisher = self.publisher
        while in_flight:
            # while the run waits on the network, what is finished is published meanwhile: the
            # files, pages and deletions of a small run are not all left for its end
            done = runner.next_done(publisher.idle_wait() if publisher is not None and fatal is None else None)
            if done is None:
                assert publisher is not None
                publisher.flush()
                continue
            task, result, error = done
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
            if self.state is not None and self.local_serial is not None and self.stats.synced:
                self.state.set_meta_if_changed("local_serial", str(self.local_serial))

    def _record(self, task: ProjectTask, result: ProjectResult) -> None:
        s = self.stats
        s.saw_serial(result.page_serial)
        for filename in result.conflicts:
            error = f"project {task.canonical}: upstream lists {filename!r} twice with different sha256; not mirrored"
            log.error("event=file-failed project=%s file=%s error=%r", task.canonical, filename, error)
            s.fail(task.canonical, error, filename)
        if not result.unchanged:
            s.refused[task.canonical] = result.refused
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
        self.stats.fail(project, error)

    # -- closure --------------------------------------------------------------------------------
    def run_closure(self, allowlist: tuple[Requirement, ...]) -> tuple[set[str], set[str]]:
        """An allowlist: walk its dependency closure to the fixpoint (reading pages and the
        requirements of selected files, nothing published), then sync each project once with
        what the whole closure wants of it. Returns (wanted, gone upstream)."""
        from .plan.closure import Visit, walk
        from .runners import ThreadRunner

        cfg = self.config
        selector = self.selector
        evaluator = self.evaluator
        # the organisation's own projects are always published, and their dependencies followed
        requirements = allowlist + tuple(_bare(name) for name in sorted(self.local))
        runner = ThreadRunner(self.make_syncer, cfg.workers)
        syncer = runner.syncer
        pages: dict[str, tuple[Optional[ProjectPage], bool]] = {}  # canonical -> (page, upstream said 304)
        gone: set[str] = set()

        def task_for(canonical: str, want: Want) -> ProjectTask:
            task = self._task(canonical, want, self._selection_key(canonical, want))
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
                    self.stats.saw_serial(task.page.serial)
            self._check_installable(todo, allowlist)
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
                files = self.selector.select(task.page, task.want)[0]
            missing = self.selector.uninstallable(files)
            if missing:
                specs = sorted(s for s in (task.want.specifiers if task.want else set()) if s)
                matching = f" matching {' or '.join(repr(s) for s in specs)}" if specs and None not in task.want.specifiers else ""  # type: ignore[union-attr]
                refused = self.selector.refusals(task.page, task.want) if task.page is not None else []
                if refused:
                    # the policy's doing, not a failure: the summary lists what it holds back or blocks
                    kinds = sorted({f"{r.kind} ({r.advisory or r.rule})" for _f, r in refused})
                    log.warning("event=policy-leaves-nothing project=%s environments=%r refused=%r", task.canonical,
                                ", ".join(missing), ", ".join(kinds))
                    continue
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


def _bare(name: str) -> Requirement:
    from packaging.requirements import Requirement

    return Requirement(name)


class Wanted:
    """The projects a full mirror wants: upstream's, less the blocklist (a view, not a copy)."""

    def __init__(self, projects: Container[str], excluded: Optional[Callable[[str], bool]], local: frozenset[str] = frozenset()) -> None:
        self.projects = projects
        self.excluded = excluded
        self.local = local

    def __contains__(self, name: object) -> bool:
        if name in self.local:
            return True
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
        from .plan.closure import Visit

        try:
            outcome = self.visit(task)
        except BaseException as exc:  # never lose a visit: the walk waits for every one
            outcome = Visit(error=f"unexpected {exc.__class__.__name__}: {exc}")
        self.done.put((task.canonical, outcome))

    def next_done(self) -> tuple[str, Visit]:
        name, outcome = self.done.get()
        self.progress.step(failed=outcome.error is not None or outcome.missing)
        return name, outcome
