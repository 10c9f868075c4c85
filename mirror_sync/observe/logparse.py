"""Classify nginx access log lines: file downloads, `.metadata` fetches and index page hits.

Accepted format: nginx's predefined ``combined`` format,

    $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"

and any variant that starts the same way and appends fields (the ``main`` format of many distribution
configs adds ``"$http_x_forwarded_for"``; ``common`` stops after ``$body_bytes_sent``). A line that
does not fit is *malformed*: the caller counts and skips it.

What counts (decided here, documented in the README's operations section):

- ``download``: a ``GET`` answered ``200`` of a file under a ``packages/<xx>/<yy>/<rest>/<filename>``
  path (any path prefix before ``packages/``). ``206`` answers (range requests, e.g. an installer
  reading a wheel's metadata lazily or a resumed download) are counted as ``partial`` and ``304``
  answers (a client revalidating its cached copy) as ``not_modified``; neither is a download, so one
  resumed or re-validated download is never counted twice.
- ``metadata``: the same for ``<filename>.metadata`` (PEP 658/714) — counted separately.
- ``page``: a ``GET`` answered ``200`` or ``304`` under a ``simple/`` path (the root or a project page).
- everything else (``HEAD``, other methods, 4xx/5xx, other paths) is read but not counted.

Days are UTC calendar days of ``$time_local`` (its offset applied).
"""
from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta, timezone
from typing import NamedTuple, Optional
from urllib.parse import unquote

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

# remote_addr, remote_user (may be "-" or, rarely, contain spaces), [time_local], "request", status,
# body_bytes_sent, then anything (referer, user agent, extra fields of main-like formats).
# nginx escapes '"' inside variables as \x22, so the request holds no raw quote.
_LINE_RE = re.compile(r'\S+ \S+ .+? \[([^\]]+)\] "([^"]*)" (\d{3}) (?:\d+|-)(?: |$)')
_TIME_RE = re.compile(r"^(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$")
_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1)}
_NGINX_ESCAPE_RE = re.compile(r"\\x([0-9A-Fa-f]{2})")
_HEX_RE = re.compile(r"^[0-9a-f]+$")
_CANONICAL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
# Legacy distribution formats packaging does not parse (eggs, bdist_wininst, .tar.bz2 sdists, ...).
_LEGACY_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*?)-(?P<version>[0-9][^-]*?)(?:-[^/]*)?"
    r"\.(?:tar\.gz|tar\.bz2|tar\.xz|tar\.Z|tgz|tbz|tar|zip|egg|exe|msi|rpm|dmg|deb)$"
)
_METADATA_SUFFIX = ".metadata"


class Hit(NamedTuple):
    """One counted request. ``project``/``version``/``filename`` are None when not applicable."""

    day: str  # "2026-11-24" (UTC)
    kind: str  # download | metadata | partial | not_modified | page
    project: Optional[str] = None
    version: Optional[str] = None
    filename: Optional[str] = None


class Malformed(Exception):
    """The line is not an access log line of a supported format."""


class LineParser:
    """Parses lines; keeps a small cache of ``$time_local`` minutes to UTC days."""

    def __init__(self) -> None:
        self._days: dict[str, str] = {}

    def parse(self, line: str) -> Optional[Hit]:
        """Return the counted hit of one log line (without its newline), None for an uncounted one.

        Raises Malformed when the line does not fit the format.
        """
        m = _LINE_RE.match(line)
        if m is None:
            raise Malformed("not an access log line")
        stamp, request, status_text = m.groups()
        day = self._day(stamp)
        status = int(status_text)
        parts = request.split(" ")
        # "GET /path HTTP/1.1"; HTTP/0.9 requests have no protocol. Anything else ("-", TLS bytes
        # sent to a plain-text port, ...) is a well-formed log line of a request we do not count.
        if len(parts) not in (2, 3) or parts[0] != "GET":
            return None
        if len(parts) == 3 and not parts[2].startswith("HTTP/"):
            return None
        what = _classify(status, parts[1])
        return None if what is None else Hit(day, *what)

    def _day(self, stamp: str) -> str:
        # cache per minute: "24/Nov/2026:13:05" + " +0100"
        if len(stamp) == 26 and stamp[17] == ":" and stamp[18:20].isdigit():
            key = stamp[:17] + stamp[20:]
            day = self._days.get(key)
            if day is not None:
                return day
        else:
            key = ""
        day = _utc_day(stamp)
        if key:
            if len(self._days) > 100_000:
                self._days.clear()
            self._days[key] = day
        return day


def _utc_day(stamp: str) -> str:
    m = _TIME_RE.match(stamp)
    if m is None or m.group(2) not in _MONTHS:
        raise Malformed(f"bad time {stamp!r}")
    dd, mon, yyyy, hh, mi, ss, sign, oh, om = m.groups()
    try:
        offset = timedelta(hours=int(oh), minutes=int(om))
        tz = timezone(offset if sign == "+" else -offset)
        when = datetime(int(yyyy), _MONTHS[mon], int(dd), int(hh), int(mi), int(ss), tzinfo=tz)
    except ValueError as exc:
        raise Malformed(f"bad time {stamp!r}: {exc}") from None
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d")


def classify(day: str, status: int, target: str) -> Optional[Hit]:
    """Classify a GET of ``target`` answered with ``status`` on ``day``."""
    what = _classify(status, target)
    return None if what is None else Hit(day, *what)


_What = tuple[str, Optional[str], Optional[str], Optional[str]]  # kind, project, version, filename


@functools.lru_cache(maxsize=65536)  # popular files and pages are requested over and over
def _classify(status: int, target: str) -> Optional[_What]:
    path = target.split("?", 1)[0].split("#", 1)[0]
    if "\\x" in path:  # nginx escapes bytes outside printable ASCII as \xHH
        raw = _NGINX_ESCAPE_RE.sub(lambda mm: chr(int(mm.group(1), 16)), path)
        path = raw.encode("latin-1", "replace").decode("utf-8", "replace")
    # split before percent-decoding, so an encoded "/" (%2F) never creates a path segment
    segs = [s for s in path.split("/") if s]
    filename = _package_filename(segs)
    if filename is not None:
        return _file_hit(status, filename)
    if status in (200, 304):
        page = _page_project(segs)
        if page is not None:
            return ("page", page or None, None, None)
    return None


def _package_filename(segs: list[str]) -> Optional[str]:
    """The filename of ``.../packages/<xx>/<yy>/<rest>/<filename>``, else None."""
    if len(segs) < 5:
        return None
    i = len(segs) - 5
    if segs[i] != "packages":
        return None
    xx, yy, rest = segs[i + 1].lower(), segs[i + 2].lower(), segs[i + 3].lower()
    if len(xx) != 2 or len(yy) != 2 or not (_HEX_RE.match(xx) and _HEX_RE.match(yy) and _HEX_RE.match(rest)):
        return None
    filename = unquote(segs[i + 4], errors="replace")
    if not filename or "/" in filename or filename in (".", ".."):
        return None
    return filename


def _page_project(segs: list[str]) -> Optional[str]:
    """"" for the index root, the canonical project of a project page, None when not a page."""
    for i in range(len(segs) - 1, -1, -1):
        if segs[i] != "simple":
            continue
        rest = segs[i + 1 :]
        if rest and rest[-1].startswith("index."):
            rest = rest[:-1]
        if not rest:
            return ""
        if len(rest) == 1:
            name = canonicalize_name(unquote(rest[0], errors="replace"))
            return name if _CANONICAL_RE.match(name) else None
        return None
    return None


def _file_hit(status: int, filename: str) -> Optional[_What]:
    if filename.endswith(_METADATA_SUFFIX) and len(filename) > len(_METADATA_SUFFIX):
        kind = {200: "metadata"}.get(status)
        dist = filename[: -len(_METADATA_SUFFIX)]
    else:
        kind = {200: "download", 206: "partial", 304: "not_modified"}.get(status)
        dist = filename
    if kind is None:
        return None
    parsed = parse_filename(dist)
    if parsed is None:
        return (kind, None, None, filename)
    return (kind, parsed[0], parsed[1], dist)


@functools.lru_cache(maxsize=65536)  # a log names the same files over and over
def parse_filename(filename: str) -> Optional[tuple[str, str]]:
    """(canonical project name, normalized version) of a distribution filename, None if unparsable."""
    name: Optional[str] = None
    version: Optional[str] = None
    try:
        if filename.endswith(".whl"):
            wname, wver, _build, _tags = parse_wheel_filename(filename)
            name, version = str(wname), str(wver)
        elif filename.endswith((".tar.gz", ".zip")):
            sname, sver = parse_sdist_filename(filename)
            name, version = str(sname), str(sver)
    except (InvalidWheelFilename, InvalidSdistFilename):
        name = None
    if name is None:
        m = _LEGACY_RE.match(filename)
        if m is None:
            return None
        name = canonicalize_name(m.group("name"))
        version = m.group("version")
        try:
            version = str(Version(version))
        except InvalidVersion:
            pass
    if not _CANONICAL_RE.match(name) or version is None:
        return None
    return name, version
