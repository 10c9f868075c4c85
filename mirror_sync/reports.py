"""What each command reports: typed, with one `to_json()` each. The JSON is the contract that the
command line prints, the metrics writer reads and the Ansible module parses."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class RunStats:
    """The tally a sync keeps while it runs (one owner: the run)."""

    synced: int = 0
    unchanged: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    downloaded: int = 0
    downloaded_bytes: int = 0
    deleted_projects: int = 0
    files_deleted: int = 0
    plan_fetch: list[dict[str, Any]] = field(default_factory=list)
    plan_delete: list[dict[str, Any]] = field(default_factory=list)
    max_page_serial: Optional[int] = None  # the newest serial of the pages read (an allowlist reads no root)
    refused: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # project -> what the policy keeps out

    def saw_serial(self, serial: Optional[int]) -> None:
        if serial is not None and (self.max_page_serial is None or serial > self.max_page_serial):
            self.max_page_serial = serial

    def fail(self, project: str, error: str, filename: Optional[str] = None) -> None:
        entry = {"project": project, "error": error}
        if filename is not None:
            entry["file"] = filename
        self.failed.append(entry)


@dataclass(frozen=True)
class MirrorTotals:
    projects: int
    files: int
    bytes: int


@dataclass(frozen=True)
class PolicyReport:
    """What the policy keeps out of the mirror now, and the names reserved for local packages."""

    held: list[dict[str, Any]]  # held back: project, filename, version, rule, matures (when it does), detail
    blocked: list[dict[str, Any]]  # blocked: project, filename, version, rule, advisory, detail
    reserved: list[str]  # the local directory's projects, whose names upstream cannot take

    @property
    def next_maturity(self) -> Optional[str]:
        times = [str(e["matures"]) for e in self.held if e.get("matures")]
        return min(times) if times else None

    def to_json(self) -> dict[str, Any]:
        return {"held": self.held, "blocked": self.blocked, "reserved": self.reserved, "next_maturity": self.next_maturity}

    @classmethod
    def from_entries(cls, entries: list[dict[str, Any]], reserved: list[str]) -> PolicyReport:
        return cls([e for e in entries if e.get("kind") == "held"], [e for e in entries if e.get("kind") == "blocked"], reserved)


@dataclass(frozen=True)
class SyncReport:
    """The outcome of one `sync` (or its dry run)."""

    dry_run: bool
    upstream: str
    directory: str
    started: str
    finished: str
    duration_s: float
    upstream_serial: Optional[int]
    mirror_serial: Optional[int]
    totals: MirrorTotals
    stats: RunStats
    deleted_projects: int
    policy: Optional[PolicyReport] = None

    @property
    def ok(self) -> bool:
        return not self.stats.failed

    @property
    def changed(self) -> bool:
        s = self.stats
        if self.dry_run:
            return bool(s.plan_fetch or s.plan_delete or self.deleted_projects or s.synced)
        return bool(s.downloaded or s.files_deleted or self.deleted_projects or s.synced)

    def to_json(self) -> dict[str, Any]:
        s = self.stats
        doc: dict[str, Any] = {
            "command": "sync",
            "ok": self.ok,
            "dry_run": self.dry_run,
            "upstream": self.upstream,
            "directory": self.directory,
            "started": self.started,
            "finished": self.finished,
            "duration_s": self.duration_s,
            "upstream_serial": self.upstream_serial,
            "mirror_serial": self.mirror_serial,
            "projects": {"total": self.totals.projects, "synced": s.synced, "deleted": self.deleted_projects, "failed": len(s.failed)},
            "files": {
                "total": self.totals.files,
                "downloaded": s.downloaded,
                "deleted": s.files_deleted,
                "failed": sum(1 for f in s.failed if f.get("file")),
                "bytes_total": self.totals.bytes,
                "bytes_downloaded": s.downloaded_bytes,
            },
            "changed": self.changed,
            "failures": s.failed,
        }
        if self.policy is not None:
            doc["policy"] = self.policy.to_json()
        if self.dry_run:
            doc["plan"] = {
                "fetch": s.plan_fetch,
                "delete": s.plan_delete,
                "fetch_bytes": sum(int(p.get("size") or 0) for p in s.plan_fetch),
                "delete_bytes": sum(int(p.get("size") or 0) for p in s.plan_delete),
            }
        return doc


# -- shared pieces ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """One thing a command could not do: which project and file (where it concerns one), and why.
    A field that does not apply is left out of the JSON (stats names only files)."""

    error: str
    project: Optional[str] = None
    file: Optional[str] = None

    def to_json(self) -> dict[str, str]:
        """
        >>> Failure("missing", "abc", "abc-1.0.tar.gz").to_json()
        {'project': 'abc', 'file': 'abc-1.0.tar.gz', 'error': 'missing'}
        >>> Failure("cannot read access.log", file="access.log").to_json()
        {'file': 'access.log', 'error': 'cannot read access.log'}
        """
        out = {"project": self.project, "file": self.file, "error": self.error}
        return {k: v for k, v in out.items() if v is not None}


def _failures(items: list[Failure]) -> list[dict[str, str]]:
    return [f.to_json() for f in items]


# -- one report per command ---------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of `verify` (paths are relative to web/; a page directory ends in "/")."""

    full: bool
    repair: bool
    duration_s: float
    checked_pages: int
    checked_files: int
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    repaired: int = 0
    removed: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing wrong was found, or a repair put right all it found.

        >>> VerifyReport(False, False, 0.1, 1, 1, missing=["packages/x"]).ok
        False
        >>> VerifyReport(False, True, 0.1, 1, 1, missing=["packages/x"], repaired=1).ok
        True
        """
        found = bool(self.missing or self.corrupt or self.orphans)
        return not self.failures and (self.repair or not found)

    def to_json(self) -> dict[str, Any]:
        return {
            "command": "verify",
            "ok": self.ok,
            "full": self.full,
            "repair": self.repair,
            "duration_s": self.duration_s,
            "checked_pages": self.checked_pages,
            "checked_files": self.checked_files,
            "missing": list(self.missing),
            "corrupt": list(self.corrupt),
            "orphans": list(self.orphans),
            "repaired": self.repaired,
            "removed": self.removed,
            "failures": _failures(self.failures),
        }


@dataclass(frozen=True)
class LastRun:
    """What the state remembers of the last sync's counts (a state from before a count was kept: None)."""

    failures: Optional[int] = None
    downloaded: Optional[int] = None
    downloaded_bytes: Optional[int] = None
    deleted_files: Optional[int] = None


@dataclass(frozen=True)
class StatusReport:
    """What the state says about the mirror (`status`): last runs, serials, lag, size. Timestamps
    are ISO 8601 UTC as the state holds them; `last_run` is None before the first sync."""

    directory: str
    upstream: str
    initialized: bool
    last_sync_started: Optional[str] = None
    last_sync_finished: Optional[str] = None
    last_success: Optional[str] = None
    last_result: Optional[str] = None
    last_duration_s: Optional[float] = None
    last_verify: Optional[str] = None
    last_verify_result: Optional[str] = None
    upstream_serial: Optional[int] = None
    mirror_serial: Optional[int] = None
    lag_seconds: Optional[float] = None
    projects: int = 0
    files: int = 0
    bytes: int = 0
    last_run: Optional[LastRun] = None
    policy: Optional[PolicyReport] = None  # what the policy keeps out, as the last runs recorded it

    @property
    def lag_serials(self) -> Optional[int]:
        """How many serials the mirror is behind upstream (never negative).

        >>> StatusReport("/m", "u", True, upstream_serial=12, mirror_serial=10).lag_serials
        2
        >>> StatusReport("/m", "u", True, upstream_serial=12).lag_serials is None
        True
        """
        if self.upstream_serial is None or self.mirror_serial is None:
            return None
        return max(0, self.upstream_serial - self.mirror_serial)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "command": "status",
            "directory": self.directory,
            "upstream": self.upstream,
            "initialized": self.initialized,
            "last_sync_started": self.last_sync_started,
            "last_sync_finished": self.last_sync_finished,
            "last_success": self.last_success,
            "last_result": self.last_result,
            "last_duration_s": self.last_duration_s,
            "last_verify": self.last_verify,
            "last_verify_result": self.last_verify_result,
            "upstream_serial": self.upstream_serial,
            "mirror_serial": self.mirror_serial,
            "lag_serials": self.lag_serials,
            "lag_seconds": self.lag_seconds,
            "projects": self.projects,
            "files": self.files,
            "bytes": self.bytes,
        }
        if self.last_run is not None:
            out.update(
                {
                    "last_failures": self.last_run.failures,
                    "last_downloaded": self.last_run.downloaded,
                    "last_downloaded_bytes": self.last_run.downloaded_bytes,
                    "last_deleted_files": self.last_run.deleted_files,
                }
            )
        if self.policy is not None:
            out["policy"] = self.policy.to_json()
        return out


@dataclass(frozen=True)
class RebuildReport:
    """The outcome of `rebuild-state`: what the rebuilt state holds, and what was left out
    (`skipped`: whole projects, `dropped`: single files, which the next sync fetches again)."""

    directory: str
    projects: int
    files: int
    bytes: int
    mirror_serial: Optional[int]
    rewritten_pages: int
    skipped: list[Failure] = field(default_factory=list)
    dropped: list[Failure] = field(default_factory=list)
    previous_state: Optional[str] = None  # where the old state was moved aside (None: there was none)
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "command": "rebuild-state",
            "ok": True,
            "directory": self.directory,
            "projects": self.projects,
            "files": self.files,
            "bytes": self.bytes,
            "mirror_serial": self.mirror_serial,
            "rewritten_pages": self.rewritten_pages,
            "skipped": _failures(self.skipped),
            "dropped": _failures(self.dropped),
            "previous_state": self.previous_state,
            "duration_s": self.duration_s,
        }


@dataclass(frozen=True)
class StatsTotals:
    """All-time counts of the statistics state."""

    downloads: int
    metadata: int
    pages: int
    lines: int
    malformed: int


@dataclass(frozen=True)
class StatsReport:
    """The outcome of `stats`: this run's counts from the access logs, and the all-time totals."""

    directory: str
    output_directory: str
    started: str
    finished: str
    duration_s: float
    files_seen: int
    files_read: int
    lines_read: int
    downloads: int
    metadata: int
    pages: int
    malformed: int
    projects_written: int
    totals: StatsTotals
    incomplete: list[str] = field(default_factory=list)  # compressed logs still being written
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        t = self.totals
        return {
            "command": "stats",
            "ok": self.ok,
            "directory": self.directory,
            "output_directory": self.output_directory,
            "started": self.started,
            "finished": self.finished,
            "duration_s": self.duration_s,
            "files_seen": self.files_seen,
            "files_read": self.files_read,
            "lines_read": self.lines_read,
            "downloads": self.downloads,
            "metadata": self.metadata,
            "pages": self.pages,
            "malformed": self.malformed,
            "projects_written": self.projects_written,
            "incomplete": list(self.incomplete),
            "totals": {"downloads": t.downloads, "metadata": t.metadata, "pages": t.pages, "lines": t.lines, "malformed": t.malformed},
            "failures": _failures(self.failures),
        }


@dataclass(frozen=True)
class AddReport:
    """The outcome of `mirror-sync add`: the files put into the local directory, and their publication."""

    added: list[dict[str, Any]]  # project, filename, version, sha256, size
    published: SyncReport

    def to_json(self) -> dict[str, Any]:
        sync = self.published.to_json()
        return {
            "command": "add",
            "ok": sync["ok"],
            "added": self.added,
            "projects": sync["projects"],
            "files": sync["files"],
            "changed": sync["changed"],
            "failures": sync["failures"],
        }
