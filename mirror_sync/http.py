"""HTTP sessions: one per worker thread, connection reuse, retries with backoff, a politeness cap."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import __version__

USER_AGENT = f"mirror-sync/{__version__} (pypi-mirror-kit) requests/{requests.__version__}"
RETRY_STATUSES = (429, 500, 502, 503, 504)


class _Session(requests.Session):
    """A Session that reads the environment (proxies, no_proxy, CA bundle, netrc) once per host
    instead of once per request: on a mirror's tens of thousands of requests that scan of
    os.environ is a measurable share of the CPU time."""

    def __init__(self) -> None:
        super().__init__()
        self._env_cache: dict[tuple[str, bool], Any] = {}

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        if proxies or verify is not None or cert is not None:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (f"{parts.scheme}://{parts.netloc}", bool(stream))
        cached = self._env_cache.get(key)
        if cached is None:
            cached = super().merge_environment_settings(url, proxies, stream, verify, cert)
            self._env_cache[key] = cached
        return dict(cached)


class HttpClient:
    """Hands each thread its own requests.Session; at most `workers` requests are in flight."""

    def __init__(self, workers: int, timeout: float, retries: int, backoff: float = 0.5) -> None:
        self.workers = workers
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._local = threading.local()
        self._cap = threading.BoundedSemaphore(workers)
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self.requests = 0

    def _session(self) -> requests.Session:
        session: Optional[requests.Session] = getattr(self._local, "session", None)
        if session is None:
            session = _Session()
            retry = Retry(
                total=self.retries,
                connect=self.retries,
                read=self.retries,
                status=self.retries,
                backoff_factor=self.backoff,
                backoff_max=30,
                status_forcelist=RETRY_STATUSES,
                allowed_methods=frozenset({"GET", "HEAD"}),
                respect_retry_after_header=True,
                raise_on_status=False,
            )
            adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=max(4, self.workers))
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = USER_AGENT
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    @contextmanager
    def get(self, url: str, *, accept: Optional[str] = None, stream: bool = False) -> Iterator[requests.Response]:
        """GET under the politeness cap; the response is closed when the block ends."""
        headers = {"Accept": accept} if accept else None
        with self._cap:
            with self._lock:
                self.requests += 1
            response = self._session().get(url, headers=headers, timeout=self.timeout, stream=stream)
            try:
                yield response
            finally:
                response.close()

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
