"""Serve an :class:`~tests.support.index_tree.IndexTree` directory over HTTP on 127.0.0.1.

A real ``ThreadingHTTPServer`` (HTTP/1.1, keep-alive) with PEP 691 content negotiation, the
``X-PyPI-Last-Serial`` header, HEAD, and fault injection for tests::

    with UpstreamServer(tree.root) as upstream:
        upstream.add_fault("/simple/a/", status=503, times=2)   # 2 failures, then recovery
        requests.get(upstream.url + "a/", headers={"Accept": JSON_TYPE})
        assert [r.status for r in upstream.requests("/simple/a/")] == [503]

Routes (the path is URL-decoded first; ``..``, hidden segments and the tree's sidecars are 404):

- ``/simple`` -> 301 ``/simple/``; ``/simple/`` -> the root page, negotiated.
- ``/simple/<name>/`` -> the project page, negotiated; a non-canonical ``<name>`` (or a missing
  trailing slash) -> 301 to ``/simple/<canonical>/``.
- ``/pypi/<name>/json`` -> the legacy JSON (``application/json``), with
  :data:`~tests.support.index_tree.ORIGIN_PLACEHOLDER` replaced by :attr:`UpstreamServer.origin`;
  a non-canonical name -> 301.
- anything else -> the file under ``root`` (``/packages/...``, ``.metadata``, page files).

``X-PyPI-Last-Serial`` (from ``serials.json``) is sent on the root, project pages and legacy JSON.
Every wait is bounded: delays are capped, handler sockets time out, ``stop()`` joins with a timeout.
"""
from __future__ import annotations

import json
import os
import hashlib
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Iterable, Optional
from urllib.parse import unquote, urlsplit

from packaging.utils import canonicalize_name

from .index_tree import ORIGIN_PLACEHOLDER, PREVIOUS_DIR, SERIALS_JSON, SERIALS_MAP

__all__ = [
    "UpstreamServer",
    "Fault",
    "RequestRecord",
    "negotiate",
    "JSON_TYPE",
    "V1_HTML_TYPE",
    "HTML_TYPE",
    "PIP_ACCEPT",
]

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
V1_HTML_TYPE = "application/vnd.pypi.simple.v1+html"
HTML_TYPE = "text/html"
PIP_ACCEPT = f"{JSON_TYPE}, {V1_HTML_TYPE}; q=0.1, {HTML_TYPE}; q=0.01"
MAX_DELAY = 30.0
MAX_TIMES = 100_000
LOG_LIMIT = 100_000
_TIE_ORDER = (HTML_TYPE, V1_HTML_TYPE, JSON_TYPE)  # equal q: HTML wins, JSON only if preferred
_HIDDEN = frozenset({SERIALS_JSON, SERIALS_MAP})


def _parse_accept(accept: str) -> list[tuple[str, float]]:
    ranges: list[tuple[str, float]] = []
    for part in accept.split(",")[:64]:
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        if not media:
            continue
        q = 1.0
        for param in fields[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value.strip())))
                except ValueError:
                    q = 0.0
        ranges.append((media, q))
    return ranges


def _quality(offer: str, ranges: list[tuple[str, float]]) -> float:
    """q of the most specific range matching ``offer`` (exact > type/* > */*), 0 if none."""
    main = offer.split("/")[0]
    best: tuple[int, float] = (0, 0.0)
    for media, q in ranges:
        specificity = 3 if media == offer else 2 if media == f"{main}/*" else 1 if media == "*/*" else 0
        if specificity > best[0]:
            best = (specificity, q)
    return best[1]


def negotiate(accept: Optional[str], html_only: bool = False) -> Optional[str]:
    """The media type to answer a simple-API request with, or None for 406 Not Acceptable.

    Honours q-values; on a tie HTML wins (``text/html`` before the v1 HTML type), so JSON is
    served only when the client prefers it. No Accept header means ``*/*``. ``html_only``
    models a PEP 503-only server: always ``text/html``, whatever was asked.
    """
    if html_only:
        return HTML_TYPE
    ranges = _parse_accept(accept if accept and accept.strip() else "*/*")
    scored = [(_quality(offer, ranges), -i, offer) for i, offer in enumerate(_TIE_ORDER)]
    q, _, offer = max(scored)
    return offer if q > 0 else None


@dataclass
class Fault:
    """A rule for requests whose path starts with ``prefix``; it acts on the first ``times``
    matching requests, then the server recovers. Behaviours (combinable):

    - ``delay``: sleep that many seconds (capped at :data:`MAX_DELAY`) before answering;
    - ``status``: answer with this status (e.g. 503, 429; ``retry_after`` adds Retry-After);
    - ``truncate``: send the real headers (full Content-Length) and half the body, then close;
    - ``stale``: serve the tree's previous generation of the page (``.previous/``) with its
      lower serial (header and body). Without a previous copy the current page is served and
      the log says ``stale-unavailable``;
    - ``body``: a function returning the chunks to send instead of the real body (a huge or
      hostile answer: sent close-delimited, without Content-Length, with ``headers`` added,
      e.g. ``Content-Encoding: gzip`` for a compression bomb);
    - ``trickle``: send the real body one byte every ``trickle`` seconds.
    """

    prefix: str
    status: Optional[int] = None
    times: int = 1
    delay: float = 0.0
    truncate: bool = False
    stale: bool = False
    retry_after: Optional[int] = None
    body: Optional[Callable[[], Iterable[bytes]]] = None
    headers: dict[str, str] = field(default_factory=dict)
    trickle: float = 0.0
    hits: int = 0

    def __post_init__(self) -> None:
        self.times = max(0, min(int(self.times), MAX_TIMES))
        self.delay = max(0.0, min(float(self.delay), MAX_DELAY))
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"bad status {self.status}")

    @property
    def active(self) -> bool:
        return self.hits < self.times


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw and answered it."""

    method: str
    path: str
    accept: Optional[str]
    status: int
    content_type: Optional[str] = None
    fault: Optional[str] = None
    serial: Optional[int] = None


class _SerialFile:
    """``serials.json``-style sidecar, re-read when it changes on disk."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: Optional[tuple[int, int, int]] = None
        self._data: dict[str, Any] = {}

    def lookup(self, canonical: Optional[str]) -> Optional[int]:
        """Serial of project ``canonical``, or of the whole index when None."""
        with self._lock:
            try:
                st = os.stat(self._path)
            except OSError:
                return None
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp != self._stamp:
                try:
                    self._data = json.loads(self._path.read_bytes())
                    self._stamp = stamp
                except (OSError, ValueError):
                    return None
            data = self._data
        value = data.get("serial") if canonical is None else data.get("projects", {}).get(canonical)
        return value if isinstance(value, int) else None


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: Optional[str] = None
    headers: dict[str, str] = field(default_factory=dict)
    serial: Optional[int] = None
    fault: Optional[str] = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, owner: "UpstreamServer") -> None:
        self.owner = owner
        super().__init__((owner.host, 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.owner._track(request):
            self.shutdown_request(request)  # over the connection bound: refuse
            return
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                  daemon=True, name="upstream-conn")
        self.owner._threads_add(thread)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        self.owner._untrack(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "upstream-test/1.0"
    timeout = 30  # idle keep-alive connections end: bounded
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._handle(head=False)

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def _not_allowed(self) -> None:
        self._send(_Reply(405, b"method not allowed\n", "text/plain", {"Allow": "GET, HEAD"}), False)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_PURGE = _not_allowed  # type: ignore[assignment]

    def _handle(self, head: bool) -> None:
        self.server.owner._request_begins()
        self._counted = True
        try:
            self._answer(head)
        finally:
            self._answering()

    def _answering(self) -> None:
        """The request stops counting as in flight before the first byte of its answer goes out
        (so a client that has its answer can never see its next request counted beside it)."""
        if getattr(self, "_counted", False):
            self._counted = False
            self.server.owner._request_ends()

    def _answer(self, head: bool) -> None:
        owner = self.server.owner
        accept = self.headers.get("Accept")
        fault = owner._take_fault(urlsplit(self.path).path)
        truncate = False
        fault_names: list[str] = []
        if fault is not None:
            if fault.delay:
                fault_names.append("delay")
                owner._stopping.wait(fault.delay)
            if fault.status is not None:
                fault_names.append(f"status:{fault.status}")
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                reply = _Reply(fault.status, b"injected fault\n", "text/plain", headers)
                reply.fault = ",".join(fault_names)
                self._send(reply, head)
                return
            truncate = fault.truncate
        reply = owner._route(self.path, accept, stale=bool(fault and fault.stale))
        if fault is not None and (fault.body is not None or fault.trickle):
            self._send_stream(reply, fault, head)
            return
        if owner.validators and reply.status == 200:
            etag = '"' + hashlib.sha256(reply.body).hexdigest()[:32] + '"'
            reply.headers = {**reply.headers, "ETag": etag, "Last-Modified": "Tue, 01 Dec 2026 00:00:00 GMT"}
            if self.headers.get("If-None-Match") == etag:
                reply = _Reply(304, b"", None, {"ETag": etag})
        if truncate:
            fault_names.append("truncate")
        if reply.fault:
            fault_names.append(reply.fault)
        reply.fault = ",".join(fault_names) or None
        self._send(reply, head, truncate=truncate)

    def _send_stream(self, reply: _Reply, fault: Fault, head: bool) -> None:
        """A hostile answer: another body, streamed and close-delimited, or the real one trickled."""
        owner = self.server.owner
        self._answering()
        owner._log(RequestRecord(method=self.command, path=self.path, accept=self.headers.get("Accept"),
                                 status=reply.status, content_type=reply.content_type,
                                 fault="body" if fault.body is not None else "trickle", serial=reply.serial))
        try:
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            for key, value in fault.headers.items():
                self.send_header(key, value)
            if fault.body is None:
                self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()
            if head:
                return
            if fault.body is not None:
                for chunk in fault.body():
                    if owner._stopping.is_set():
                        return
                    self.wfile.write(chunk)
            else:
                for i in range(len(reply.body)):  # bounded by the body; stops with the server
                    if owner._stopping.wait(fault.trickle):
                        return
                    self.wfile.write(reply.body[i:i + 1])
                    self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _send(self, reply: _Reply, head: bool, truncate: bool = False) -> None:
        self._answering()
        # logged before the first byte goes out: a client that saw the answer finds the record
        self.server.owner._log(RequestRecord(
            method=self.command, path=self.path, accept=self.headers.get("Accept"),
            status=reply.status, content_type=reply.content_type, fault=reply.fault,
            serial=reply.serial,
        ))
        try:
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            if reply.serial is not None and self.server.owner.serials:
                self.send_header("X-PyPI-Last-Serial", str(reply.serial))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            if truncate:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if not head:
                self.wfile.write(reply.body[: len(reply.body) // 2] if truncate else reply.body)
            self.wfile.flush()
            if truncate:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            self.close_connection = True


class UpstreamServer:
    """HTTP server for an IndexTree directory; a context manager (start / stop+join+close).

    ``url`` is the simple index root (``http://127.0.0.1:PORT/simple/``), ``origin`` the server
    root. ``html_only=True`` never serves JSON (a PEP 503 server). ``faults`` are
    :class:`Fault` rules (see :meth:`add_fault`). ``requests()`` is the request log.
    """

    def __init__(
        self,
        root: Path,
        *,
        html_only: bool = False,
        validators: bool = False,
        serials: bool = True,
        faults: tuple[Fault, ...] = (),
        host: str = "127.0.0.1",
        max_connections: int = 256,
    ) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the test upstream only listens on loopback")
        self.root = Path(root)
        self.host = host
        self.html_only = html_only
        self.validators = validators  # send ETag / Last-Modified and answer conditional requests with 304
        self.serials = serials  # False: no X-PyPI-Last-Serial header, as the real index and most proxies
        self.max_connections = max(1, min(max_connections, 1024))
        self._faults: list[Fault] = list(faults)
        self._lock = threading.Lock()
        self._log_records: deque[RequestRecord] = deque(maxlen=LOG_LIMIT)
        self._connections: set[Any] = set()
        self.connections_accepted = 0  # TCP connections accepted since start
        self.peak_connections = 0  # most open at once
        self._requests_in_flight = 0
        self.peak_requests = 0  # most requests at once: read and not yet being answered
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._serials = _SerialFile(self.root / SERIALS_JSON)
        self._prev_serials = _SerialFile(self.root / PREVIOUS_DIR / SERIALS_JSON)
        self._httpd: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "UpstreamServer":
        if self._httpd is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        self._httpd = _Server(self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="upstream-server", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, drop open connections, join every thread (bounded), close."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        httpd.server_close()

    def __enter__(self) -> "UpstreamServer":
        return self.start()

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("not started")
        return int(self._httpd.server_address[1])

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The simple index root, with the trailing slash."""
        return f"{self.origin}/simple/"

    # ------------------------------------------------------------------ faults
    def add_fault(
        self,
        prefix: str,
        *,
        status: Optional[int] = None,
        times: int = 1,
        delay: float = 0.0,
        truncate: bool = False,
        stale: bool = False,
        retry_after: Optional[int] = None,
        body: Optional[Callable[[], Iterable[bytes]]] = None,
        headers: Optional[dict[str, str]] = None,
        trickle: float = 0.0,
    ) -> Fault:
        """Add a :class:`Fault` for paths starting with ``prefix`` (e.g. ``/simple/a/``,
        ``/packages/``, ``/simple/`` for the root and every page). The first active matching
        rule, in the order added, handles a request and counts it."""
        fault = Fault(prefix, status=status, times=times, delay=delay, truncate=truncate,
                      stale=stale, retry_after=retry_after, body=body, headers=dict(headers or {}), trickle=trickle)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> Optional[Fault]:
        with self._lock:
            for fault in self._faults:
                if fault.active and path.startswith(fault.prefix):
                    fault.hits += 1
                    return fault
        return None

    # --------------------------------------------------------------------- log
    def requests(self, prefix: Optional[str] = None) -> list[RequestRecord]:
        """A copy of the request log (oldest first), optionally only paths under ``prefix``."""
        with self._lock:
            records = list(self._log_records)
        return [r for r in records if prefix is None or r.path.startswith(prefix)]

    def clear_log(self) -> None:
        with self._lock:
            self._log_records.clear()

    def _log(self, record: RequestRecord) -> None:
        with self._lock:
            self._log_records.append(record)

    # ------------------------------------------------------------- connections
    def _track(self, conn: Any) -> bool:
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            if len(self._connections) >= self.max_connections or self._stopping.is_set():
                return False
            self._connections.add(conn)
            self.connections_accepted += 1
            self.peak_connections = max(self.peak_connections, len(self._connections))
            return True

    def _request_begins(self) -> None:
        with self._lock:
            self._requests_in_flight += 1
            self.peak_requests = max(self.peak_requests, self._requests_in_flight)

    def _request_ends(self) -> None:
        with self._lock:
            self._requests_in_flight -= 1

    def _untrack(self, conn: Any) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _threads_add(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads.append(thread)

    # ------------------------------------------------------------------ routes
    def _route(self, raw_path: str, accept: Optional[str], stale: bool) -> _Reply:
        path = unquote(urlsplit(raw_path).path)
        segments = path.split("/")[1:]
        if (
            "\x00" in path
            or "\\" in path
            or any(s in ("..", ".") or s.startswith(".") for s in segments)
            or (len(segments) == 1 and segments[0] in _HIDDEN)
        ):
            return self._not_found()
        if path == "/simple":
            return _Reply(301, b"", None, {"Location": "/simple/"})
        if path == "/simple/":
            return self._page(["simple/index.v1_json", "simple/index.html"], None, accept, stale)
        if len(segments) >= 2 and segments[0] == "simple" and (len(segments) == 2 or segments[2:] == [""]):
            name = segments[1]
            canonical = canonicalize_name(name)
            if name != canonical or len(segments) == 2:
                return _Reply(301, b"", None, {"Location": f"/simple/{canonical}/"})
            return self._page([f"simple/{canonical}/index.v1_json", f"simple/{canonical}/index.html"],
                              canonical, accept, stale)
        if len(segments) in (3, 4) and segments[0] == "pypi" and segments[2] == "json" and segments[3:] in ([], [""]):
            canonical = canonicalize_name(segments[1])
            if segments[1] != canonical:
                return _Reply(301, b"", None, {"Location": f"/pypi/{canonical}/json"})
            rel = f"pypi/{canonical}/json"
            body, serial, fault = self._read_page(rel, canonical, stale)
            if body is None:
                return self._not_found()
            body = body.replace(ORIGIN_PLACEHOLDER.encode("ascii"), self.origin.encode("ascii"))
            return _Reply(200, body, "application/json", serial=serial, fault=fault)
        return self._static(path.lstrip("/"))

    def _page(self, rels: list[str], canonical: Optional[str], accept: Optional[str], stale: bool) -> _Reply:
        chosen = negotiate(accept, self.html_only)
        if chosen is None:
            return _Reply(406, b"not acceptable\n", "text/plain", {"Vary": "Accept"})
        rel = rels[0] if chosen == JSON_TYPE else rels[1]
        body, serial, fault = self._read_page(rel, canonical, stale)
        if body is None:
            return self._not_found()
        ctype = f"{HTML_TYPE}; charset=utf-8" if chosen == HTML_TYPE else chosen
        return _Reply(200, body, ctype, {"Vary": "Accept"}, serial=serial, fault=fault)

    def _read_page(self, rel: str, canonical: Optional[str], stale: bool) -> tuple[Optional[bytes], Optional[int], Optional[str]]:
        if stale:
            try:
                body = (self.root / PREVIOUS_DIR / rel).read_bytes()
                return body, self._prev_serials.lookup(canonical), "stale"
            except OSError:
                pass
        try:
            body = (self.root / rel).read_bytes()
        except OSError:
            return None, None, None
        return body, self._serials.lookup(canonical), "stale-unavailable" if stale else None

    def _static(self, rel: str) -> _Reply:
        target = self.root / rel
        try:
            if not target.is_file():
                return self._not_found()
            body = target.read_bytes()
        except OSError:
            return self._not_found()
        if rel.endswith(".v1_json"):
            ctype = JSON_TYPE
        elif rel.endswith((".html", ".v1_html")):
            ctype = f"{HTML_TYPE}; charset=utf-8"
        else:
            ctype = "application/octet-stream"
        return _Reply(200, body, ctype)

    @staticmethod
    def _not_found() -> _Reply:
        return _Reply(404, b"not found\n", "text/plain")
