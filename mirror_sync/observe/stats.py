"""Download statistics from nginx access logs: `mirror-sync stats`.

Incremental and idempotent. The state, ``<directory>/stats.sqlite``, remembers every log it has read
by its *content*: the first 4 KiB of the (decompressed) log, which never change because nginx only
appends. With the read offset (in decompressed bytes) this survives every kind of rotation:

- ``access.log`` renamed to ``access.log.1`` (same inode) or compressed into ``access.log.2.gz`` (new
  inode, same content) is recognised, and only what lies past the offset is counted — so a log that
  was rotated half-read is finished exactly once;
- ``copytruncate`` (same inode, new content) and inode reuse are told apart by the head bytes;
- a log whose head is a prefix of a known log's head (a copy in progress) is the same log.

Counts and the new offset are committed in one transaction per chunk, so an interrupted run never
counts a line twice. A last line without its newline is left for the next run. Fully read
compressed files are remembered by (device, inode, size, mtime) and not decompressed again.

The JSON under ``statistics.output_directory`` (default ``<directory>/web/stats``) is regenerated
from the state, never from the logs: ``projects/<name>.json`` (daily downloads per version and file,
``.metadata`` and page hits) for every project counted in this run (or missing on disk), and
``summary.json`` (totals, per-day totals, top projects of the last 1/7/30 calendar days including
today, UTC, and of all time). Every file is written to a temporary name and renamed.
"""
from __future__ import annotations

import bz2
import errno
import glob
import gzip
import io
import json
import logging
import lzma
import os
import sqlite3
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from ..clock import utc_iso
from ..config import Config
from ..errors import ConfigError, FilesystemError, LockedError, MirrorSyncError
from ..fsutil import file_lock, write_atomic
from ..reports import Failure, StatsReport, StatsTotals
from .logparse import LineParser, Malformed

log = logging.getLogger(__name__)

HEAD_BYTES = 4096  # bytes of a log's beginning that identify it
CHUNK_BYTES = 4 * 1024 * 1024  # read and commit in chunks of this size
MAX_LINE_BYTES = 1024 * 1024  # a longer "line" is not a log line: skipped as malformed
TOP_N = 100  # projects listed in each top list of summary.json
WINDOWS = (1, 7, 30)  # days of the "last N days" top lists

_COMPRESSED: dict[str, Callable[[io.BufferedReader], io.BufferedIOBase]] = {
    ".gz": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    ".bz2": lambda raw: bz2.BZ2File(raw, "rb"),
    ".xz": lambda raw: lzma.LZMAFile(raw, "rb"),
}
_DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    head BLOB NOT NULL,          -- first HEAD_BYTES of the decompressed content (fewer while shorter)
    offset INTEGER NOT NULL,     -- decompressed bytes consumed (always at a line end)
    dev INTEGER, ino INTEGER, path TEXT, last_seen TEXT
);
CREATE TABLE IF NOT EXISTS compressed_done (
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    log_id INTEGER NOT NULL,
    PRIMARY KEY (dev, ino, size, mtime_ns)
);
CREATE TABLE IF NOT EXISTS downloads (
    day TEXT NOT NULL, project TEXT NOT NULL, version TEXT NOT NULL, filename TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (day, project, filename)
);
CREATE INDEX IF NOT EXISTS downloads_project ON downloads (project, day);
CREATE TABLE IF NOT EXISTS project_hits (  -- kind: metadata | page
    day TEXT NOT NULL, project TEXT NOT NULL, kind TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (day, project, kind)
);
CREATE INDEX IF NOT EXISTS project_hits_project ON project_hits (project, day);
CREATE TABLE IF NOT EXISTS daily (  -- kind: download | metadata | page | partial | not_modified | unattributed
    day TEXT NOT NULL, kind TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (day, kind)
);
CREATE TABLE IF NOT EXISTS totals (kind TEXT PRIMARY KEY, n INTEGER NOT NULL);  -- lines | malformed
"""
_DAILY_KINDS = ("download", "metadata", "page", "partial", "not_modified", "unattributed")


# --------------------------------------------------------------------------------------------- state


@dataclass
class _LogRecord:
    id: int
    head: bytes
    offset: int
    dev: Optional[int]
    ino: Optional[int]


@dataclass
class _Chunk:
    """Counts of one chunk of lines, committed together with the new offset."""

    lines: int = 0
    malformed: int = 0
    downloads: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)  # day, project, version, file
    project_hits: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # day, project, kind
    daily: Counter[tuple[str, str]] = field(default_factory=Counter)  # day, kind


class StatsState:
    """The sqlite state of `stats`: read positions of logs and accumulated counts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def logs(self) -> list[_LogRecord]:
        rows = self.db.execute("SELECT id, head, offset, dev, ino FROM logs").fetchall()
        return [_LogRecord(r[0], bytes(r[1]), r[2], r[3], r[4]) for r in rows]

    def new_log(self, head: bytes, st: os.stat_result, path: str) -> _LogRecord:
        cur = self.db.execute(
            "INSERT INTO logs (head, offset, dev, ino, path, last_seen) VALUES (?, 0, ?, ?, ?, ?)",
            (head, st.st_dev, st.st_ino, path, _now_iso()),
        )
        assert cur.lastrowid is not None
        return _LogRecord(cur.lastrowid, head, 0, st.st_dev, st.st_ino)

    def touch_log(self, rec: _LogRecord, head: bytes, st: os.stat_result, path: str) -> None:
        """Remember where the log was seen; lengthen its head while it is shorter than HEAD_BYTES."""
        if len(head) > len(rec.head) and head.startswith(rec.head):
            rec.head = head
        rec.dev, rec.ino = st.st_dev, st.st_ino
        self.db.execute(
            "UPDATE logs SET head = ?, dev = ?, ino = ?, path = ?, last_seen = ? WHERE id = ?",
            (rec.head, st.st_dev, st.st_ino, path, _now_iso(), rec.id),
        )

    def compressed_done(self, st: os.stat_result) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM compressed_done WHERE dev = ? AND ino = ? AND size = ? AND mtime_ns = ?",
            (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns),
        ).fetchone()
        return row is not None

    def mark_compressed_done(self, st: os.stat_result, rec: _LogRecord) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO compressed_done (dev, ino, size, mtime_ns, log_id) VALUES (?, ?, ?, ?, ?)",
            (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, rec.id),
        )

    def commit_chunk(self, rec: _LogRecord, new_offset: int, chunk: _Chunk) -> None:
        """Add a chunk's counts and move the log's offset, atomically."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO downloads (day, project, version, filename, n) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (day, project, filename) DO UPDATE SET n = n + excluded.n",
                [(*k, n) for k, n in chunk.downloads.items()],
            )
            db.executemany(
                "INSERT INTO project_hits (day, project, kind, n) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (day, project, kind) DO UPDATE SET n = n + excluded.n",
                [(*k, n) for k, n in chunk.project_hits.items()],
            )
            db.executemany(
                "INSERT INTO daily (day, kind, n) VALUES (?, ?, ?) "
                "ON CONFLICT (day, kind) DO UPDATE SET n = n + excluded.n",
                [(*k, n) for k, n in chunk.daily.items()],
            )
            db.executemany(
                "INSERT INTO totals (kind, n) VALUES (?, ?) ON CONFLICT (kind) DO UPDATE SET n = n + excluded.n",
                [("lines", chunk.lines), ("malformed", chunk.malformed)],
            )
            db.execute("UPDATE logs SET offset = ? WHERE id = ?", (new_offset, rec.id))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        rec.offset = new_offset

    # ----- queries for the output

    def totals(self) -> dict[str, int]:
        out = {k: 0 for k in ("lines", "malformed")}
        out.update({k: n for k, n in self.db.execute("SELECT kind, n FROM totals")})
        for kind in _DAILY_KINDS:
            out[kind] = 0
        for kind, n in self.db.execute("SELECT kind, SUM(n) FROM daily GROUP BY kind"):
            out[kind] = n
        return out

    def daily(self) -> dict[str, dict[str, int]]:
        days: dict[str, dict[str, int]] = {}
        for day, kind, n in self.db.execute("SELECT day, kind, n FROM daily ORDER BY day"):
            days.setdefault(day, {k: 0 for k in _DAILY_KINDS})[kind] = n
        return days

    def top(self, since: Optional[str], limit: int) -> list[dict[str, Any]]:
        where, args = ("WHERE day >= ?", (since,)) if since else ("", ())
        rows = self.db.execute(
            f"SELECT project, SUM(n) AS total FROM downloads {where} GROUP BY project "
            "ORDER BY total DESC, project LIMIT ?",
            (*args, limit),
        )
        return [{"project": p, "downloads": n} for p, n in rows]

    def projects(self) -> set[str]:
        rows = self.db.execute("SELECT project FROM downloads UNION SELECT project FROM project_hits")
        return {r[0] for r in rows}

    def project_report(self, project: str) -> dict[str, Any]:
        days: dict[str, dict[str, Any]] = {}

        def day(d: str) -> dict[str, Any]:
            return days.setdefault(d, {"total": 0, "versions": {}, "files": {}, "metadata": 0, "pages": 0})

        total = 0
        for d, version, filename, n in self.db.execute(
            "SELECT day, version, filename, n FROM downloads WHERE project = ? ORDER BY day, version, filename",
            (project,),
        ):
            entry = day(d)
            entry["total"] += n
            entry["versions"][version] = entry["versions"].get(version, 0) + n
            entry["files"][filename] = n
            total += n
        for d, kind, n in self.db.execute(
            "SELECT day, kind, n FROM project_hits WHERE project = ? ORDER BY day", (project,)
        ):
            day(d)["metadata" if kind == "metadata" else "pages"] += n
        return {"project": project, "generated": _now_iso(), "total": total, "days": dict(sorted(days.items()))}


# --------------------------------------------------------------------------------------------- reading


@dataclass
class _RunCounts:
    files_seen: int = 0
    files_read: int = 0
    lines: int = 0
    malformed: int = 0
    downloads: int = 0
    metadata: int = 0
    pages: int = 0
    incomplete: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    projects: set[str] = field(default_factory=set)


def _match(records: list[_LogRecord], head: bytes, st: os.stat_result) -> Optional[_LogRecord]:
    """The known log whose head is compatible with ``head`` (one is a prefix of the other)."""
    best: Optional[_LogRecord] = None
    best_key: tuple[int, int, int] = (-1, -1, -1)
    for rec in records:
        common = min(len(rec.head), len(head))
        if common == 0 or rec.head[:common] != head[:common]:
            continue
        key = (common, int(rec.dev == st.st_dev and rec.ino == st.st_ino), rec.offset)
        if key > best_key:
            best, best_key = rec, key
    return best


def _read_head(f: io.BufferedIOBase) -> bytes:
    head = b""
    for _ in range(HEAD_BYTES):  # bounded: every round reads at least one byte or stops
        part = f.read(HEAD_BYTES - len(head))
        if not part:
            break
        head += part
        if len(head) >= HEAD_BYTES:
            break
    return head


def _skip(f: io.BufferedIOBase, n: int) -> int:
    """Read and discard ``n`` bytes of a stream that cannot seek cheaply; return how many were skipped."""
    skipped = 0
    while skipped < n:
        part = f.read(min(CHUNK_BYTES, n - skipped))
        if not part:
            break
        skipped += len(part)
    return skipped


def _process_file(state: StatsState, records: list[_LogRecord], path: str, parser: LineParser, run: _RunCounts) -> None:
    opener = _COMPRESSED.get(os.path.splitext(path)[1])
    compressed = opener is not None
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return  # rotated away since the glob: the next run finds it under its new name
    with raw:
        st = os.fstat(raw.fileno())
        if compressed and state.compressed_done(st):
            return
        f = opener(raw) if opener is not None else raw
        with f:
            _read_log(state, records, path, st, f, compressed, parser, run)


def _read_log(
    state: StatsState,
    records: list[_LogRecord],
    path: str,
    st: os.stat_result,
    f: io.BufferedIOBase,
    compressed: bool,
    parser: LineParser,
    run: _RunCounts,
) -> None:
    head = _read_head(f)
    if not head:
        return
    rec = _match(records, head, st)
    if rec is None:
        rec = state.new_log(head, st, path)
        records.append(rec)
    state.touch_log(rec, head, st, path)
    start = rec.offset
    if compressed:
        # no cheap seek in a compressed stream: skip what was read before (the offset is in
        # decompressed bytes); a stream shorter than the offset simply ends early
        if rec.offset > len(head):
            _skip(f, rec.offset - len(head))
        pending = head[rec.offset :]
        limit = None
    else:
        # a plain file is read up to its size now: bounded while nginx keeps appending
        f.seek(rec.offset)
        pending = b""
        limit = max(st.st_size - rec.offset, 0)
    clean_eof = _consume(state, rec, f, pending, limit, parser, run)
    if rec.offset > start:
        run.files_read += 1
    if compressed and clean_eof:
        state.mark_compressed_done(st, rec)


def _consume(
    state: StatsState,
    rec: _LogRecord,
    f: io.BufferedIOBase,
    pending: bytes,
    limit: Optional[int],
    parser: LineParser,
    run: _RunCounts,
) -> bool:
    """Count complete lines from the stream (``pending`` is already read); True at a clean end of file.

    ``rec.offset`` is the offset of the first byte of ``pending``.
    """
    buf = pending
    remaining = limit
    eof = False
    while True:
        if not eof:
            want = CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining)
            data = f.read(want) if want > 0 else b""
            if remaining is not None:
                remaining -= len(data)
            if not data:
                eof = True
            buf += data
        end = buf.rfind(b"\n")
        if end >= 0:
            block, buf = buf[: end + 1], buf[end + 1 :]
            chunk = _count_block(block, parser)
            state.commit_chunk(rec, rec.offset + len(block), chunk)
            _add_run(run, chunk)
        if eof:
            return True
        if end < 0 and len(buf) > MAX_LINE_BYTES:
            # a "line" of megabytes: not a log; count it once as malformed and move on
            chunk = _Chunk(lines=1, malformed=1)
            state.commit_chunk(rec, rec.offset + len(buf), chunk)
            _add_run(run, chunk)
            buf = b""


def _count_block(block: bytes, parser: LineParser) -> _Chunk:
    chunk = _Chunk()
    for raw in block.split(b"\n")[:-1]:
        chunk.lines += 1
        line = raw.decode("utf-8", "replace").rstrip("\r")
        try:
            hit = parser.parse(line)
        except Malformed:
            chunk.malformed += 1
            continue
        if hit is None:
            continue
        if hit.project is None and hit.kind == "download":
            chunk.daily[(hit.day, "unattributed")] += 1  # a file name no parser understands
            continue
        if hit.project is None and hit.kind == "metadata":
            continue
        chunk.daily[(hit.day, hit.kind)] += 1
        if hit.kind == "download" and hit.project and hit.version and hit.filename:
            chunk.downloads[(hit.day, hit.project, hit.version, hit.filename)] += 1
        elif hit.kind in ("metadata", "page") and hit.project is not None:
            chunk.project_hits[(hit.day, hit.project, hit.kind)] += 1
    return chunk


def _add_run(run: _RunCounts, chunk: _Chunk) -> None:
    run.lines += chunk.lines
    run.malformed += chunk.malformed
    for (_day, kind), n in chunk.daily.items():
        if kind == "download":
            run.downloads += n
        elif kind == "metadata":
            run.metadata += n
        elif kind == "page":
            run.pages += n
    run.projects.update(k[1] for k in chunk.downloads)
    run.projects.update(k[1] for k in chunk.project_hits)


# --------------------------------------------------------------------------------------------- output


def write_json_atomic(path: Path, data: Any, *, indent: Optional[int] = None) -> None:
    """Write JSON to a temporary file in the same directory, then rename it over ``path``.

    Readers never see a partial file. There is no fsync: the output is derived data, rebuilt from
    the state (delete the output directory and run ``stats`` again).
    """
    text = json.dumps(data, indent=indent, separators=(",", ": ") if indent else (",", ":")) + "\n"
    write_atomic(path, text.encode("utf-8"), fsync=False, mode=0o644)  # served by nginx: world-readable like the rest of web/


def _summary_report(state: StatsState, today: date) -> dict[str, Any]:
    daily = state.daily()
    top: dict[str, list[dict[str, Any]]] = {}
    for n in WINDOWS:
        since = (today - timedelta(days=n - 1)).isoformat()
        top[f"last_{n}_days"] = state.top(since, TOP_N)
    top["all_time"] = state.top(None, TOP_N)
    totals = state.totals()
    return {
        "generated": _now_iso(),
        "today": today.isoformat(),
        "first_day": next(iter(daily), None),
        "last_day": next(reversed(daily), None) if daily else None,
        "totals": {
            "downloads": totals["download"],
            "metadata": totals["metadata"],
            "pages": totals["page"],
            "partial": totals["partial"],
            "not_modified": totals["not_modified"],
            "unattributed": totals["unattributed"],
            "lines": totals["lines"],
            "malformed": totals["malformed"],
        },
        "top": top,
        "days": {
            d: {"downloads": v["download"], "metadata": v["metadata"], "pages": v["page"]} for d, v in daily.items()
        },
    }


def _write_outputs(state: StatsState, outdir: Path, changed: set[str], today: date) -> int:
    projects_dir = outdir / "projects"
    projects_dir.mkdir(parents=True, exist_ok=True)
    existing = {p.name[: -len(".json")] for p in projects_dir.glob("*.json")}
    todo = sorted(p for p in state.projects() if p in changed or p not in existing)
    for project in todo:
        write_json_atomic(projects_dir / f"{project}.json", state.project_report(project))
    write_json_atomic(outdir / "summary.json", _summary_report(state, today), indent=1)
    return len(todo)


# --------------------------------------------------------------------------------------------- entry


def output_directory(config: Config) -> Path:
    raw = config.statistics.output_directory
    if raw is None:
        return config.web / "stats"
    path = Path(os.path.expanduser(raw))
    return path if path.is_absolute() else (config.path.parent / path).resolve()


def log_files(config: Config) -> list[str]:
    """The access logs named by ``statistics.access_log_pattern``, sorted, directories left out."""
    pattern = config.statistics.access_log_pattern
    if not pattern:
        raise ConfigError(f"{config.path}: key 'statistics.access_log_pattern' is required for the stats command")
    pattern = os.path.expanduser(pattern)
    if not os.path.isabs(pattern):
        pattern = str(config.path.parent / pattern)
    return sorted(p for p in glob.glob(pattern) if os.path.isfile(p))


def run_stats(config: Config, *, today: Optional[date] = None) -> StatsReport:
    """Count new access log lines into the state, write the JSON output, return the run's summary.

    ``today`` (UTC) anchors the "last N days" top lists; tests pass it, the CLI does not.
    """
    started = time.time()
    files = log_files(config)
    outdir = output_directory(config)
    config.directory.mkdir(parents=True, exist_ok=True)
    run = _RunCounts(files_seen=len(files))
    state_path = config.directory / "stats.sqlite"
    lock_path = config.directory / ".stats.lock"
    with file_lock(lock_path, create=True) as held:
        if not held:
            raise LockedError(f"another stats run holds {lock_path}")
        try:
            return _run_locked(config, state_path, files, outdir, run, started, today)
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise FilesystemError(f"no space left for the statistics state {state_path}") from None
            raise MirrorSyncError(f"cannot use the statistics state {state_path}: {exc}") from None
        except sqlite3.Error as exc:
            raise MirrorSyncError(f"cannot use the statistics state {state_path}: {exc}") from None


def _run_locked(
    config: Config,
    state_path: Path,
    files: list[str],
    outdir: Path,
    run: _RunCounts,
    started: float,
    today: Optional[date],
) -> StatsReport:
    state = StatsState(state_path)
    try:
        records = state.logs()
        parser = LineParser()
        for path in files:
            try:
                _process_file(state, records, path, parser, run)
            except EOFError:
                # a compressed file still being written (logrotate mid-compression): what could
                # be read is counted, the rest is read by the next run
                run.incomplete.append(path)
                log.info("event=stats_incomplete file=%s", path)
            except PermissionError as exc:
                run.failures.append(Failure(f"cannot read {path}: {exc.strerror}", file=path))
            except _DECOMPRESS_ERRORS as exc:
                run.failures.append(Failure(f"cannot read {path}: {exc}", file=path))
        try:
            written = _write_outputs(state, outdir, run.projects, today or datetime.now(timezone.utc).date())
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise FilesystemError(f"no space left to write statistics to {outdir}") from None
            raise MirrorSyncError(f"cannot write statistics to {outdir}: {exc.strerror or exc}") from None
        totals = state.totals()
    finally:
        state.close()
    finished = time.time()
    for failure in run.failures:
        log.warning("event=stats_failed file=%s error=%r", failure.file, failure.error)
    log.info(
        "event=stats_done files=%d read=%d lines=%d downloads=%d malformed=%d",
        run.files_seen, run.files_read, run.lines, run.downloads, run.malformed,
    )
    return StatsReport(
        directory=str(config.directory),
        output_directory=str(outdir),
        started=utc_iso(started),
        finished=utc_iso(finished),
        duration_s=round(finished - started, 3),
        files_seen=run.files_seen,
        files_read=run.files_read,
        lines_read=run.lines,
        downloads=run.downloads,
        metadata=run.metadata,
        pages=run.pages,
        malformed=run.malformed,
        projects_written=written,
        totals=StatsTotals(
            downloads=totals["download"],
            metadata=totals["metadata"],
            pages=totals["page"],
            lines=totals["lines"],
            malformed=totals["malformed"],
        ),
        incomplete=run.incomplete,
        failures=run.failures,
    )


def _now_iso() -> str:
    return utc_iso(time.time())
