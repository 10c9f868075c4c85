"""OSV advisories for the PyPI ecosystem, read from a local export: the per-ecosystem zip that
OSV publishes, a directory of OSV .json files (read recursively), or one .json file.

Reading is bounded against a hostile export: the zip's entry count (from its end record, before
the central directory is parsed), each entry's size and the total are capped as they are read
(the sizes an archive claims are not trusted), and an entry that is not JSON in the OSV schema
is an AdvisoryError naming it: the whole export is refused rather than half read, since a half
read would silently unblock. Fields this module does not use are ignored.

Evaluation follows the schema's own pseudocode, with PEP 440 ordering (packaging, as pip
orders versions): a version is affected when it is listed in `versions` (PEP 440 equality, or
the same string) or lies in an ECOSYSTEM (or SEMVER) range: from an `introduced` ("0": from the
start) up to a `fixed` (exclusive) or `last_affected` (inclusive), below any `limit`. GIT ranges
need the repository and are skipped. Where the data cannot be ordered it fails closed:

- a bound that is not a PEP 440 version widens the range (an unusable `introduced` counts as
  "0", an unusable `fixed`, `last_affected` or `limit` as absent), and so does a range without
  any `introduced`;
- a version of ours that is not PEP 440 (or unknown, None) is affected by any range the
  advisory gives for the project; against `versions` it matches only the same string.
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import AdvisoryError
from .cvss import SEVERITIES, base_score, rating
from .durations import parse_timestamp

_SEVERITY_RANK = {name: i for i, name in enumerate(SEVERITIES)}
_SEVERITY_RANK["none"] = -1  # CVSS 0.0: known, and below every level (it never blocks)
_DATABASE_SEVERITY = {"low": "low", "moderate": "moderate", "medium": "moderate", "high": "high", "critical": "critical"}
_EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")
_ORDERED_RANGE_TYPES = ("ECOSYSTEM", "SEMVER")

try:  # the decompressors zipfile may call raise their own errors on corrupt data
    import lzma

    _DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (lzma.LZMAError,)
except ImportError:  # pragma: no cover - a Python built without lzma
    _DECOMPRESS_ERRORS = ()
_READ_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
    RuntimeError, NotImplementedError,  # an encrypted entry, an unknown compression method
) + _DECOMPRESS_ERRORS


class ExportMissingError(AdvisoryError):
    """The export is not there at all (not a damaged one): the configuration names a file that
    has not been downloaded yet."""


@dataclass(frozen=True)
class Limits:
    """How much of an export is read. The PyPI export holds some tens of thousands of entries of
    a few KB each (the largest, with long `versions` lists, some hundred KB)."""

    max_entries: int = 250_000
    max_entry_bytes: int = 8 * 1024**2
    max_total_bytes: int = 1024**3
    max_central_directory_bytes: int = 64 * 1024**2


Event = tuple[str, str]  # (introduced | fixed | last_affected | limit, version string)


@dataclass(frozen=True)
class Advisory:
    """One OSV advisory as it bears on one PyPI project (an advisory naming two projects is two
    of these, with the same id).

    `severity` is low, moderate, high or critical, or None when unknown: the CVSS v3 base
    score of its vectors (computed, see cvss.py), else its `database_specific.severity` (GHSA's
    LOW/MODERATE/HIGH/CRITICAL), else the highest of its aliases in the same export. CVSS v2 and
    v4 vectors give no severity by themselves. What unknown means is the policy's decision
    (rules.py: it blocks whenever `block.vulnerable` is not off)."""

    id: str
    project: str  # canonical name
    aliases: tuple[str, ...] = ()
    modified: datetime | None = None
    withdrawn: datetime | None = None
    summary: str = ""
    severity: str | None = None
    versions: tuple[str, ...] = ()
    ranges: tuple[tuple[Event, ...], ...] = ()  # the ECOSYSTEM/SEMVER ranges, events as given
    names: frozenset[str] = frozenset()  # its id and its aliases, transitively, within the export
    digest: str = ""  # sha256 of the entry's bytes

    @property
    def malicious(self) -> bool:
        """A malicious-package report: its id, or an alias, is a MAL- id."""
        return self.id.startswith("MAL-") or any(a.startswith("MAL-") for a in self.aliases)

    def withdrawn_by(self, now: datetime) -> bool:
        """Withdrawn at or before `now`."""
        return self.withdrawn is not None and self.withdrawn <= now

    @cached_property
    def _listed(self) -> tuple[frozenset[str], frozenset[Version]]:
        parsed = (_version(v) for v in self.versions)
        return frozenset(self.versions), frozenset(v for v in parsed if v is not None)

    @cached_property
    def _ordered_ranges(self) -> tuple[tuple[tuple[Version | None, ...], tuple[tuple[Version | None, int], ...]], ...]:
        return tuple(_prepare_range(events) for events in self.ranges)

    def affects(self, version: str | None) -> bool:
        """True when `version` of the project is affected (see the module's docstring)."""
        raw, listed = self._listed
        if version is None:
            return bool(self.versions or self.ranges)
        if version in raw:
            return True
        parsed = _version(version)
        if parsed is None:
            return bool(self.ranges)
        if parsed in listed:
            return True
        return any(_in_range(parsed, limits, events) for limits, events in self._ordered_ranges)


@lru_cache(maxsize=65536)
def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


_INTRODUCED, _FIXED, _LAST_AFFECTED = 0, 1, 2  # an event's kind; an introduced bound of None: before every version


def _prepare_range(events: tuple[Event, ...]) -> tuple[tuple[Version | None, ...], tuple[tuple[Version | None, int], ...]]:
    """(limits, sorted events): limits as versions (None: infinity, so the range is unlimited);
    events as (version, kind) sorted by version, an introduced before a fix at the same one."""
    limits: list[Version | None] = []
    ordered: list[tuple[Version | None, int]] = []
    kinds = {"fixed": _FIXED, "last_affected": _LAST_AFFECTED}
    for kind, text in events:
        if kind == "limit":
            limits.append(None if "*" in text else _version(text))
        elif kind == "introduced":
            ordered.append((None if text == "0" else _version(text), _INTRODUCED))
        else:
            bound = _version(text)
            if bound is not None:  # unusable: the range stays open (fail closed)
                ordered.append((bound, kinds[kind]))
    if not any(kind == _INTRODUCED for _, kind in ordered):
        ordered.append((None, _INTRODUCED))  # no start given: from the start (fail closed)
    ordered.sort(key=lambda e: (e[0] is not None, e[0] or Version("0"), e[1] != _INTRODUCED))
    return tuple(limits), tuple(ordered)


def _in_range(v: Version, limits: tuple[Version | None, ...], events: tuple[tuple[Version | None, int], ...]) -> bool:
    if limits and not any(limit is None or v < limit for limit in limits):
        return False
    vulnerable = False
    for bound, kind in events:
        if kind == _INTRODUCED:
            if bound is None or v >= bound:
                vulnerable = True
        elif kind == _FIXED:
            if v >= bound:  # type: ignore[operator]
                vulnerable = False
        elif v > bound:  # type: ignore[operator]  # _LAST_AFFECTED: inclusive
            vulnerable = False
    return vulnerable


class AdvisoryDB:
    """The advisories of one export, by project. Build with load_advisories() or from_entries()."""

    def __init__(self, by_project: Mapping[str, tuple[Advisory, ...]], digests: Mapping[str, str],
                 entries: int, export_digest: str) -> None:
        self._by_project = dict(by_project)
        self._digests = dict(digests)  # every advisory id in the export -> its entry's digest
        self._fingerprints: dict[str, str] = {}
        self.entries = entries  # entries read (PyPI or not)
        self.export_digest = export_digest  # sha256 of the export (the zip's bytes, or every entry's)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"AdvisoryDB({len(self)} advisories, {len(self._by_project)} PyPI projects)"

    def projects(self) -> frozenset[str]:
        """The canonical names of the projects some advisory names."""
        return frozenset(self._by_project)

    def for_project(self, canonical: str) -> tuple[Advisory, ...]:
        """The advisories naming the project (withdrawn ones included), sorted by id."""
        return self._by_project.get(canonical, ())

    def fingerprint(self, canonical: str) -> str:
        """Changes when an advisory naming the project changes (any byte of its entry: id,
        modified, withdrawn, ranges...), appears or goes, and when one of their aliases does
        (an alias lends its severity to an advisory without one)."""
        cached = self._fingerprints.get(canonical)
        if cached is not None:
            return cached
        lines = set()
        for adv in self.for_project(canonical):
            lines.add(f"{adv.id} {adv.digest}")
            for name in adv.names:
                digest = self._digests.get(name)
                if digest is not None:
                    lines.add(f"{name} {digest}")
        out = hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:32]
        self._fingerprints[canonical] = out
        return out

    @classmethod
    def from_entries(cls, entries: Mapping[str, bytes], source: str = "advisories") -> AdvisoryDB:
        """A database from entries already in memory (name -> the entry's bytes, JSON)."""
        return _from_entries(((name, entries[name]) for name in sorted(entries)), source)

    def advisories(self) -> Iterator[Advisory]:
        """Every advisory, project by project (sorted), withdrawn ones included."""
        for project in sorted(self._by_project):
            yield from self._by_project[project]

    @property
    def digests(self) -> Mapping[str, str]:
        """Every advisory id of the export (PyPI or not) -> its entry's sha256."""
        return self._digests


# -- reading an export ---------------------------------------------------------------------------


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic collector off while a bulk of acyclic objects is built (it would walk them
    again and again for nothing: a third of an index's load time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class ExportCache(Protocol):
    """Where a zip export's parsed form is kept between runs (osv_index.IndexFile), keyed by the
    zip's sha256 and the limits it was read with."""

    def lookup(self, export_sha256: str, limits: Limits) -> AdvisoryDB | None: ...

    def store(self, export_sha256: str, limits: Limits, db: AdvisoryDB) -> None: ...


def load_advisories(path: str | os.PathLike[str], limits: Limits = Limits(), cache: ExportCache | None = None) -> AdvisoryDB:
    """The PyPI advisories of an OSV export (a .zip, a directory of .json files, or one .json
    file), or AdvisoryError: the export is missing, unreadable, too large or malformed.

    `cache` (osv_index.IndexFile): when it holds the zip's parsed form, the export is not parsed
    again (a 20,000-entry export takes seconds to parse, its index a fraction of that);
    otherwise it is parsed and the cache rewritten. A directory is parsed in full every time."""
    with _gc_paused():
        return _load(Path(path), limits, cache)


def _load(where: Path, limits: Limits, index: ExportCache | None) -> AdvisoryDB:
    source = str(where)
    try:
        st = where.stat()
    except FileNotFoundError:
        raise ExportMissingError(f"advisories {source}: not found") from None
    except OSError as exc:
        raise AdvisoryError(f"advisories {source}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        db = _from_entries(_directory_entries(where, source, limits), source)
        if not db.entries:
            raise AdvisoryError(f"advisories {source}: the directory holds no .json files; refused")
        return db
    if not stat.S_ISREG(st.st_mode):
        raise AdvisoryError(f"advisories {source}: neither a zip archive, a directory nor a .json file")
    if where.suffix.lower() == ".json":
        return _from_entries(iter([(where.name, _read_file(where, source, where.name, limits.max_entry_bytes))]), source)
    try:
        with open(where, "rb") as handle:  # one open file for the digest and the entries: a swapped path cannot mix them
            return _load_zip(handle, source, limits, index)
    except OSError as exc:  # opening it (reading is covered inside)
        raise AdvisoryError(f"advisories {source}: cannot be read ({exc.strerror})") from None


def _load_zip(handle: BinaryIO, source: str, limits: Limits, index: ExportCache | None) -> AdvisoryDB:
    digest = hashlib.sha256()
    try:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    except OSError as exc:
        raise AdvisoryError(f"advisories {source}: cannot be read ({exc.strerror})") from None
    if index is not None:
        cached = index.lookup(digest.hexdigest(), limits)
        if cached is not None:
            return cached
    records: dict[str, _Record] = {}
    count = 0
    try:
        for name, data in _zip_members(handle, source, limits):
            count += 1
            _keep(records, _parse_entry(data, source, name))
    except OSError as exc:
        raise AdvisoryError(f"advisories {source}: cannot be read ({exc.strerror})") from None
    if not count:
        raise AdvisoryError(f"advisories {source}: the archive holds no .json entries (a truncated download?); refused")
    db = _build(records, count, digest.hexdigest())
    if index is not None:
        index.store(digest.hexdigest(), limits, db)
    return db


def _from_entries(entries: Iterator[tuple[str, bytes]], source: str) -> AdvisoryDB:
    """A database from (name, bytes) entries; its digest is of the entries, names and bytes."""
    records: dict[str, _Record] = {}
    export = hashlib.sha256()
    count = 0
    for name, data in entries:
        count += 1
        export.update(f"{name}\0{len(data)}\0".encode())
        export.update(data)
        _keep(records, _parse_entry(data, source, name))
    return _build(records, count, export.hexdigest())


def _read_file(path: Path, source: str, name: str, cap: int) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO for reading would wait for a writer for ever
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise AdvisoryError(f"advisories {source}: entry {name} is not a regular file")
            data = handle.read(cap + 1)
    except OSError as exc:
        raise AdvisoryError(f"advisories {source}: entry {name} cannot be read ({exc.strerror})") from None
    if len(data) > cap:
        raise AdvisoryError(f"advisories {source}: entry {name} is larger than {cap} bytes; refused")
    return data


def _directory_entries(root: Path, source: str, limits: Limits) -> Iterator[tuple[str, bytes]]:
    count = total = 0

    def refuse_walk_error(exc: OSError) -> None:
        raise AdvisoryError(f"advisories {source}: {exc.filename} cannot be read ({exc.strerror})")

    for dirpath, dirnames, filenames in os.walk(root, onerror=refuse_walk_error):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith(".") or not filename.lower().endswith(".json"):
                continue
            count += 1
            if count > limits.max_entries:
                raise AdvisoryError(f"advisories {source}: more than {limits.max_entries} .json files; refused")
            full = Path(dirpath, filename)
            name = str(full.relative_to(root))
            data = _read_file(full, source, name, limits.max_entry_bytes)
            total += len(data)
            if total > limits.max_total_bytes:
                raise AdvisoryError(f"advisories {source}: more than {limits.max_total_bytes} bytes of entries; refused")
            yield name, data


def _zip_directory_size(handle: Any, size: int) -> tuple[int, int]:
    """(entries, central directory bytes) from a zip's end record (zip64 too), read before the
    central directory itself is; ValueError (the rest of a sentence) when there is none."""
    tail_size = min(size, 22 + 65535)
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise ValueError("is not a zip archive (no end of central directory record)")
    _sig, _disk, _cd_disk, _here, entries, cd_size, cd_offset, _comment = struct.unpack("<4sHHHHIIH", tail[at:at + 22])
    if entries != 0xFFFF and cd_size != 0xFFFFFFFF and cd_offset != 0xFFFFFFFF:
        return entries, cd_size
    locator_at = size - tail_size + at - 20
    if locator_at < 0:
        raise ValueError("is a malformed zip64 archive (no zip64 locator)")
    handle.seek(locator_at)
    locator = handle.read(20)
    if len(locator) != 20 or locator[:4] != b"PK\x06\x07":
        raise ValueError("is a malformed zip64 archive (no zip64 locator)")
    record_at = struct.unpack("<Q", locator[8:16])[0]
    if record_at > size - 56:
        raise ValueError("is a malformed zip64 archive (its end record is out of the file)")
    handle.seek(record_at)
    record = handle.read(56)
    if len(record) != 56 or record[:4] != b"PK\x06\x06":
        raise ValueError("is a malformed zip64 archive (no zip64 end record)")
    entries64, cd_size64 = struct.unpack("<QQ", record[32:48])
    return entries64, cd_size64


def _zip_members(handle: BinaryIO, source: str, limits: Limits) -> Iterator[tuple[str, bytes]]:
    try:
        size = os.fstat(handle.fileno()).st_size
        entries, cd_size = _zip_directory_size(handle, size)
    except ValueError as exc:
        raise AdvisoryError(f"advisories {source}: {exc}") from None
    except OSError as exc:
        raise AdvisoryError(f"advisories {source}: cannot be read ({exc.strerror})") from None
    if entries > limits.max_entries:
        raise AdvisoryError(f"advisories {source}: the archive has {entries} entries, more than {limits.max_entries}; refused")
    if cd_size > limits.max_central_directory_bytes or cd_size > size:
        raise AdvisoryError(f"advisories {source}: the archive's directory of {cd_size} bytes is larger than allowed; refused")
    handle.seek(0)
    try:
        archive = zipfile.ZipFile(handle)
    except _READ_ERRORS as exc:
        raise AdvisoryError(f"advisories {source}: not a readable zip archive ({exc})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_entries:
            raise AdvisoryError(f"advisories {source}: the archive has more than {limits.max_entries} entries; refused")
        total = 0
        for info in infos:
            if info.is_dir() or not info.filename.lower().endswith(".json"):
                continue
            cap = min(limits.max_entry_bytes, limits.max_total_bytes - total)
            try:
                with archive.open(info) as member:
                    data = member.read(cap + 1)
            except _READ_ERRORS as exc:
                raise AdvisoryError(f"advisories {source}: entry {info.filename} cannot be read ({exc})") from None
            if len(data) > cap:
                if cap < limits.max_entry_bytes:
                    raise AdvisoryError(f"advisories {source}: more than {limits.max_total_bytes} bytes once decompressed; refused")
                raise AdvisoryError(
                    f"advisories {source}: entry {info.filename} decompresses to more than {cap} bytes "
                    "(a compression bomb?); refused"
                )
            total += len(data)
            yield info.filename, data


# -- one entry -------------------------------------------------------------------------------------


@dataclass
class _Record:
    """What one entry says, before aliases are resolved across the export."""

    id: str
    aliases: tuple[str, ...]
    modified: datetime | None
    withdrawn: datetime | None
    summary: str
    top_severity: str | None  # from its top-level CVSS v3 vectors, else its database_specific
    own_severity: str | None  # the highest of those and its projects' own vectors: what it lends its aliases
    projects: dict[str, _Affected] = field(default_factory=dict)
    digest: str = ""


@dataclass
class _Affected:
    versions: list[str] = field(default_factory=list)
    ranges: list[tuple[Event, ...]] = field(default_factory=list)
    severity: str | None = None  # from this project's own CVSS v3 vectors


class _Bad(Exception):
    """One malformed field of an entry: becomes an AdvisoryError naming the entry."""


def _parse_entry(data: bytes, source: str, name: str) -> _Record:
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise AdvisoryError(f"advisories {source}: entry {name} is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise AdvisoryError(f"advisories {source}: entry {name} is not valid JSON ({exc})") from None
    ident = doc.get("id") if isinstance(doc, dict) else None
    label = f"entry {name}" + (f" ({ident})" if isinstance(ident, str) and ident else "")
    try:
        record = _record(doc)
    except _Bad as exc:
        raise AdvisoryError(f"advisories {source}: {label}: {exc}") from None
    record.digest = hashlib.sha256(data).hexdigest()
    return record


def _record(doc: Any) -> _Record:
    if not isinstance(doc, dict):
        raise _Bad("is not a JSON object")
    ident = doc.get("id")
    if not isinstance(ident, str) or not ident.strip() or len(ident) > 200:
        raise _Bad("has no 'id' string")
    aliases = tuple(_strings(doc, "aliases"))
    summary = doc.get("summary")
    if summary is not None and not isinstance(summary, str):
        raise _Bad("'summary' is not a string")
    record = _Record(
        id=ident,
        aliases=aliases,
        modified=_time(doc, "modified"),
        withdrawn=_time(doc, "withdrawn"),
        summary="".join(c for c in " ".join((summary or "").split()) if c.isprintable())[:200],  # one line, no escapes
        top_severity=None,
        own_severity=None,
    )
    top = _cvss_severity(doc.get("severity"), "severity")
    severities = [top]
    affected = doc.get("affected", [])
    if affected is None:
        affected = []
    if not isinstance(affected, list):
        raise _Bad("'affected' is not a list")
    for i, entry in enumerate(affected):
        where = f"affected[{i}]"
        if not isinstance(entry, dict):
            raise _Bad(f"'{where}' is not an object")
        package = entry.get("package")
        if not isinstance(package, dict):
            raise _Bad(f"'{where}.package' is not an object")
        ecosystem, pname = package.get("ecosystem"), package.get("name")
        if not isinstance(ecosystem, str) or not isinstance(pname, str):
            raise _Bad(f"'{where}.package' has no 'ecosystem' and 'name' strings")
        if ecosystem != "PyPI":
            continue
        if not pname.strip():
            raise _Bad(f"'{where}.package.name' is empty")
        item = record.projects.setdefault(canonicalize_name(pname), _Affected())
        item.versions.extend(_strings(entry, "versions", where))
        item.ranges.extend(_ranges(entry.get("ranges"), where))
        sev = _cvss_severity(entry.get("severity"), f"{where}.severity")
        item.severity = _highest(item.severity, sev)
        severities.append(sev)
    database = _database_severity(doc.get("database_specific"))
    record.top_severity = top or database
    own = None
    for sev in severities:
        own = _highest(own, sev)
    record.own_severity = own or database
    return record


def _strings(doc: dict[str, Any], key: str, where: str = "") -> list[str]:
    value = doc.get(key)
    if value is None:
        return []
    path = f"{where}.{key}" if where else key
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad(f"'{path}' is not a list of strings")
    return value


def _time(doc: dict[str, Any], key: str) -> datetime | None:
    value = doc.get(key)
    if value is None:
        return None
    stamp = parse_timestamp(value) if isinstance(value, str) else None
    if stamp is None:
        raise _Bad(f"'{key}' is not an RFC 3339 timestamp ({value!r})")
    return stamp


def _ranges(value: Any, where: str) -> list[tuple[Event, ...]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad(f"'{where}.ranges' is not a list")
    out = []
    for j, rng in enumerate(value):
        path = f"{where}.ranges[{j}]"
        if not isinstance(rng, dict):
            raise _Bad(f"'{path}' is not an object")
        kind = rng.get("type")
        if not isinstance(kind, str):
            raise _Bad(f"'{path}.type' is not a string")
        events = rng.get("events")
        if not isinstance(events, list) or not events:
            raise _Bad(f"'{path}.events' is not a non-empty list")
        parsed: list[Event] = []
        for k, event in enumerate(events):
            if not isinstance(event, dict):
                raise _Bad(f"'{path}.events[{k}]' is not an object")
            known = [(key, event[key]) for key in _EVENT_KINDS if key in event]
            if len(known) != 1 or not isinstance(known[0][1], str) or not known[0][1]:
                raise _Bad(f"'{path}.events[{k}]' must have exactly one of {', '.join(_EVENT_KINDS)}, a version string")
            parsed.append(known[0])
        if kind in _ORDERED_RANGE_TYPES:
            out.append(tuple(parsed))
    return out


def _cvss_severity(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _Bad(f"'{where}' is not a list")
    best = None
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str) or not isinstance(item.get("score"), str):
            raise _Bad(f"'{where}[{i}]' has no 'type' and 'score' strings")
        if item["type"] == "CVSS_V3":
            score = base_score(item["score"].strip())
            if score is not None:
                best = _highest(best, rating(score))
    return best


def _database_severity(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    sev = value.get("severity")
    return _DATABASE_SEVERITY.get(sev.strip().lower()) if isinstance(sev, str) else None


def _highest(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if _SEVERITY_RANK[a] >= _SEVERITY_RANK[b] else b


def _keep(records: dict[str, _Record], record: _Record) -> None:
    """Two entries with one id: the later `modified` is authoritative (the schema's rule); the
    digest breaks a tie, so the outcome does not depend on the order of reading."""
    seen = records.get(record.id)
    if seen is None or _rank(record) > _rank(seen):
        records[record.id] = record


def _rank(record: _Record) -> tuple[bool, datetime, str]:
    return (record.modified is not None, record.modified or datetime.min, record.digest)


def _build(records: dict[str, _Record], entries: int, export_digest: str) -> AdvisoryDB:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for record in records.values():
        for alias in record.aliases:
            a, b = find(record.id), find(alias)
            if a != b:
                parent[max(a, b)] = min(a, b)
    members: dict[str, set[str]] = {}
    for name in list(parent):
        members.setdefault(find(name), set()).add(name)
    groups: dict[str, frozenset[str]] = {root: frozenset(names) for root, names in members.items()}
    group_severity: dict[str, str | None] = {}
    for record in records.values():
        root = find(record.id)
        group_severity[root] = _highest(group_severity.get(root), record.own_severity)

    by_project: dict[str, list[Advisory]] = {}
    for record in records.values():
        root = find(record.id)
        names = groups.get(root, frozenset((record.id,)))
        for project, item in record.projects.items():
            severity = item.severity or record.top_severity or group_severity.get(root)
            by_project.setdefault(project, []).append(Advisory(
                id=record.id,
                project=project,
                aliases=record.aliases,
                modified=record.modified,
                withdrawn=record.withdrawn,
                summary=record.summary,
                severity=severity,
                versions=tuple(item.versions),
                ranges=tuple(item.ranges),
                names=names,
                digest=record.digest,
            ))
    ordered = {p: tuple(sorted(advs, key=lambda a: a.id)) for p, advs in by_project.items()}
    digests = {record.id: record.digest for record in records.values()}
    return AdvisoryDB(ordered, digests, entries, export_digest)
