"""The nginx role's vhost, rendered by Ansible and served by a real nginx (with the role's njs script) on
127.0.0.1: PEP 691 content negotiation with real Accept headers (pip's weighted one included), ?format=,
media types, Vary, autoindex, the combined access log, the statistics as JSON, the template's validate
command, pip itself, the 301 from unnormalized project names, and X-PyPI-Last-Serial read from the pages
a real `mirror-sync` run writes, with no reload (and a second `mirror-sync` that mirrors the served mirror:
a mirror of a mirror), with the longest names the engine accepts and with a 700,000-project root."""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

from mirror_sync.render import project_html, project_json, root_html, root_json
from tests.ansibleutil import ROLES, render_template
from tests.support.dists import build_wheel
from tests.support.index_tree import IndexTree
from tests.support.upstream_server import UpstreamServer
from tests.syncutil import run_cli, write_config

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
# Debian's libnginx-mod-http-js (njs), which the role installs with nginx
NJS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")
NJS_SCRIPT = ROLES / "pypi_mirror_nginx" / "files" / "pypi_mirror.js"
pytestmark = [
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (tests/run installs it)"),
    pytest.mark.skipif(not NJS_MODULE.is_file(),
                       reason="nginx's njs module (libnginx-mod-http-js) is not installed (tests/run installs it)"),
]

PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
# The longest name the engine accepts (names.canonical_project: 200 characters), spelled as upstream might.
LONG_NAME = ("Opentelemetry.Exporter_OTLP-Proto--Common-" * 5)[:199] + "X"


def canonicalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Served:
    base: str
    web: Path
    access_log: Path
    wheel_name: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_web_tree(web: Path) -> str:
    """A tiny mirror tree in the engine's layout: one project, one real wheel with its metadata."""
    filename, wheel, metadata = build_wheel("demo", "1.0")
    digest = hashlib.sha256(wheel).hexdigest()
    rel = f"packages/{digest[:2]}/{digest[2:4]}/{digest[4:]}/{filename}"
    (web / rel).parent.mkdir(parents=True)
    (web / rel).write_bytes(wheel)
    (web / (rel + ".metadata")).write_bytes(metadata)
    meta_digest = hashlib.sha256(metadata).hexdigest()
    simple = web / "simple"
    (simple / "demo").mkdir(parents=True)
    root_html = '<!DOCTYPE html>\n<html><body><a href="demo/">demo</a></body></html>\n'
    (simple / "index.html").write_text(root_html)
    (simple / "index.v1_json").write_text(json.dumps(
        {"meta": {"api-version": "1.1", "_last-serial": 1}, "projects": [{"name": "demo", "_last-serial": 1}]}))
    href = f"../../{rel}#sha256={digest}"
    page = ('<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.1"></head><body>\n'
            f'<a href="{href}" data-dist-info-metadata="sha256={meta_digest}" '
            f'data-core-metadata="sha256={meta_digest}">{filename}</a>\n</body></html>\n')
    (simple / "demo" / "index.html").write_text(page)
    (simple / "demo" / "index.v1_html").write_text(page)
    (simple / "demo" / "index.v1_json").write_text(json.dumps({
        "meta": {"api-version": "1.1", "_last-serial": 1},
        "name": "demo",
        "versions": ["1.0"],
        "files": [{"filename": filename, "url": f"../../{rel}", "hashes": {"sha256": digest},
                   "core-metadata": {"sha256": meta_digest}, "size": len(wheel)}],
    }))
    # a project from an upstream without serials: its JSON page has no _last-serial
    (simple / "serialless").mkdir()
    (simple / "serialless" / "index.v1_json").write_bytes(project_json("serialless", None, [], []))
    (simple / "serialless" / "index.html").write_bytes(project_html("serialless", []))
    # what `mirror-sync stats` writes under web/stats/
    (web / "stats" / "projects").mkdir(parents=True)
    (web / "stats" / "summary.json").write_text(json.dumps({"totals": {"downloads": 0}}))
    (web / "stats" / "projects" / "demo.json").write_text(json.dumps({"project": "demo", "total": 0, "days": {}}))
    return filename


class Nginx:
    """A real nginx (master + workers, not daemonised) with one rendered vhost, on 127.0.0.1."""

    def __init__(self, base: Path, vhost: Path, port: int) -> None:
        self.base = base
        self.prefix = base / "nginx"
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.main = self.prefix / "nginx.conf"
        self.port = port
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.main.write_text(f"""
load_module {NJS_MODULE};
user root root;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/main-error.log;
daemon off;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    include /etc/nginx/mime.types;
    client_body_temp_path {self.prefix}/body;
    proxy_temp_path {self.prefix}/proxy;
    fastcgi_temp_path {self.prefix}/fastcgi;
    uwsgi_temp_path {self.prefix}/uwsgi;
    scgi_temp_path {self.prefix}/scgi;
    include {vhost};
}}
""")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([str(NGINX), "-p", f"{self.prefix}/", "-c", str(self.main)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(200):  # bounded: up to ~10 s for nginx to listen
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("nginx did not start listening")

    def workers(self) -> set[int]:
        """PIDs of the master's children (its worker processes)."""
        assert self.proc is not None
        children = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                children.add(int(stat.parent.name))
        return children

    def reload(self) -> None:
        """`nginx -s reload`, then wait (bounded) until every old worker has exited, so that each
        later request is answered with the configuration (and serials.map) read at the reload."""
        old = self.workers()
        assert old, "nginx has no workers"
        subprocess.run([str(NGINX), "-p", f"{self.prefix}/", "-c", str(self.main), "-s", "reload"],
                       check=True, capture_output=True, timeout=60)
        for _ in range(600):  # bounded: up to ~30 s
            current = self.workers()
            if current and not current & old:
                return
            time.sleep(0.05)
        raise AssertionError(f"nginx workers {old} did not exit after the reload")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)


def render_vhost(tmp_path: Path, web: Path, port: int, **overrides: object) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    return render_template("pypi_mirror_nginx", "vhost.conf.j2", tmp_path / "vhost.conf", tmp_path, {
        "pypi_mirror_nginx_root": str(web),
        "pypi_mirror_nginx_port": port,
        "pypi_mirror_nginx_listen_address": "127.0.0.1",
        "pypi_mirror_nginx_default_server": False,
        "pypi_mirror_nginx_access_log": str(logs / "access.log"),
        "pypi_mirror_nginx_error_log": str(logs / "error.log"),
        # the role installs files/pypi_mirror.js there; here the vhost reads the repository's copy
        "pypi_mirror_nginx_njs_path": str(NJS_SCRIPT),
        **overrides,
    })


def render_checker(tmp_path: Path) -> Path:
    """The template's validate command (nginx -t on a minimal main configuration with the site file)."""
    checker = render_template("pypi_mirror_nginx", "pypi-mirror-nginx-check.j2", tmp_path / "check", tmp_path, {})
    checker.chmod(0o755)
    return checker


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp_path = tmp_path_factory.mktemp("vhost")
    web = tmp_path / "web"
    wheel_name = write_web_tree(web)
    port = free_port()
    vhost = render_vhost(tmp_path, web, port)
    nginx = Nginx(tmp_path, vhost, port)
    try:
        nginx.start()
        yield Served(base=nginx.base_url, web=web, access_log=tmp_path / "logs" / "access.log", wheel_name=wheel_name)
    finally:
        nginx.stop()


def get(url: str, accept: Optional[str] = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept is not None else {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def media_type(headers: dict[str, str]) -> str:
    return headers.get("content-type", "").split(";")[0].strip()


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PIP_ACCEPT, JSON_TYPE),
        (JSON_TYPE, JSON_TYPE),
        ("application/vnd.pypi.simple.latest+json", JSON_TYPE),
        (BROWSER_ACCEPT, "text/html"),
        ("text/html", "text/html"),
        (None, "text/html"),
        ("*/*", "text/html"),
        # HTML preferred by q-value, or a tie: HTML
        (f"{JSON_TYPE};q=0.5, text/html", "text/html"),
        (f"{HTML_TYPE}, {JSON_TYPE};q=0.5", HTML_TYPE),
        (f"{JSON_TYPE};q=0.5, {HTML_TYPE};q=0.5", HTML_TYPE),
        (f"{JSON_TYPE}; q=0, text/html; q=0.1", "text/html"),
        # JSON preferred by q-value
        (f"{JSON_TYPE};q=0.6, text/html;q=0.5", JSON_TYPE),
        (f"text/html;q=0.09, {JSON_TYPE};q=0.1", JSON_TYPE),
        (f"{JSON_TYPE};q=0.75, */*;q=0.7", JSON_TYPE),
    ],
)
def test_content_negotiation(served: Served, accept: Optional[str], expected: str) -> None:
    for path in ("/simple/", "/simple/demo/"):
        status, headers, body = get(served.base + path, accept)
        assert status == 200, (path, status)
        # like the engine, the tree has index.v1_html for projects only: the root's HTML is text/html
        want = "text/html" if path == "/simple/" and expected == HTML_TYPE else expected
        assert media_type(headers) == want, (path, accept, headers)
        assert headers.get("vary") == "Accept"
        if expected == JSON_TYPE:
            assert json.loads(body)["meta"]["api-version"] == "1.1"
        else:
            assert body.lstrip().startswith(b"<!DOCTYPE html>")


Q_VALUES = ["0", "0.001", "0.01", "0.05", "0.1", "0.15", "0.2", "0.25", "0.3", "0.45", "0.5", "0.65", "0.75",
            "0.8", "0.85", "0.9", "0.99", "0.999", "1", "1.0", "1.000"]


def test_q_values_are_compared_numerically(served: Served) -> None:
    """Every pair from a grid of q-values: JSON exactly when its q is higher than HTML's."""
    wrong = []
    for qj in Q_VALUES:
        for qh in Q_VALUES:
            accept = f"{JSON_TYPE};q={qj}, text/html;q={qh}"
            _, headers, _ = get(served.base + "/simple/demo/", accept)
            want = JSON_TYPE if float(qj) > float(qh) else "text/html"
            if media_type(headers) != want:
                wrong.append((accept, media_type(headers)))
    assert not wrong, wrong


def test_format_query_overrides_the_accept_header(served: Served) -> None:
    _, headers, body = get(served.base + "/simple/demo/?format=application/vnd.pypi.simple.v1+json", "text/html")
    assert media_type(headers) == JSON_TYPE and json.loads(body)["name"] == "demo"
    _, headers, body = get(served.base + "/simple/demo/?format=html", PIP_ACCEPT)
    assert media_type(headers) in ("text/html", HTML_TYPE) and b"<a href=" in body


def test_project_without_trailing_slash_redirects_relatively(served: Served) -> None:
    status, headers, _ = get(served.base + "/simple/demo", PIP_ACCEPT)
    assert status == 301 and headers["location"] == "/simple/demo/"


def test_unknown_project_is_404(served: Served) -> None:
    status, _, _ = get(served.base + "/simple/nope/", PIP_ACCEPT)
    assert status == 404


def test_files_metadata_and_listings(served: Served) -> None:
    page = json.loads(get(served.base + "/simple/demo/", PIP_ACCEPT)[2])
    rel = page["files"][0]["url"].replace("../../", "/")
    status, headers, body = get(served.base + rel)
    assert status == 200 and media_type(headers) == "application/octet-stream"
    assert hashlib.sha256(body).hexdigest() == page["files"][0]["hashes"]["sha256"]
    assert "immutable" in headers.get("cache-control", "")
    status, headers, body = get(served.base + rel + ".metadata")
    assert status == 200 and media_type(headers) == "text/plain" and body.startswith(b"Metadata-Version")
    # autoindex for humans
    listing_dir = rel.rsplit("/", 1)[0] + "/"
    status, headers, body = get(served.base + listing_dir, BROWSER_ACCEPT)
    assert status == 200 and served.wheel_name.encode() in body
    status, _, body = get(served.base + "/", BROWSER_ACCEPT)
    assert status == 200 and b"simple/" in body and b"packages/" in body


def test_index_pages_carry_their_serial(served: Served) -> None:
    for path, serial in (("/simple/", "1"), ("/simple/demo/", "1"), ("/simple/index.v1_json", "1"),
                         ("/simple/demo/index.html", "1")):
        for accept in (PIP_ACCEPT, "text/html"):
            status, headers, _ = get(served.base + path, accept)
            assert status == 200 and headers.get("x-pypi-last-serial") == serial, (path, accept, headers)
    # a page without a serial gets no header (nginx sends none with an empty value)
    status, headers, body = get(served.base + "/simple/serialless/", PIP_ACCEPT)
    assert status == 200 and json.loads(body)["name"] == "serialless" and "x-pypi-last-serial" not in headers


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/simple/Demo/", "/simple/demo/"),
        ("/simple/DEMO", "/simple/demo/"),
        ("/simple/Flask/", "/simple/flask/"),
        ("/simple/zope.interface/", "/simple/zope-interface/"),
        ("/simple/Foo__Bar/", "/simple/foo-bar/"),
        ("/simple/foo--bar/", "/simple/foo-bar/"),
        ("/simple/Foo._-Bar/", "/simple/foo-bar/"),
        ("/simple/Foo%5FBar/", "/simple/foo-bar/"),  # percent-encoded "_": nginx decodes the path first
        ("/simple/Django_Rest.Framework-2/?format=json", "/simple/django-rest-framework-2/?format=json"),
        ("/simple/Demo/?format=application/vnd.pypi.simple.v1%2Bjson&x=1",
         "/simple/demo/?format=application/vnd.pypi.simple.v1%2Bjson&x=1"),
        (f"/simple/{LONG_NAME}/", f"/simple/{canonicalize(LONG_NAME)}/"),
    ],
)
def test_unnormalized_names_redirect_to_the_normalized_page(served: Served, path: str, location: str) -> None:
    for accept in (PIP_ACCEPT, "text/html", None):
        status, headers, _ = get(served.base + path, accept)
        assert status == 301 and headers["location"] == location, (path, accept, status, headers)


@pytest.mark.parametrize("path", ["/simple/", "/simple/index.html", "/simple/index.v1_json", "/simple/demo/",
                                  "/simple/demo/index.v1_json", "/simple/nope/", "/simple/-demo-/", "/simple/a1-b2/"])
def test_normalized_names_and_the_roots_files_are_not_redirected(served: Served, path: str) -> None:
    status, _, _ = get(served.base + path, PIP_ACCEPT)
    assert status in (200, 404), (path, status)


def test_the_redirect_leads_to_a_negotiated_page(served: Served) -> None:
    """pip follows the 301 and still gets PEP 691 JSON; a browser gets HTML; the serial comes along."""
    opener = urllib.request.build_opener()
    for accept, want in ((PIP_ACCEPT, JSON_TYPE), (BROWSER_ACCEPT, "text/html"), (HTML_TYPE, HTML_TYPE)):
        request = urllib.request.Request(served.base + "/simple/Demo/", headers={"Accept": accept})
        with opener.open(request, timeout=10) as response:
            assert response.geturl() == served.base + "/simple/demo/"
            assert media_type({k.lower(): v for k, v in response.headers.items()}) == want
            assert response.headers["X-PyPI-Last-Serial"] == "1" and response.headers["Vary"] == "Accept"


COMBINED = re.compile(r'^(\S+) - (\S+) \[([^\]]+)\] "(\S+) (\S+) (\S+)" (\d{3}) (\d+) "([^"]*)" "([^"]*)"$')


def test_pip_downloads_through_the_vhost_using_json(served: Served, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    dest = tmp_path / "downloads"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
         "--index-url", served.base + "/simple/", "-d", str(dest), "demo"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (dest / served.wheel_name).is_file()
    # the access log is in the combined format, and pip's page request got the JSON page (its size)
    json_size = (served.web / "simple" / "demo" / "index.v1_json").stat().st_size
    lines = [COMBINED.match(line) for line in served.access_log.read_text().splitlines()]
    assert lines and all(lines), served.access_log.read_text()
    pages = [m for m in lines if m and m.group(5) == "/simple/demo/" and m.group(10).startswith("pip/")]
    assert pages and int(pages[-1].group(8)) == json_size and pages[-1].group(7) == "200"


def test_statistics_are_served_as_json(served: Served) -> None:
    for path in ("/stats/summary.json", "/stats/projects/demo.json"):
        status, headers, body = get(served.base + path, BROWSER_ACCEPT)
        assert status == 200 and media_type(headers) == "application/json", (path, headers)
        assert isinstance(json.loads(body), dict)
        assert "x-pypi-last-serial" not in headers
    status, _, body = get(served.base + "/stats/projects/", BROWSER_ACCEPT)
    assert status == 200 and b"demo.json" in body


def test_validate_command_accepts_the_vhost_and_rejects_a_broken_one(tmp_path: Path) -> None:
    checker = render_checker(tmp_path)
    good = render_vhost(tmp_path, tmp_path / "web", free_port())
    proc = subprocess.run([str(checker), str(good)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text(good.read_text().replace("absolute_redirect off;", "absolute_redirect maybe;"))
    proc = subprocess.run([str(checker), str(broken)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "absolute_redirect" in proc.stderr
    # the role installs the njs script before it writes the site: without it nginx refuses the vhost
    missing = render_vhost(tmp_path, tmp_path / "web", free_port(),
                           pypi_mirror_nginx_njs_path=str(tmp_path / "absent.js"))
    proc = subprocess.run([str(checker), str(missing)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "absent.js" in proc.stderr


def test_vhost_holds_nothing_per_project() -> None:
    """Nothing in the site grows with the mirror: no serials.map, no map of pages, so nginx's memory and
    reload time do not depend on the number of projects, and a sync needs no reload."""
    text = (ROLES / "pypi_mirror_nginx" / "templates" / "vhost.conf.j2").read_text()
    assert "serials.map" not in text and "include " not in text


def test_last_serial_header_can_be_turned_off(tmp_path: Path) -> None:
    """Off: no header and no njs handler for it (the redirect of unnormalized names stays)."""
    checker = render_checker(tmp_path)
    vhost = render_vhost(tmp_path, tmp_path / "web", free_port(), pypi_mirror_nginx_last_serial_header=False)
    text = vhost.read_text()
    assert "X-PyPI-Last-Serial" not in text and "$pypi_mirror_last_serial" not in text
    assert "pypi_mirror.normalized_uri" in text
    proc = subprocess.run([str(checker), str(vhost)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_tls_vhost_is_valid_nginx(tmp_path: Path) -> None:
    """With TLS on, the rendered vhost passes nginx -t with a real (self-signed) certificate."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=mirror.test",
                    "-days", "2", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=120)
    checker = render_checker(tmp_path)
    vhost = render_vhost(tmp_path, tmp_path / "web", free_port(),
                         pypi_mirror_nginx_tls_port=free_port(),
                         pypi_mirror_nginx_tls_enabled=True,
                         pypi_mirror_nginx_tls_certificate=str(cert),
                         pypi_mirror_nginx_tls_certificate_key=str(key))
    assert "ssl_certificate " + str(cert) in vhost.read_text()
    proc = subprocess.run([str(checker), str(vhost)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# -- X-PyPI-Last-Serial after a real sync, and a mirror of the mirror ------------------------------------

@dataclass
class SyncedMirror:
    tree: IndexTree
    upstream: UpstreamServer
    directory: Path
    config: Path
    nginx: Nginx


def sync(config: Path) -> dict[str, object]:
    code, summary, stderr = run_cli(config, "sync", timeout=300)
    assert code == 0, (summary, stderr)
    return summary


@pytest.fixture
def synced_mirror(tmp_path: Path) -> Iterator[SyncedMirror]:
    """A tiny generated upstream (with a 200-character project name), nginx serving an empty mirror
    directory, then one real `mirror-sync` run into that directory."""
    tree = IndexTree(tmp_path / "upstream")
    tree.add_wheel("alpha", "1.0", requires_dist=["beta"])
    tree.add_sdist("alpha", "1.0")
    tree.add_wheel("beta", "2.0")
    tree.add_wheel("Gamma_Pkg", "0.1")
    tree.add_sdist(LONG_NAME, "1.0")
    tree.touch("alpha")  # serials differ from project to project
    tree.write()
    directory = tmp_path / "mirror"
    directory.mkdir()
    port = free_port()
    nginx = Nginx(tmp_path, render_vhost(tmp_path, directory / "web", port), port)
    with UpstreamServer(tree.root) as upstream:
        try:
            nginx.start()
            config = write_config(tmp_path / "mirror.yml", upstream.url, directory)
            sync(config)
            yield SyncedMirror(tree=tree, upstream=upstream, directory=directory, config=config, nginx=nginx)
        finally:
            nginx.stop()


def served_serials(base: str) -> dict[str, int]:
    """{"/simple/": root serial, "/simple/<name>/": project serial} as the JSON pages say."""
    status, _, body = get(base + "/simple/", PIP_ACCEPT)
    assert status == 200
    root = json.loads(body)
    serials = {"/simple/": root["meta"]["_last-serial"]}
    for entry in root["projects"]:
        path = f"/simple/{canonicalize(entry['name'])}/"
        status, _, body = get(base + path, PIP_ACCEPT)
        assert status == 200, path
        page = json.loads(body)
        assert page["meta"]["_last-serial"] == entry["_last-serial"], path
        serials[path] = page["meta"]["_last-serial"]
    return serials


def assert_headers_match(base: str, serials: dict[str, int]) -> None:
    wrong = []
    for path, serial in serials.items():
        for accept in (PIP_ACCEPT, JSON_TYPE, HTML_TYPE, "text/html", BROWSER_ACCEPT, None):
            for query in ("", "?format=json", "?format=html"):
                status, headers, _ = get(base + path + query, accept)
                if status != 200 or headers.get("x-pypi-last-serial") != str(serial):
                    wrong.append((path + query, accept, status, headers.get("x-pypi-last-serial"), serial))
    assert not wrong, wrong


def test_last_serial_header_follows_the_pages_without_a_reload(synced_mirror: SyncedMirror) -> None:
    mirror, tree = synced_mirror, synced_mirror.tree
    base = mirror.nginx.base_url
    workers = mirror.nginx.workers()
    # nginx started before the sync, on an empty directory: the header is there at once
    serials = served_serials(base)
    # the pages carry upstream's serials, and the header equals them for JSON and HTML alike
    long_path = f"/simple/{canonicalize(LONG_NAME)}/"
    assert serials == {"/simple/": tree.serial, "/simple/alpha/": tree.project_serial("alpha"),
                       "/simple/beta/": tree.project_serial("beta"),
                       "/simple/gamma-pkg/": tree.project_serial("gamma-pkg"),
                       long_path: tree.project_serial(LONG_NAME)}
    assert len({serial for path, serial in serials.items() if path != "/simple/"}) == 4  # one per project
    assert_headers_match(base, serials)
    # only index pages carry it: not files, not unknown projects, not listings
    page = json.loads(get(base + "/simple/beta/", PIP_ACCEPT)[2])
    status, headers, _ = get(urllib.request.urljoin(base + "/simple/beta/", page["files"][0]["url"]))
    assert status == 200 and "x-pypi-last-serial" not in headers
    status, headers, _ = get(base + "/simple/nope/", PIP_ACCEPT)
    assert status == 404 and "x-pypi-last-serial" not in headers
    # upstream's spelling of the long name redirects to the engine's page
    status, headers, _ = get(base + f"/simple/{LONG_NAME}/?format=json", PIP_ACCEPT)
    assert status == 301 and headers["location"] == long_path + "?format=json"

    # a new release upstream: the next sync rewrites the pages, and the header follows them
    tree.add_wheel("beta", "2.1")
    tree.write()
    summary = sync(mirror.config)
    assert summary["changed"] is True
    after = served_serials(base)
    assert after["/simple/beta/"] == tree.project_serial("beta") > serials["/simple/beta/"]
    assert after["/simple/"] == tree.serial and after["/simple/alpha/"] == serials["/simple/alpha/"]
    assert_headers_match(base, after)
    # all of that from the workers nginx started with: nothing was reloaded
    assert mirror.nginx.workers() == workers


def test_a_mirror_of_the_served_mirror(synced_mirror: SyncedMirror, tmp_path: Path) -> None:
    """A downstream mirror syncs from the nginx-served mirror with mirror-sync itself: same projects,
    files and serials; a change upstream reaches it after two syncs; an unchanged run changes nothing."""
    mirror = synced_mirror
    downstream = tmp_path / "downstream"
    down_config = write_config(tmp_path / "downstream.yml", mirror.nginx.base_url + "/simple/", downstream)

    def same_as_primary() -> None:
        primary_root = json.loads((mirror.directory / "web" / "simple" / "index.v1_json").read_text())
        down_root = json.loads((downstream / "web" / "simple" / "index.v1_json").read_text())
        assert down_root["projects"] == primary_root["projects"]
        assert down_root["meta"]["_last-serial"] == primary_root["meta"]["_last-serial"]
        for entry in primary_root["projects"]:
            name = canonicalize(entry["name"])
            primary_page = json.loads((mirror.directory / "web" / "simple" / name / "index.v1_json").read_text())
            down_page = json.loads((downstream / "web" / "simple" / name / "index.v1_json").read_text())
            assert [(f["filename"], f["hashes"]) for f in down_page["files"]] == \
                [(f["filename"], f["hashes"]) for f in primary_page["files"]]

    summary = sync(down_config)
    assert summary["changed"] is True and summary["files"]["failed"] == 0
    same_as_primary()
    assert sync(down_config)["changed"] is False

    entry = mirror.tree.add_wheel("gamma-pkg", "0.2")
    mirror.tree.write()
    sync(mirror.config)       # the primary first (its header follows at once: no reload)
    sync(down_config)         # then the downstream
    same_as_primary()
    page = json.loads((downstream / "web" / "simple" / "gamma-pkg" / "index.v1_json").read_text())
    assert entry.filename in {f["filename"] for f in page["files"]}


# -- a mirror of the whole index: 700,000 projects, real-length names ---------------------------------------

FULL_INDEX = 700_000
_WORDS = ("async aws azure backend cache celery click cloud config core crypto data db django docker fast flask "
          "google grpc http jupyter kafka lib mgmt ml odoo opentelemetry exporter otlp proto common pandas plugin "
          "py pytest redis rest sdk sphinxcontrib sql stream test text tool types utils web xml yaml").split()


def index_names(count: int, seed: int = 7) -> list[str]:
    """`count` distinct canonical names with the lengths of a real index: mostly 5-30 characters (median
    about 13), a tail to 99, and one in 1,000 of 100-200 characters (the engine's limit)."""
    rng = random.Random(seed)
    names = []
    for i in range(count):
        suffix = format(i, "x")
        length = rng.randint(100, 200) if i % 1000 == 999 else min(99, max(3, int(rng.lognormvariate(2.55, 0.5))))
        stem = ""
        while len(stem) < length:
            stem += rng.choice(_WORDS) + "-"
        names.append(stem[:max(1, length - len(suffix) - 1)].strip("-") + "-" + suffix)
    return names


@dataclass
class FullIndex:
    base: str
    root_serial: int
    pages: dict[str, int]  # /simple/<name>/ -> serial, for the projects whose pages exist here
    vhost: Path


@pytest.fixture(scope="module")
def full_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullIndex]:
    """The engine's root pages for 700,000 projects (tens of megabytes), project pages for the longest
    names and a sample of the others, served by nginx: the configuration is the same as for one project."""
    tmp_path = tmp_path_factory.mktemp("full-index")
    web = tmp_path / "web"
    simple = web / "simple"
    simple.mkdir(parents=True)
    names = index_names(FULL_INDEX)
    assert len(set(names)) == FULL_INDEX and max(map(len, names)) <= 200
    rng = random.Random(1)
    entries = sorted((name, name, rng.randrange(1, 30_000_000)) for name in names)
    root_serial = 30_000_000
    (simple / "index.v1_json").write_bytes(root_json(entries, root_serial))
    (simple / "index.html").write_bytes(root_html(entries))
    longest = sorted(entries, key=lambda e: len(e[0]))[-20:]
    pages = {}
    for name, _display, serial in longest + entries[::5000] + [(LONG_NAME.lower(), LONG_NAME, 29_999_999)]:
        canonical = canonicalize(name)
        (simple / canonical).mkdir(exist_ok=True)
        (simple / canonical / "index.v1_json").write_bytes(project_json(name, serial, [], []))
        page = project_html(name, [])
        (simple / canonical / "index.html").write_bytes(page)
        (simple / canonical / "index.v1_html").write_bytes(page)
        pages[f"/simple/{canonical}/"] = serial
    port = free_port()
    vhost = render_vhost(tmp_path, web, port)
    nginx = Nginx(tmp_path, vhost, port)
    try:
        nginx.start()
        yield FullIndex(base=nginx.base_url, root_serial=root_serial, pages=pages, vhost=vhost)
    finally:
        nginx.stop()


def test_full_index_vhost_passes_nginx_t(full_index: FullIndex, tmp_path: Path) -> None:
    proc = subprocess.run([str(render_checker(tmp_path)), str(full_index.vhost)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_full_index_headers(full_index: FullIndex) -> None:
    """The root of 700,000 projects and pages with names of up to 200 characters: the header is each page's
    serial, for JSON and HTML, and upstream's spellings of those names redirect to them."""
    assert max(len(path) for path in full_index.pages) == len("/simple//") + 200
    wrong = []
    for path, serial in [("/simple/", full_index.root_serial), *full_index.pages.items()]:
        for accept in (PIP_ACCEPT, "text/html", HTML_TYPE):
            status, headers, body = get(full_index.base + path, accept)
            if status != 200 or headers.get("x-pypi-last-serial") != str(serial):
                wrong.append((path, accept, status, headers.get("x-pypi-last-serial"), serial))
            elif accept == PIP_ACCEPT and path != "/simple/":
                assert json.loads(body)["meta"]["_last-serial"] == serial
    assert not wrong, wrong[:10]
    status, headers, body = get(full_index.base + "/simple/", PIP_ACCEPT)
    assert len(json.loads(body)["projects"]) == FULL_INDEX
    for path in list(full_index.pages)[:25]:
        upper = path.upper().replace("/SIMPLE/", "/simple/").replace("-", "_")
        status, headers, _ = get(full_index.base + upper + "?format=json", PIP_ACCEPT)
        assert status == 301 and headers["location"] == path + "?format=json", (upper, status, headers)


def test_only_what_the_engine_publishes_is_served(served: Served) -> None:
    """Scratch space, dot-files and anything else under the web root are not served: while a
    sync runs, half-downloaded files and files about to fail their hash check stay unreachable."""
    web = served.web
    hidden = {
        ".staging/demo.index.html.1": b"staged page",
        "packages/.incoming/demo-1.0-py3-none-any.whl.7": b"half a wheel",
        "simple/.hidden/index.html": b"not a project",
        "simple/demo/.index.html.swp": b"editor leftovers",
        ".git/config": b"[core]",
        "state.sqlite": b"SQLite format 3",
        "notes.txt": b"not published",
    }
    for rel, data in hidden.items():
        (web / rel).parent.mkdir(parents=True, exist_ok=True)
        (web / rel).write_bytes(data)
    try:
        for rel in hidden:
            status, _, body = get(served.base + "/" + rel)
            assert status == 404, (rel, status, body[:80])
        status, _, listing = get(served.base + "/packages/")
        assert b".incoming" not in listing
        (web / "index.html").write_text("<!DOCTYPE html><title>front page</title>")
        for path in ("/", "/index.html", "/simple/", "/simple/demo/", "/stats/summary.json"):
            status, _, _ = get(served.base + path)
            assert status == 200, path
    finally:
        for rel in hidden:
            (web / rel).unlink()
        (web / "index.html").unlink(missing_ok=True)
