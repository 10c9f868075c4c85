"""The fake upstream is real: installable dists, spec-shaped pages, a negotiating HTTP server."""
from __future__ import annotations

import base64
import csv
import hashlib
import http.client
import io
import json
import socket
import tarfile
import threading
import zipfile
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from packaging.utils import parse_wheel_filename

from tests.conftest import Venv
from tests.support.dists import build_sdist, build_wheel
from tests.support.index_tree import ORIGIN_PLACEHOLDER, IndexTree
from tests.support.upstream_server import (
    HTML_TYPE,
    JSON_TYPE,
    PIP_ACCEPT,
    V1_HTML_TYPE,
    UpstreamServer,
    negotiate,
)


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, Optional[str]], str]] = []
        self.meta: dict[str, Optional[str]] = {}
        self._attrs: Optional[dict[str, Optional[str]]] = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        if tag == "a":
            self._attrs, self._text = dict(attrs), ""
        elif tag == "meta":
            a = dict(attrs)
            self.meta[str(a.get("name"))] = a.get("content")

    def handle_data(self, data: str) -> None:
        if self._attrs is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._attrs is not None:
            self.anchors.append((self._attrs, self._text))
            self._attrs = None


def anchors(body: bytes) -> _Anchors:
    parser = _Anchors()
    parser.feed(body.decode("utf-8"))
    return parser


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------- dists
def test_wheel_is_a_valid_zip_whose_record_matches() -> None:
    reqs = ['b>=1.0', 'd; extra == "x"', 'old; python_version < "3.8"']
    filename, data, metadata = build_wheel("My.Pkg", "1.0", requires_dist=reqs,
                                           requires_python=">=3.8", extras=("y",))
    assert filename == "my_pkg-1.0-py3-none-any.whl"
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert zf.testzip() is None
    names = zf.namelist()
    assert "my_pkg/__init__.py" in names
    assert b'__version__ = "1.0"' in zf.read("my_pkg/__init__.py")
    record = list(csv.reader(io.StringIO(zf.read("my_pkg-1.0.dist-info/RECORD").decode())))
    assert sorted(row[0] for row in record) == sorted(names)
    for path, digest, size in record:
        if path.endswith("RECORD"):
            assert digest == size == ""
            continue
        content = zf.read(path)
        expected = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        assert digest == f"sha256={expected}"
        assert int(size) == len(content)
    assert zf.read("my_pkg-1.0.dist-info/METADATA") == metadata
    msg = BytesParser().parsebytes(metadata)
    assert msg["Metadata-Version"] in ("2.1", "2.2", "2.3")
    assert (msg["Name"], msg["Version"], msg["Requires-Python"]) == ("My.Pkg", "1.0", ">=3.8")
    assert msg.get_all("Requires-Dist") == reqs
    assert msg.get_all("Provides-Extra") == ["y", "x"]
    wheel = BytesParser().parsebytes(zf.read("my_pkg-1.0.dist-info/WHEEL"))
    assert wheel.get_all("Tag") == ["py3-none-any"]
    assert wheel["Root-Is-Purelib"] == "true"


@pytest.mark.parametrize(
    ("name", "version", "tag", "expected"),
    [
        ("Foo.Bar-Baz", "1.0.0-alpha1", "py3-none-any", "foo_bar_baz-1.0.0a1-py3-none-any.whl"),
        ("zope.interface", "5.0.post1", "py2.py3-none-any", "zope_interface-5.0.post1-py2.py3-none-any.whl"),
        ("native", "2", "cp311-cp311-manylinux_2_17_x86_64", "native-2-cp311-cp311-manylinux_2_17_x86_64.whl"),
    ],
)
def test_wheel_filenames_are_normalized(name: str, version: str, tag: str, expected: str) -> None:
    filename, data, _ = build_wheel(name, version, tag=tag)
    assert filename == expected
    parsed_name, parsed_version, _, tags = parse_wheel_filename(filename)
    assert {str(t) for t in tags} == {
        line.split(": ")[1]
        for line in zipfile.ZipFile(io.BytesIO(data)).read(
            f"{filename.split('-')[0]}-{filename.split('-')[1]}.dist-info/WHEEL"
        ).decode().splitlines()
        if line.startswith("Tag: ")
    }


def test_builds_are_deterministic() -> None:
    assert build_wheel("a", "1.0", requires_dist=["b"]) == build_wheel("a", "1.0", requires_dist=["b"])
    assert build_sdist("a", "1.0", requires_dist=["b"]) == build_sdist("a", "1.0", requires_dist=["b"])
    assert build_wheel("a", "1.0")[1] != build_wheel("a", "1.1")[1]


def test_sdist_has_reliable_pkg_info_and_pyproject() -> None:
    filename, data, pkg_info = build_sdist("My.Pkg", "2.0", requires_dist=['b', 'd; extra == "x"'],
                                           requires_python=">=3.9")
    assert filename == "my_pkg-2.0.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        names = tf.getnames()
        assert names == ["my_pkg-2.0/PKG-INFO", "my_pkg-2.0/pyproject.toml", "my_pkg-2.0/my_pkg/__init__.py"]
        extracted = tf.extractfile("my_pkg-2.0/PKG-INFO")
        assert extracted is not None and extracted.read() == pkg_info
        pyproject_file = tf.extractfile("my_pkg-2.0/pyproject.toml")
        assert pyproject_file is not None
        pyproject = pyproject_file.read().decode()
    msg = BytesParser().parsebytes(pkg_info)
    assert msg["Metadata-Version"] == "2.2"
    assert msg.get_all("Requires-Dist") == ["b", 'd; extra == "x"']
    assert msg.get_all("Dynamic") is None
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads(pyproject)["project"]
    assert project["name"] == "My.Pkg" and project["dependencies"] == ["b"]
    assert project["optional-dependencies"] == {"x": ["d"]}
    assert project["requires-python"] == ">=3.9"


# -------------------------------------------------------------------------- tree
def _populated(tree: IndexTree) -> None:
    tree.add_wheel("A.Lib", "1.0", requires_dist=["b"], requires_python=">=3.8,<4")
    tree.add_sdist("A.Lib", "1.0")
    tree.add_wheel("A.Lib", "2.0b1")
    tree.add_wheel("b", "1.0")
    tree.yank("a-lib", "a_lib-2.0b1-py3-none-any.whl", 'broken "quote" <b>')
    tree.write()


def test_tree_pages_follow_the_specs(index_tree: IndexTree) -> None:
    _populated(index_tree)
    root = index_tree.root
    serial = index_tree.serial
    a_serial = index_tree.project_serial("a-lib")

    root_json = json.loads((root / "simple/index.v1_json").read_bytes())
    assert root_json["meta"] == {"api-version": "1.1", "_last-serial": serial}
    assert root_json["projects"] == [{"name": "A.Lib", "_last-serial": a_serial},
                                     {"name": "b", "_last-serial": index_tree.project_serial("b")}]
    root_html = anchors((root / "simple/index.html").read_bytes())
    assert [(a["href"], text) for a, text in root_html.anchors] == [("a-lib/", "A.Lib"), ("b/", "b")]

    page = json.loads((root / "simple/a-lib/index.v1_json").read_bytes())
    assert page["meta"] == {"api-version": "1.1", "_last-serial": a_serial}
    assert page["name"] == "a-lib"
    assert page["versions"] == ["1.0", "2.0b1"]
    by_name = {f["filename"]: f for f in page["files"]}
    assert set(by_name) == {"a_lib-1.0-py3-none-any.whl", "a_lib-1.0.tar.gz", "a_lib-2.0b1-py3-none-any.whl"}
    page_url = "http://upstream.test/simple/a-lib/"
    for f in page["files"]:
        assert set(f) == {"filename", "url", "hashes", "requires-python", "yanked", "core-metadata",
                          "data-dist-info-metadata", "size", "upload-time"}
        path = urlsplit(urljoin(page_url, f["url"])).path
        assert path.startswith("/packages/") and path.endswith("/" + f["filename"])
        data = (root / path.lstrip("/")).read_bytes()
        assert sha256(data) == f["hashes"]["sha256"] and len(data) == f["size"]
        assert f["upload-time"].endswith("Z") and "T" in f["upload-time"]
        if f["core-metadata"]:
            assert f["core-metadata"] == f["data-dist-info-metadata"]
            assert sha256((root / (path.lstrip("/") + ".metadata")).read_bytes()) == f["core-metadata"]["sha256"]
    wheel = by_name["a_lib-1.0-py3-none-any.whl"]
    assert wheel["requires-python"] == ">=3.8,<4" and wheel["yanked"] is False
    assert by_name["a_lib-1.0.tar.gz"]["core-metadata"] is False
    assert by_name["a_lib-2.0b1-py3-none-any.whl"]["yanked"] == 'broken "quote" <b>'

    html = anchors((root / "simple/a-lib/index.html").read_bytes())
    assert html.meta["pypi:repository-version"] == "1.1"
    links = {text: a for a, text in html.anchors}
    assert set(links) == set(by_name)
    for name, attrs in links.items():
        href = str(attrs["href"])
        assert href.split("#")[0] == by_name[name]["url"]
        assert href.split("#")[1] == "sha256=" + by_name[name]["hashes"]["sha256"]
    assert links["a_lib-1.0-py3-none-any.whl"]["data-requires-python"] == ">=3.8,<4"
    assert links["a_lib-2.0b1-py3-none-any.whl"]["data-yanked"] == 'broken "quote" <b>'
    assert "data-yanked" not in links["a_lib-1.0.tar.gz"]
    meta = "sha256=" + wheel["core-metadata"]["sha256"]
    assert links["a_lib-1.0-py3-none-any.whl"]["data-core-metadata"] == meta
    assert links["a_lib-1.0-py3-none-any.whl"]["data-dist-info-metadata"] == meta
    assert "data-core-metadata" not in links["a_lib-1.0.tar.gz"]
    raw_html = (root / "simple/a-lib/index.html").read_text()
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in raw_html
    assert raw_html.rstrip().endswith(f"<!--SERIAL {a_serial}-->")

    legacy = json.loads((root / "pypi/a-lib/json").read_bytes())
    assert legacy["last_serial"] == a_serial
    assert legacy["info"]["name"] == "A.Lib" and legacy["info"]["version"] == "1.0"
    assert set(legacy["releases"]) == {"1.0", "2.0b1"}
    assert {f["filename"] for f in legacy["urls"]} == {"a_lib-1.0-py3-none-any.whl", "a_lib-1.0.tar.gz"}
    for release_files in legacy["releases"].values():
        for f in release_files:
            simple = by_name[f["filename"]]
            assert f["url"] == ORIGIN_PLACEHOLDER + urlsplit(urljoin(page_url, simple["url"])).path
            assert f["digests"]["sha256"] == simple["hashes"]["sha256"] and f["size"] == simple["size"]
            assert f["upload_time_iso_8601"] == simple["upload-time"]
            assert f["packagetype"] in ("bdist_wheel", "sdist")
            assert f["requires_python"] == simple["requires-python"]
    beta = legacy["releases"]["2.0b1"][0]
    assert beta["yanked"] is True and beta["yanked_reason"] == 'broken "quote" <b>'


def test_every_mutation_bumps_the_serial(index_tree: IndexTree) -> None:
    seen = [index_tree.serial]
    index_tree.add_project("p")
    seen.append(index_tree.serial)
    entry = index_tree.add_wheel("p", "1.0")
    seen.append(index_tree.serial)
    index_tree.add_wheel("q", "1.0")
    seen.append(index_tree.serial)
    index_tree.yank("p", entry.filename, "why")
    seen.append(index_tree.serial)
    index_tree.delete_file("p", entry.filename)
    seen.append(index_tree.serial)
    assert seen == sorted(set(seen)) and len(seen) == 6
    assert index_tree.project_serial("p") == index_tree.serial
    assert index_tree.project_serial("q") < index_tree.serial
    index_tree.delete_project("q")
    assert "q" not in index_tree.projects()
    index_tree.write()
    sidecar = json.loads((index_tree.root / "serials.json").read_bytes())
    assert sidecar == {"serial": index_tree.serial, "projects": {"p": index_tree.project_serial("p")}}
    nginx_map = (index_tree.root / "serials.map").read_text().splitlines()
    assert f"/simple/ {index_tree.serial};" in nginx_map
    assert f"/simple/p/ {index_tree.project_serial('p')};" in nginx_map
    assert f"/pypi/p/json {index_tree.project_serial('p')};" in nginx_map


@pytest.mark.parametrize("io_workers", [1, 4])
def test_write_rewrites_changed_pages_only(tmp_path: Path, io_workers: int) -> None:
    index_tree = IndexTree(tmp_path / "upstream", io_workers=io_workers)
    for i in range(40):
        index_tree.add_wheel(f"p{i}", "1.0")
    assert index_tree.write() == 40 * 3 + 2
    pages = sorted(index_tree.root.glob("simple/p*/index.*")) + sorted(index_tree.root.glob("pypi/*/json"))
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in pages}
    old_serial = index_tree.project_serial("p7")
    index_tree.add_wheel("p7", "2.0")
    assert index_tree.write() == 3 + 2
    changed = {p for p in pages if (p.stat().st_ino, p.stat().st_mtime_ns) != before[p]}
    assert changed == {index_tree.page_path("p7", fmt) for fmt in ("json", "html", "legacy")}
    previous = json.loads((index_tree.root / ".previous/simple/p7/index.v1_json").read_bytes())
    assert previous["meta"]["_last-serial"] == old_serial
    assert [f["filename"] for f in previous["files"]] == ["p7-1.0-py3-none-any.whl"]
    assert index_tree.write() == 0


def test_deletions_remove_pages_and_files(index_tree: IndexTree) -> None:
    keep = index_tree.add_wheel("p", "1.0")
    gone = index_tree.add_wheel("p", "2.0")
    other = index_tree.add_sdist("q", "1.0")
    index_tree.write()
    index_tree.delete_file("p", gone.filename)
    index_tree.delete_project("q")
    index_tree.write()
    root = index_tree.root
    assert (root / keep.path).is_file() and (root / (keep.path + ".metadata")).is_file()
    assert not (root / gone.path).exists() and not (root / (gone.path + ".metadata")).exists()
    assert not (root / other.path).exists()
    assert not (root / "simple/q").exists() and not (root / "pypi/q").exists()
    page = json.loads((root / "simple/p/index.v1_json").read_bytes())
    assert [f["filename"] for f in page["files"]] == [keep.filename]
    assert [p["name"] for p in json.loads((root / "simple/index.v1_json").read_bytes())["projects"]] == ["p"]


def test_hostile_overrides(index_tree: IndexTree) -> None:
    entry = index_tree.add_wheel("evil", "1.0")
    index_tree.patch_file("evil", entry.filename, filename="../../etc/x.whl", sha256="0" * 64, size=1)
    index_tree.add_wheel("broken", "1.0")
    index_tree.set_raw_page("broken", "json", b'{"meta": {"api-version": "1.1"}, "files": [')
    index_tree.set_raw_page("broken", "legacy", b"")
    index_tree.write()
    page = json.loads(index_tree.page_path("evil").read_bytes())
    assert page["files"][0]["filename"] == "../../etc/x.whl"
    assert page["files"][0]["hashes"] == {"sha256": "0" * 64} and page["files"][0]["size"] == 1
    html = anchors(index_tree.page_path("evil", "html").read_bytes())
    assert html.anchors[0][1] == "../../etc/x.whl"
    assert json.loads(index_tree.page_path("evil", "legacy").read_bytes())["releases"]["1.0"][0]["filename"] == "../../etc/x.whl"
    assert not (index_tree.root.parent / "etc").exists()
    assert index_tree.page_path("broken").read_bytes().endswith(b'"files": [')
    assert index_tree.page_path("broken", "legacy").read_bytes() == b""
    assert anchors(index_tree.page_path("broken", "html").read_bytes()).anchors  # still generated
    with pytest.raises(ValueError):
        index_tree.add_file("evil", "../x.whl", b"x", version="1")
    index_tree.set_raw_page("broken", "json", None)
    index_tree.write()
    assert json.loads(index_tree.page_path("broken").read_bytes())["name"] == "broken"


# ------------------------------------------------------------------------ server
@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PIP_ACCEPT, JSON_TYPE),
        (JSON_TYPE, JSON_TYPE),
        (f"{JSON_TYPE};q=0.5, {HTML_TYPE}", HTML_TYPE),
        (f"{HTML_TYPE};q=0.5, {JSON_TYPE};q=0.6", JSON_TYPE),
        (f"{JSON_TYPE};q=0.5, */*;q=0.5", HTML_TYPE),  # a tie: JSON only when preferred
        (V1_HTML_TYPE, V1_HTML_TYPE),
        (f"{V1_HTML_TYPE}, {HTML_TYPE};q=0.9", V1_HTML_TYPE),
        ("text/html", HTML_TYPE),
        ("*/*", HTML_TYPE),
        ("application/*", V1_HTML_TYPE),
        (None, HTML_TYPE),
        ("", HTML_TYPE),
        ("application/json", None),
        (f"{JSON_TYPE};q=0, text/html;q=0", None),
        (f"{JSON_TYPE};q=garbage, text/html;q=0.1", HTML_TYPE),
    ],
)
def test_negotiation(accept: Optional[str], expected: Optional[str]) -> None:
    assert negotiate(accept) == expected
    assert negotiate(accept, html_only=True) == HTML_TYPE


def test_server_negotiates_pages(upstream: UpstreamServer, index_tree: IndexTree) -> None:
    _populated(index_tree)
    r = requests.get(upstream.url + "a-lib/", headers={"Accept": PIP_ACCEPT}, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == JSON_TYPE
    assert r.json()["name"] == "a-lib"
    assert r.headers["X-PyPI-Last-Serial"] == str(index_tree.project_serial("a-lib"))
    assert r.headers["Vary"] == "Accept"
    r = requests.get(upstream.url + "a-lib/", headers={"Accept": "text/html"}, timeout=10)
    assert r.headers["Content-Type"].startswith("text/html") and "<a " in r.text
    r = requests.get(upstream.url + "a-lib/", headers={"Accept": V1_HTML_TYPE}, timeout=10)
    assert r.headers["Content-Type"] == V1_HTML_TYPE
    r = requests.get(upstream.url + "a-lib/", headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 406
    r = requests.get(upstream.url, headers={"Accept": JSON_TYPE}, timeout=10)
    assert r.json()["meta"]["_last-serial"] == index_tree.serial
    assert r.headers["X-PyPI-Last-Serial"] == str(index_tree.serial)
    # redirects: no trailing slash, non-canonical names
    r = requests.get(upstream.origin + "/simple", headers={"Accept": JSON_TYPE}, timeout=10)
    assert r.history[0].status_code == 301 and r.url == upstream.url and r.json()["projects"]
    r = requests.get(upstream.url + "A_LIB", headers={"Accept": JSON_TYPE}, timeout=10)
    assert r.history[0].status_code == 301 and r.url == upstream.url + "a-lib/"
    # the legacy API, with the server's own origin in the file URLs
    r = requests.get(upstream.origin + "/pypi/a-lib/json", timeout=10)
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["X-PyPI-Last-Serial"] == str(index_tree.project_serial("a-lib"))
    url = r.json()["urls"][0]["url"]
    assert url.startswith(upstream.origin + "/packages/")
    blob = requests.get(url, timeout=10)
    assert blob.headers["Content-Type"] == "application/octet-stream"
    assert sha256(blob.content) == r.json()["urls"][0]["digests"]["sha256"]
    assert requests.get(url + ".metadata", timeout=10).content.startswith(b"Metadata-Version: ")


def test_server_404_head_keepalive_and_hidden(upstream: UpstreamServer, index_tree: IndexTree) -> None:
    _populated(index_tree)
    for path in ("/simple/nope/", "/pypi/nope/json", "/packages/aa/bb/cc/x.whl", "/serials.json",
                 "/serials.map", "/.previous/serials.json", "/simple/%2E%2E/serials.json", "/packages/"):
        assert requests.get(upstream.origin + path, timeout=10).status_code == 404, path
    assert requests.post(upstream.url, timeout=10).status_code == 405
    conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=10)
    try:
        conn.request("HEAD", "/simple/a-lib/", headers={"Accept": PIP_ACCEPT})
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b""
        length = int(head.getheader("Content-Length") or 0)
        sock = conn.sock
        conn.request("GET", "/simple/a-lib/", headers={"Accept": PIP_ACCEPT})
        body = conn.getresponse().read()
        assert len(body) == length and conn.sock is sock  # same connection: keep-alive
        conn.request("GET", "/simple/nope/")
        missing = conn.getresponse()
        assert missing.status == 404 and missing.read() and conn.sock is sock
    finally:
        conn.close()
    log = upstream.requests("/simple/a-lib/")
    assert [(r.method, r.status, r.accept) for r in log] == [("HEAD", 200, PIP_ACCEPT), ("GET", 200, PIP_ACCEPT)]


def test_html_only_server_never_serves_json(index_tree: IndexTree) -> None:
    _populated(index_tree)
    with UpstreamServer(index_tree.root, html_only=True) as server:
        for url in (server.url, server.url + "a-lib/"):
            r = requests.get(url, headers={"Accept": JSON_TYPE}, timeout=10)
            assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
            assert anchors(r.content).anchors
    assert server.requests()[0].content_type is not None


def test_fault_status_then_recovery(upstream: UpstreamServer, index_tree: IndexTree) -> None:
    _populated(index_tree)
    upstream.add_fault("/simple/a-lib/", status=503, times=2, retry_after=1)
    upstream.add_fault("/simple/b/", status=429, times=1)
    statuses = [requests.get(upstream.url + "a-lib/", timeout=10).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    first = requests.get(upstream.url + "b/", timeout=10)
    assert first.status_code == 429
    assert requests.get(upstream.url + "b/", timeout=10).status_code == 200
    assert requests.get(upstream.url, timeout=10).status_code == 200  # other paths untouched
    log = upstream.requests("/simple/a-lib/")
    assert [r.fault for r in log] == ["status:503", "status:503", None]


def test_fault_delay_and_truncate(upstream: UpstreamServer, index_tree: IndexTree) -> None:
    _populated(index_tree)
    upstream.add_fault("/simple/b/", delay=0.2)
    assert requests.get(upstream.url + "b/", timeout=10).status_code == 200
    assert upstream.requests("/simple/b/")[0].fault == "delay"
    wheel = index_tree.files("b")[0]
    upstream.add_fault("/packages/", truncate=True)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        requests.get(upstream.origin + wheel.url_path, timeout=10).content  # noqa: B018
    whole = requests.get(upstream.origin + wheel.url_path, timeout=10)
    assert sha256(whole.content) == wheel.sha256
    assert [r.fault for r in upstream.requests("/packages/")] == ["truncate", None]


def test_fault_stale_page(upstream: UpstreamServer, index_tree: IndexTree) -> None:
    _populated(index_tree)
    old = index_tree.project_serial("b")
    index_tree.add_wheel("b", "2.0")
    index_tree.write()
    new = index_tree.project_serial("b")
    upstream.add_fault("/simple/b/", stale=True, times=1)
    upstream.add_fault("/pypi/b/", stale=True, times=1)
    stale = requests.get(upstream.url + "b/", headers={"Accept": PIP_ACCEPT}, timeout=10)
    assert stale.headers["X-PyPI-Last-Serial"] == str(old) and stale.json()["meta"]["_last-serial"] == old
    assert stale.json()["versions"] == ["1.0"]
    fresh = requests.get(upstream.url + "b/", headers={"Accept": PIP_ACCEPT}, timeout=10)
    assert fresh.headers["X-PyPI-Last-Serial"] == str(new) and fresh.json()["versions"] == ["1.0", "2.0"]
    legacy = requests.get(upstream.origin + "/pypi/b/json", timeout=10)
    assert legacy.json()["last_serial"] == old and legacy.headers["X-PyPI-Last-Serial"] == str(old)
    assert requests.get(upstream.origin + "/pypi/b/json", timeout=10).json()["last_serial"] == new
    assert [r.fault for r in upstream.requests("/simple/b/")] == ["stale", None]


def test_stop_is_bounded_with_idle_and_delayed_connections(index_tree: IndexTree) -> None:
    _populated(index_tree)
    server = UpstreamServer(index_tree.root).start()
    port = server.port
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    errors: list[BaseException] = []

    def slow_request() -> None:
        try:
            requests.get(server.url + "b/", timeout=60)
        except requests.RequestException as exc:
            errors.append(exc)

    try:
        idle.request("GET", "/simple/")
        assert idle.getresponse().read()  # the connection stays open (keep-alive)
        server.add_fault("/simple/b/", delay=30.0)
        client = threading.Thread(target=slow_request)
        client.start()
        for _ in range(200):  # bounded wait until the slow request reached the server
            if any(t.is_alive() for t in server._threads) and len(server._connections) >= 2:
                break
            threading.Event().wait(0.05)
        server.stop()
        assert not any(t.is_alive() for t in server._threads)
        client.join(30)
        assert not client.is_alive()
        with pytest.raises(OSError):  # nothing listens any more
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        idle.close()
        server.stop()


# --------------------------------------------------------------------------- pip
@pytest.fixture(scope="module")
def pip_venv(make_venv: Callable[..., Venv]) -> Venv:
    return make_venv("pip-support")


def test_pip_installs_a_dependency_chain(pip_venv: Venv, upstream: UpstreamServer, index_tree: IndexTree) -> None:
    tree = index_tree
    tree.add_wheel("a", "1.0", requires_dist=["b>=1", 'd; extra == "x"', 'never; python_version < "3.0"'])
    tree.add_wheel("a", "1.5", requires_dist=["b>=1"], yanked="do not use")
    tree.add_wheel("a", "2.0", requires_python="<3")
    tree.add_sdist("a", "1.0")
    tree.add_wheel("b", "1.0", requires_dist=["c"])
    tree.add_wheel("b", "1.1", requires_dist=["c>=1.0"], requires_python=">=3.8")
    tree.add_wheel("c", "1.0")
    tree.add_sdist("c", "1.0")
    tree.add_wheel("d", "0.3")
    tree.write()
    pip_venv.pip("install", "a[x]", index_url=upstream.url)
    out = pip_venv.run("-c", "import a, b, c, d; print(a.__version__, b.__version__, c.__version__, d.__version__)")
    assert out.stdout.split() == ["1.0", "1.1", "1.0", "0.3"]
    pages = [r for r in upstream.requests("/simple/") if r.method == "GET"]
    assert {r.path for r in pages} == {"/simple/a/", "/simple/b/", "/simple/c/", "/simple/d/"}
    assert all(r.accept and JSON_TYPE in r.accept and r.content_type == JSON_TYPE for r in pages)
    assert negotiate(pages[0].accept) == JSON_TYPE
    assert any(r.path.endswith(".whl.metadata") and r.status == 200 for r in upstream.requests("/packages/"))


def test_pip_downloads_from_an_html_only_index(pip_venv: Venv, index_tree: IndexTree, tmp_path: Path) -> None:
    index_tree.add_wheel("b", "1.0", requires_dist=["c"])
    index_tree.add_wheel("c", "1.0")
    index_tree.add_wheel("c", "2.0", requires_python="<3")
    index_tree.write()
    with UpstreamServer(index_tree.root, html_only=True) as server:
        pip_venv.pip("download", "--dest", str(tmp_path / "dl"), "b", index_url=server.url)
        pages = [r for r in server.requests("/simple/") if r.method == "GET"]
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["b-1.0-py3-none-any.whl", "c-1.0-py3-none-any.whl"]
    assert pages and all(r.content_type and r.content_type.startswith("text/html") for r in pages)
