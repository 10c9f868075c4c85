"""Parse simple-index pages (PEP 691 JSON and PEP 503 HTML) into the engine's models.

Pure functions over bytes: no network, no disk. Liberal where the meaning is unambiguous,
strict where it is not (names, hashes and file URLs).
"""
from __future__ import annotations

import hashlib
import json
import logging
from html.parser import HTMLParser
from typing import Any, Optional
from urllib.parse import unquote, urljoin, urlsplit

from .errors import HostileDataError, UpstreamError
from .models import ProjectPage, RootIndex, UpstreamFile
from .names import canonical_project, canonical_projects, check_filename, check_sha256, version_of

log = logging.getLogger(__name__)


def _check_api_version(meta: Any, where: str) -> None:
    if not isinstance(meta, dict):
        raise UpstreamError(f"{where}: malformed JSON ('meta' is not an object)")
    version = meta.get("api-version", "1.0")
    if not isinstance(version, str) or not version.split(".")[0] == "1":
        raise UpstreamError(f"{where}: unsupported simple API version {version!r}")


def _serial_value(value: Any, where: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UpstreamError(f"{where}: malformed _last-serial {value!r}")
    return value


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, Optional[str]], str]] = []
        self.meta: dict[str, str] = {}
        self._current: Optional[dict[str, Optional[str]]] = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        if tag == "a":
            self._current = dict(attrs)
            self._text = []
        elif tag == "meta":
            a = dict(attrs)
            if a.get("name") and a.get("content") is not None:
                self.meta[str(a["name"])] = str(a["content"])

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._current is not None:
            self.anchors.append((self._current, "".join(self._text).strip()))
            self._current = None


def _checked_url(base: str, href: str, where: str) -> str:
    url = urljoin(base, href)
    parts = urlsplit(url)
    base_scheme = urlsplit(base).scheme
    if parts.scheme not in ("http", "https") and not (parts.scheme == "file" and base_scheme == "file"):
        raise HostileDataError(f"{where}: refusing file URL with scheme {parts.scheme!r}")
    if not parts.path or parts.path.endswith("/"):
        raise HostileDataError(f"{where}: file URL {href!r} names no file")
    return url


def _metadata_field(value: Any, where: str) -> tuple[bool, Optional[str]]:
    """PEP 658/714 core-metadata: False, True, or {hash: value}."""
    if value is None or value is False:
        return False, None
    if value is True:
        return True, None
    if isinstance(value, dict):
        return True, check_sha256(value.get("sha256")) if "sha256" in value else None
    raise UpstreamError(f"{where}: malformed core-metadata {value!r}")


def parse_project_json(body: bytes, url: str, canonical: str, header_serial: Optional[int] = None) -> ProjectPage:
    where = f"project {canonical}"
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
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
    files: list[UpstreamFile] = []
    for entry in data["files"]:
        if not isinstance(entry, dict):
            raise UpstreamError(f"{where}: malformed file entry {entry!r}")
        filename = check_filename(entry.get("filename"))
        href = entry.get("url")
        if not isinstance(href, str):
            raise UpstreamError(f"{where}: file {filename!r} has no URL")
        file_url = _checked_url(url, href, where)
        if unquote(urlsplit(file_url).path.rsplit("/", 1)[-1]) != filename:
            raise HostileDataError(f"{where}: URL of {filename!r} names another file")
        hashes = entry.get("hashes", {})
        if not isinstance(hashes, dict):
            raise UpstreamError(f"{where}: malformed hashes of {filename!r}")
        sha256 = check_sha256(hashes.get("sha256"))
        size = entry.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise UpstreamError(f"{where}: malformed size of {filename!r}")
        rp = entry.get("requires-python")
        if rp is not None and not isinstance(rp, str):
            raise UpstreamError(f"{where}: malformed requires-python of {filename!r}")
        yanked = entry.get("yanked", False)
        if not isinstance(yanked, (bool, str)):
            raise UpstreamError(f"{where}: malformed yanked of {filename!r}")
        upload_time = entry.get("upload-time")
        if upload_time is not None and not isinstance(upload_time, str):
            raise UpstreamError(f"{where}: malformed upload-time of {filename!r}")
        meta_value = entry.get("core-metadata", entry.get("data-dist-info-metadata", entry.get("dist-info-metadata")))
        has_meta, meta_sha = _metadata_field(meta_value, where)
        files.append(
            UpstreamFile(
                filename=filename,
                url=file_url,
                sha256=sha256,
                size=size,
                requires_python=rp or None,
                yanked=yanked,
                upload_time=upload_time,
                metadata=has_meta,
                metadata_sha256=meta_sha,
                version=version_of(filename, canonical),
            )
        )
    versions = data.get("versions")
    if versions is not None and (not isinstance(versions, list) or not all(isinstance(v, str) for v in versions)):
        raise UpstreamError(f"{where}: malformed versions list")
    status = data.get("project-status")
    status_out: Optional[dict[str, str]] = None
    if isinstance(status, dict) and isinstance(status.get("status"), str):
        status_out = {"status": status["status"]}
        if isinstance(status.get("reason"), str):
            status_out["reason"] = status["reason"]
    return ProjectPage(
        name=name,
        canonical=canonical,
        serial=serial,
        files=files,
        versions=versions,
        status=status_out,
        fingerprint=hashlib.sha256(body).hexdigest(),
    )


def parse_project_html(body: bytes, url: str, canonical: str, header_serial: Optional[int] = None) -> ProjectPage:
    where = f"project {canonical}"
    parser = _AnchorParser()
    try:
        parser.feed(body.decode("utf-8"))
        parser.close()
    except (UnicodeDecodeError, AssertionError) as exc:
        raise UpstreamError(f"{where}: malformed HTML page ({exc.__class__.__name__})") from None
    version = parser.meta.get("pypi:repository-version", "1.0")
    if version.split(".")[0] != "1":
        raise UpstreamError(f"{where}: unsupported simple API version {version!r}")
    files: list[UpstreamFile] = []
    for attrs, _text in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        file_url = _checked_url(url, href, where)
        path_part, _, fragment = file_url.partition("#")
        filename = check_filename(unquote(urlsplit(path_part).path.rsplit("/", 1)[-1]))
        sha256 = None
        if fragment.startswith("sha256="):
            sha256 = check_sha256(fragment[len("sha256="):])
        yanked: bool | str = False
        if "data-yanked" in attrs:
            yanked = attrs["data-yanked"] or True
        meta_attr = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        has_meta, meta_sha = False, None
        if meta_attr is not None:
            has_meta = True
            if meta_attr.startswith("sha256="):
                meta_sha = check_sha256(meta_attr[len("sha256="):])
            elif meta_attr not in ("", "true"):
                has_meta = "=" in meta_attr  # another hash: present, but not verifiable by sha256
        files.append(
            UpstreamFile(
                filename=filename,
                url=path_part,
                sha256=sha256,
                requires_python=attrs.get("data-requires-python") or None,
                yanked=yanked,
                metadata=has_meta,
                metadata_sha256=meta_sha,
                version=version_of(filename, canonical),
            )
        )
    status = None
    if "pypi:project-status" in parser.meta:
        status = {"status": parser.meta["pypi:project-status"]}
        if "pypi:project-status-reason" in parser.meta:
            status["reason"] = parser.meta["pypi:project-status-reason"]
    return ProjectPage(
        name=canonical,
        canonical=canonical,
        serial=header_serial,
        files=files,
        status=status,
        fingerprint=hashlib.sha256(body).hexdigest(),
    )


def parse_root_json(body: bytes, header_serial: Optional[int], unchanged_at: Optional[int] = None) -> RootIndex:
    """The root's projects; with `unchanged_at`, a root whose serial is exactly that is not read
    further (the mirror completed that serial: nothing can have changed)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UpstreamError(f"upstream root index is malformed JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("projects"), list):
        raise UpstreamError("upstream root index is malformed JSON (no 'projects' list)")
    meta = data.get("meta", {})
    _check_api_version(meta, "upstream root index")
    serial = _serial_value(meta.get("_last-serial"), "upstream root index")
    root = RootIndex(serial=serial if serial is not None else header_serial, json=True)
    if unchanged_at is not None and root.serial == unchanged_at:
        root.unchanged = True
        return root
    entries = data["projects"]
    try:
        names = [e["name"] for e in entries]
        serials = [e.get("_last-serial") for e in entries]
    except (TypeError, KeyError, AttributeError):
        raise UpstreamError("upstream root index has a malformed entry (no name)") from None
    # a no-op sync's hot path: validate and canonicalise every name in one C-level pass each
    # (700,000 names on a big index); only when some name is odd, fall back to one at a time
    canonicals = canonical_projects(names)
    projects = root.projects
    for name, canon, pserial in zip(names, canonicals, serials):
        if canon is None:
            log.warning("event=skip-project reason=%r", f"upstream lists an invalid project name {name!r}")
            continue
        if pserial is not None and (type(pserial) is not int or pserial < 0):
            raise UpstreamError(f"upstream root entry {name!r}: malformed _last-serial {pserial!r}")
        projects[canon] = (name, pserial)
    return root


def parse_root_html(body: bytes, header_serial: Optional[int]) -> RootIndex:
    parser = _AnchorParser()
    try:
        parser.feed(body.decode("utf-8"))
        parser.close()
    except (UnicodeDecodeError, AssertionError) as exc:
        raise UpstreamError(f"upstream root index is malformed HTML ({exc.__class__.__name__})") from None
    root = RootIndex(serial=header_serial, json=False)
    for _attrs, text in parser.anchors:
        try:
            canon = canonical_project(text)
        except HostileDataError as exc:
            log.warning("event=skip-project reason=%r", str(exc))
            continue
        root.projects[canon] = (text, None)
    return root
