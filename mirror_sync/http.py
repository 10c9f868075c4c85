"""HTTP: one requests.Session per worker thread, connection reuse, retries with backoff, a
politeness cap.

Each Session is configured once (adapter with the Retry policy, TLS trust, proxies and netrc
credentials read from the environment once per origin). Certificates are verified with the trust
chosen in tls.py (the system store through truststore, as pip does, unless a bundle is configured):
one SSLContext per process, injected into every pool the adapter makes, so requests' certifi
default never applies. Plain GETs to an origin without a proxy
then go straight to the connection pool that the Session's adapter holds for that origin, with the
adapter's own Retry policy and timeouts: requests' per-request preparation (cookie jars, hooks,
settings merges, URL re-parsing) costs more CPU than the transfer of a small wheel over a LAN, and a
mirror uses none of it. Redirects and proxied origins take the full `Session.get` path. Either way
callers see one response shape and requests' exceptions.
"""
from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
import weakref
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Optional, Protocol, Union
from urllib.parse import urlsplit

import requests
import urllib3
import urllib3.connection
from requests.adapters import HTTPAdapter
from requests.auth import _basic_auth_str
from requests.utils import get_environ_proxies, get_netrc_auth
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    DecodeError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)
from urllib3.util.retry import Retry

from . import __version__
from .deadline import Armed, Watchdog, watchdog
from .tls import Trust, context, process_trust, tls_error

USER_AGENT = f"mirror-sync/{__version__} (pypi-mirror-kit) requests/{requests.__version__}"
RETRY_STATUSES = (429, 500, 502, 503, 504)
REDIRECTS = (301, 302, 303, 307, 308)


class HttpResponse(Protocol):
    """What the engine reads of a response (requests.Response has the same shape)."""

    status_code: int
    url: str

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...

    def iter_content(self, chunk_size: int) -> Iterator[bytes]: ...

    def close(self) -> None: ...


def _as_requests_error(exc: BaseException) -> requests.RequestException:
    """The requests exception that requests' own adapter raises for this urllib3 error."""
    if isinstance(exc, MaxRetryError):
        reason = exc.reason
        if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
            return requests.ConnectTimeout(exc)
        if isinstance(reason, ResponseError):
            return requests.exceptions.RetryError(exc)
        if isinstance(reason, ProxyError):
            return requests.exceptions.ProxyError(exc)
        if isinstance(reason, SSLError):
            return requests.exceptions.SSLError(exc)
        return requests.ConnectionError(exc)
    if isinstance(exc, ReadTimeoutError):
        return requests.ReadTimeout(exc)
    if isinstance(exc, SSLError):
        return requests.exceptions.SSLError(exc)
    if isinstance(exc, DecodeError):
        return requests.exceptions.ContentDecodingError(exc)
    if isinstance(exc, ProtocolError):
        return requests.exceptions.ChunkedEncodingError(exc)
    return requests.ConnectionError(exc)


_URLLIB3_ERRORS = (urllib3.exceptions.HTTPError, OSError)


class _PoolResponse:
    """A urllib3 response read the way requests.Response is read."""

    __slots__ = ("status_code", "url", "_raw", "_content", "_consumed")

    def __init__(self, raw: urllib3.BaseHTTPResponse, url: str, preloaded: bool) -> None:
        self.status_code = raw.status
        self.url = url
        self._raw = raw
        self._content: Optional[bytes] = raw.data if preloaded else None
        self._consumed = preloaded

    @property
    def headers(self) -> Mapping[str, str]:
        return self._raw.headers

    @property
    def content(self) -> bytes:
        if self._content is None:
            self._content = b"".join(self.iter_content(256 * 1024))
        return self._content

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        if self._consumed:
            if self._content is not None:
                yield self._content
            return
        try:
            yield from self._raw.stream(chunk_size, decode_content=True)
        except _URLLIB3_ERRORS as exc:
            raise _as_requests_error(exc) from None
        self._consumed = True

    def close(self) -> None:
        if not self._consumed:  # a body left unread: the connection cannot be reused
            self._raw.close()
        self._raw.release_conn()


def _is_verification_failure(error: Optional[Exception]) -> bool:
    reason = error.args[0] if isinstance(error, SSLError) and error.args else error
    return isinstance(reason, ssl.SSLCertVerificationError)  # also ssl.CertificateError (host name)


class _Retry(Retry):
    """The Retry policy, except that a certificate that failed verification is not retried: it
    fails the same way every time, and the backoff would only delay the error."""

    def increment(self, method: Optional[str] = None, url: Optional[str] = None, response: Any = None,
                  error: Optional[Exception] = None, _pool: Any = None, _stacktrace: Any = None) -> "_Retry":
        if _is_verification_failure(error):
            raise MaxRetryError(_pool, url, error) from error
        return super().increment(method, url, response, error, _pool, _stacktrace)


_TCP_INFO_RTT = 68  # offset of tcpi_rtt in Linux's struct tcp_info: the smoothed round trip, in µs
_round_trip: Optional[float] = None  # the shortest round trip a connection of this process measured


def round_trip() -> Optional[float]:
    """The shortest round trip to upstream this process has seen, in seconds: TCP's own estimate
    right after each handshake (no DNS, no server time in it). None before the first connection,
    through a proxy, or where the system does not tell (not Linux)."""
    return _round_trip


def _note_round_trip(sock: socket.socket) -> None:
    global _round_trip
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, 104)
    except OSError:
        return
    if len(info) < _TCP_INFO_RTT + 4:
        return
    (micros,) = struct.unpack_from("=I", info, _TCP_INFO_RTT)
    if micros and (_round_trip is None or micros / 1e6 < _round_trip):
        _round_trip = micros / 1e6  # two threads at once: one measurement is lost, no harm


class _MeasuredHTTPConnection(urllib3.connection.HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _note_round_trip(sock)
        return sock


class _MeasuredHTTPSConnection(urllib3.connection.HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _note_round_trip(sock)
        return sock


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _MeasuredHTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _MeasuredHTTPSConnection


class _TrustAdapter(HTTPAdapter):
    """An HTTPAdapter whose HTTPS pools verify with the SSLContext of `trust`.

    The context goes into the pool key attributes of every https request, so every pool the adapter
    makes has it, also through a proxy and on the direct path (which takes its pools from
    get_connection_with_tls_context too). It is built on the first https request: a plain-http
    mirror never loads a bundle. cert_verify is overridden because requests, with verify=True,
    would point each connection at certifi's bundle, which urllib3 then loads into the context.
    """

    def __init__(self, trust: Trust, **kwargs: Any) -> None:
        self.trust = trust
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        # the same pools, whose connections note the round trip (round_trip)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Any:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") == "https" and verify is True:
            pool_kwargs["ssl_context"] = context(self.trust)
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if verify is True and url.lower().startswith("https") and not cert:
            conn.cert_reqs = "CERT_REQUIRED"
            conn.ca_certs = None  # the trust is in the pool's ssl_context
            conn.ca_cert_dir = None
            return
        super().cert_verify(conn, url, verify, cert)


class _Session(requests.Session):
    """A Session that reads the environment once per origin instead of once per request.

    requests, with trust_env, scans os.environ for proxies and reads ~/.netrc on every request:
    on a mirror's tens of thousands of requests that is a measurable share of the CPU time.
    Here the same settings (proxies and no_proxy, netrc credentials) are looked up once per scheme
    and host and then passed explicitly. CA bundles from the environment are part of the adapter's
    Trust instead (verify stays True).
    """

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self._env_cache: dict[str, tuple[dict[str, str], Any]] = {}
        # origin -> (the adapter's pool for it, request headers, the adapter's Retry), for
        # origins without a proxy
        self._direct: dict[str, tuple[urllib3.HTTPConnectionPool, dict[str, str], Retry]] = {}

    def _environment(self, origin: str, url: str) -> tuple[dict[str, str], Any]:
        env = self._env_cache.get(origin)
        if env is None:
            env = (get_environ_proxies(url), get_netrc_auth(url))
            self._env_cache[origin] = env
        return env

    def request(self, method: Any, url: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        parts = urlsplit(url)
        proxies, auth = self._environment(f"{parts.scheme}://{parts.netloc}", url)
        if proxies and "proxies" not in kwargs:
            kwargs["proxies"] = proxies
        if auth is not None and kwargs.get("auth") is None and not (parts.username or parts.password):
            kwargs["auth"] = auth
        return super().request(method, url, **kwargs)

    def direct(self, url: str) -> Optional[tuple[urllib3.HTTPConnectionPool, dict[str, str], Retry, str]]:
        """(pool, headers, retries, request target) for a plain GET of `url`, or None to use `get`."""
        scheme, netloc, path, query, _fragment = urlsplit(url)
        if scheme not in ("http", "https") or "@" in netloc:
            return None
        origin = f"{scheme}://{netloc}"
        entry = self._direct.get(origin)
        if entry is None or entry[0].pool is None:  # not seen yet, or the adapter closed that pool
            proxies, auth = self._environment(origin, url)
            if proxies:
                return None
            prepared = requests.Request("GET", url).prepare()
            adapter = self.get_adapter(url)
            if not isinstance(adapter, HTTPAdapter):
                return None
            pool = adapter.get_connection_with_tls_context(prepared, self.verify, proxies=None, cert=self.cert)
            if not isinstance(pool, urllib3.HTTPConnectionPool):
                return None
            adapter.cert_verify(pool, url, self.verify, self.cert)
            headers = {str(k): str(v) for k, v in self.headers.items()}
            if auth is not None:
                headers["Authorization"] = _basic_auth_str(*auth)
            entry = (pool, headers, adapter.max_retries)
            self._direct[origin] = entry
        target = (path or "/") + (f"?{query}" if query else "")
        return entry[0], entry[1], entry[2], target

    def close(self) -> None:
        self._direct.clear()
        super().close()


def _socket_of(response: Any) -> Optional[socket.socket]:
    """The socket a streamed response is read from (urllib3's connection under either path)."""
    raw = getattr(response, "_raw", None) or getattr(response, "raw", None)
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if not isinstance(sock, socket.socket):
        # an answer that closes the connection took the socket with it: http.client's response
        # reads from a file over it
        fp = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


class DeadlineExceeded(requests.Timeout):
    """The request's total deadline passed (not worth another try: it would trickle again)."""


class _Deadlined:
    """A response whose body reads fail once the request's deadline has passed (the watchdog
    shut its socket down: what was read so far is not the whole body)."""

    def __init__(self, response: Any, armed: Armed, limit: float) -> None:
        self._response = response
        self._armed = armed
        self._limit = limit
        self.status_code: int = response.status_code
        self.url: str = response.url

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers  # type: ignore[no-any-return]

    @property
    def content(self) -> bytes:
        return b"".join(self.iter_content(256 * 1024))

    def _expired(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"the answer did not arrive within the {self._limit:g} s deadline")

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        try:
            for chunk in self._response.iter_content(chunk_size):
                if self._armed.fired:
                    raise self._expired()
                yield chunk
        except requests.RequestException:
            if self._armed.fired:
                raise self._expired() from None
            raise
        if self._armed.fired:
            raise self._expired()

    def close(self) -> None:
        self._response.close()


def iter_capped(response: HttpResponse, cap: int, what: str, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """The body's chunks, decoded, refused as soon as they pass `cap` bytes in all: a huge
    answer or a compression bomb costs at most one chunk (urllib3 decodes each read to at most
    its size)."""
    from .errors import TooLargeError

    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > cap and not response.headers.get("Content-Encoding"):
        raise TooLargeError(f"{what}: larger than the {cap} bytes allowed (Content-Length {length})")
    size = 0
    for chunk in response.iter_content(chunk_size):
        size += len(chunk)
        if size > cap:
            raise TooLargeError(f"{what}: larger than the {cap} bytes allowed once decoded")
        yield chunk


def read_capped(response: HttpResponse, cap: int, what: str) -> bytes:
    """The whole body, decoded, at most `cap` bytes (see iter_capped)."""
    return b"".join(iter_capped(response, cap, what))


# The most requests (and connections) to upstream this process may have at once: a worker process's
# share of the run's `workers` (runners.split_workers), so that all processes together keep to
# `workers`. None: no process limit, each client keeps to its own `workers`.
_process_limit: Optional[int] = None
_clients: weakref.WeakSet[HttpClient] = weakref.WeakSet()  # this process's clients, for close_idle_connections


def limit_process_requests(limit: int) -> None:
    """In a worker process, before its clients are made: every HttpClient made in this process
    from now on keeps to at most `limit` requests and connections at once."""
    global _process_limit
    _process_limit = max(1, limit)


def close_idle_connections() -> None:
    """Close the idle keep-alive connections of every client of this process (a connection in use
    is closed when its request ends). Before worker processes fork: they would inherit the
    sockets, and the parent's idle connection to upstream would stay open beside the workers'
    `workers` connections for the whole run."""
    for client in list(_clients):
        client.close_idle()


class HttpClient:
    """Hands each thread its own requests.Session; at most `workers` requests are in flight (and
    at most `workers` connections are open to each origin), or this process's limit when lower
    (limit_process_requests)."""

    def __init__(
        self,
        workers: int,
        timeout: float,
        retries: int,
        backoff: float = 0.5,
        trust: Optional[Trust] = None,
        deadline: float = 600.0,
    ) -> None:
        """`trust`: what certificates are verified against; by default the one the CLI set for
        this process from the configuration (tls.use), else variables or the system store."""
        self.trust = trust if trust is not None else process_trust()
        self.workers = max(1, workers if _process_limit is None else min(workers, _process_limit))
        self.timeout = timeout
        self.deadline = max(deadline, timeout)
        self.retries = retries
        self.backoff = backoff
        self._local = threading.local()
        self._cap = threading.BoundedSemaphore(self.workers)
        self._sessions: list[_Session] = []
        self._adapter: Optional[_TrustAdapter] = None
        self._lock = threading.Lock()
        self._pool_timeout = urllib3.Timeout(connect=timeout, read=timeout)
        _clients.add(self)

    def _shared_adapter(self) -> "_TrustAdapter":
        """One adapter, so one connection pool per origin, for all of this client's threads: at
        most `workers` connections to each upstream host (a thread waits for a free one), however
        many threads (project and file threads) share the client."""
        with self._lock:
            if self._adapter is None:
                retry = _Retry(
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
                self._adapter = _TrustAdapter(self.trust, max_retries=retry, pool_connections=4,
                                              pool_maxsize=self.workers, pool_block=True)
            return self._adapter

    def _session(self) -> _Session:
        session: Optional[_Session] = getattr(self._local, "session", None)
        if session is None:
            session = _Session()
            adapter = self._shared_adapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = USER_AGENT
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _direct_get(
        self, session: _Session, url: str, accept: Optional[str], stream: bool, extra: Optional[Mapping[str, str]] = None
    ) -> Optional[HttpResponse]:
        """The GET on the adapter's pool; None when it must go through Session.get instead."""
        route = session.direct(url)
        if route is None:
            return None
        pool, headers, retries, target = route
        if accept or extra:
            headers = {**headers, **({"Accept": accept} if accept else {}), **(extra or {})}
        try:
            raw = pool.urlopen(
                "GET", target, headers=headers, retries=retries, redirect=False,
                assert_same_host=False, timeout=self._pool_timeout, preload_content=not stream, decode_content=True,
            )
        except ClosedPoolError:
            return None
        except _URLLIB3_ERRORS as exc:
            raise _as_requests_error(exc) from None
        if raw.status in REDIRECTS:  # requests follows redirects and reports the final URL
            if stream:
                raw.drain_conn()
                raw.release_conn()
            return None
        return _PoolResponse(raw, url, preloaded=not stream)

    @contextmanager
    def get(
        self,
        url: str,
        *,
        accept: Optional[str] = None,
        stream: bool = False,
        headers: Optional[Mapping[str, str]] = None,
        deadline: Optional[float] = None,
    ) -> Iterator[HttpResponse]:
        """GET under the politeness cap; the response is closed when the block ends. `headers`
        adds request headers (conditional requests: If-None-Match, If-Modified-Since). A
        streamed body must arrive within `deadline` seconds (the client's, by default) of the
        request, however it trickles: past it the read fails with requests.Timeout."""
        with self._cap:
            started = time.monotonic()
            session = self._session()
            try:
                response: Union[HttpResponse, requests.Response, None] = self._direct_get(
                    session, url, accept, stream, headers
                )
                if response is None:
                    headers = {**({"Accept": accept} if accept else {}), **(headers or {})} or None
                    response = session.get(url, headers=headers, timeout=self.timeout, stream=stream)
            except requests.exceptions.SSLError as exc:  # one sentence: which server, why, what to set
                raise tls_error(url, exc, self.trust) from None
            limit = self.deadline if deadline is None else deadline
            armed = watchdog().arm(max(0.0, limit - (time.monotonic() - started)), _socket_of(response)) if stream else None
            try:
                yield response if armed is None else _Deadlined(response, armed, limit)
            finally:
                if armed is not None:
                    Watchdog.disarm(armed)
                response.close()

    def close_idle(self) -> None:
        """Close the pools' connections; the client stays usable (its pools are made again, with
        the same adapter, so the bound on connections holds)."""
        with self._lock:
            if self._adapter is not None:
                _close_pools(self._adapter)

    def close(self) -> None:
        with self._lock:
            if self._adapter is not None:
                _close_pools(self._adapter)
            for session in self._sessions:
                session.close()
            self._sessions.clear()
            self._adapter = None


def _close_pools(adapter: HTTPAdapter) -> None:
    """The adapter forgets its connection pools (new requests get new ones) and their connections
    are closed: urllib3 2 only forgets them, and a pool someone still holds (a Session's direct
    route) would keep its sockets open. A connection in use is closed when its request ends."""
    pools = []
    for manager in [adapter.poolmanager, *adapter.proxy_manager.values()]:
        for key in manager.pools.keys():  # noqa: SIM118 - the container cannot be iterated
            try:
                pools.append(manager.pools[key])
            except KeyError:  # gone meanwhile
                pass
    adapter.close()
    for pool in pools:
        pool.close()
