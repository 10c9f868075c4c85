"""Read an upstream simple index: the PEP 691 JSON API, falling back to PEP 503 HTML."""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from .errors import HttpStatusError, NotFoundError, UpstreamError
from .http import HttpClient, HttpResponse, iter_capped, read_capped
from .models import ProjectPage, RootIndex
from .pages import parse_project_html, parse_project_json, parse_root_stream

log = logging.getLogger(__name__)

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPES = ("application/vnd.pypi.simple.v1+html", "text/html")
ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
STALE_RETRIES = 3
ROOT_CHUNK = 256 * 1024  # bytes of the root read at a time


def _content_type(response: HttpResponse) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _header_serial(response: HttpResponse) -> Optional[int]:
    raw = response.headers.get("X-PyPI-Last-Serial")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Validators:
    """What upstream sent to validate a cached page (RFC 9110): ETag, Last-Modified."""

    etag: Optional[str] = None
    last_modified: Optional[str] = None

    def headers(self) -> dict[str, str]:
        out = {}
        if self.etag:
            out["If-None-Match"] = self.etag
        if self.last_modified:
            out["If-Modified-Since"] = self.last_modified
        return out


@dataclass(frozen=True)
class _Fetched:
    body: bytes
    content_type: str
    serial: Optional[int]
    url: str
    etag: Optional[str]
    last_modified: Optional[str]


class Upstream:
    """Fetches and parses pages of one upstream index."""

    def __init__(
        self, base_url: str, client: HttpClient, max_page_size: int = 64 * 1024**2, max_root_size: int = 128 * 1024**2
    ) -> None:
        self.base_url = base_url
        self.client = client
        self.max_page_size = max_page_size
        self.max_root_size = max_root_size

    def _fetch(self, url: str, where: str, headers: Optional[dict[str, str]] = None) -> Optional[_Fetched]:
        """The page's body and what its headers say; None when upstream answered 304 Not Modified."""
        try:
            with self.client.get(url, accept=ACCEPT, headers=headers, stream=True) as response:
                if response.status_code == 304 and headers:
                    return None
                _check_status(response, where, url)
                return _Fetched(
                    read_capped(response, self.max_page_size, f"{where}: the page"),
                    _content_type(response),
                    _header_serial(response),
                    response.url,
                    response.headers.get("ETag"),
                    response.headers.get("Last-Modified"),
                )
        except requests.RequestException as exc:
            raise UpstreamError(f"{where}: request to {public_url(url)} failed ({_short(exc)})") from None

    def root(self, unchanged_at: Optional[int] = None) -> RootIndex:
        """The project list. With `unchanged_at` (the serial the mirror's last complete run
        reached), a root that announces exactly that serial in its X-PyPI-Last-Serial header is
        not even downloaded: on a big index the list is tens of megabytes."""
        where = "upstream root index"
        try:
            with self.client.get(self.base_url, accept=ACCEPT, stream=True) as response:
                _check_status(response, where, self.base_url)
                hserial = _header_serial(response)
                ctype = _content_type(response)
                is_json = ctype == JSON_TYPE or ctype == "application/json"
                if unchanged_at is not None and hserial == unchanged_at:
                    return RootIndex(serial=hserial, json=is_json, unchanged=True)
                # parsed as it arrives: neither the body (~40 MB on a big index) nor a dict of
                # its 700,000 names is ever held whole (pages.parse_root_stream)
                return parse_root_stream(
                    iter_capped(response, self.max_root_size, where, ROOT_CHUNK),
                    is_json=is_json, header_serial=hserial, unchanged_at=unchanged_at,
                )
        except requests.RequestException as exc:
            raise UpstreamError(f"{where}: request to {public_url(self.base_url)} failed ({_short(exc)})") from None

    def root_serial(self) -> Optional[int]:
        """The serial upstream's root announces in its X-PyPI-Last-Serial header, read from the
        headers alone: the body (the whole project list) is not downloaded."""
        where = "upstream root index"
        try:
            with self.client.get(self.base_url, accept=ACCEPT, stream=True) as response:
                _check_status(response, where, self.base_url)
                return _header_serial(response)
        except requests.RequestException as exc:
            raise UpstreamError(f"{where}: request to {public_url(self.base_url)} failed ({_short(exc)})") from None

    def project_url(self, canonical: str) -> str:
        return urljoin(self.base_url, f"{canonical}/")

    def project(
        self,
        canonical: str,
        min_serial: Optional[int] = None,
        validators: Optional[Validators] = None,
        fingerprint: Optional[str] = None,
    ) -> Optional[ProjectPage]:
        """The project's page, retried while it is older than the serial the root promised.

        With `validators` (the ETag / Last-Modified upstream sent last time) the request is
        conditional; with `fingerprint` (the sha256 of the body last time) a body with that hash
        is not even parsed. Either way None means the page has not changed. A project upstream
        does not have raises NotFoundError."""
        url = self.project_url(canonical)
        where = f"project {canonical}"
        page: Optional[ProjectPage] = None
        conditional = validators.headers() if validators is not None else {}
        for attempt in range(STALE_RETRIES + 1):
            fetch_url = url if attempt == 0 else f"{url}?cache-bust={int(time.time() * 1000)}-{attempt}"
            got = self._fetch(fetch_url, where, conditional if attempt == 0 and conditional else None)
            if got is None:
                return None
            if fingerprint is not None and min_serial is None and hashlib.sha256(got.body).hexdigest() == fingerprint:
                return None  # the same bytes as last time (with a newer serial promised, they would be stale)
            final_url = got.url.split("?", 1)[0]
            if got.content_type == JSON_TYPE or got.content_type == "application/json":
                page = parse_project_json(got.body, final_url, canonical, got.serial)
            else:
                page = parse_project_html(got.body, final_url, canonical, got.serial)
            page.etag, page.last_modified = got.etag, got.last_modified
            if min_serial is None or page.serial is None or page.serial >= min_serial:
                return page
            log.warning("event=stale-page project=%s serial=%s expected=%s attempt=%d", canonical, page.serial, min_serial, attempt + 1)
            time.sleep(min(0.2 * (attempt + 1), 1.0))
        raise UpstreamError(f"{where}: upstream keeps serving a stale page (serial {page.serial if page else '?'} < {min_serial})")


def public_url(url: str) -> str:
    """A URL fit for a message: without the user name and password it may carry."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _check_status(response: HttpResponse, where: str, url: str) -> None:
    url = public_url(url)
    if response.status_code == 404:
        raise NotFoundError(f"{where}: not found on upstream ({url} answered 404)")
    if response.status_code >= 400:
        raise HttpStatusError(f"{where}: upstream answered HTTP {response.status_code} ({url})", response.status_code)


def _short(exc: BaseException) -> str:
    text = str(exc)
    if "Max retries exceeded" in text or "timed out" in text.lower():
        cause = "timed out" if "timed out" in text.lower() else "retries exhausted"
        return f"{exc.__class__.__name__}: {cause}"
    return f"{exc.__class__.__name__}: {text[:160]}"
