"""Read an upstream simple index: the PEP 691 JSON API, falling back to PEP 503 HTML."""
from __future__ import annotations

import logging
import time
from typing import Optional
from urllib.parse import urljoin

import requests

from .errors import UpstreamError
from .http import HttpClient, HttpResponse
from .models import ProjectPage, RootIndex
from .pages import parse_project_html, parse_project_json, parse_root_html, parse_root_json

log = logging.getLogger(__name__)

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPES = ("application/vnd.pypi.simple.v1+html", "text/html")
ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
STALE_RETRIES = 3


def _content_type(response: HttpResponse) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _header_serial(response: HttpResponse) -> Optional[int]:
    raw = response.headers.get("X-PyPI-Last-Serial")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


class Upstream:
    """Fetches and parses pages of one upstream index."""

    def __init__(self, base_url: str, client: HttpClient) -> None:
        self.base_url = base_url
        self.client = client

    def _fetch(self, url: str, where: str) -> tuple[bytes, str, Optional[int], str]:
        try:
            with self.client.get(url, accept=ACCEPT) as response:
                _check_status(response, where)
                return response.content, _content_type(response), _header_serial(response), response.url
        except requests.RequestException as exc:
            raise UpstreamError(f"{where}: request failed ({_short(exc)})") from None

    def root(self, unchanged_at: Optional[int] = None) -> RootIndex:
        """The project list. With `unchanged_at` (the serial the mirror's last complete run
        reached), a root that announces exactly that serial in its X-PyPI-Last-Serial header is
        not even downloaded: on a big index the list is tens of megabytes."""
        where = "upstream root index"
        try:
            with self.client.get(self.base_url, accept=ACCEPT, stream=True) as response:
                _check_status(response, where)
                hserial = _header_serial(response)
                ctype = _content_type(response)
                is_json = ctype == JSON_TYPE or ctype == "application/json"
                if unchanged_at is not None and hserial == unchanged_at:
                    return RootIndex(serial=hserial, json=is_json, unchanged=True)
                body = response.content
        except requests.RequestException as exc:
            raise UpstreamError(f"{where}: request failed ({_short(exc)})") from None
        if is_json:
            return parse_root_json(body, hserial, unchanged_at)
        return parse_root_html(body, hserial)

    def project_url(self, canonical: str) -> str:
        return urljoin(self.base_url, f"{canonical}/")

    def project(self, canonical: str, min_serial: Optional[int] = None) -> ProjectPage:
        """The project's page, retried while it is older than the serial the root promised."""
        url = self.project_url(canonical)
        where = f"project {canonical}"
        page: Optional[ProjectPage] = None
        for attempt in range(STALE_RETRIES + 1):
            fetch_url = url if attempt == 0 else f"{url}?cache-bust={int(time.time() * 1000)}-{attempt}"
            body, ctype, hserial, final_url = self._fetch(fetch_url, where)
            final_url = final_url.split("?", 1)[0]
            if ctype == JSON_TYPE or ctype == "application/json":
                page = parse_project_json(body, final_url, canonical, hserial)
            else:
                page = parse_project_html(body, final_url, canonical, hserial)
            if min_serial is None or page.serial is None or page.serial >= min_serial:
                return page
            log.warning("event=stale-page project=%s serial=%s expected=%s attempt=%d", canonical, page.serial, min_serial, attempt + 1)
            time.sleep(min(0.2 * (attempt + 1), 1.0))
        raise UpstreamError(f"{where}: upstream keeps serving a stale page (serial {page.serial if page else '?'} < {min_serial})")


def _check_status(response: HttpResponse, where: str) -> None:
    if response.status_code == 404:
        raise UpstreamError(f"{where}: upstream answered 404 Not Found")
    if response.status_code >= 400:
        raise UpstreamError(f"{where}: upstream answered HTTP {response.status_code}")


def _short(exc: BaseException) -> str:
    text = str(exc)
    if "Max retries exceeded" in text or "timed out" in text.lower():
        cause = "timed out" if "timed out" in text.lower() else "retries exhausted"
        return f"{exc.__class__.__name__}: {cause}"
    return f"{exc.__class__.__name__}: {text[:160]}"
