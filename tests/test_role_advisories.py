"""The sync role's policy and local-package settings, and its download of the OSV export.

The configuration the role renders from policy variables is loaded by the engine's own loader (so the
role cannot write one the engine refuses unless the engine should refuse it). The download step
(templates/pypi-mirror-fetch-advisories.j2) runs against a loopback HTTP server: it fetches a zip,
asks again with If-Modified-Since, and on a 404, a body that is no zip, a truncated answer or an
unreachable host keeps the previous export and logs one key=value line. The job script (what cron
runs) fetches, then syncs from a loopback upstream with the export blocking a MAL- release, and
syncs with the previous export when the download fails.
"""
from __future__ import annotations

import base64
import email.utils
import getpass
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror_sync.config import load_config
from mirror_sync.errors import ConfigError
from tests.ansibleutil import render_template
from tests.support.index_tree import IndexTree
from tests.support.osv_export import advisory, dumps, write_zip
from tests.support.upstream_server import UpstreamServer
from tests.syncutil import mirrored_files

ROLE = "pypi_mirror_sync"
EXPORT = "/osv/PyPI.zip"
LAST_MODIFIED = "Tue, 01 Dec 2026 08:00:00 GMT"
VENV_BIN = Path(sys.executable).parent


# --------------------------------------------------------------------------- a loopback server for the export
class ExportServer:
    """Serves one export at EXPORT with Last-Modified (304 for an If-Modified-Since not older), or
    answers `status` instead, or sends half of the body and closes (`truncate`). Records the
    If-Modified-Since and Authorization headers of each request."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.truncate = False
        self.seen: list[str | None] = []
        self.authorizations: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature: quiet
                pass

            def do_GET(self) -> None:
                since = self.headers.get("If-Modified-Since")
                owner.seen.append(since)
                owner.authorizations.append(self.headers.get("Authorization"))
                if self.path != EXPORT or owner.status != 200:
                    self._reply(404 if self.path != EXPORT else owner.status, b"no export here\n")
                    return
                if since and email.utils.parsedate_to_datetime(since) >= email.utils.parsedate_to_datetime(LAST_MODIFIED):
                    self._reply(304, b"")
                    return
                self._reply(200, owner.body, truncate=owner.truncate)

            def _reply(self, status: int, body: bytes, truncate: bool = False) -> None:
                self.send_response(status)
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.send_header("Last-Modified", LAST_MODIFIED)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if truncate else body)
                self.wfile.flush()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{EXPORT}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def export_server() -> Iterator[ExportServer]:
    server = ExportServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def export_zip(path: Path, *entries: dict[str, Any]) -> bytes:
    write_zip(path, {f"{doc['id']}.json": dumps(doc) for doc in entries})
    return path.read_bytes()


MALICIOUS = advisory("MAL-2026-1", "evil", versions=["2.0"], summary="a malicious release")
OTHER = advisory("GHSA-aaaa-bbbb-cccc", "other", versions=["1.0"], cvss="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")


# --------------------------------------------------------------------------- the configuration the role writes
def render_config(tmp_path: Path, name: str, **overrides: Any) -> Path:
    values = {"pypi_mirror_sync_directory": str(tmp_path / "mirror"), "pypi_mirror_sync_projects": ["requests"],
              "pypi_mirror_sync_upstream": "http://127.0.0.1:9/simple/", **overrides}
    return render_template(ROLE, "mirror.yml.j2", tmp_path / name, tmp_path, values)


def test_the_role_writes_a_policy_the_engine_loads(tmp_path: Path) -> None:
    """Every policy and local-package variable set, the download URL standing in for the advisories."""
    path = render_config(
        tmp_path, "policy.yml",
        pypi_mirror_sync_cooldown="7d",
        pypi_mirror_sync_cooldown_unknown="allow",
        pypi_mirror_sync_uploaded_before="2026-05-01T00:00:00Z",
        pypi_mirror_sync_cooldown_exempt=["urllib3>=2.2.3"],
        pypi_mirror_sync_advisories_url="http://127.0.0.1:9/osv/PyPI.zip",
        pypi_mirror_sync_block_malicious=True,
        pypi_mirror_sync_block_vulnerable="high",
        pypi_mirror_sync_allow={"GHSA-xxxx-xxxx-xxxx": ["jinja2<3"]},
        pypi_mirror_sync_local=str(tmp_path / "local"),
        pypi_mirror_sync_merge_upstream=["Acme_Utils"],
        pypi_mirror_sync_public_url="https://pypi.internal.example",
    )
    written = yaml.safe_load(path.read_text())
    assert written["advisories"] == str(tmp_path / "mirror" / "advisories" / "PyPI.zip")  # the download's default file
    assert written["block"] == {"malicious": True, "vulnerable": "high"}
    config = load_config(path)
    policy = config.policy
    assert policy.cooldown == timedelta(days=7) and policy.cooldown_unknown == "allow"
    assert policy.uploaded_before is not None and policy.uploaded_before.isoformat() == "2026-05-01T00:00:00+00:00"
    assert [m.text for m in policy.cooldown_exempt] == ["urllib3>=2.2.3"]
    assert policy.advisories == tmp_path / "mirror" / "advisories" / "PyPI.zip"
    assert (policy.block.malicious, policy.block.vulnerable) == (True, "high")
    assert [(ident, [m.text for m in matches]) for ident, matches in policy.allow] == [("GHSA-xxxx-xxxx-xxxx", ["jinja2<3"])]
    assert config.local == tmp_path / "local" and config.merge_upstream == ("acme-utils",)
    assert config.public_url == "https://pypi.internal.example/"


def test_an_advisories_path_of_its_own_wins_and_a_bare_off_is_off(tmp_path: Path) -> None:
    """pypi_mirror_sync_advisories set: it is the key, whatever the download URL; YAML's bare `off` (false) is off."""
    path = render_config(tmp_path, "own.yml", pypi_mirror_sync_advisories=str(tmp_path / "osv"),
                         pypi_mirror_sync_advisories_url="http://127.0.0.1:9/osv/PyPI.zip",
                         pypi_mirror_sync_block_vulnerable=False, pypi_mirror_sync_block_malicious=False)
    config = load_config(path)
    assert config.policy.advisories == tmp_path / "osv"
    assert (config.policy.block.malicious, config.policy.block.vulnerable) == (False, "off")


def test_blocking_without_advisories_is_written_for_the_engine_to_refuse(tmp_path: Path) -> None:
    """Without advisories the block section is left out, unless a vulnerable level is asked for: then the
    engine refuses the file, naming the key, instead of a mirror that silently blocks nothing."""
    quiet = yaml.safe_load(render_config(tmp_path, "quiet.yml", pypi_mirror_sync_block_malicious=False).read_text())
    assert "block" not in quiet and "advisories" not in quiet and "allow" not in quiet
    path = render_config(tmp_path, "refused.yml", pypi_mirror_sync_block_vulnerable="critical")
    assert yaml.safe_load(path.read_text())["block"] == {"vulnerable": "critical"}
    with pytest.raises(ConfigError, match=r"key 'block'.*needs 'advisories'"):
        load_config(path)


# --------------------------------------------------------------------------- the download step
@pytest.fixture(scope="module")
def fetch_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("fetch-script")
    return render_template(ROLE, "pypi-mirror-fetch-advisories.j2", tmp / "pypi-mirror-fetch-advisories", tmp, {})


def fetch(script: Path, url: str, dest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(script), "--timeout", "30", *extra, url, str(dest)], check=False,
                          capture_output=True, text=True, timeout=120, env={"PATH": os.environ.get("PATH", "")})


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_the_export_is_fetched_then_asked_for_only_if_modified(fetch_script: Path, export_server: ExportServer,
                                                              tmp_path: Path) -> None:
    export_server.body = export_zip(tmp_path / "served.zip", MALICIOUS, OTHER)
    dest = tmp_path / "advisories" / "PyPI.zip"  # its directory is made
    proc = fetch(fetch_script, export_server.url, dest)
    assert proc.returncode == 0, proc.stderr
    line = one_line(proc)
    assert " INFO event=advisories-fetched " in line and f"file={dest}" in line
    assert f"bytes={len(export_server.body)}" in line
    assert dest.read_bytes() == export_server.body
    assert dest.stat().st_mtime == email.utils.parsedate_to_datetime(LAST_MODIFIED).timestamp()
    again = fetch(fetch_script, export_server.url, dest)
    assert again.returncode == 0 and "event=advisories-unchanged" in one_line(again)
    assert export_server.seen == [None, LAST_MODIFIED]
    assert dest.read_bytes() == export_server.body
    assert sorted(p.name for p in dest.parent.iterdir()) == ["PyPI.zip"]


@pytest.mark.parametrize("failure", ["404", "not a zip", "truncated", "unreachable", "credentials"])
def test_a_failed_download_keeps_the_previous_export_and_says_so(fetch_script: Path, export_server: ExportServer,
                                                                 tmp_path: Path, failure: str) -> None:
    dest = tmp_path / "PyPI.zip"
    previous = export_zip(dest, OTHER)
    os.utime(dest, (0, 0))  # older than the server's: a conditional request would fetch it
    url = export_server.url
    if failure == "404":
        export_server.status = 404
    elif failure == "not a zip":
        export_server.body = b"<html>a captive portal</html>\n"
    elif failure == "truncated":
        export_server.body = export_zip(tmp_path / "served.zip", MALICIOUS, OTHER)
        export_server.truncate = True
    elif failure == "unreachable":
        url = f"http://127.0.0.1:{unused_port()}{EXPORT}"
    else:  # a URL with credentials (sent as Basic authorization) that answers 404: the log does not repeat them
        export_server.status = 404
        url = url.replace("http://", "http://reader:s3cret@")
    proc = fetch(fetch_script, url, dest)
    assert proc.returncode == 1, proc.stderr
    line = one_line(proc)
    assert " WARNING event=advisories-fetch-failed " in line and "previous=kept" in line and "error=" in line, line
    assert "s3cret" not in line
    if failure == "credentials":
        assert export_server.authorizations == ["Basic " + base64.b64encode(b"reader:s3cret").decode()]
    if failure in ("404", "credentials"):
        assert "HTTP 404" in line
    assert dest.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part")) == []


def test_a_download_that_never_arrived_is_logged_without_a_file(fetch_script: Path, tmp_path: Path) -> None:
    dest = tmp_path / "PyPI.zip"
    proc = fetch(fetch_script, f"http://127.0.0.1:{unused_port()}{EXPORT}", dest)
    assert proc.returncode == 1
    assert "event=advisories-fetch-failed" in one_line(proc) and "previous=none" in one_line(proc)
    assert not dest.exists()


# --------------------------------------------------------------------------- the job cron runs
def test_the_sync_job_fetches_the_export_before_each_sync(index_tree: IndexTree, upstream: UpstreamServer,
                                                          export_server: ExportServer, tmp_path: Path) -> None:
    """The job script downloads the export, then syncs: the MAL- release is not mirrored. A failed download
    is logged and the sync runs with the previous export; with no export at all, the engine refuses to sync."""
    index_tree.add_wheel("evil", "1.0")
    index_tree.add_wheel("evil", "2.0")
    index_tree.write()
    export_server.body = export_zip(tmp_path / "served.zip", MALICIOUS)
    assert (VENV_BIN / "mirror-sync").is_file(), "the test interpreter's environment has no mirror-sync"
    home, directory, export = tmp_path / "home", tmp_path / "mirror", tmp_path / "mirror" / "advisories" / "PyPI.zip"
    values = {
        "pypi_mirror_sync_directory": str(directory),
        "pypi_mirror_sync_upstream": upstream.url,
        "pypi_mirror_sync_projects": ["evil"],
        "pypi_mirror_sync_advisories_url": export_server.url,
        "pypi_mirror_sync_advisories_file": str(export),
        "pypi_mirror_sync_advisories_timeout": 30,
        "pypi_mirror_sync_home": str(home),
        "pypi_mirror_sync_venv": str(VENV_BIN.parent),
        "pypi_mirror_sync_config_path": str(tmp_path / "mirror.yml"),
        "pypi_mirror_sync_user": getpass.getuser(),  # run as root, the job drops to this user (here: the same)
    }
    render_template(ROLE, "mirror.yml.j2", tmp_path / "mirror.yml", tmp_path, values)
    (home / "bin").mkdir(parents=True)
    render_template(ROLE, "pypi-mirror-fetch-advisories.j2", home / "bin" / "pypi-mirror-fetch-advisories", tmp_path, values)
    job = render_template(ROLE, "pypi-mirror-sync.j2", home / "bin" / "pypi-mirror-sync", tmp_path, values)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["PIP_CONFIG_FILE"] = "/dev/null"

    def run_job() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", str(job)], check=False, capture_output=True, text=True, timeout=300, env=env)

    first = run_job()
    assert first.returncode == 0, first.stderr
    assert "event=advisories-fetched" in first.stderr and export.is_file()
    assert mirrored_files(directory) == {"evil-1.0-py3-none-any.whl"}

    export_server.status = 404
    upstream.clear_log()
    second = run_job()
    assert second.returncode == 0, second.stderr
    assert "event=advisories-fetch-failed" in second.stderr and "previous=kept" in second.stderr
    assert upstream.requests("/simple/"), "the sync did not run after the failed download"
    assert mirrored_files(directory) == {"evil-1.0-py3-none-any.whl"}  # still judged by the previous export

    export.unlink()
    third = run_job()
    assert third.returncode == 2, third.stderr
    assert "previous=none" in third.stderr
    assert f"key 'advisories': the OSV export {export} does not exist" in third.stderr  # the engine's sentence: it does not sync unjudged
    assert mirrored_files(directory) == {"evil-1.0-py3-none-any.whl"}
