"""The page parsers (mirror_sync/pages.py) over pages of the real index and of every server flavour,
the strictness they keep, the streamed root, and properties checked with hypothesis."""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirror_sync import pages
from mirror_sync.errors import HostileDataError, UpstreamError
from mirror_sync.http import HttpClient
from mirror_sync.models import MirroredFile, ProjectPage, RootIndex, RootProjects
from mirror_sync.names import package_path
from mirror_sync.pages import (
    parse_project_html,
    parse_project_json,
    parse_root_html,
    parse_root_json,
    parse_root_stream,
    upload_time_value,
)
from mirror_sync.render import project_html, project_json, root_html, root_json
from mirror_sync.upstream import Upstream

DATA = Path(__file__).parent / "data"
PLACEHOLDER_HOST = "files.upstream.invalid"
INDEX = "https://index.upstream.invalid/simple/"  # where the pages are said to come from (test code, not data)
FILES = "https://files.upstream.invalid/packages/"


def body(relative: str) -> bytes:
    data = (DATA / relative).read_bytes()
    return gzip.decompress(data) if relative.endswith(".gz") else data


def page(relative: str, project: str, header_serial: Optional[int] = None) -> ProjectPage:
    parse = parse_project_json if ".json" in relative else parse_project_html
    return parse(body(relative), f"{INDEX}{project}/", project, header_serial)


def by_name(p: ProjectPage) -> dict[str, Any]:
    return {f.filename: f for f in p.files}


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    out, last = [], 0
    for c in points:
        out.append(data[last:c])
        last = c
    out.append(data[last:])
    return out


# -- the test data itself ----------------------------------------------------------------------
def test_no_host_but_the_placeholder() -> None:
    """No file in tests/data names any host but the placeholder (registry hosts never enter the repo)."""
    url_host = re.compile(r"(?i)(?:[a-z][a-z0-9+.-]*:)?//([a-z0-9.-]+)")
    domain = re.compile(r"(?i)\b(?:[a-z0-9-]+\.)+(?:org|com|net|io|dev|cloud|app|info|co|us|eu|de|cn|ru|uk|hosted)\b")
    checked = 0
    for path in sorted(DATA.rglob("*")):
        if not path.is_file():
            continue
        text = (gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()).decode("utf-8", "replace")
        hosts = {h.lower() for h in url_host.findall(text)} - {PLACEHOLDER_HOST}
        assert not hosts, f"{path.relative_to(DATA)} names hosts {sorted(hosts)[:5]}"
        assert not domain.findall(text), f"{path.relative_to(DATA)} names {domain.findall(text)[:5]}"
        checked += 1
    assert checked >= 25


def test_capture_rewrites_every_host() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("capture", DATA / "capture.py")
    assert spec and spec.loader
    capture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capture)
    raw = b'<a href="https://a.example:8443/p/x.whl#sha256=1">x</a> "url": "http://b.example/x" //c.example/y'
    assert capture.neutral_hosts(raw) == (
        b'<a href="https://files.upstream.invalid/p/x.whl#sha256=1">x</a> "url": "https://files.upstream.invalid/x" '
        b"https://files.upstream.invalid/y"
    )


def test_test_data_stays_small() -> None:
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert total < 2_000_000, total


# -- pages of the real index ---------------------------------------------------------------------
def test_real_requests_json() -> None:
    p = page("real/requests.json", "requests")
    assert (p.name, p.canonical, p.serial) == ("requests", "requests", 37059094)  # "37059094" in meta
    assert len(p.files) == 244 and len(p.versions or []) == 163
    assert p.fingerprint == hashlib.sha256(body("real/requests.json")).hexdigest()
    files = by_name(p)
    whl = files["requests-2.31.0-py3-none-any.whl"]
    assert whl.url == FILES + "70/8e/0e2d847013cb52cd35b38c009bb167a1a26b2ce6cd6965bf26b47bc0bf44/requests-2.31.0-py3-none-any.whl"
    assert whl.sha256 == "58cd2187c01e70e6e26505bca751777aa9f2ee0b7f4300988b709f44e013003f"
    assert (whl.size, whl.requires_python, whl.yanked, whl.version) == (62574, ">=3.7", False, "2.31.0")
    assert whl.upload_time == "2023-05-22T15:12:42.313790Z" and whl.metadata is False
    yanked = {f.filename: f.yanked for f in p.files if f.yanked}
    assert yanked == {
        "requests-2.32.0-py3-none-any.whl": "Yanked due to conflicts with CVE-2024-35195 mitigation",
        "requests-2.32.0.tar.gz": "Yanked due to conflicts with CVE-2024-35195 mitigation",
        # upstream's reason, byte for byte (trailing space included)
        "requests-2.32.1-py3-none-any.whl": "Yanked due to conflicts with CVE-2024-35195 mitigation ",
        "requests-2.32.1.tar.gz": "Yanked due to conflicts with CVE-2024-35195 mitigation ",
    }
    old = files["requests-0.10.0.tar.gz"]
    assert old.requires_python is None and old.size == 62046  # "requires-python": null
    assert sum(1 for f in p.files if f.requires_python) == 63
    assert all(f.size and f.sha256 and f.upload_time for f in p.files)
    assert not any(f.metadata for f in p.files)  # the real index sends no core-metadata here


def test_real_idna_has_requires_python() -> None:
    p = page("real/idna.json", "idna")
    assert (p.serial, len(p.files), len(p.versions or [])) == (41170495, 75, 43)
    rp = {f.filename: f.requires_python for f in p.files if f.requires_python}
    assert len(rp) == 46
    assert rp["idna-3.10-py3-none-any.whl"] == ">=3.6"
    assert not any(f.yanked for f in p.files)


def test_real_numpy_is_large_and_keeps_both_time_forms() -> None:
    p = page("real/numpy.json.gz", "numpy")
    assert (p.serial, len(p.files), len(p.versions or [])) == (42069282, 4415, 154)
    assert sum(1 for f in p.files if f.yanked) == 72
    assert sum(1 for f in p.files if f.requires_python) == 4066
    times = [f.upload_time or "" for f in p.files]
    assert sum(1 for t in times if len(t) == 20) == 118  # "2006-12-02T02:07:43Z": no fraction, kept as is
    assert by_name(p)["numpy-1.0.1.dev3460.win32-py2.4.exe"].upload_time == "2006-12-02T02:07:43Z"
    assert by_name(p)["numpy-1.0.1.dev3460.win32-py2.4.exe"].version == "1.0.1.dev3460.win32"


@pytest.mark.parametrize("project, json_file, html_file", [
    ("requests", "real/requests.json", "real/requests.html"),
    ("idna", "real/idna.json", "real/idna.html"),
    ("numpy", "real/numpy.json.gz", "real/numpy.html.gz"),
])
def test_real_html_and_json_pages_agree(project: str, json_file: str, html_file: str) -> None:
    """The two formats of the same page give the same files (HTML has no sizes)."""
    js, ht = page(json_file, project), page(html_file, project)
    assert ht.serial is None and ht.name == project and ht.versions is None
    assert ht.fingerprint == hashlib.sha256(body(html_file)).hexdigest() != js.fingerprint
    fields = ("filename", "url", "sha256", "requires_python", "yanked", "upload_time", "metadata", "metadata_sha256", "version")
    rows = [sorted(tuple(getattr(f, k) for k in fields) for f in p.files) for p in (ht, js)]
    assert rows[0] == rows[1] and len(rows[0]) == len(js.files)
    assert all(f.size is None for f in ht.files)


def test_real_root_prefix() -> None:
    manifest = json.loads(body("real/manifest.json"))
    # asked for JSON, the real index answers with its HTML root, and without a serial header
    assert manifest["root-asked-json.html"]["content_type"] == "text/html"
    assert manifest["root-asked-json.html"]["x_pypi_last_serial"] is None
    roots = [parse_root_html(body(f"real/root-asked-{fmt}.html"), None) for fmt in ("json", "html")]
    for root in roots:
        assert (root.serial, root.json, root.unchanged, len(root.projects)) == (None, False, False, 1629)
        assert root.projects["0-0"] == ("0-._.-._.-._.-._.-._.-._.-0", None)
        assert root.projects["00smalinux"] == ("00SMALINUX", None)
        assert "apimakesens-python" in root.projects and "requests" not in root.projects
    assert dict(roots[0].projects.items()) == dict(roots[1].projects.items())
    assert list(roots[0].projects)[:3] == ["0", "0-0", "0-core-client"]


# -- one fixture per server flavour ----------------------------------------------------------------
SHA = {
    "requests-0.10.0.tar.gz": "210a82e678c45d433a4ad1f105974b3102a8ab5198872dc0a3238a8750d4c65e",
    "requests-2.30.0-py3-none-any.whl": "10e94cc4f3121ee6da529d358cdaeaff2f1c409cd377dbc72b825852f2f7e294",
    "requests-2.31.0-py3-none-any.whl": "58cd2187c01e70e6e26505bca751777aa9f2ee0b7f4300988b709f44e013003f",
    "requests-2.31.0.tar.gz": "942c5a758f98d790eaed1a29cb6eefc7ffb0d1cf7af05c3d2791656dbd6ad1e1",
    "requests-2.32.0-py3-none-any.whl": "f2c3881dddb70d056c5bd7600a4fae312b2a300e39be6a118d30b90bd27262b5",
    "requests-2.32.0.tar.gz": "fa5490319474c82ef1d2c9bc459d3652e3ae4ef4c4ebdd18a21145a47ca4b6b8",
}
REASON = "Yanked due to conflicts with CVE-2024-35195 mitigation"
META = "34e9159f2f408d1ab94a3a0ee620a7f9d5f0ffd629bcc076ba25ca2277a141a7"
SERVER = "https://index.upstream.invalid/"


def test_artifactory_page() -> None:
    p = page("flavours/artifactory-requests.html", "requests")
    f = by_name(p)
    assert list(f) == ["requests-0.10.0.tar.gz", "requests-2.30.0-py3-none-any.whl", "requests-2.31.0-py3-none-any.whl", "requests-2.31.0.tar.gz"]
    assert p.serial is None and p.status is None  # <meta name="api-version" value="2"> is not PEP 629's
    whl = f["requests-2.31.0-py3-none-any.whl"]
    assert whl.url == SERVER + "packages/packages/70/8e/0e2d847013cb52cd35b38c009bb167a1a26b2ce6cd6965bf26b47bc0bf44/requests-2.31.0-py3-none-any.whl"
    assert (whl.sha256, whl.requires_python) == (SHA[whl.filename], ">=3.7")  # "&gt;=3.7"
    sdist = f["requests-2.31.0.tar.gz"]
    assert sdist.url == SERVER + "requests/2.31.0/requests-2.31.0.tar.gz" and sdist.sha256 is None  # #md5=
    assert f["requests-0.10.0.tar.gz"].requires_python is None
    assert not any(x.yanked or x.metadata or x.size or x.upload_time for x in p.files)


def test_nexus_page() -> None:
    p = page("flavours/nexus-requests.html", "requests")
    f = by_name(p)
    assert len(f) == 4 and p.serial is None
    assert f["requests-0.10.0.tar.gz"].url == SERVER + "packages/62/35/0230421b8c4efad6624518028163329ad0c2df9e58e6b3bee013427bf8f6/requests-0.10.0.tar.gz"
    assert f["requests-2.30.0-py3-none-any.whl"].requires_python == ">=3.7"  # raw '>' inside the attribute
    assert f["requests-2.31.0-py3-none-any.whl"].url == SERVER + "packages/requests/2.31.0/requests-2.31.0-py3-none-any.whl"
    assert f["requests-2.31.0.tar.gz"].requires_python == ">=3.7, <4"  # "&gt;=3.7, &lt;4"
    assert f["requests-2.31.0.tar.gz"].sha256 is None  # #md5=
    assert [x.sha256 for x in p.files[:3]] == [SHA[x.filename] for x in p.files[:3]]


@pytest.mark.parametrize("fmt", ["json", "html"])
def test_devpi_page(fmt: str) -> None:
    p = page(f"flavours/devpi-requests.{fmt}", "requests")
    f = by_name(p)
    assert len(f) == 6 and p.serial is None and p.versions is None
    assert all(x.size is None and x.upload_time is None for x in p.files)
    whl = f["requests-2.31.0-py3-none-any.whl"]
    assert whl.url == SERVER + "+f/58c/d2187c01e70e6/requests-2.31.0-py3-none-any.whl"  # the fragment is not part of the URL
    assert whl.sha256 == SHA[whl.filename]
    assert f["requests-2.31.0.tar.gz"].sha256 is None  # md5 only
    assert f["requests-2.32.0.tar.gz"].sha256 is None  # no hash at all
    assert {x.filename: x.yanked for x in p.files if x.yanked} == {"requests-2.32.0-py3-none-any.whl": REASON, "requests-2.32.0.tar.gz": True}
    assert [x.requires_python for x in p.files] == [None, ">=3.7", ">=3.7", ">=3.7", ">=3.8", ">=3.8"]


@pytest.mark.parametrize("fmt", ["json", "html"])
def test_bandersnatch_page(fmt: str) -> None:
    p = page(f"flavours/bandersnatch-requests.{fmt}", "requests")
    f = by_name(p)
    assert len(f) == 6
    assert p.serial == 18114523  # JSON: "18114523" in meta; HTML: the <!--SERIAL 18114523--> trailer
    assert f["requests-0.10.0.tar.gz"].requires_python is None  # requires-python "" (data-requires-python="")
    assert f["requests-2.32.0.tar.gz"].requires_python is None  # requires-python null
    assert f["requests-0.10.0.tar.gz"].url == SERVER + "packages/62/35/0230421b8c4efad6624518028163329ad0c2df9e58e6b3bee013427bf8f6/requests-0.10.0.tar.gz"
    assert {x.filename for x in p.files if x.yanked is True} == {"requests-2.32.0-py3-none-any.whl", "requests-2.32.0.tar.gz"}
    assert all(x.sha256 == SHA[x.filename] for x in p.files)
    if fmt == "json":
        assert p.versions == ["0.10.0", "2.30.0", "2.31.0", "2.32.0"]
        assert f["requests-2.31.0.tar.gz"].upload_time is None  # upload-time ""
        assert f["requests-2.31.0-py3-none-any.whl"].upload_time == "2023-05-22T15:12:42.313790Z"
        assert f["requests-2.31.0.tar.gz"].size == 110794


def test_bandersnatch_html_serial_header_wins() -> None:
    assert page("flavours/bandersnatch-requests.html", "requests", header_serial=7).serial == 7


def test_proxpi_page() -> None:
    p = page("flavours/proxpi-requests.html", "requests")
    f = by_name(p)
    assert list(f) == ["requests-0.10.0.tar.gz", "requests-2.31.0-py3-none-any.whl", "requests-2.32.0-py3-none-any.whl"]
    assert f["requests-0.10.0.tar.gz"].url == INDEX + "requests/requests-0.10.0.tar.gz"  # relative to the page
    whl = f["requests-2.31.0-py3-none-any.whl"]
    assert (whl.metadata, whl.metadata_sha256, whl.requires_python) == (True, META, ">=3.7")
    assert f["requests-2.32.0-py3-none-any.whl"].yanked == REASON


@pytest.mark.parametrize("fmt", ["json", "html"])
def test_mirror_sync_page(fmt: str) -> None:
    p = page(f"flavours/mirror-sync-requests.{fmt}", "requests")
    f = by_name(p)
    assert len(f) == 5
    whl = f["requests-2.31.0-py3-none-any.whl"]
    assert whl.url == SERVER + package_path(whl.sha256 or "", whl.filename)
    assert (whl.metadata, whl.metadata_sha256, whl.requires_python) == (True, META, ">=3.7, <4")
    assert {x.filename: x.yanked for x in p.files if x.yanked} == {"requests-2.32.0-py3-none-any.whl": REASON, "requests-2.32.0.tar.gz": True}
    if fmt == "json":
        assert p.serial == 18114523 and p.versions == ["0.10.0", "2.31.0", "2.32.0"]
        assert whl.size == 62574 and whl.upload_time == "2023-05-22T15:12:42.313790Z"
    else:
        assert p.serial is None


@pytest.mark.parametrize("fixture, fmt, serial, expected", [
    ("artifactory-root.html", "html", None, {"flask": "Flask", "requests": "requests", "requests-toolbelt": "requests-toolbelt", "zope-interface": "zope.interface"}),
    ("nexus-root.html", "html", None, {"flask": "Flask", "requests": "requests", "requests-toolbelt": "requests_toolbelt"}),
    ("devpi-root.json", "json", None, {"flask": "Flask", "requests": "requests", "requests-toolbelt": "requests-toolbelt", "zope-interface": "zope.interface"}),
    ("bandersnatch-root.json", "json", 18114523, {"flask": "flask", "requests": "requests", "requests-toolbelt": "requests-toolbelt", "zope-interface": "zope-interface"}),
    ("bandersnatch-root.html", "html", None, {"flask": "flask", "requests": "requests", "requests-toolbelt": "requests-toolbelt", "zope-interface": "zope-interface"}),
    ("mirror-sync-root.html", "html", None, {"flask": "Flask", "requests": "requests", "requests-toolbelt": "requests_toolbelt", "zope-interface": "zope.interface"}),
])
def test_flavour_roots(fixture: str, fmt: str, serial: Optional[int], expected: dict[str, str]) -> None:
    root = parse_root_stream([body(f"flavours/{fixture}")], is_json=fmt == "json", header_serial=None, unchanged_at=None)
    assert (root.serial, root.json) == (serial, fmt == "json")
    assert {c: d for c, (d, _s) in root.projects.items()} == expected
    assert all(s is None for _d, s in root.projects.values())


def test_mirror_sync_root_json_has_serials() -> None:
    root = parse_root_json(body("flavours/mirror-sync-root.json"), None)
    assert root.serial == 18114523
    assert dict(root.projects.items()) == {
        "flask": ("Flask", 18000001), "requests": ("requests", 18114523),
        "requests-toolbelt": ("requests_toolbelt", 17000000), "zope-interface": ("zope.interface", None),
    }


# -- variants, one field at a time ------------------------------------------------------------------
WHL = "demo-1.0-py3-none-any.whl"
WHL_SHA = "a" * 64


def json_page(*entries: dict[str, Any], meta: Optional[dict[str, Any]] = None, name: str = "demo", **top: Any) -> bytes:
    return json.dumps({"meta": {"api-version": "1.1", **(meta or {})}, "name": name, "files": list(entries), **top}).encode()


def entry(**fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"filename": WHL, "url": f"{FILES}aa/{WHL}", "hashes": {"sha256": WHL_SHA}}
    out.update(fields)
    return {k: v for k, v in out.items() if v is not _DROP}


_DROP = object()


def one(data: bytes, header_serial: Optional[int] = None) -> Any:
    return parse_project_json(data, f"{INDEX}demo/", "demo", header_serial).files[0]


def html_page(*anchors: str, head: str = "") -> bytes:
    return (f"<!DOCTYPE html><html><head>{head}</head><body>" + "".join(anchors) + "</body></html>").encode()


def one_html(data: bytes) -> Any:
    return parse_project_html(data, f"{INDEX}demo/", "demo").files[0]


@pytest.mark.parametrize("value, expected", [
    (37059094, 37059094), ("37059094", 37059094), ("0", 0), (None, None),
])
def test_serial_forms(value: Any, expected: Optional[int]) -> None:
    assert parse_project_json(json_page(meta={"_last-serial": value}), INDEX + "demo/", "demo").serial == expected


@pytest.mark.parametrize("value", ["-1", "1.0", "", " 12", "12a", "9" * 30, -1, 1.5, True, [1], {"a": 1}, 2**64])
def test_serial_malformed(value: Any) -> None:
    with pytest.raises(UpstreamError, match="malformed _last-serial"):
        parse_project_json(json_page(meta={"_last-serial": value}), INDEX + "demo/", "demo")


def test_header_serial_when_the_page_has_none() -> None:
    assert parse_project_json(json_page(), INDEX + "demo/", "demo", 12).serial == 12
    assert parse_project_json(json_page(meta={"_last-serial": "13"}), INDEX + "demo/", "demo", 12).serial == 13


@pytest.mark.parametrize("value, expected", [(None, None), ("", None), (">=3.8", ">=3.8"), (_DROP, None)])
def test_requires_python_forms(value: Any, expected: Optional[str]) -> None:
    assert one(json_page(entry(**{"requires-python": value}))).requires_python == expected


@pytest.mark.parametrize("value, expected", [
    (False, False), (True, True), ("broken", "broken"), ("", True), (None, False), (_DROP, False),
])
def test_yanked_forms(value: Any, expected: Any) -> None:
    assert one(json_page(entry(yanked=value))).yanked == expected


@pytest.mark.parametrize("value", [1, 0, [], {"reason": "x"}])
def test_yanked_malformed(value: Any) -> None:
    with pytest.raises(UpstreamError, match="malformed yanked"):
        one(json_page(entry(yanked=value)))


@pytest.mark.parametrize("value, expected", [
    ("2023-05-22T15:12:42.313790Z", "2023-05-22T15:12:42.313790Z"),
    ("2006-12-02T02:07:43Z", "2006-12-02T02:07:43Z"),
    ("2023-05-22T15:12:42.3Z", "2023-05-22T15:12:42.3Z"),
    ("2023-05-22T15:12:42.313790+00:00", "2023-05-22T15:12:42.313790Z"),
    ("2023-05-22T17:12:42+02:00", "2023-05-22T15:12:42Z"),
    ("2023-05-22T15:12:42-0130", "2023-05-22T16:42:42Z"),
    ("2023-05-22 15:12:42", "2023-05-22T15:12:42Z"),
    ("2023-05-22T15:12:42.123456789Z", "2023-05-22T15:12:42.123456Z"),
    ("2023-05-22t15:12:42z", "2023-05-22T15:12:42Z"),
    ("", None), (None, None), ("yesterday", None), ("2023-13-01T00:00:00Z", None), ("2023-05-22", None),
])
def test_upload_time_forms(value: Any, expected: Optional[str]) -> None:
    assert one(json_page(entry(**{"upload-time": value}))).upload_time == expected
    assert upload_time_value(value, "x", WHL) == expected


def test_upload_time_not_a_string() -> None:
    with pytest.raises(UpstreamError, match="malformed upload-time"):
        one(json_page(entry(**{"upload-time": 1684768362})))


def test_html_upload_time() -> None:
    anchor = f'<a href="{FILES}aa/{WHL}" data-upload-time="2023-05-22T15:12:42+00:00">{WHL}</a>'
    assert one_html(html_page(anchor)).upload_time == "2023-05-22T15:12:42Z"


@pytest.mark.parametrize("fields, expected", [
    ({"core-metadata": {"sha256": "B" * 64}}, (True, "b" * 64)),
    ({"core-metadata": True}, (True, None)),
    ({"core-metadata": False}, (False, None)),
    ({"core-metadata": {}}, (True, None)),
    ({"core-metadata": {"md5": "c" * 32}}, (True, None)),
    ({"data-dist-info-metadata": {"sha256": "d" * 64}}, (True, "d" * 64)),
    ({"dist-info-metadata": True}, (True, None)),
    ({"core-metadata": False, "data-dist-info-metadata": {"sha256": "d" * 64}}, (False, None)),  # PEP 714's key wins
    ({"core-metadata": {"sha256": "e" * 64}, "data-dist-info-metadata": {"sha256": "d" * 64}}, (True, "e" * 64)),
    ({}, (False, None)),
])
def test_core_metadata_json_forms(fields: dict[str, Any], expected: tuple[bool, Optional[str]]) -> None:
    f = one(json_page(entry(**fields)))
    assert (f.metadata, f.metadata_sha256) == expected


@pytest.mark.parametrize("attrs, expected", [
    ('data-core-metadata="sha256=' + "f" * 64 + '"', (True, "f" * 64)),
    ('data-core-metadata="true"', (True, None)),
    ('data-core-metadata=""', (True, None)),
    ("data-core-metadata", (True, None)),
    ('data-core-metadata="md5=' + "c" * 32 + '"', (True, None)),
    ('data-dist-info-metadata="sha256=' + "d" * 64 + '"', (True, "d" * 64)),
    ('data-dist-info-metadata="sha256=' + "d" * 64 + '" data-core-metadata="sha256=' + "e" * 64 + '"', (True, "e" * 64)),
    ('data-core-metadata="nonsense"', (False, None)),
    ("", (False, None)),
])
def test_core_metadata_html_forms(attrs: str, expected: tuple[bool, Optional[str]]) -> None:
    f = one_html(html_page(f'<a href="{FILES}aa/{WHL}#sha256={WHL_SHA}" {attrs}>{WHL}</a>'))
    assert (f.metadata, f.metadata_sha256) == expected


# PEP 740: `provenance` (JSON) and `data-provenance` (HTML), a URL (Simple API 1.3)
PROVENANCE = f"{FILES}aa/{WHL}.provenance"


@pytest.mark.parametrize("value, expected", [
    (PROVENANCE, PROVENANCE),
    (f"../../files/{WHL}.provenance", f"https://index.upstream.invalid/files/{WHL}.provenance"),  # relative to the page
    (f"/integrity/demo/1.0/{WHL}/provenance", f"https://index.upstream.invalid/integrity/demo/1.0/{WHL}/provenance"),
    (f"//files.upstream.invalid/p/{WHL}.provenance", f"https://files.upstream.invalid/p/{WHL}.provenance"),
    (f"  {PROVENANCE}  ", PROVENANCE),
    (f"{PROVENANCE}#frag", PROVENANCE),
    ("http://files.upstream.invalid/x.provenance", "http://files.upstream.invalid/x.provenance"),
    (None, None), ("", None), (_DROP, None),
])
def test_provenance_json_forms(value: Any, expected: str | None) -> None:
    assert one(json_page(entry(provenance=value))).provenance == expected


@pytest.mark.parametrize("value, reason", [
    ("ftp://files.upstream.invalid/x.provenance", "scheme 'ftp'"),
    ("file:///etc/passwd", "scheme 'file'"),
    ("javascript:alert(1)", "scheme 'javascript'"),
    ("data:application/json,{}", "scheme 'data'"),
    ("http:///no-host", "no host"),
    ("https://[::1/x", "not a URL"),
    ("b" * 64, "a digest (a draft of PEP 740), not a URL"),
    ({"version": 1, "attestation_bundles": []}, "not a string"),  # a draft's inline provenance object
    (12, "not a string"),
    (True, "not a string"),
])
def test_provenance_unusable_is_dropped(value: Any, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    """A provenance this mirror could not fetch is dropped with a warning; the file and the rest of
    the page are kept."""
    with caplog.at_level(logging.WARNING, logger="mirror_sync.pages"):
        f = one(json_page(entry(provenance=value), entry(filename="demo-1.0.tar.gz", url=f"{FILES}bb/demo-1.0.tar.gz")))
    assert f.filename == WHL and f.provenance is None and f.sha256 == WHL_SHA
    assert [r.getMessage() for r in caplog.records if "drop-provenance" in r.getMessage()] == [
        f"event=drop-provenance where='project demo' file={WHL} value={str(value)[:200]!r} reason={reason!r}"
    ]


@pytest.mark.parametrize("attrs, expected", [
    (f'data-provenance="{PROVENANCE}"', PROVENANCE),
    (f"data-provenance='{PROVENANCE}?a=1&amp;b=2'", f"{PROVENANCE}?a=1&b=2"),  # attribute text is unescaped
    (f'data-provenance="{WHL}.provenance"', f"{INDEX}demo/{WHL}.provenance"),
    ('data-provenance=""', None),
    ("data-provenance", None),
    ('data-provenance="ftp://files.upstream.invalid/x"', None),
    ('data-provenance="' + "c" * 64 + '"', None),
    ("", None),
])
def test_provenance_html_forms(attrs: str, expected: str | None) -> None:
    f = one_html(html_page(f'<a href="{FILES}aa/{WHL}#sha256={WHL_SHA}" {attrs}>{WHL}</a>'))
    assert f.provenance == expected


def test_provenance_html_follows_the_base_href() -> None:
    page = html_page(f'<a href="{WHL}#sha256={WHL_SHA}" data-provenance="{WHL}.provenance">{WHL}</a>',
                     head='<base href="https://files.upstream.invalid/store/">')
    f = one_html(page)
    assert (f.url, f.provenance) == (f"https://files.upstream.invalid/store/{WHL}", f"https://files.upstream.invalid/store/{WHL}.provenance")


@pytest.mark.parametrize("value, expected", [(_DROP, None), (None, None), (123, 123), ("123", 123), (0, 0)])
def test_size_forms(value: Any, expected: Optional[int]) -> None:
    assert one(json_page(entry(size=value))).size == expected


@pytest.mark.parametrize("value", [-1, True, 1.5, "1.5", "-3", [1]])
def test_size_malformed(value: Any) -> None:
    with pytest.raises(UpstreamError, match="malformed size"):
        one(json_page(entry(size=value)))


def test_hashes_variants() -> None:
    assert one(json_page(entry(hashes={"md5": "0" * 32}))).sha256 is None
    assert one(json_page(entry(hashes={}))).sha256 is None
    assert one(json_page(entry(hashes={"sha256": "A" * 64}))).sha256 == "a" * 64
    # a #sha256 fragment on the JSON url (older devpi): used, and stripped from the URL
    f = one(json_page(entry(url=f"{FILES}aa/{WHL}#sha256={'b' * 64}", hashes={})))
    assert (f.sha256, f.url) == ("b" * 64, f"{FILES}aa/{WHL}")
    assert one(json_page(entry(url=f"{FILES}aa/{WHL}#sha256={WHL_SHA}"))).sha256 == WHL_SHA
    assert one(json_page(entry(url=f"{FILES}aa/{WHL}#md5={'0' * 32}"))).sha256 == WHL_SHA


def test_relative_and_base_urls() -> None:
    assert one(json_page(entry(url=f"../../packages/aa/{WHL}"))).url == f"https://index.upstream.invalid/packages/aa/{WHL}"
    assert one(json_page(entry(url=f"/p/{WHL}"))).url == f"https://index.upstream.invalid/p/{WHL}"
    anchor = f'<a href="sub/{WHL}#sha256={WHL_SHA}">{WHL}</a>'
    base = '<base href="https://files.upstream.invalid/base/">'
    assert one_html(html_page(anchor, head=base)).url == f"https://files.upstream.invalid/base/sub/{WHL}"
    assert one_html(html_page(f'<a href="{WHL.replace(".whl", "%2Ewhl")}">{WHL}</a>')).filename == WHL  # percent-encoded


def test_html_attributes_with_entities() -> None:
    anchor = f'<a href="{FILES}aa/{WHL}#sha256={WHL_SHA}" data-requires-python="&gt;=3.7,&lt;4&amp;" data-yanked="a &quot;b&quot;">{WHL}</a>'
    f = one_html(html_page(anchor))
    assert (f.requires_python, f.yanked) == (">=3.7,<4&", 'a "b"')
    assert one_html(html_page(f'<a href="{FILES}aa/{WHL}" data-yanked>{WHL}</a>')).yanked is True
    assert one_html(html_page(f'<a href="{FILES}aa/{WHL}" data-yanked="">{WHL}</a>')).yanked is True
    assert one_html(html_page(f'<a href="{FILES}aa/{WHL}" data-requires-python="">{WHL}</a>')).requires_python is None


def test_html_page_skips_anchors_without_href_and_reads_status() -> None:
    head = '<meta name="pypi:repository-version" content="1.4"><meta name="pypi:project-status" content="archived">' \
           '<meta name="pypi:project-status-reason" content="moved">'
    p = parse_project_html(html_page("<a name='top'>top</a>", f'<a href="{FILES}aa/{WHL}">{WHL}</a>', head=head), INDEX + "demo/", "demo")
    assert [f.filename for f in p.files] == [WHL] and p.status == {"status": "archived", "reason": "moved"}


def test_json_project_status() -> None:
    p = parse_project_json(json_page(**{"project-status": {"status": "quarantined", "reason": "r"}}), INDEX + "demo/", "demo")
    assert p.status == {"status": "quarantined", "reason": "r"}
    assert parse_project_json(json_page(**{"project-status": "odd"}), INDEX + "demo/", "demo").status is None


# -- strictness: what stays refused -------------------------------------------------------------------
@pytest.mark.parametrize("fields, error, message", [
    ({"filename": "../../../evil-1.0-py3-none-any.whl"}, HostileDataError, "unsafe filename"),
    ({"filename": ".hidden-1.0-py3-none-any.whl"}, HostileDataError, "unsafe filename"),
    ({"filename": "a/b-1.0.tar.gz"}, HostileDataError, "unsafe filename"),
    ({"filename": None}, HostileDataError, "unsafe filename"),
    ({"filename": WHL + "\n", "url": f"{FILES}aa/{WHL}%0A"}, HostileDataError, "unsafe filename"),
    ({"url": "../../../../../../etc/passwd"}, HostileDataError, "names another file"),
    ({"url": f"{FILES}aa/other-1.0-py3-none-any.whl"}, HostileDataError, "names another file"),
    ({"url": f"{FILES}aa/..%2F{WHL}"}, HostileDataError, "names another file"),
    ({"url": "javascript:alert(1)"}, HostileDataError, "scheme 'javascript'"),
    ({"url": f"file:///etc/{WHL}"}, HostileDataError, "scheme 'file'"),
    ({"url": f"ftp://files.upstream.invalid/{WHL}"}, HostileDataError, "scheme 'ftp'"),
    ({"url": f"{FILES}aa/"}, HostileDataError, "names no file"),
    ({"url": "http://[::1/x.whl"}, HostileDataError, "malformed file URL"),
    ({"url": None}, UpstreamError, "has no URL"),
    ({"hashes": {"sha256": "xyz"}}, HostileDataError, "malformed sha256"),
    ({"hashes": {"sha256": "a" * 63}}, HostileDataError, "malformed sha256"),
    ({"hashes": "a" * 64}, UpstreamError, "malformed hashes"),
    ({"url": f"{FILES}aa/{WHL}#sha256=" + "b" * 64}, HostileDataError, "two different sha256"),
    ({"url": f"{FILES}aa/{WHL}#sha256=nothex"}, HostileDataError, "malformed sha256"),
    ({"core-metadata": {"sha256": "short"}}, HostileDataError, "malformed sha256"),
    ({"core-metadata": "yes"}, UpstreamError, "malformed core-metadata"),
    ({"requires-python": 3}, UpstreamError, "malformed requires-python"),
])
def test_json_file_entries_that_stay_refused(fields: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        one(json_page(entry(**fields)))


def test_file_urls_allowed_only_from_a_file_index() -> None:
    data = json_page(entry(url=f"file:///srv/idx/{WHL}"))
    assert parse_project_json(data, "file:///srv/idx/simple/demo/", "demo").files[0].url == f"file:///srv/idx/{WHL}"
    with pytest.raises(HostileDataError):
        parse_project_json(data, INDEX + "demo/", "demo")


@pytest.mark.parametrize("href, message", [
    (f"{FILES}aa/{WHL}#sha256=abc", "malformed sha256"),
    ("../../../../../../etc/", "names no file"),
    ("javascript:alert(1)", "scheme"),
    ("../../x/.hidden.whl", "unsafe filename"),
    ("http://[::1/x.whl", "malformed file URL"),
    (f"{FILES}aa/{WHL}%0A", "unsafe filename"),
])
def test_html_anchors_that_stay_refused(href: str, message: str) -> None:
    with pytest.raises(HostileDataError, match=message):
        one_html(html_page(f'<a href="{href}">x</a>'))


@pytest.mark.parametrize("name", ["other", "demo2", "de mo", "", 5])
def test_a_page_of_another_project_is_refused(name: Any) -> None:
    with pytest.raises(HostileDataError):
        parse_project_json(json_page(name=name), INDEX + "demo/", "demo")
    # spellings of the same project are fine
    assert parse_project_json(json_page(name="DeMo"), INDEX + "demo/", "demo").name == "DeMo"


@pytest.mark.parametrize("version", ["2.0", "2", "10.1", 1.1, None])
def test_unsupported_api_versions(version: Any) -> None:
    where = "unsupported simple API version"
    with pytest.raises(UpstreamError, match=where):
        parse_project_json(json_page(meta={"api-version": version}), INDEX + "demo/", "demo")
    if isinstance(version, str):
        head = f'<meta name="pypi:repository-version" content="{version}">'
        with pytest.raises(UpstreamError, match=where):
            parse_project_html(html_page(head=head), INDEX + "demo/", "demo")
        with pytest.raises(UpstreamError, match=where):
            parse_root_json(json.dumps({"meta": {"api-version": version}, "projects": []}).encode(), None)
        with pytest.raises(UpstreamError, match=where):
            parse_root_html(html_page('<a href="a/">a</a>', head=head), None)
        with pytest.raises(UpstreamError, match=where):  # meta after the projects: checked at the end
            parse_root_json(json.dumps({"projects": [{"name": "a"}], "meta": {"api-version": version}}).encode(), None)


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.4", "1.99"])
def test_supported_api_versions(version: str) -> None:
    assert parse_project_json(json_page(meta={"api-version": version}), INDEX + "demo/", "demo").files == []
    head = f'<meta name="pypi:repository-version" content="{version}">'
    assert len(parse_root_html(html_page('<a href="a/">a</a>', head=head), None).projects) == 1


@pytest.mark.parametrize("data, message", [
    (b"<html>surprise</html>", "malformed JSON"),
    (b"", "malformed JSON"),
    (b"[]", "malformed JSON"),
    (b'{"files": {}}', "no 'files' list"),
    (b'{"meta": [], "files": []}', "'meta' is not an object"),
    (b'{"files": [], "versions": "1.0"}', "malformed versions"),
    (b'{"files": ["x"]}', "malformed file entry"),
    (b"\xff\xfe{", "malformed JSON"),
    (b"[" * 100000, "malformed JSON"),
])
def test_malformed_json_pages(data: bytes, message: str) -> None:
    with pytest.raises(UpstreamError, match=message):
        parse_project_json(data, INDEX + "demo/", "demo")


def test_malformed_html_page() -> None:
    with pytest.raises(UpstreamError, match="malformed HTML"):
        parse_project_html(b"<html>\xff</html>", INDEX + "demo/", "demo")


# -- the root, streamed ---------------------------------------------------------------------------------
def root_doc(entries: list[dict[str, Any]], meta: Optional[dict[str, Any]] = None, meta_last: bool = False) -> bytes:
    m = {"api-version": "1.1", **(meta or {})}
    doc: dict[str, Any] = {"projects": entries, "meta": m} if meta_last else {"meta": m, "projects": entries}
    return json.dumps(doc).encode()


def stream(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10**6])
def test_root_json_in_any_chunks(size: int) -> None:
    data = root_doc([{"name": "Foo_Bar", "_last-serial": 3}, {"name": "baz", "_last-serial": "4"}, {"name": "qux"}],
                    meta={"_last-serial": "9"})
    data = data.replace(b", ", b" ,\n\t ")  # whitespace around every separator
    root = parse_root_stream(stream(data, size), is_json=True, header_serial=None, unchanged_at=None)
    assert (root.serial, root.json, root.unchanged) == (9, True, False)
    assert dict(root.projects.items()) == {"foo-bar": ("Foo_Bar", 3), "baz": ("baz", 4), "qux": ("qux", None)}


@pytest.mark.parametrize("size", [1, 5, 64, 10**6])
def test_root_html_in_any_chunks(size: int) -> None:
    data = (
        '<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.1"></head><body>\n'
        '<a href="a/">A.b</a><br/>\n<A HREF="c/" title="x>y">\n c \n</A>\n'
        '<!-- <a href="hidden/">hidden</a> -->\n'
        "<a href='d/'><b>D</b></a>\n<a href=e/ >e&#45;f</a>\n<a>no-href</a>\n"
        '<a href="x/">bad name!</a>\n<abbr>not-an-anchor</abbr>\n<a href="g/">g</a \n>'
        "</body></html>\n"
    ).encode()
    root = parse_root_stream(stream(data, size), is_json=False, header_serial=5, unchanged_at=None)
    assert (root.serial, root.json) == (5, False)
    assert {c: d for c, (d, _s) in root.projects.items()} == {"a-b": "A.b", "c": "c", "d": "D", "e-f": "e-f", "no-href": "no-href", "g": "g"}


def test_root_html_unclosed_comment_hides_the_rest() -> None:
    data = b'<a href="a/">a</a><!-- <a href="b/">b</a>'
    for size in (1, 4, 100):
        assert list(parse_root_stream(stream(data, size), is_json=False, header_serial=None, unchanged_at=None).projects) == ["a"]


def test_root_invalid_names_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    names = ["good", "bad name", "-dash", "foo\n", "\u212aelvin", "caf\u00e9", "x" * 201, 5, None, "ok.too"]
    with caplog.at_level(logging.WARNING, logger="mirror_sync.pages"):
        root = parse_root_json(root_doc([{"name": n} for n in names]), None)
    assert sorted(root.projects) == ["good", "ok-too"]
    skipped = [r.getMessage() for r in caplog.records if "skip-project" in r.getMessage()]
    assert len(skipped) == 8


def test_root_duplicates_later_wins() -> None:
    root = parse_root_json(root_doc([{"name": "Foo", "_last-serial": 1}, {"name": "bar"}, {"name": "foo", "_last-serial": 2}]), None)
    assert len(root.projects) == 2 and sorted(root.projects) == ["bar", "foo"]
    assert root.projects["foo"] == ("foo", 2)


def test_root_serials() -> None:
    assert parse_root_json(root_doc([]), 42).serial == 42  # from the header when meta has none
    assert parse_root_json(root_doc([], meta={"_last-serial": 7}), 42).serial == 7
    assert parse_root_html(b'<a href="a/">a</a>', 42).serial == 42
    with pytest.raises(UpstreamError, match="malformed _last-serial"):
        parse_root_json(root_doc([{"name": "a", "_last-serial": "x"}]), None)
    with pytest.raises(UpstreamError, match="malformed _last-serial"):
        parse_root_json(root_doc([{"name": "a", "_last-serial": -1}]), None)


class CountingChunks:
    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size, self.taken = data, size, 0

    def __iter__(self) -> Iterator[bytes]:
        for i in range(0, len(self.data), self.size):
            self.taken += 1
            yield self.data[i : i + self.size]


def test_root_unchanged_stops_reading() -> None:
    data = root_doc([{"name": f"p{i}"} for i in range(20000)], meta={"_last-serial": 77})
    chunks = CountingChunks(data, 4096)
    root = parse_root_stream(chunks, is_json=True, header_serial=None, unchanged_at=77)
    assert root.unchanged and root.serial == 77 and len(root.projects) == 0
    assert chunks.taken * 4096 < len(data) / 2  # the project list was not read
    # another serial: read whole
    assert len(parse_root_stream(CountingChunks(data, 4096), is_json=True, header_serial=None, unchanged_at=76).projects) == 20000
    # meta after the projects: still unchanged (known only at the end)
    late = parse_root_json(root_doc([{"name": "a"}], meta={"_last-serial": 77}, meta_last=True), None, 77)
    assert late.unchanged and len(late.projects) == 0
    # the header serial counts when meta has none
    assert parse_root_json(root_doc([{"name": "a"}]), 77, 77).unchanged


@pytest.mark.parametrize("data, message", [
    (b"<html>surprise</html>", "malformed JSON"),
    (b"", "malformed JSON"),
    (b'{"meta": {}}', "no 'projects' list"),
    (b'{"projects": {}}', "no 'projects' list"),
    (b'{"projects": [], "projects": []}', "given twice"),
    (b'{"projects": [{"name": "a"},]}', "malformed JSON"),
    (b'{"projects": [{"name": "a"}],}', "malformed JSON"),
    (b'{"projects": [{"name": "a"}]} x', "data after the object"),
    (b'{"projects": [{"name": "a"}]', "malformed JSON"),
    (b'{"projects": [{"name": "a"} {"name": "b"}]}', "expected ',' or ']'"),
    (b'{"projects": ["a"]}', "no name"),
    (b'{"projects": [{"nom": "a"}]}', "no name"),
    (b'{"projects": [], "meta": 3}', "'meta' is not an object"),
    (b'{"projects": [\xff]}', "UnicodeDecodeError"),
    (b'{1: 2}', "expected a key"),
    (b'{"projects" []}', "expected ':'"),
    (b'{"projects": [' + b"[" * 50000 + b"]}", "malformed JSON"),
])
def test_malformed_json_roots(data: bytes, message: str) -> None:
    for size in (3, 10**6):
        with pytest.raises(UpstreamError, match=re.escape(message)):
            parse_root_stream(stream(data, size), is_json=True, header_serial=None, unchanged_at=None)


def test_root_json_bom_is_accepted() -> None:
    data = b"\xef\xbb\xbf" + root_doc([{"name": "a"}])
    for size in (1, 2, 100):
        assert list(parse_root_stream(stream(data, size), is_json=True, header_serial=None, unchanged_at=None).projects) == ["a"]


def test_root_html_invalid_utf8() -> None:
    with pytest.raises(UpstreamError, match="malformed HTML"):
        parse_root_html(b'<a href="a/">\xff</a>', None)


def test_root_entries_longer_than_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages, "MAX_ENTRY", 1000)
    monkeypatch.setattr(pages, "_LOOKAHEAD", 100)
    long_json = root_doc([{"name": "a"}, {"name": "b", "pad": "x" * 5000}])
    with pytest.raises(UpstreamError, match="1000 bytes"):
        parse_root_stream(stream(long_json, 256), is_json=True, header_serial=None, unchanged_at=None)
    long_anchor = b'<a href="a/">a</a><a href="b/" title="' + b"x" * 5000 + b'">b</a>'
    with pytest.raises(UpstreamError, match="1000 bytes"):
        parse_root_stream(stream(long_anchor, 256), is_json=False, header_serial=None, unchanged_at=None)
    long_comment = b'<a href="a/">a</a><!--' + b"x" * 5000 + b"-->"
    with pytest.raises(UpstreamError, match="1000 bytes"):
        parse_root_stream(stream(long_comment, 256), is_json=False, header_serial=None, unchanged_at=None)
    # text between anchors is not kept: a long stretch of it is fine
    filler = b'<a href="a/">a</a><p>' + b"y" * 5000 + b'</p><a href="b/">b</a>'
    assert sorted(parse_root_stream(stream(filler, 256), is_json=False, header_serial=None, unchanged_at=None).projects) == ["a", "b"]
    # entries within the bound, in chunks far smaller than the lookahead
    many = root_doc([{"name": f"n{i}", "_last-serial": i} for i in range(300)])
    assert len(parse_root_stream(stream(many, 37), is_json=True, header_serial=None, unchanged_at=None).projects) == 300


def test_root_projects_mapping() -> None:
    projects = RootProjects.from_items([("a-b", "A_b", 3), ("c", "c", None), ("d", "D", 0)])
    assert len(projects) == 3 and list(projects) == ["a-b", "c", "d"]
    assert projects["a-b"] == ("A_b", 3) and projects["c"] == ("c", None) and projects["d"] == ("D", 0)
    assert "a-b" in projects and "A_b" not in projects and "a" not in projects and "a-b\nc" not in projects
    assert 5 not in projects and None not in projects  # type: ignore[operator]
    with pytest.raises(KeyError):
        projects["x"]
    assert projects.get("x") is None and projects == {"a-b": ("A_b", 3), "c": ("c", None), "d": ("D", 0)}
    assert set(projects) == {"a-b", "c", "d"} and sorted(projects.keys()) == ["a-b", "c", "d"]
    empty = RootIndex(serial=None)
    assert len(empty.projects) == 0 and "a" not in empty.projects and list(empty.projects) == []
    with pytest.raises(ValueError):
        RootProjects.from_items([("a\nb", "a\nb", None)])


def test_root_projects_many() -> None:
    items = [(f"p{i}", f"P{i}" if i % 3 else f"p{i}", i if i % 5 else None) for i in range(30000)]
    projects = RootProjects.from_items(items)
    assert len(projects) == 30000 and list(projects) == [c for c, _d, _s in items]
    assert all(projects[c] == (d, s) for c, d, s in items)
    assert not any(f"q{i}" in projects for i in range(1000))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b-c", "d.e", "f_g", "h", "zz9"]), st.one_of(st.none(), st.integers(0, 2**40))),
                max_size=40))
def test_root_projects_with_serials_is_iterating_and_looking_up(entries: list[tuple[str, Optional[int]]]) -> None:
    """Duplicates included (a later one replaces an earlier one), across the iteration window."""
    projects = RootProjects.from_items((n, n.upper(), s) for n, s in entries)
    assert list(projects.with_serials()) == [(n, projects[n][1]) for n in projects]


def test_root_projects_with_serials_across_windows() -> None:
    items = [(f"p{i}", f"p{i}", i if i % 7 else None) for i in range(10000)] + [("p5", "P5", 99)]
    projects = RootProjects.from_items(items)
    pairs = list(projects.with_serials())
    assert pairs == [(n, projects[n][1]) for n in projects] and len(pairs) == 10000 and ("p5", 99) in pairs


# -- Upstream.root() over loopback ---------------------------------------------------------------------
class _Body(BaseHTTPRequestHandler):
    content_type = "text/html"
    payload = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(self.payload), 1000):  # many small chunks on the wire
            piece = self.payload[i : i + 1000]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("content_type, fixture", [
    ("text/html", "real/root-asked-json.html"),
    ("application/vnd.pypi.simple.v1+json", "flavours/mirror-sync-root.json"),
])
def test_upstream_root_streams_the_response(content_type: str, fixture: str) -> None:
    handler = type("Handler", (_Body,), {"content_type": content_type, "payload": body(fixture)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = HttpClient(1, 10, 0)
    try:
        root = Upstream(f"http://127.0.0.1:{server.server_address[1]}/simple/", client).root()
    finally:
        client.close()
        server.shutdown()
        server.server_close()
        thread.join(10)
    expected = parse_root_stream([body(fixture)], is_json="json" in content_type, header_serial=None, unchanged_at=None)
    assert isinstance(root.projects, RootProjects) and len(root.projects) == len(expected.projects) > 0
    assert dict(root.projects.items()) == dict(expected.projects.items())
    assert (root.serial, root.json) == (expected.serial, expected.json)


def test_upstream_root_over_the_suite_upstream(index_tree: Any, upstream: Any) -> None:
    index_tree.add_wheel("Alpha_One", "1.0")
    index_tree.add_wheel("beta", "2.0")
    index_tree.write()
    client = HttpClient(1, 10, 0)
    try:
        root = Upstream(upstream.url, client).root()
        unchanged = Upstream(upstream.url, client).root(unchanged_at=index_tree.serial)
    finally:
        client.close()
    assert root.json and root.serial == index_tree.serial
    assert dict(root.projects.items()) == {
        "alpha-one": ("Alpha_One", index_tree.project_serial("alpha-one")),
        "beta": ("beta", index_tree.project_serial("beta")),
    }
    assert unchanged.unchanged


# -- properties (hypothesis) -----------------------------------------------------------------------------
# PAGES_EXAMPLES=5000 for a long run; the default keeps the suite quick
PROPERTY = settings(max_examples=int(os.environ.get("PAGES_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

_name_part = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=8)


@st.composite
def project_names(draw: Any) -> str:
    """Valid PEP 508 names: parts joined by runs of separators."""
    parts = draw(st.lists(_name_part, min_size=1, max_size=3))
    seps = [draw(st.sampled_from(["-", "_", ".", "--", "_."])) for _ in parts[1:]]
    return parts[0] + "".join(s + p for s, p in zip(seps, parts[1:]))


versions = st.builds(lambda a, b, c: f"{a}.{b}" + (f".{c}" if c is not None else ""),
                     st.integers(0, 99), st.integers(0, 99), st.one_of(st.none(), st.integers(0, 9)))
hexes = st.text("0123456789abcdef", min_size=64, max_size=64)
# attribute and JSON text: anything printable, including what HTML must escape
texts = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x00"), min_size=1, max_size=40)
times = st.builds(lambda y, mo, d, h, mi, s, us: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}" + (f".{us:06d}" if us is not None else "") + "Z",
                  st.integers(1990, 2099), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23), st.integers(0, 59),
                  st.integers(0, 59), st.one_of(st.none(), st.integers(0, 999_999)))


@st.composite
def mirrored_files(draw: Any, project: str) -> list[MirroredFile]:
    out: dict[str, MirroredFile] = {}
    for _ in range(draw(st.integers(0, 6))):
        version = draw(versions)
        stem = project.replace("-", "_")
        filename = draw(st.sampled_from([f"{stem}-{version}-py3-none-any.whl", f"{stem}-{version}.tar.gz",
                                         f"{stem}-{version}-cp312-cp312-manylinux_2_17_x86_64.whl", f"{stem}-{version}.zip"]))
        sha = draw(hexes)
        out[filename] = MirroredFile(
            project=project, filename=filename, path=package_path(sha, filename), url="unused", size=draw(st.integers(0, 2**40)),
            sha256=sha, requires_python=draw(st.one_of(st.none(), texts)), yanked=draw(st.one_of(st.booleans(), texts)),
            upload_time=draw(st.one_of(st.none(), times)), metadata_sha256=draw(st.one_of(st.none(), hexes)),
            metadata_size=None, version=version,
            provenance_url=draw(st.one_of(st.none(), st.just(f"https://mirror.upstream.invalid/prefix/{package_path(sha, filename)}.provenance"))),
        )
    return list(out.values())


@PROPERTY
@given(st.data())
def test_own_pages_round_trip(data: Any) -> None:
    """What mirror_sync/render.py writes, the parsers read back exactly (another mirror-sync as upstream)."""
    display = data.draw(project_names())
    canonical = re.sub(r"[-_.]+", "-", display).lower()
    files = data.draw(mirrored_files(canonical))
    serial = data.draw(st.one_of(st.none(), st.integers(0, 2**40)))
    status = data.draw(st.one_of(st.none(), st.fixed_dictionaries({"status": st.sampled_from(["active", "archived", "quarantined"])},
                                                                   optional={"reason": texts})))
    url = f"https://mirror.upstream.invalid/prefix/simple/{canonical}/"
    js = parse_project_json(project_json(display, serial, files, [f.version or "" for f in files], status), url, canonical)
    ht = parse_project_html(project_html(display, files, status), url, canonical)
    assert (js.name, js.serial, js.status) == (display, serial, status)
    assert ht.status == status
    for parsed in (js, ht):
        assert [f.filename for f in parsed.files] == [f.filename for f in files]
        for got, want in zip(parsed.files, files):
            assert got.url == f"https://mirror.upstream.invalid/prefix/{want.path}"
            assert got.sha256 == want.sha256 and got.requires_python == want.requires_python
            assert got.yanked == want.yanked
            assert (got.metadata, got.metadata_sha256) == (want.metadata_sha256 is not None, want.metadata_sha256)
            assert got.version == want.version
            assert got.provenance == want.provenance_url
    for got, want in zip(js.files, files):
        assert got.size == want.size and got.upload_time == want.upload_time


@PROPERTY
@given(st.lists(st.tuples(project_names(), st.one_of(st.none(), st.integers(0, 2**62))), max_size=60),
       st.one_of(st.none(), st.integers(0, 2**62)), st.lists(st.integers(0, 4000), max_size=6))
def test_own_root_round_trip(names: list[tuple[str, Optional[int]]], serial: Optional[int], cuts: list[int]) -> None:
    """Our rendered roots, cut anywhere, parse back to the same projects."""
    entries: dict[str, tuple[str, str, Optional[int]]] = {}
    for display, s in names:
        canonical = re.sub(r"[-_.]+", "-", display).lower()
        entries[canonical] = (canonical, display, s)
    rows = sorted(entries.values())
    want = {c: (d, s) for c, d, s in rows}
    js = parse_root_stream(split(root_json(rows, serial), cuts), is_json=True, header_serial=None, unchanged_at=None)
    assert js.serial == serial and dict(js.projects.items()) == want and len(js.projects) == len(want)
    ht = parse_root_stream(split(root_html(rows), cuts), is_json=False, header_serial=None, unchanged_at=None)
    assert dict(ht.projects.items()) == {c: (d, None) for c, (d, _s) in want.items()}


@PROPERTY
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=5))
def test_junk_raises_only_upstream_errors(junk: bytes, cuts: list[int]) -> None:
    for call in (
        lambda: parse_project_json(junk, INDEX + "demo/", "demo"),
        lambda: parse_project_html(junk, INDEX + "demo/", "demo"),
        lambda: parse_root_stream(split(junk, cuts), is_json=True, header_serial=None, unchanged_at=None),
        lambda: parse_root_stream(split(junk, cuts), is_json=False, header_serial=None, unchanged_at=1),
    ):
        try:
            call()
        except UpstreamError:
            pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)
file_keys = st.sampled_from(["filename", "url", "hashes", "requires-python", "yanked", "upload-time", "size",
                             "core-metadata", "data-dist-info-metadata", "dist-info-metadata", "sha256"])


@PROPERTY
@given(st.lists(st.dictionaries(file_keys, json_values | st.just(WHL) | st.just({"sha256": WHL_SHA}), max_size=8), max_size=4),
       st.dictionaries(st.sampled_from(["api-version", "_last-serial", "x"]), json_values | st.just("1.1"), max_size=3),
       st.dictionaries(st.sampled_from(["name", "versions", "project-status", "x"]), json_values | st.just("demo"), max_size=3))
def test_structured_junk_raises_only_upstream_errors(files: list[dict[str, Any]], meta: dict[str, Any], top: dict[str, Any]) -> None:
    doc = json.dumps({"meta": meta, "files": files, **top}).encode()
    try:
        parse_project_json(doc, INDEX + "demo/", "demo")
    except UpstreamError:
        pass
    root = json.dumps({"meta": meta, "projects": [dict(f, name=top.get("name", "demo")) for f in files] + files}).encode()
    try:
        parse_root_json(root, None, 3)
    except UpstreamError:
        pass


@PROPERTY
@given(st.lists(st.sampled_from([
    '<a href="a/">a</a>', "<a href='b/'>B_b</a>", "<!--", "-->", "<a ", ">", "</a>", "<", "&amp;", "\n", "<br/>",
    '<meta name="pypi:repository-version" content="1.0">', '"', "'", "x", "<A HREF=c/>c</A >", "<abbr>", "é",
]), max_size=40), st.lists(st.integers(0, 400), max_size=5))
def test_html_root_chunking_never_changes_the_result(pieces: list[str], cuts: list[int]) -> None:
    data = "".join(pieces).encode()
    try:
        whole = parse_root_html(data, None)
    except UpstreamError as exc:
        with pytest.raises(UpstreamError, match=re.escape(str(exc))):
            parse_root_stream(split(data, cuts), is_json=False, header_serial=None, unchanged_at=None)
        return
    parts = parse_root_stream(split(data, cuts), is_json=False, header_serial=None, unchanged_at=None)
    assert dict(parts.projects.items()) == dict(whole.projects.items())


@PROPERTY
@given(st.lists(st.sampled_from([
    '{"meta": {"api-version": "1.1"}, "projects": [', '{"name": "a"}', '{"name": "B", "_last-serial": "5"}', ", ", ",",
    "]", "}", " ", "\n", '{"name": "a b"}', "[", '"', "1", '{"projects": []}', '"x": 1, ',
]), max_size=30), st.lists(st.integers(0, 300), max_size=5))
def test_json_root_chunking_never_changes_the_result(pieces: list[str], cuts: list[int]) -> None:
    data = "".join(pieces).encode()
    try:
        whole = parse_root_json(data, None)
    except UpstreamError:
        with pytest.raises(UpstreamError):
            parse_root_stream(split(data, cuts), is_json=True, header_serial=None, unchanged_at=None)
        return
    parts = parse_root_stream(split(data, cuts), is_json=True, header_serial=None, unchanged_at=None)
    assert (dict(parts.projects.items()), parts.serial) == (dict(whole.projects.items()), whole.serial)


@PROPERTY
@given(st.lists(st.sampled_from([
    '{"meta": {"api-version": "1.1"}, "projects": [', '{"name": "a"}', '{"name": "B", "_last-serial": 5}', ", ", "]}",
]), max_size=12))
def test_json_root_agrees_with_json_loads(pieces: list[str]) -> None:
    """Where the standard library parses the document, the streamed parser reads the same projects."""
    data = "".join(pieces)
    try:
        doc = json.loads(data)
    except ValueError:
        with pytest.raises(UpstreamError):
            parse_root_json(data.encode(), None)
        return
    if (not isinstance(doc, dict) or not isinstance(doc.get("projects"), list)
            or not all(isinstance(e, dict) and "name" in e for e in doc["projects"])):
        with pytest.raises(UpstreamError):
            parse_root_json(data.encode(), None)
        return
    root = parse_root_json(data.encode(), None)
    want: dict[str, tuple[str, Optional[int]]] = {}
    for e in doc["projects"]:
        want[re.sub(r"[-_.]+", "-", e["name"]).lower()] = (e["name"], e.get("_last-serial"))
    assert dict(root.projects.items()) == want
