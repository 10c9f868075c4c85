"""TLS as pip does it: the system trust store through truststore by default, `ca_bundle` first, the
CA variables of requests and curl next, pip's own CA setting when the upstream is pip's.

A real HTTPS upstream on 127.0.0.1 (a throwaway CA from trustme) serves a tiny simple index; the
CLI runs in a subprocess with a minimal environment, as under cron or Ansible's `become`.
"""
from __future__ import annotations

import functools
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

import pytest
import trustme
import yaml

from mirror_sync import tls
from mirror_sync.http import HttpClient
from mirror_sync.tls import SYSTEM_TRUST, Trust, choose_trust
from tests.support.index_tree import IndexTree

REPO = Path(__file__).resolve().parent.parent
WHEEL = "alpha-1.0-py3-none-any.whl"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class TLSServer(ThreadingHTTPServer):
    """A static file server over TLS on 127.0.0.1; counts handshakes (attempted and completed)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, root: Path, context: ssl.SSLContext) -> None:
        self.context = context
        self.attempts = 0
        self.handshakes = 0
        self._count = threading.Lock()
        super().__init__(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._count:
            self.attempts += 1
        request.settimeout(10)
        conn = self.context.wrap_socket(request, server_side=True)  # the handshake, in this request's thread
        with self._count:
            self.handshakes += 1
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that refuses the certificate aborts the handshake: expected here

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.origin}/simple/"

    def __enter__(self) -> "TLSServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(10)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_pem(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def other_ca_pem(tmp_path: Path) -> Path:
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def _index(tmp_path: Path) -> Path:
    tree = IndexTree(tmp_path / "upstream")
    tree.add_wheel("alpha", "1.0")
    tree.write()
    return tree.root


def _server(ca: trustme.CA, root: Path, *names: str) -> TLSServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or ("127.0.0.1",))).configure_cert(context)
    return TLSServer(root, context)


@pytest.fixture
def https_upstream(ca: trustme.CA, tmp_path: Path) -> Iterator[TLSServer]:
    with _server(ca, _index(tmp_path)) as server:
        yield server


def minimal_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """What cron or `become` leaves: a PATH, no CA variable, no pip configuration."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO), "PIP_CONFIG_FILE": os.devnull}
    env.update(extra)
    return env


def write_config(tmp_path: Path, upstream: Optional[str], **keys: Any) -> Path:
    doc: dict[str, Any] = {"directory": str(tmp_path / "mirror"), "projects": ["alpha"], "workers": 2, "timeout": 10, **keys}
    if upstream is not None:
        doc["upstream"] = upstream
    path = tmp_path / "mirror.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run_sync(config: Path, env: dict[str, str], *, as_json: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "mirror_sync", "-c", str(config), "sync"] + (["--json"] if as_json else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def mirrored(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "mirror" / "web" / "packages").rglob("*.whl")}


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mirror-sync: error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# -- which trust applies ------------------------------------------------------------------------


def test_precedence_most_specific_first() -> None:
    env = {"REQUESTS_CA_BUNDLE": "/r.pem", "CURL_CA_BUNDLE": "/c.pem"}
    pip = lambda: ("PIP_CERT", "/p.pem")  # noqa: E731
    assert choose_trust("/k.pem", env, pip) == Trust("ca_bundle", "/k.pem")
    assert choose_trust(None, env, pip) == Trust("REQUESTS_CA_BUNDLE", "/r.pem")
    assert choose_trust(None, {"CURL_CA_BUNDLE": "/c.pem"}, pip) == Trust("CURL_CA_BUNDLE", "/c.pem")
    assert choose_trust(None, {}, pip) == Trust("PIP_CERT", "/p.pem")
    assert choose_trust(None, {}, lambda: None) == SYSTEM_TRUST
    assert choose_trust(None, {"REQUESTS_CA_BUNDLE": ""}, None) == SYSTEM_TRUST


def test_pip_is_asked_only_when_the_upstream_is_pips() -> None:
    asked: list[bool] = []

    def pip() -> Optional[tuple[str, str]]:
        asked.append(True)
        return ("PIP_CERT", "/p.pem")

    assert choose_trust(None, {}, None) == SYSTEM_TRUST
    assert choose_trust("/k.pem", {}, pip) == Trust("ca_bundle", "/k.pem")
    assert choose_trust(None, {"CURL_CA_BUNDLE": "/c.pem"}, pip).source == "CURL_CA_BUNDLE"
    assert not asked, "pip's configuration is read only when nothing more specific is set"


def test_pip_cert_from_environment_then_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mirror_sync.pip_default import pip_cert

    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\ncert = /from/pip.conf.pem\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    monkeypatch.setenv("PIP_CERT", "/from/env.pem")
    assert pip_cert() == ("PIP_CERT", "/from/env.pem")
    monkeypatch.delenv("PIP_CERT")
    assert pip_cert() == ("pip's 'global.cert'", "/from/pip.conf.pem")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "none"))
    assert pip_cert() is None


def test_a_bundle_without_certificates_is_a_configuration_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    config = write_config(tmp_path, "https://127.0.0.1:9/simple/", ca_bundle=str(junk))
    proc = run_sync(config, minimal_env(tmp_path))
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    assert "ca_bundle" in line and str(junk) in line, line


def test_a_missing_variable_bundle_is_a_configuration_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, "https://127.0.0.1:9/simple/")
    proc = run_sync(config, minimal_env(tmp_path, REQUESTS_CA_BUNDLE=str(tmp_path / "gone.pem")))
    assert proc.returncode == 2, proc.stderr
    assert "REQUESTS_CA_BUNDLE" in error_line(proc)


# -- the engine's HTTP client --------------------------------------------------------------------


def test_both_request_paths_verify_with_the_chosen_trust_only(https_upstream: TLSServer, ca_pem: Path) -> None:
    """The direct pool path and the Session path (a redirect) verify with the injected context,
    and requests never points a connection at certifi's bundle."""
    trusted = Trust("ca_bundle", str(ca_pem))
    client = HttpClient(2, 10, 2, trust=trusted)
    try:
        with client.get(https_upstream.url) as response:  # direct path
            assert response.status_code == 200
        with client.get(https_upstream.origin + "/simple") as response:  # 301 -> Session.get
            assert response.status_code == 200 and response.url == https_upstream.url
        session = client._session()
        route = session.direct(https_upstream.url)
        assert route is not None
        pool = route[0]
        assert pool.conn_kw["ssl_context"] is tls.context(trusted)
        assert pool.ca_certs is None and pool.ca_cert_dir is None
        assert tls.context(trusted).cert_store_stats()["x509_ca"] == 1, "only ca_bundle's CA, no certifi"
    finally:
        client.close()


@pytest.mark.parametrize("path", ["/simple/", "/simple"], ids=["direct", "session"])
def test_an_untrusted_certificate_fails_once_in_one_sentence(https_upstream: TLSServer, path: str) -> None:
    client = HttpClient(2, 10, 5, backoff=0.5, trust=SYSTEM_TRUST)
    try:
        with pytest.raises(tls.TLSError) as err:
            with client.get(https_upstream.origin + path):
                pass
    finally:
        client.close()
    text = str(err.value)
    assert text.startswith(f"{https_upstream.origin}: certificate not trusted by the system trust store ("), text
    assert text.endswith("set 'ca_bundle' to its CA's PEM file"), text
    assert https_upstream.attempts == 1, "a certificate that failed verification is not retried"
    assert https_upstream.handshakes == 0


def test_a_certificate_for_another_host_names_the_host(ca: trustme.CA, ca_pem: Path, tmp_path: Path) -> None:
    with _server(ca, _index(tmp_path), "mirror.example") as server:
        client = HttpClient(1, 10, 0, trust=Trust("ca_bundle", str(ca_pem)))
        try:
            with pytest.raises(tls.TLSError, match=r"not valid for 127\.0\.0\.1 .*'upstream'"):
                with client.get(server.url):
                    pass
        finally:
            client.close()


def test_a_plain_http_server_behind_an_https_url(tmp_path: Path) -> None:
    from tests.support.upstream_server import UpstreamServer

    with UpstreamServer(_index(tmp_path)) as plain:
        port = plain.port
        client = HttpClient(1, 10, 0, trust=SYSTEM_TRUST)
        url = f"https://user:secret@127.0.0.1:{port}/simple/"
        try:
            with pytest.raises(tls.TLSError) as err:
                with client.get(url):
                    pass
        finally:
            client.close()
    text = str(err.value)
    assert text.startswith(f"TLS with https://127.0.0.1:{port} failed ("), text
    assert "'upstream' names an HTTPS server" in text and "secret" not in text, text


# -- the command line, with the environment cron leaves -----------------------------------------


def test_untrusted_upstream_fails_with_one_sentence(https_upstream: TLSServer, tmp_path: Path) -> None:
    proc = run_sync(write_config(tmp_path, https_upstream.url), minimal_env(tmp_path))
    assert proc.returncode == 1, proc.stderr
    line = error_line(proc)
    assert https_upstream.url in line and "'ca_bundle'" in line and "certificate not trusted" in line, line
    assert not mirrored(tmp_path)


def test_ca_bundle_is_trusted(https_upstream: TLSServer, ca_pem: Path, tmp_path: Path) -> None:
    proc = run_sync(write_config(tmp_path, https_upstream.url, ca_bundle=str(ca_pem)), minimal_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert mirrored(tmp_path) == {WHEEL}


def test_verify_repair_fetches_with_ca_bundle(https_upstream: TLSServer, ca_pem: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, https_upstream.url, ca_bundle=str(ca_pem))
    assert run_sync(config, minimal_env(tmp_path)).returncode == 0
    (wheel,) = (tmp_path / "mirror" / "web" / "packages").rglob(WHEEL)
    wheel.unlink()
    proc = subprocess.run([sys.executable, "-m", "mirror_sync", "-c", str(config), "verify", "--repair", "--json"],
                          capture_output=True, text=True, timeout=120, env=minimal_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["repaired"] >= 1 and wheel.is_file()


def test_ca_bundle_directory_of_hashed_certificates(https_upstream: TLSServer, ca_pem: Path, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    subject_hash = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash", "-in", str(ca_pem)], capture_output=True, text=True, check=True
    ).stdout.strip()
    (certs / f"{subject_hash}.0").write_bytes(ca_pem.read_bytes())
    proc = run_sync(write_config(tmp_path, https_upstream.url, ca_bundle=str(certs)), minimal_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert mirrored(tmp_path) == {WHEEL}


def test_ca_bundle_wins_over_the_variables(https_upstream: TLSServer, ca_pem: Path, other_ca_pem: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, https_upstream.url, ca_bundle=str(ca_pem))
    proc = run_sync(config, minimal_env(tmp_path, REQUESTS_CA_BUNDLE=str(other_ca_pem), CURL_CA_BUNDLE=str(other_ca_pem)))
    assert proc.returncode == 0, proc.stderr


def test_requests_ca_bundle_still_works(https_upstream: TLSServer, ca_pem: Path, tmp_path: Path) -> None:
    proc = run_sync(write_config(tmp_path, https_upstream.url), minimal_env(tmp_path, REQUESTS_CA_BUNDLE=str(ca_pem)))
    assert proc.returncode == 0, proc.stderr
    assert mirrored(tmp_path) == {WHEEL}


def test_the_system_store_is_used_not_certifi(https_upstream: TLSServer, ca_pem: Path, tmp_path: Path) -> None:
    """SSL_CERT_FILE is what OpenSSL's default store (and so truststore on Linux) honours; certifi's
    bundle does not have this CA, so success proves the system store verified it."""
    proc = run_sync(write_config(tmp_path, https_upstream.url), minimal_env(tmp_path, SSL_CERT_FILE=str(ca_pem)))
    assert proc.returncode == 0, proc.stderr
    assert mirrored(tmp_path) == {WHEEL}


def test_pip_cert_is_used_when_the_upstream_is_pips(https_upstream: TLSServer, ca_pem: Path, tmp_path: Path) -> None:
    env = minimal_env(tmp_path, PIP_INDEX_URL=https_upstream.url, PIP_CERT=str(ca_pem))
    proc = run_sync(write_config(tmp_path, None), env, as_json=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["upstream"] == https_upstream.url
    assert mirrored(tmp_path) == {WHEEL}


def test_pip_cert_is_ignored_for_an_upstream_of_its_own(https_upstream: TLSServer, ca_pem: Path, tmp_path: Path) -> None:
    env = minimal_env(tmp_path, PIP_INDEX_URL=https_upstream.url, PIP_CERT=str(ca_pem))
    proc = run_sync(write_config(tmp_path, https_upstream.url), env)
    assert proc.returncode == 1, proc.stderr
    assert "certificate not trusted by the system trust store" in error_line(proc)


def test_pips_cert_setting_from_its_config_file(https_upstream: TLSServer, ca_pem: Path, tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text(f"[global]\nindex-url = {https_upstream.url}\ncert = {ca_pem}\n")
    proc = run_sync(write_config(tmp_path, None), minimal_env(tmp_path, PIP_CONFIG_FILE=str(conf)))
    assert proc.returncode == 0, proc.stderr
    assert mirrored(tmp_path) == {WHEEL}


# -- the real default index, with nothing set ------------------------------------------------------


@pytest.mark.realindex
def test_real_default_index_with_an_empty_environment(tmp_path: Path) -> None:
    """`env -i PATH=/usr/bin:/bin mirror-sync sync`: the index pip would use, verified with the
    system trust store, as under cron and `become`."""
    env = {"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": os.devnull}
    upstream = subprocess.run(
        [sys.executable, "-c", "from mirror_sync.pip_default import default_upstream; print(default_upstream())"],
        capture_output=True, text=True, timeout=60, env={**env, "PYTHONPATH": str(REPO)}, check=True,
    ).stdout.strip()
    parts = urlsplit(upstream)
    try:
        socket.create_connection((parts.hostname, parts.port or 443), timeout=10).close()
    except OSError as exc:
        pytest.skip(f"the default index {upstream} is unreachable from here ({exc})")
    config = tmp_path / "mirror.yml"
    config.write_text(yaml.safe_dump({
        "directory": str(tmp_path / "mirror"), "projects": ["six"], "dependencies": False, "latest": 1,
        "environments": [{"python": "3.11", "platform": "linux", "machine": "x86_64"}], "workers": 2,
    }))
    proc = subprocess.run(
        ["env", "-i", "PATH=/usr/bin:/bin", f"PIP_CONFIG_FILE={os.devnull}", sys.executable, "-m", "mirror_sync", "-c", str(config), "sync", "--json"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads(proc.stdout)
    errors = [summary.get("error") or ""] + [f.get("error") or "" for f in summary.get("failures", [])]
    assert not [e for e in errors if "certificate" in e or "TLS" in e or "SSL" in e or "request to" in e], proc.stderr
    if summary["ok"]:
        assert any(p.name.startswith("six-") for p in (tmp_path / "mirror" / "web" / "packages").rglob("*.whl"))
