"""The mirror's state in sqlite: per project its serial and pages, per file its path, size, sha256.

Only the thread that opened it uses a State.
"""
from __future__ import annotations

import json
import os
import sqlite3
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Iterator, Optional

from .errors import FilesystemError, LockedError, MirrorSyncError
from .models import MirroredFile

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS projects (
    name TEXT PRIMARY KEY,          -- canonical
    display TEXT NOT NULL,
    serial INTEGER,                 -- the serial we publish for it (upstream's, or a local one)
    upstream_serial INTEGER,        -- upstream's serial when we synced it (NULL: upstream has none)
    fingerprint TEXT,               -- sha256 of upstream's page body
    selection TEXT,                 -- what was asked of it (filters, specifiers, extras)
    status TEXT,                    -- PEP 792 project-status as JSON
    versions TEXT,                  -- PEP 700 versions as JSON
    html_sha256 TEXT,
    json_sha256 TEXT,
    synced_at REAL,
    etag TEXT,                      -- upstream's validators of the page, for a conditional request
    last_modified TEXT,
    held_until REAL,                -- when the earliest file the policy holds back matures (POSIX time)
    refused TEXT                    -- JSON list of the files the policy keeps out (held, blocked), with why
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,          -- relative to web/
    project TEXT NOT NULL,
    filename TEXT NOT NULL,
    url TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    requires_python TEXT,
    yanked TEXT NOT NULL,           -- JSON: false, true or the reason
    upload_time TEXT,
    metadata_sha256 TEXT,
    metadata_size INTEGER,
    version TEXT,
    requires_dist TEXT,             -- JSON list, NULL when unknown
    mtime_ns INTEGER NOT NULL DEFAULT 0,
    provenance_sha256 TEXT,         -- set when <path>.provenance (PEP 740, upstream's) is on disk
    provenance_url TEXT             -- the link the pages publish for it (needs public_url)
);
CREATE INDEX IF NOT EXISTS files_project ON files(project);
CREATE TABLE IF NOT EXISTS garbage (path TEXT PRIMARY KEY);  -- to unlink once nothing links to it
-- running totals, so a no-op run (and `status`) reads one row instead of scanning every file
CREATE TABLE IF NOT EXISTS totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    projects INTEGER NOT NULL,
    files INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS totals_file_in AFTER INSERT ON files
    BEGIN UPDATE totals SET files = files + 1, bytes = bytes + NEW.size; END;
CREATE TRIGGER IF NOT EXISTS totals_file_out AFTER DELETE ON files
    BEGIN UPDATE totals SET files = files - 1, bytes = bytes - OLD.size; END;
CREATE TRIGGER IF NOT EXISTS totals_file_size AFTER UPDATE OF size ON files
    BEGIN UPDATE totals SET bytes = bytes - OLD.size + NEW.size; END;
CREATE TRIGGER IF NOT EXISTS totals_project_in AFTER INSERT ON projects
    BEGIN UPDATE totals SET projects = projects + 1; END;
CREATE TRIGGER IF NOT EXISTS totals_project_out AFTER DELETE ON projects
    BEGIN UPDATE totals SET projects = projects - 1; END;
"""
_COUNT_TOTALS = "SELECT (SELECT COUNT(*) FROM projects), (SELECT COUNT(*) FROM files), (SELECT COALESCE(SUM(size), 0) FROM files)"


@dataclass(frozen=True)
class ProjectRow:
    name: str
    display: str
    serial: Optional[int]
    upstream_serial: Optional[int]
    fingerprint: Optional[str]
    selection: Optional[str]
    status: Optional[str]
    versions: Optional[str]
    html_sha256: Optional[str]
    json_sha256: Optional[str]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "ProjectRow":
        return cls(**{f.name: row[f.name] for f in fields(cls)})


def _file_from_row(row: sqlite3.Row) -> MirroredFile:
    return MirroredFile(
        project=row["project"],
        filename=row["filename"],
        path=row["path"],
        url=row["url"],
        size=row["size"],
        sha256=row["sha256"],
        requires_python=row["requires_python"],
        yanked=json.loads(row["yanked"]),
        upload_time=row["upload_time"],
        metadata_sha256=row["metadata_sha256"],
        metadata_size=row["metadata_size"],
        version=row["version"],
        requires_dist=json.loads(row["requires_dist"]) if row["requires_dist"] is not None else None,
        mtime_ns=row["mtime_ns"],
        **_provenance_of(row),
    )


def _provenance_of(row: sqlite3.Row) -> dict[str, Optional[str]]:
    if "provenance_sha256" not in row.keys():  # read-only, from before provenance was kept
        return {}
    return {"provenance_sha256": row["provenance_sha256"], "provenance_url": row["provenance_url"]}


def meta_int(value: Optional[str]) -> Optional[int]:
    """A meta value as an integer, None when unset or not a number."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# columns added after the first schema: (table, column, type)
_ADDED_COLUMNS = (
    ("projects", "etag", "TEXT"),
    ("projects", "last_modified", "TEXT"),
    ("projects", "held_until", "REAL"),
    ("projects", "refused", "TEXT"),
    ("files", "provenance_sha256", "TEXT"),
    ("files", "provenance_url", "TEXT"),
)


def _add_missing_columns(db: sqlite3.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


@dataclass(frozen=True)
class RunOutcome:
    """How a sync ended."""

    finished: str  # ISO 8601 UTC
    result: str  # ok, failed, interrupted
    duration_s: float
    failures: int
    downloaded: int
    downloaded_bytes: int
    deleted_files: int
    upstream: str

    def meta(self) -> dict[str, str]:
        out = {
            "last_sync_finished": self.finished,
            "last_result": self.result,
            "last_duration_s": f"{self.duration_s:.3f}",
            "last_failures": str(self.failures),
            "last_downloaded": str(self.downloaded),
            "last_downloaded_bytes": str(self.downloaded_bytes),
            "last_deleted_files": str(self.deleted_files),
            "upstream": self.upstream,
        }
        if self.result == "ok":
            out["last_success"] = self.finished
        return out


@dataclass(frozen=True)
class RunProgress:
    """Where a sync left the mirror (see State.record_progress)."""

    upstream_serial: Optional[int]
    complete: bool
    mirror_serial: Optional[int] = None
    run_key: Optional[str] = None
    root_header: Optional[str] = None  # an allowlist's root serial header: a number, "absent", or None (not probed)
    reserved: Optional[tuple[str, ...]] = None  # the names the local directory's projects reserve
    policy_key: Optional[str] = None  # the policy and advisory export the run judged by


def _text(value: Optional[int]) -> Optional[str]:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Known:
    """What the state remembers of a project to decide whether it changed upstream."""

    upstream_serial: Optional[int]
    selection: Optional[str]
    fingerprint: Optional[str]
    etag: Optional[str] = None
    last_modified: Optional[str] = None
    held_until: Optional[float] = None  # the policy holds a file back until then


class State:
    def __init__(self, path: Path, readonly: bool = False, immutable: bool = False) -> None:
        """`immutable` (read-only, and only while nothing can write, i.e. under the mirror's lock)
        opens the database without touching its -wal/-shm files: a dry run leaves no trace."""
        self.path = path
        if readonly:
            mode = "ro&immutable=1" if immutable else "ro"
            self.db = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, isolation_level=None)
        else:
            self.db = sqlite3.connect(str(path), isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            # INSERT OR REPLACE deletes the row it replaces: with this, that delete fires the
            # totals trigger too
            self.db.execute("PRAGMA recursive_triggers=ON")
            self.db.executescript(_SCHEMA)
            _add_missing_columns(self.db)
            self.db.execute("BEGIN IMMEDIATE")
            if self.db.execute("SELECT 1 FROM totals").fetchone() is None:  # new, or from before the totals
                self.db.execute(f"INSERT INTO totals(id, projects, files, bytes) SELECT 1, * FROM ({_COUNT_TOTALS})")
            self.db.execute("COMMIT")
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    # -- transactions -------------------------------------------------------------------------
    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def quick_check(self) -> list[str]:
        """sqlite's own check of the database's structure (every page read once, no index
        cross-check): an empty list when it is sound, else what is wrong (at most 10 lines)."""
        rows = [str(r[0]) for r in self.db.execute("PRAGMA quick_check(10)")]
        if rows == ["ok"]:
            return []
        lines = [line.strip() for row in rows for line in row.splitlines()]
        return [line for line in lines if line and not line.startswith("***")][:10] or ["sqlite's quick check failed"]

    # -- meta ---------------------------------------------------------------------------------
    @staticmethod
    def run_result(ok: bool) -> str:
        """What `last_result` records for a run that ends now (called while it unwinds):
        "ok", "interrupted" (Ctrl-C, SIGTERM: a KeyboardInterrupt on its way out) or "failed"."""
        if ok:
            return "ok"
        return "interrupted" if isinstance(sys.exc_info()[1], KeyboardInterrupt) else "failed"

    def get_meta(self, key: str) -> Optional[str]:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def get_meta_int(self, key: str) -> Optional[int]:
        return meta_int(self.get_meta(key))

    def set_meta(self, key: str, value: Optional[str]) -> None:
        self.db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def meta(self) -> dict[str, str]:
        return {k: v for k, v in self.db.execute("SELECT key, value FROM meta")}

    def set_meta_if_changed(self, key: str, value: Optional[str]) -> None:
        """A run that changed nothing writes nothing."""
        if self.get_meta(key) != value:
            self.set_meta(key, value)

    def record_run(self, outcome: RunOutcome) -> None:
        """How a sync ended, in one transaction (status, metrics and the front page read it)."""
        self.begin()
        for key, value in outcome.meta().items():
            self.set_meta(key, value)
        self.commit()

    def record_progress(self, progress: RunProgress) -> None:
        """Where a sync left the mirror: the serial upstream was at; for a complete run also the
        serial the mirror reached and the settings it used (what the next run's no-op test reads)."""
        self.set_meta_if_changed("upstream_serial", _text(progress.upstream_serial))
        if progress.reserved is not None:
            self.set_meta_if_changed("reserved", json.dumps(list(progress.reserved)))
        if not progress.complete:
            return
        if progress.root_header is not None:
            self.set_meta_if_changed("root_header_serial", progress.root_header)
        self.set_meta_if_changed("mirror_serial", _text(progress.mirror_serial))
        self.set_meta_if_changed("run_key", progress.run_key)
        self.set_meta_if_changed("policy_key", progress.policy_key)

    # -- projects -----------------------------------------------------------------------------
    def project_serials(self) -> dict[str, Known]:
        """canonical -> what decides whether it changed upstream, for the no-op comparison."""
        try:
            rows = self.db.execute("SELECT name, upstream_serial, selection, fingerprint, etag, last_modified, held_until FROM projects")
        except sqlite3.OperationalError:  # read-only, from before the validators were kept
            rows = self.db.execute("SELECT name, upstream_serial, selection, fingerprint, NULL, NULL, NULL FROM projects")
        return {r[0]: Known(r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows}

    def earliest_maturity(self) -> Optional[float]:
        """When the first file the policy holds back matures (None: nothing is held for a while)."""
        try:
            row = self.db.execute("SELECT MIN(held_until) FROM projects").fetchone()
        except sqlite3.OperationalError:  # read-only, from before the policy
            return None
        return None if row is None else row[0]

    def refused_files(self) -> list[dict[str, object]]:
        """Every file the policy keeps out (held back or blocked), project by project."""
        try:
            rows = self.db.execute("SELECT refused FROM projects WHERE refused IS NOT NULL ORDER BY name").fetchall()
        except sqlite3.OperationalError:
            return []
        return [entry for (text,) in rows for entry in json.loads(text)]

    def project(self, name: str) -> Optional[ProjectRow]:
        row = self.db.execute("SELECT * FROM projects WHERE name = ?", (name,)).fetchone()
        return None if row is None else ProjectRow.from_row(row)

    def projects(self) -> Iterator[ProjectRow]:
        for row in self.db.execute("SELECT * FROM projects ORDER BY name"):
            yield ProjectRow.from_row(row)

    def root_entries(self) -> list[tuple[str, str, Optional[int]]]:
        """(canonical, display, serial) of every project, sorted by canonical name."""
        return self.db.execute("SELECT name, display, serial FROM projects ORDER BY name").fetchall()

    def save_project(
        self,
        name: str,
        display: str,
        serial: Optional[int],
        upstream_serial: Optional[int],
        fingerprint: Optional[str],
        selection: Optional[str],
        status: Optional[dict[str, str]],
        versions: list[str],
        html_sha256: str,
        json_sha256: str,
        synced_at: float,
        etag: Optional[str] = None,
        last_modified: Optional[str] = None,
        held_until: Optional[float] = None,
        refused: Optional[list[dict[str, object]]] = None,
    ) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO projects(name, display, serial, upstream_serial, fingerprint, selection, status, versions,"
            " html_sha256, json_sha256, synced_at, etag, last_modified, held_until, refused) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (name, display, serial, upstream_serial, fingerprint, selection, json.dumps(status) if status else None,
             json.dumps(versions), html_sha256, json_sha256, synced_at, etag, last_modified, held_until,
             json.dumps(refused) if refused else None),
        )

    def mark_unchanged(self, name: str, upstream_serial: Optional[int], synced_at: float) -> None:
        """A project upstream did not change: only its serial (when upstream has one) moves."""
        self.db.execute(
            "UPDATE projects SET upstream_serial = ?, synced_at = ? WHERE name = ? AND upstream_serial IS NOT ?",
            (upstream_serial, synced_at, name, upstream_serial),
        )

    def set_page_hashes(self, name: str, html_sha256: str, json_sha256: str) -> None:
        """What a project's published pages hash to now (their repair rewrote them), in one transaction."""
        self.begin()
        try:
            self.db.execute("UPDATE projects SET html_sha256 = ?, json_sha256 = ? WHERE name = ?", (html_sha256, json_sha256, name))
            self.commit()
        except BaseException:
            self.rollback()
            raise

    def delete_project(self, name: str) -> list[str]:
        """Forget a project; returns the paths of its files (to be collected as garbage)."""
        paths = [r[0] for r in self.db.execute("SELECT path FROM files WHERE project = ?", (name,))]
        self.db.execute("DELETE FROM files WHERE project = ?", (name,))
        self.db.execute("DELETE FROM projects WHERE name = ?", (name,))
        return paths

    # -- files --------------------------------------------------------------------------------
    def files_of(self, project: str) -> list[MirroredFile]:
        return [_file_from_row(r) for r in self.db.execute("SELECT * FROM files WHERE project = ? ORDER BY filename", (project,))]

    def files_by_project(self) -> dict[str, list[MirroredFile]]:
        """Every project's files, in one query (an allowlist's mirror: small enough to hold)."""
        out: dict[str, list[MirroredFile]] = {}
        for row in self.db.execute("SELECT * FROM files ORDER BY project, filename"):
            out.setdefault(row["project"], []).append(_file_from_row(row))
        return out

    def all_files(self) -> Iterator[MirroredFile]:
        for row in self.db.execute("SELECT * FROM files ORDER BY path"):
            yield _file_from_row(row)

    def file_paths(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT path FROM files")}

    def record_mtimes(self, mtimes: Iterable[tuple[str, int]]) -> None:
        """Files found intact whose modification time moved (touched, or fetched again), as
        (path, mtime_ns), in one transaction: the next verify hashes them only if it moves again."""
        rows = [(mtime_ns, path) for path, mtime_ns in mtimes]
        if not rows:
            return
        self.begin()
        try:
            self.db.executemany("UPDATE files SET mtime_ns = ? WHERE path = ?", rows)
            self.commit()
        except BaseException:
            self.rollback()
            raise

    def replace_files(self, project: str, files: Iterable[MirroredFile]) -> list[str]:
        """Set a project's files; returns the paths it no longer has."""
        old = {r[0] for r in self.db.execute("SELECT path FROM files WHERE project = ?", (project,))}
        self.db.execute("DELETE FROM files WHERE project = ?", (project,))
        new: set[str] = set()
        rows = []
        for f in files:
            new.add(f.path)
            rows.append((f.path, project, f.filename, f.url, f.size, f.sha256, f.requires_python, json.dumps(f.yanked),
                         f.upload_time, f.metadata_sha256, f.metadata_size, f.version,
                         json.dumps(f.requires_dist) if f.requires_dist is not None else None, f.mtime_ns,
                         f.provenance_sha256, f.provenance_url))
        self.db.executemany(
            "INSERT OR REPLACE INTO files(path, project, filename, url, size, sha256, requires_python, yanked, upload_time,"
            " metadata_sha256, metadata_size, version, requires_dist, mtime_ns, provenance_sha256, provenance_url)"
            " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        return sorted(old - new)

    def totals(self) -> tuple[int, int, int]:
        """(projects, files, bytes of files)."""
        try:
            row = self.db.execute("SELECT projects, files, bytes FROM totals").fetchone()
        except sqlite3.OperationalError:  # opened read-only before a writer added the table
            row = None
        if row is None:
            row = self.db.execute(_COUNT_TOTALS).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def path_referenced(self, path: str) -> bool:
        return self.db.execute("SELECT 1 FROM files WHERE path = ?", (path,)).fetchone() is not None

    # -- garbage ------------------------------------------------------------------------------
    def add_garbage(self, paths: Iterable[str]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO garbage(path) VALUES(?)", ((p,) for p in paths))

    def garbage(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT path FROM garbage ORDER BY path")]

    def drop_garbage(self, paths: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM garbage WHERE path = ?", ((p,) for p in paths))


# -- sqlite's errors, as the engine's own ------------------------------------------------------


class StateDamagedError(MirrorSyncError):
    """state.sqlite is not a sound database: rebuild it from the mirror on disk."""


def sqlite_problem(code_name: Optional[str], message: str) -> str:
    """What kind of trouble an sqlite3 error is: corrupt, full, readonly, cantopen, ioerr, busy
    or other. `code_name` is the exception's sqlite_errorname (Python 3.11+), else None."""
    name = (code_name or "").upper()
    text = message.lower()
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text or "not a database" in text:
        return "corrupt"
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return "full"
    if name.startswith("SQLITE_READONLY") or "readonly database" in text:
        return "readonly"
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return "cantopen"
    if name.startswith("SQLITE_IOERR") or "disk i/o error" in text:
        return "ioerr"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "is locked" in text:
        return "busy"
    return "other"


@dataclass(frozen=True)
class StateFacts:
    """What the file system says about state.sqlite when sqlite fails on it."""

    is_dir: bool = False
    disk_full: bool = False  # under 1 MiB or no inode left (for an unprivileged user)
    read_only_fs: bool = False
    unwritable: Optional[str] = None  # why the state (or its -wal/-shm) cannot be written, as the end of a sentence
    unwritable_path: Optional[str] = None


FULL_BELOW = 1024 * 1024


def state_facts(path: Path) -> StateFacts:
    from .fsutil import unwritable_reason

    is_dir = path.is_dir()
    full = read_only = False
    try:
        st = os.statvfs(path.parent)
        # what an unprivileged user may still use (ext4 keeps clusters back even from root)
        full = st.f_bavail * st.f_frsize < FULL_BELOW or (st.f_files > 0 and st.f_favail == 0)
        read_only = bool(st.f_flag & os.ST_RDONLY)
    except OSError:
        pass
    unwritable = unwritable_path = None
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), path.parent):
        if candidate.exists() and not os.access(candidate, os.W_OK):
            unwritable, unwritable_path = unwritable_reason(candidate), str(candidate)
            break
    return StateFacts(is_dir, full, read_only, unwritable, unwritable_path)


def describe_state_error(kind: str, message: str, path: Path, facts: StateFacts, rebuild: str) -> MirrorSyncError:
    """One sentence and its exit code for an sqlite error on the mirror's state (pure)."""
    web = path.parent / "web"
    rebuild_it = f"rebuild the state from {web} with '{rebuild}' (it re-hashes the files and downloads nothing)"
    if facts.is_dir:
        return StateDamagedError(f"the mirror's state {path} is a directory, not a database; {rebuild_it}, which moves it aside")
    if kind == "corrupt":
        return StateDamagedError(f"the mirror's state {path} is damaged ({message}); the mirror itself is intact: {rebuild_it}")
    if kind in ("full", "ioerr", "cantopen", "readonly") and facts.disk_full:
        return FilesystemError(
            f"the disk holding {path.parent} is full, so the mirror's state {path} cannot be written ({message}); "
            "free some space, then run again (nothing was deleted)"
        )
    if kind == "full":
        return FilesystemError(f"the mirror's state {path} cannot grow ({message}): free space on its disk, then run again (nothing was deleted)")
    if kind in ("readonly", "ioerr", "cantopen") and facts.read_only_fs:
        return FilesystemError(f"{path.parent} is on a read-only file system, so the mirror's state {path} cannot be written; remount it read-write")
    if kind in ("readonly", "cantopen") and facts.unwritable:
        return FilesystemError(f"the mirror's state cannot be written: {facts.unwritable_path} {facts.unwritable}")
    if kind == "cantopen":
        return FilesystemError(f"cannot open the mirror's state {path} ({message}); check that it is a file the user running the sync may read and write")
    if kind == "readonly":
        return FilesystemError(f"the mirror's state {path} cannot be written ({message}); check its permissions and those of {path.parent}")
    if kind == "ioerr":
        return FilesystemError(
            f"reading or writing the mirror's state {path} failed ({message}); check the disk holding it (the kernel log says more), then run again"
        )
    if kind == "busy":
        return LockedError(f"another process holds the mirror's state {path} locked ({message}); run again when it is done")
    return StateDamagedError(f"the mirror's state {path} cannot be used ({message}); if that persists, {rebuild_it}")


def state_error(exc: sqlite3.Error, path: Path, rebuild: str) -> MirrorSyncError:
    """The engine's error for an sqlite3 error on the state at `path`; `rebuild` is the command
    that rebuilds it."""
    message = str(exc) or exc.__class__.__name__
    kind = sqlite_problem(getattr(exc, "sqlite_errorname", None), message)
    return describe_state_error(kind, message, path, state_facts(path), rebuild)
