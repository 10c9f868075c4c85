"""The compact index of an OSV zip export: the PyPI advisories as load_advisories() resolved
them, in one JSON document keyed by the export's sha256 (and this format and the read limits).

Parsing OSV's PyPI zip (some tens of thousands of entries) takes seconds; reading the index
back takes a fraction of that. The index is a cache, written atomically beside the state: one
that does not match, or does not read back, is ignored and rewritten; one that cannot be
written is skipped with a warning (the advisories were read all the same).
"""
from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from pathlib import Path

from ..errors import FilesystemError
from ..fsutil import write_atomic
from .cvss import SEVERITIES
from .osv import Advisory, AdvisoryDB, Limits

log = logging.getLogger(__name__)

FORMAT = 1  # bump whenever what load_advisories derives from an entry changes
_MAX_INDEX_BYTES = 1024**3


def index_key(export_sha256: str, limits: Limits) -> str:
    """What an index must have been made from to stand for the export."""
    return (f"osv-index/{FORMAT}/{export_sha256}/{limits.max_entries}/{limits.max_entry_bytes}/"
            f"{limits.max_total_bytes}/{limits.max_central_directory_bytes}")


def encode(db: AdvisoryDB, key: str) -> bytes:
    """A header line (the key, the body's sha256) and the body (one JSON document)."""
    groups: dict[frozenset[str], int] = {}
    rows = []
    for adv in db.advisories():
        group = groups.setdefault(adv.names, len(groups))
        rows.append([
            adv.project, adv.id, list(adv.aliases),
            None if adv.modified is None else adv.modified.isoformat(),
            None if adv.withdrawn is None else adv.withdrawn.isoformat(),
            adv.summary, adv.severity, list(adv.versions), [[list(e) for e in r] for r in adv.ranges],
            group, adv.digest,
        ])
    body = json.dumps({
        "entries": db.entries,
        "export_digest": db.export_digest,
        "digests": dict(db.digests),
        "groups": [sorted(g) for g, _ in sorted(groups.items(), key=lambda item: item[1])],
        "advisories": rows,
    }, separators=(",", ":")).encode()
    header = json.dumps({"key": key, "sha256": hashlib.sha256(body).hexdigest()}).encode()
    return header + b"\n" + body


def decode(data: bytes, key: str) -> AdvisoryDB | None:
    """The database an index holds, or None when it is not an index of this key, or damaged
    (its body's sha256 is checked: the index is as trusted as the state beside it, and no more
    than that is checked of its structure)."""
    head, sep, body = data.partition(b"\n")
    try:
        header = json.loads(head)
        if not sep or not isinstance(header, dict) or header.get("key") != key:
            return None
        if header.get("sha256") != hashlib.sha256(body).hexdigest():
            return None
        doc = json.loads(body)
        groups = [frozenset(g) for g in doc["groups"]]
        instant = datetime.fromisoformat
        by_project: dict[str, list[Advisory]] = {}
        for row in doc["advisories"]:
            project, ident, aliases, modified, withdrawn, summary, severity, versions, ranges, group, digest = row
            if severity is not None and severity not in SEVERITIES:
                return None
            by_project.setdefault(project, []).append(Advisory(
                id=ident,
                project=project,
                aliases=tuple(aliases),
                modified=None if modified is None else instant(modified),
                withdrawn=None if withdrawn is None else instant(withdrawn),
                summary=summary,
                severity=severity,
                versions=tuple(versions),
                ranges=tuple(tuple((kind, version) for kind, version in r) for r in ranges),
                names=groups[group],
                digest=digest,
            ))
        return AdvisoryDB({p: tuple(a) for p, a in by_project.items()}, doc["digests"], int(doc["entries"]), doc["export_digest"])
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def read_index(path: Path, key: str) -> AdvisoryDB | None:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_INDEX_BYTES + 1)
    except OSError:
        return None
    if len(data) > _MAX_INDEX_BYTES:
        return None
    db = decode(data, key)
    if db is None:
        log.info("event=advisory-index-stale path=%s", path)
    return db


def write_index(path: Path, key: str, db: AdvisoryDB) -> None:
    try:
        write_atomic(path, encode(db, key), fsync=True, mode=0o644)
    except (OSError, FilesystemError) as exc:
        log.warning("event=advisory-index-unwritten path=%s reason=%r", path, str(exc))


class IndexFile:
    """The index kept in one file (osv.ExportCache): a damaged or stale one is ignored and rewritten,
    one that cannot be written is a warning."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lookup(self, export_sha256: str, limits: Limits) -> AdvisoryDB | None:
        return read_index(self.path, index_key(export_sha256, limits))

    def store(self, export_sha256: str, limits: Limits, db: AdvisoryDB) -> None:
        write_index(self.path, index_key(export_sha256, limits), db)
