"""Parse simple-index pages (PEP 691 JSON and PEP 503 HTML) into the engine's models.

Pure functions over bytes: no network, no disk. Liberal where the meaning is unambiguous (a
serial as a digit string, requires-python null or "", yanked as a bool or a reason, upload-time
with or without a fraction, every spelling of PEP 658/714 metadata, a missing size), strict where
it is not: names, filenames, hashes, file URLs and API versions are checked as before, and a page
that breaks one of those rules fails its project with one sentence.

The root is parsed as a stream (parse_root_stream): a 700,000-project root is never held whole,
neither as bytes nor as parsed objects; the projects land in a packed RootProjects.
"""
from __future__ import annotations

import codecs
import hashlib
import html
import json
import logging
import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from typing import Any, Iterable, Iterator, Optional
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from .errors import HostileDataError, UpstreamError
from .models import ProjectPage, RootIndex, RootProjectsBuilder, UpstreamFile
from .names import (
    canonical_project,
    canonical_projects,
    check_filename,
    check_sha256,
    version_of,
)

log = logging.getLogger(__name__)

ROOT_WHERE = "upstream root index"
MAX_ENTRY = 1 << 20  # one entry of the root (a JSON value, an HTML anchor or comment) longer than this is refused
ROOT_BATCH = 8192  # root entries validated and packed at a time
_MAX_SERIAL = (1 << 63) - 1
_SERIAL_DIGITS = re.compile(r"[0-9]{1,19}\Z")
_ROOT_NAME = re.compile(r"[A-Za-z0-9._-]+\Z")  # ASCII only, no newline: see _valid_root_names


# -- shared checks ---------------------------------------------------------------------------
def _check_api_version(meta: Any, where: str) -> None:
    if not isinstance(meta, dict):
        raise UpstreamError(f"{where}: malformed JSON ('meta' is not an object)")
    _check_version_text(meta.get("api-version", "1.0"), where)


def _check_version_text(version: Any, where: str) -> None:
    """PEP 629: a major version other than 1 is an API this parser does not know."""
    if not isinstance(version, str) or version.split(".")[0] != "1":
        raise UpstreamError(f"{where}: unsupported simple API version {version!r}")


def _serial_value(value: Any, where: str) -> Optional[int]:
    """A _last-serial: a non-negative integer, or the same as a decimal string (some indexes and
    bandersnatch send "37059094"); None when absent."""
    if value is None:
        return None
    if type(value) is int and 0 <= value <= _MAX_SERIAL:
        return value
    if isinstance(value, str) and _SERIAL_DIGITS.match(value):
        number = int(value)
        if number <= _MAX_SERIAL:
            return number
    raise UpstreamError(f"{where}: malformed _last-serial {value!r}")


def _size_value(value: Any, where: str, filename: str) -> Optional[int]:
    if value is None:
        return None
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, str) and _SERIAL_DIGITS.match(value):
        return int(value)
    raise UpstreamError(f"{where}: malformed size of {filename!r}")


_UPLOAD_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?\Z"
)
_PEP700_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z\Z")


def one_per_filename(files: list[UpstreamFile]) -> tuple[list[UpstreamFile], list[str]]:
    """One entry per filename: the same file listed twice is listed once; a filename listed with
    different hashes is not mirrored at all (which one would a client get?) and is returned in
    the second list, for the run to report.

    >>> a = UpstreamFile("a-1.tar.gz", "http://x.invalid/a-1.tar.gz", "1" * 64)
    >>> b = UpstreamFile("a-1.tar.gz", "http://y.invalid/a-1.tar.gz", "2" * 64)
    >>> one_per_filename([a, a]) == ([a], [])
    True
    >>> one_per_filename([a, b])
    ([], ['a-1.tar.gz'])
    """
    by_name: dict[str, UpstreamFile] = {}
    clashing: set[str] = set()
    for f in files:
        seen = by_name.get(f.filename)
        if seen is None:
            by_name[f.filename] = f
        elif seen.sha256 != f.sha256:
            clashing.add(f.filename)
    return [f for name, f in by_name.items() if name not in clashing], sorted(clashing)


def upload_time_value(value: Any, where: str, filename: str) -> Optional[str]:
    """PEP 700's yyyy-mm-ddThh:mm:ss[.ffffff]Z. Kept as is when upstream already sends that;
    other ISO 8601 spellings (an offset, no zone, a space, more than 6 fraction digits) are
    normalised to it in UTC; "" (bandersnatch for unknown) and a date that does not parse are
    treated as absent: the field is informational."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UpstreamError(f"{where}: malformed upload-time of {filename!r}")
    m = _UPLOAD_TIME.match(value.strip())
    if not m:
        log.warning("event=drop-upload-time where=%r file=%s value=%r reason='not an ISO 8601 instant'", where, filename, value)
        return None
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = m.groups()
    try:
        stamp = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                         int((fraction or "0")[:6].ljust(6, "0")), tzinfo=timezone.utc)
        if sign:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            stamp = stamp - offset if sign == "+" else stamp + offset
    except (ValueError, OverflowError):
        log.warning("event=drop-upload-time where=%r file=%s value=%r reason='not an ISO 8601 instant'", where, filename, value)
        return None
    if _PEP700_TIME.match(value):
        return value  # a valid date in PEP 700's own form: upstream's bytes, unchanged
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += "." + f"{stamp.microsecond:06d}"
    return text + "Z"


def _checked_url(base: str, href: str, where: str) -> str:
    try:
        url = urljoin(base, href)
        parts = urlsplit(url)
        base_scheme = urlsplit(base).scheme
    except ValueError:  # e.g. a malformed IPv6 host
        raise HostileDataError(f"{where}: malformed file URL {href[:200]!r}") from None
    if parts.scheme not in ("http", "https") and not (parts.scheme == "file" and base_scheme == "file"):
        raise HostileDataError(f"{where}: refusing file URL with scheme {parts.scheme!r}")
    if not parts.path or parts.path.endswith("/"):
        raise HostileDataError(f"{where}: file URL {href[:200]!r} names no file")
    return url


_DIGEST = re.compile(r"\s*[0-9A-Fa-f]{64}\s*\Z")


def provenance_value(value: Any, base: str, where: str, filename: str) -> str | None:
    """PEP 740's provenance of a file (`provenance` in JSON, `data-provenance` in HTML): a URL,
    resolved against the page as file URLs are; None when absent, null or "". The specification
    wants a fully qualified URL of a secure origin; anything this mirror could not fetch is dropped
    with a warning, never fails the page (the field is optional): a scheme other than http(s), a
    URL without a host or that does not parse, a value that is not a string, or the bare SHA-256
    digest that drafts of PEP 740 put there.

    >>> provenance_value("x.whl.provenance", "https://h.invalid/simple/x/", "project x", "x.whl")
    'https://h.invalid/simple/x/x.whl.provenance'
    """
    if value is None or value == "":
        return None
    reason = ""
    if not isinstance(value, str):
        reason = "not a string"
    elif _DIGEST.match(value):
        reason = "a digest (a draft of PEP 740), not a URL"
    else:
        try:
            url = urldefrag(urljoin(base, value.strip())).url
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            reason = "not a URL"
        else:
            if parts.scheme not in ("http", "https"):
                reason = f"scheme {parts.scheme!r}"
            elif not host:
                reason = "no host"
            else:
                return url
    log.warning("event=drop-provenance where=%r file=%s value=%r reason=%r", where, filename, str(value)[:200], reason)
    return None


def _filename(value: Any) -> str:
    """names.check_filename(), and no newline: its pattern ends in "$", which also matches
    before a final "\\n", so "x.whl\\n" (from a URL's "%0A") would pass it."""
    filename = check_filename(value)
    if "\n" in filename:
        raise HostileDataError(f"upstream gives an unsafe filename {filename!r}")
    return filename


def _url_filename(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def _fragment_sha256(fragment: str) -> Optional[str]:
    """The sha256 of a PEP 503 #<hashname>=<hex> fragment; None for another hash (md5, ...) or
    none. A sha256 fragment that is not exactly 64 hex digits is refused."""
    name, sep, value = fragment.partition("=")
    if sep and name.lower() == "sha256":
        return check_sha256(value)
    return None


def _yanked_value(value: Any, where: str, filename: str) -> bool | str:
    """PEP 592/691: false, true, or the reason. An empty reason ("") still means yanked, as
    data-yanked="" does in HTML (devpi sends it for a reason that was never given)."""
    if value is None or value is False:
        return False
    if value is True or value == "":
        return True
    if isinstance(value, str):
        return value
    raise UpstreamError(f"{where}: malformed yanked of {filename!r}")


def _metadata_field(value: Any, where: str) -> tuple[bool, Optional[str]]:
    """PEP 658/714 core-metadata in JSON: false, true, or {hashname: hex}."""
    if value is None or value is False:
        return False, None
    if value is True:
        return True, None
    if isinstance(value, dict):
        return True, check_sha256(value.get("sha256")) if "sha256" in value else None
    raise UpstreamError(f"{where}: malformed core-metadata {value!r}")


def _metadata_attr(value: Optional[str]) -> tuple[bool, Optional[str]]:
    """PEP 658/714 data-core-metadata in HTML: "true", "<hashname>=<hex>", or no value."""
    if value is None or value == "" or value.lower() == "true":
        return True, None
    name, sep, _digest = value.partition("=")
    if not sep:
        return False, None  # neither "true" nor a hash: not an advertisement we can use
    if name.lower() == "sha256":
        return True, _fragment_sha256(value)
    return True, None  # another hash: present, but not verifiable by sha256


def _project_status(status: Any) -> Optional[dict[str, str]]:
    if isinstance(status, dict) and isinstance(status.get("status"), str):
        out = {"status": status["status"]}
        if isinstance(status.get("reason"), str):
            out["reason"] = status["reason"]
        return out
    return None


# -- project pages ---------------------------------------------------------------------------
def parse_project_json(body: bytes, url: str, canonical: str, header_serial: Optional[int] = None) -> ProjectPage:
    where = f"project {canonical}"
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise UpstreamError(f"{where}: malformed JSON page ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise UpstreamError(f"{where}: malformed JSON page (no 'files' list)")
    meta = data.get("meta", {})
    _check_api_version(meta, where)
    serial = _serial_value(meta.get("_last-serial"), where)
    if serial is None:
        serial = header_serial
    name = data.get("name", canonical)
    if not isinstance(name, str) or canonical_project(name) != canonical:
        raise HostileDataError(f"{where}: the page names another project {name!r}")
    files = [_json_file(entry, url, canonical, where) for entry in data["files"]]
    versions = data.get("versions")
    if versions is not None and (not isinstance(versions, list) or not all(isinstance(v, str) for v in versions)):
        raise UpstreamError(f"{where}: malformed versions list")
    files, conflicts = one_per_filename(files)
    return ProjectPage(
        name=name,
        canonical=canonical,
        serial=serial,
        files=files,
        conflicts=conflicts,
        versions=versions,
        status=_project_status(data.get("project-status")),
        fingerprint=hashlib.sha256(body).hexdigest(),
    )


def _json_file(entry: Any, url: str, canonical: str, where: str) -> UpstreamFile:
    if not isinstance(entry, dict):
        raise UpstreamError(f"{where}: malformed file entry {str(entry)[:200]!r}")
    filename = _filename(entry.get("filename"))
    href = entry.get("url")
    if not isinstance(href, str):
        raise UpstreamError(f"{where}: file {filename!r} has no URL")
    file_url, _, fragment = _checked_url(url, href, where).partition("#")
    if _url_filename(file_url) != filename:
        raise HostileDataError(f"{where}: URL of {filename!r} names another file")
    hashes = entry.get("hashes", {})
    if not isinstance(hashes, dict):
        raise UpstreamError(f"{where}: malformed hashes of {filename!r}")
    sha256 = check_sha256(hashes.get("sha256"))
    in_url = _fragment_sha256(fragment)  # older devpi: "#sha256=..." on the JSON url too
    if in_url is not None:
        if sha256 is not None and sha256 != in_url:
            raise HostileDataError(f"{where}: {filename!r} has two different sha256 hashes")
        sha256 = in_url
    rp = entry.get("requires-python")
    if rp is not None and not isinstance(rp, str):
        raise UpstreamError(f"{where}: malformed requires-python of {filename!r}")
    if "core-metadata" in entry:  # PEP 714's name wins over PEP 658's
        meta_value = entry["core-metadata"]
    else:
        meta_value = entry.get("data-dist-info-metadata", entry.get("dist-info-metadata"))
    has_meta, meta_sha = _metadata_field(meta_value, where)
    return UpstreamFile(
        filename=filename,
        url=file_url,
        sha256=sha256,
        size=_size_value(entry.get("size"), where, filename),
        requires_python=rp or None,
        yanked=_yanked_value(entry.get("yanked", False), where, filename),
        upload_time=upload_time_value(entry.get("upload-time"), where, filename),
        metadata=has_meta,
        metadata_sha256=meta_sha,
        version=version_of(filename, canonical),
        provenance=provenance_value(entry.get("provenance"), url, where, filename),
    )


_SERIAL_COMMENT = re.compile(r"\s*SERIAL\s+([0-9]{1,19})\s*\Z")


class _PageParser(HTMLParser):
    """The anchors of a project page, its <meta> tags, its first <base href>, and bandersnatch's
    <!--SERIAL n--> trailer."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[dict[str, Optional[str]]] = []
        self.meta: dict[str, str] = {}
        self.base: Optional[str] = None
        self.comment_serial: Optional[int] = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))
        elif tag == "meta":
            a = dict(attrs)
            if a.get("name") and a.get("content") is not None:
                self.meta.setdefault(str(a["name"]), str(a["content"]))
        elif tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")

    def handle_comment(self, data: str) -> None:
        m = _SERIAL_COMMENT.match(data)
        if m and int(m.group(1)) <= _MAX_SERIAL:
            self.comment_serial = int(m.group(1))


def parse_project_html(body: bytes, url: str, canonical: str, header_serial: Optional[int] = None) -> ProjectPage:
    where = f"project {canonical}"
    parser = _PageParser()
    try:
        parser.feed(body.decode("utf-8"))
        parser.close()
    except (UnicodeDecodeError, AssertionError) as exc:
        raise UpstreamError(f"{where}: malformed HTML page ({exc.__class__.__name__})") from None
    # only pypi:repository-version is PEP 629's; Nexus and Artifactory send <meta name="api-version"
    # value="2"> (no content): not a version of this API
    _check_version_text(parser.meta.get("pypi:repository-version", "1.0"), where)
    base = url
    if parser.base:
        try:
            base = urljoin(url, parser.base)
        except ValueError:
            raise HostileDataError(f"{where}: malformed <base href> {parser.base[:200]!r}") from None
    files: list[UpstreamFile] = []
    for attrs in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        file_url, _, fragment = _checked_url(base, href, where).partition("#")
        filename = _filename(_url_filename(file_url))
        yanked: bool | str = False
        if "data-yanked" in attrs:
            yanked = attrs["data-yanked"] or True
        if "data-core-metadata" in attrs:
            has_meta, meta_sha = _metadata_attr(attrs["data-core-metadata"])
        elif "data-dist-info-metadata" in attrs:
            has_meta, meta_sha = _metadata_attr(attrs["data-dist-info-metadata"])
        else:
            has_meta, meta_sha = False, None
        files.append(
            UpstreamFile(
                filename=filename,
                url=file_url,
                sha256=_fragment_sha256(fragment),
                requires_python=attrs.get("data-requires-python") or None,
                yanked=yanked,
                upload_time=upload_time_value(attrs.get("data-upload-time"), where, filename),
                metadata=has_meta,
                metadata_sha256=meta_sha,
                version=version_of(filename, canonical),
                provenance=provenance_value(attrs.get("data-provenance"), base, where, filename),
            )
        )
    status = None
    if "pypi:project-status" in parser.meta:
        status = {"status": parser.meta["pypi:project-status"]}
        if "pypi:project-status-reason" in parser.meta:
            status["reason"] = parser.meta["pypi:project-status-reason"]
    files, conflicts = one_per_filename(files)
    return ProjectPage(
        name=canonical,
        canonical=canonical,
        serial=header_serial if header_serial is not None else parser.comment_serial,
        files=files,
        conflicts=conflicts,
        status=status,
        fingerprint=hashlib.sha256(body).hexdigest(),
    )


# -- the root, streamed ----------------------------------------------------------------------
def parse_root_json(body: bytes, header_serial: Optional[int], unchanged_at: Optional[int] = None) -> RootIndex:
    """The root's projects; with `unchanged_at`, a root whose serial is exactly that is not read
    further (the mirror completed that serial: nothing can have changed)."""
    return parse_root_stream([body], is_json=True, header_serial=header_serial, unchanged_at=unchanged_at)


def parse_root_html(body: bytes, header_serial: Optional[int]) -> RootIndex:
    return parse_root_stream([body], is_json=False, header_serial=header_serial, unchanged_at=None)


def parse_root_stream(
    chunks: Iterable[bytes], *, is_json: bool, header_serial: Optional[int], unchanged_at: Optional[int]
) -> RootIndex:
    """The root from its body in chunks (e.g. a response's iter_content), in bounded memory:
    JSON one entry at a time from a small buffer, HTML with an incremental anchor scanner.
    Invalid project names are skipped with a warning; everything else that is wrong is an
    UpstreamError. With `unchanged_at`, a JSON root whose meta announces exactly that serial
    before its project list is not read further."""
    if is_json:
        return _JsonRoot(chunks, header_serial, unchanged_at).parse()
    return _html_root(chunks, header_serial)


class _Projects:
    """Root entries on their way into a RootProjectsBuilder: validated a batch at a time."""

    def __init__(self) -> None:
        self.builder = RootProjectsBuilder()
        self.names: list[Any] = []
        self.serials: list[Optional[int]] = []

    def flush(self) -> None:
        names, serials = self.names, self.serials
        if not names:
            return
        self.names, self.serials = [], []
        canonicals = canonical_projects(names)
        if None in canonicals or not _valid_root_names(names):
            keep = []
            for i, (name, canon) in enumerate(zip(names, canonicals)):
                if canon is None or not _ROOT_NAME.match(name):
                    log.warning("event=skip-project reason=%r", f"upstream lists an invalid project name {str(name)[:300]!r}")
                else:
                    keep.append(i)
            names = [names[i] for i in keep]
            canonicals = [canonicals[i] for i in keep]
            serials = [serials[i] for i in keep]
        self.builder.add(canonicals, names, serials)  # type: ignore[arg-type]


def _valid_root_names(names: list[Any]) -> bool:
    """names.canonical_projects() also lets through a name with a trailing newline ("$") and
    letters outside ASCII that match [A-Z] case-insensitively (the Kelvin sign): neither is a
    PEP 508 name, and neither may become a path."""
    joined = "\n".join(names)
    return joined.isascii() and joined.count("\n") == len(names) - 1


# JSON ------------------------------------------------------------------------------------------
_WS = re.compile(r"[ \t\n\r]*")
_COMMA = re.compile(r"[ \t\n\r]*,[ \t\n\r]*")
_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner (not in the stubs)
_LOOKAHEAD = 64 * 1024  # the buffer holds at least this much past the next entry, unless at the end
_NOTHING = object()


class _JsonRoot:
    """A PEP 691 root read from chunks: the top-level object key by key, the "projects" array
    one entry at a time with the C scanner, from a buffer of about one chunk."""

    def __init__(self, chunks: Iterable[bytes], header_serial: Optional[int], unchanged_at: Optional[int]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self._started = False
        self.header_serial = header_serial
        self.unchanged_at = unchanged_at

    @staticmethod
    def _malformed(why: str) -> UpstreamError:
        return UpstreamError(f"{ROOT_WHERE} is malformed JSON ({why})")

    def more(self) -> bool:
        """Append the next chunk's text to what is not consumed yet; False at the end."""
        while not self.eof:
            chunk = next(self._chunks, None)
            self.eof = chunk is None
            try:
                text = self._decoder.decode(b"" if chunk is None else chunk, final=self.eof)
            except UnicodeDecodeError:
                raise self._malformed("UnicodeDecodeError") from None
            if text and not self._started:
                self._started = True
                if text[0] == "\ufeff":  # a byte order mark, which json.loads also accepts
                    text = text[1:]
            if text:
                self.buf = self.buf[self.pos:] + text
                self.pos = 0
                return True
        return False

    def peek(self) -> str:
        """The next character that is not whitespace ("" at the end), reading on as needed."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def _scan(self) -> tuple[Any, int]:
        """The value at the buffer's position and where it ends; reads on while it may be cut
        off by the end of what has arrived."""
        while True:
            buf, pos = self.buf, self.pos
            if len(buf) - pos < _LOOKAHEAD and not self.eof:
                self.more()
                continue
            try:
                obj, end = _SCAN(buf, pos)
            except (StopIteration, ValueError, RecursionError):
                obj, end = _NOTHING, len(buf)
            if obj is not _NOTHING and (end < len(buf) or self.eof):
                return obj, end
            if self.eof:
                raise self._malformed("a value that does not parse")
            if len(buf) - pos > MAX_ENTRY:
                raise self._malformed(f"a value that does not parse within {MAX_ENTRY} bytes")
            self.more()

    def value(self) -> Any:
        """The next JSON value (after any whitespace)."""
        self.peek()
        obj, self.pos = self._scan()
        return obj

    def parse(self) -> RootIndex:
        if self.peek() != "{":
            raise self._malformed("not an object")
        self.pos += 1
        seen: set[str] = set()
        meta: Any = {}
        projects: Optional[_Projects] = None
        c = self.peek()
        while c != "}":
            if c != '"':
                raise self._malformed("expected a key")
            key = self.value()
            if key in seen:
                raise self._malformed(f"key {key!r} given twice")
            seen.add(key)
            if self.peek() != ":":
                raise self._malformed("expected ':'")
            self.pos += 1
            if key == "projects":
                if self.peek() != "[":
                    raise self._malformed("no 'projects' list")
                projects = self._projects()
            elif key == "meta":
                meta = self.value()
                _check_api_version(meta, ROOT_WHERE)
                serial = self._serial(meta)
                if projects is None and self.unchanged_at is not None and serial == self.unchanged_at:
                    return RootIndex(serial=serial, json=True, unchanged=True)  # the rest is not read
            else:
                self.value()  # a key this parser does not use
            c = self.peek()
            if c == ",":
                self.pos += 1
                c = self.peek()
                if c == "}":
                    raise self._malformed("a ',' before '}'")
            elif c != "}":
                raise self._malformed("expected ',' or '}'")
        self.pos += 1
        if self.peek() != "":
            raise self._malformed("data after the object")
        if projects is None:
            raise self._malformed("no 'projects' list")
        _check_api_version(meta, ROOT_WHERE)
        serial = self._serial(meta)
        if self.unchanged_at is not None and serial == self.unchanged_at:
            return RootIndex(serial=serial, json=True, unchanged=True)
        return RootIndex(serial=serial, projects=projects.builder.build(), json=True)

    def _serial(self, meta: dict[str, Any]) -> Optional[int]:
        serial = _serial_value(meta.get("_last-serial"), ROOT_WHERE)
        return serial if serial is not None else self.header_serial

    def _projects(self) -> _Projects:
        """The "projects" array (the buffer is at its "["), entry by entry: the hot loop. An entry
        that starts at least _LOOKAHEAD before the buffer's end is scanned in place; near the end,
        or when the scan fails, _scan() reads on and decides."""
        out = _Projects()
        self.pos += 1
        if self.peek() == "]":
            self.pos += 1
            return out
        scan, comma = _SCAN, _COMMA.match
        names, serials = out.names, out.serials
        buf, pos = self.buf, self.pos
        limit = len(buf) if self.eof else len(buf) - _LOOKAHEAD
        while True:
            entry: Any = _NOTHING
            if pos <= limit:
                try:
                    entry, end = scan(buf, pos)
                except (StopIteration, ValueError, RecursionError):
                    entry = _NOTHING
            if entry is _NOTHING or (end >= len(buf) and not self.eof):
                self.pos = pos
                entry, end = self._scan()
                buf = self.buf
                limit = len(buf) if self.eof else len(buf) - _LOOKAHEAD
            try:
                name = entry["name"]
                pserial = entry.get("_last-serial")
            except (TypeError, KeyError, AttributeError):
                raise UpstreamError(f"{ROOT_WHERE} has a malformed entry (no name)") from None
            if pserial is not None and (type(pserial) is not int or pserial < 0 or pserial > _MAX_SERIAL):
                pserial = _serial_value(pserial, f"upstream root entry {str(name)[:200]!r}")
            names.append(name)
            serials.append(pserial)
            if len(names) >= ROOT_BATCH:
                out.flush()
                names, serials = out.names, out.serials
            m = comma(buf, end)
            if m is not None:
                pos = m.end()
                continue
            self.pos = end
            c = self.peek()  # may read on: the buffer changes
            if c == ",":
                self.pos += 1
                if self.peek() == "]":
                    raise self._malformed("a ',' before ']'")
                buf, pos = self.buf, self.pos
                limit = len(buf) if self.eof else len(buf) - _LOOKAHEAD
                continue
            if c == "]":
                self.pos += 1
                out.flush()
                return out
            raise self._malformed("expected ',' or ']'")


# HTML ------------------------------------------------------------------------------------------
# An anchor: its attributes (quoted values may hold '>'), then its text: anything but another
# <a ...> or </a> (other tags in the text are dropped afterwards, as an HTML parser's text would).
# Both loops are unrolled (x*(?:y x*)*): no nested quantifier, so no catastrophic backtracking
# on the unfinished anchor at the end of each chunk, or on hostile input.
_ATTRS = r"""[^>"']*(?:(?:"[^"]*"|'[^']*')[^>"']*)*"""
_ANCHOR = re.compile(r"<a(?=[\s>/])" + _ATTRS + r">([^<]*(?:<(?!/?a[\s>/])[^<]*)*)</a\s*>", re.IGNORECASE)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_META = re.compile(r"<meta(?=[\s>/])(" + _ATTRS + r")>", re.IGNORECASE)
_ATTR = re.compile(r"""([^\s"'<>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'=<>`]+))?""")
_TAG = re.compile(r"<[^>]*>")


def _meta_version(text: str) -> Optional[str]:
    """The content of <meta name="pypi:repository-version">, if `text` has one."""
    for attrs in _META.findall(text):
        found = {k.lower(): html.unescape(v[1:-1] if v[:1] in "\"'" and v else v) for k, v in _ATTR.findall(attrs)}
        if found.get("name") == "pypi:repository-version" and "content" in found:
            return found["content"]
    return None


def _anchor_names(texts: list[str]) -> list[str]:
    """Anchor texts as an HTML parser gives them: tags dropped, character references resolved,
    surrounding whitespace stripped."""
    if any("&" in t or "<" in t for t in texts):
        texts = [html.unescape(_TAG.sub("", t)) if ("&" in t or "<" in t) else t for t in texts]
    return list(map(str.strip, texts))


def _trim_carry(rest: str) -> str:
    """What of the text after the last complete anchor must wait for the next chunk: nothing
    when no anchor can begin in it, but for its last bytes if they may still become the start of
    an anchor or a comment ("<", "<!", "<!-")."""
    if "<a" not in rest and "<A" not in rest:
        tail = rest[rest.rfind("<"):] if "<" in rest else ""
        return tail if "<!--".startswith(tail) else ""
    if len(rest) <= MAX_ENTRY:
        return rest
    rest = rest[max(rest.rfind("<a"), rest.rfind("<A")):]  # too long: only the last may still be one
    if len(rest) > MAX_ENTRY:
        raise UpstreamError(f"{ROOT_WHERE} has an HTML element longer than {MAX_ENTRY} bytes")
    return rest


def _html_root(chunks: Iterable[bytes], header_serial: Optional[int]) -> RootIndex:
    """PEP 503 root: the text of each anchor is a project's name. The buffer keeps only what may
    be an unfinished anchor or comment; anchors inside comments do not count."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    out = _Projects()
    carry = ""
    version_checked = False
    pieces = iter(chunks)
    while True:
        chunk = next(pieces, None)
        done = chunk is None
        try:
            text = decoder.decode(b"" if chunk is None else chunk, final=done)
        except UnicodeDecodeError:
            raise UpstreamError(f"{ROOT_WHERE} is malformed HTML (UnicodeDecodeError)") from None
        if not text and not done:
            continue
        buf, comment = carry + text, ""
        close = buf.rfind("-->")
        open_at = buf.find("<!--", close + 3 if close >= 0 else 0)
        if open_at >= 0:  # a comment has begun and not ended: it waits whole (or, at the end, is dropped)
            buf, comment = buf[:open_at], ("" if done else buf[open_at:])
            if len(comment) > MAX_ENTRY:
                raise UpstreamError(f"{ROOT_WHERE} has an HTML comment longer than {MAX_ENTRY} bytes")
        if "<!--" in buf:
            buf = _COMMENT.sub(" ", buf)
        if not version_checked and "<meta" in buf.lower():
            version = _meta_version(buf)
            if version is not None:
                _check_version_text(version, ROOT_WHERE)
                version_checked = True
        texts: list[str] = []
        end = 0
        for m in _ANCHOR.finditer(buf):
            texts.append(m.group(1))
            end = m.end()
        if texts:
            out.names.extend(_anchor_names(texts))
            out.serials.extend([None] * len(texts))
            if len(out.names) >= ROOT_BATCH:
                out.flush()
        if done:
            break
        carry = _trim_carry(buf[end:]) + comment
    out.flush()
    return RootIndex(serial=header_serial, projects=out.builder.build(), json=False)
