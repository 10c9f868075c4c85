"""A private nginx serving the synthetic upstream tree: on 127.0.0.1, or on the address of the
latency scenario's namespace (started there through a command prefix, `nsenter --net=...`).

Own prefix, config, pid file and logs in a work directory; `tcp_nodelay on`, keepalive; PEP 691
content negotiation on /simple/; X-PyPI-Last-Serial from a generated `map` include; one access-log
line per request (status, bytes sent, connection serial) so runs can be charged with the requests,
bytes and TCP connections they used. With `probe_port`, a second server answers `GET /probe` with
204 and logs nothing: the link's round trip can be measured during a run without counting in it.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

_ACCEPT_JSON = "application/vnd.pypi.simple.v1+json"

_CONF = r"""
worker_processes {workers};
worker_rlimit_nofile 16384;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
daemon off;
{user}
events {{ worker_connections 4096; }}

http {{
    types {{ application/octet-stream whl; application/octet-stream metadata; }}
    default_type application/octet-stream;
    log_format bench '$status $bytes_sent $connection $request_method $request_uri';
    access_log {prefix}/access.log bench;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    open_file_cache max=8000 inactive=120s;  # below worker_rlimit_nofile
    open_file_cache_valid 600s;
    server_tokens off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    map_hash_max_size 4194304;
    map_hash_bucket_size 128;

    # PEP 691: JSON when the Accept header prefers it, HTML otherwise. JSON with an explicit q below 1
    # next to an HTML type without q loses; q=0 refuses JSON.
    map $http_accept $simple_index {{
        default index.html;
        "~*vnd\.pypi\.simple\.v1\+json\s*;\s*q=0(\.0*)?\s*(,|$)" index.html;
        "~*^(?=.*vnd\.pypi\.simple\.v1\+json\s*;\s*q=0\.)(?=.*(text/html|vnd\.pypi\.simple\.v1\+html|vnd\.pypi\.simple\.latest\+html)\s*(,|$))" index.html;
        "~*vnd\.pypi\.simple\.(v1|latest)\+json" index.v1_json;
    }}

    include {prefix}/serials.conf;

    server {{
        listen {host}:{port} backlog=4096;
        server_name _;
        root {tree};

        location ~ ^/simple/?$ {{  # bandersnatch asks for /simple
            types {{ application/vnd.pypi.simple.v1+json v1_json; text/html html; }}
            add_header X-PyPI-Last-Serial $root_serial always;
            add_header Vary Accept always;
            try_files /simple/$simple_index =404;
        }}
        location ~ ^/simple/(?<proj>[^/]+)/$ {{
            types {{ application/vnd.pypi.simple.v1+json v1_json; text/html html; }}
            add_header X-PyPI-Last-Serial $proj_serial always;
            add_header Vary Accept always;
            try_files /simple/$proj/$simple_index =404;
        }}
        location ~ ^/simple/(?<proj>[^/]+)$ {{
            return 301 /simple/$proj/;
        }}
        location ~ ^/pypi/(?<proj>[^/]+)/json$ {{
            types {{ }}
            default_type application/json;
            add_header X-PyPI-Last-Serial $proj_serial always;
            try_files /pypi/$proj/json =404;
        }}
        location /packages/ {{
        }}
        location / {{
            return 404;
        }}
    }}
{probe}}}
"""

_PROBE = r"""
    server {{
        listen {host}:{probe_port};
        access_log off;
        location = /probe {{ return 204; }}
        location / {{ return 404; }}
    }}
"""


@dataclass(frozen=True)
class Traffic:
    """What the access log shows for a stretch of time."""

    requests: int
    errors: int  # responses other than 2xx/3xx
    bytes_sent: int  # HTTP headers and bodies
    connections: int  # distinct TCP connections that carried a request


def parse_log(data: bytes) -> Traffic:
    """Count complete lines of the `bench` log format: `status bytes_sent connection method uri`."""
    requests = errors = sent = 0
    conns: set[bytes] = set()
    for line in data.splitlines():
        parts = line.split(b" ", 3)
        if len(parts) < 3:
            continue
        requests += 1
        if parts[0][:1] not in (b"2", b"3"):
            errors += 1
        if parts[1].isdigit():
            sent += int(parts[1])
        conns.add(parts[2])
    return Traffic(requests, errors, sent, len(conns))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found is None:
        raise RuntimeError("nginx is not installed (Debian: apt-get install -y nginx)")
    return found


def _serials_conf(root_serial: int, serials: Mapping[str, int]) -> str:
    lines = [f'map $host $root_serial {{ default "{root_serial}"; }}', "map $proj $proj_serial {", '    default "";']
    lines.extend(f'    "{name}" "{serial}";' for name, serial in serials.items())
    lines.append("}")
    return "\n".join(lines) + "\n"


class Nginx:
    """Start with `start()`, always `stop()` (it is a context manager too)."""

    def __init__(self, prefix: Path, tree: Path, port: int, workers: int = 2, host: str = "127.0.0.1",
                 wrap: Sequence[str] = (), probe_port: Optional[int] = None) -> None:
        self.prefix = prefix
        self.tree = tree
        self.port = port
        self.workers = workers
        self.host = host
        self.wrap = list(wrap)  # e.g. ["nsenter", "--net=/run/netns/NAME"]: where nginx runs
        self.probe_port = probe_port
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.binary = nginx_binary()
        self._log_offset = 0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}" if self.port != 80 else f"http://{self.host}"

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    def write_config(self, root_serial: int, serials: Mapping[str, int]) -> None:
        for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        user = "user nobody nogroup;" if os.geteuid() == 0 else ""  # the work dir must be world-readable
        probe = _PROBE.format(host=self.host, probe_port=self.probe_port) if self.probe_port else ""
        conf = _CONF.format(workers=self.workers, prefix=self.prefix, port=self.port, tree=self.tree, user=user,
                            host=self.host, probe=probe)
        (self.prefix / "nginx.conf").write_text(conf)
        tmp = self.prefix / "serials.conf.tmp"
        tmp.write_text(_serials_conf(root_serial, serials))
        os.replace(tmp, self.prefix / "serials.conf")

    def _cmd(self, *extra: str) -> list[str]:
        return [*self.wrap, self.binary, "-p", f"{self.prefix}/", "-c", str(self.prefix / "nginx.conf"), "-e", str(self.prefix / "error.log"), *extra]

    def check(self) -> None:
        res = subprocess.run(self._cmd("-t", "-q"), capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"nginx -t failed: {res.stderr.strip()}")

    def start(self) -> None:
        self.check()
        self.proc = subprocess.Popen(self._cmd(), start_new_session=True, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited at start: {(self.prefix / 'error.log').read_text()[-500:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx did not start listening within 15 s")

    def reload(self, root_serial: int, serials: Mapping[str, int]) -> None:
        """New serials: rewrite the map include, HUP, and wait until the root header shows the new serial."""
        assert self.proc is not None
        self.write_config(root_serial, serials)
        self.check()
        os.kill(self.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.header_serial("/simple/") == root_serial:
                # old workers may still hold keepalive connections; give them a moment to leave
                time.sleep(0.5)
                return
            time.sleep(0.1)
        raise RuntimeError("nginx did not pick up the new serials within 20 s")

    def header_serial(self, path: str) -> Optional[int]:
        req = urllib.request.Request(self.base_url + path, headers={"Accept": _ACCEPT_JSON})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=5) as resp:
            raw = resp.headers.get("X-PyPI-Last-Serial")
            resp.read()
        return int(raw) if raw else None

    def traffic_since_mark(self) -> Traffic:
        """Requests, errors, bytes and connections logged since the last call (or start)."""
        try:
            with open(self.access_log, "rb") as fh:
                fh.seek(self._log_offset)
                data = fh.read()
        except FileNotFoundError:
            data = b""
        end = data.rfind(b"\n") + 1
        self._log_offset += end
        return parse_log(data[:end])

    def requests_since_mark(self) -> tuple[int, int]:
        """(requests, non-2xx/3xx responses) logged since the last call (or start)."""
        t = self.traffic_since_mark()
        return t.requests, t.errors

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # fast shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> "Nginx":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
