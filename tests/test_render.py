"""The page renderer (mirror_sync/render.py): golden project pages in both formats, the API
version a page announces (the highest whose fields it serves), PEP 740 provenance links, and the
escaping of hostile text."""
from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest

from mirror_sync.models import MirroredFile
from mirror_sync.render import (
    api_version,
    project_html,
    project_json,
    provenance_url,
    root_html,
    root_json,
)

MIRROR = "https://mirror.example.invalid/pypi/"
WHEEL_PATH = "packages/aa/aa/" + "a" * 60 + "/acme_tools-1.0-py3-none-any.whl"
SDIST_PATH = "packages/cc/cc/" + "c" * 60 + "/acme_tools-1.0.tar.gz"


def mirrored(filename: str, path: str, sha: str, **fields: Any) -> MirroredFile:
    base: dict[str, Any] = {
        "project": "acme-tools", "filename": filename, "path": path, "url": "http://upstream.invalid/" + filename,
        "size": 1234, "sha256": sha, "requires_python": None, "yanked": False, "upload_time": None,
        "metadata_sha256": None, "metadata_size": None, "version": "1.0",
    }
    base.update(fields)
    return MirroredFile(**base)


def page_files(provenance: str | None = MIRROR + WHEEL_PATH + ".provenance") -> list[MirroredFile]:
    return [
        mirrored("acme_tools-1.0-py3-none-any.whl", WHEEL_PATH, "a" * 64, requires_python=">=3.9",
                 upload_time="2024-01-02T03:04:05.123456Z", metadata_sha256="b" * 64, metadata_size=99, provenance_url=provenance),
        mirrored("acme_tools-1.0.tar.gz", SDIST_PATH, "c" * 64, size=777, yanked="broken build"),
    ]


GOLDEN_HTML = (
    "<!DOCTYPE html>\n<html>\n  <head>\n"
    '    <meta name="pypi:repository-version" content="1.3">\n'
    "    <title>Links for Acme.Tools</title>\n  </head>\n  <body>\n    <h1>Links for Acme.Tools</h1>\n"
    f'    <a href="../../{WHEEL_PATH}#sha256={"a" * 64}" data-requires-python="&gt;=3.9"'
    f' data-dist-info-metadata="sha256={"b" * 64}" data-core-metadata="sha256={"b" * 64}"'
    f' data-provenance="{MIRROR}{WHEEL_PATH}.provenance">acme_tools-1.0-py3-none-any.whl</a><br/>\n'
    f'    <a href="../../{SDIST_PATH}#sha256={"c" * 64}" data-yanked="broken build">acme_tools-1.0.tar.gz</a><br/>\n'
    "  </body>\n</html>\n"
)

GOLDEN_JSON = (
    '{"meta":{"api-version":"1.3","_last-serial":42},"name":"acme-tools","versions":["1.0"],"files":['
    f'{{"filename":"acme_tools-1.0-py3-none-any.whl","url":"../../{WHEEL_PATH}","hashes":{{"sha256":"{"a" * 64}"}},'
    '"requires-python":">=3.9","yanked":false,"size":1234,"upload-time":"2024-01-02T03:04:05.123456Z",'
    f'"core-metadata":{{"sha256":"{"b" * 64}"}},"data-dist-info-metadata":{{"sha256":"{"b" * 64}"}},'
    f'"provenance":"{MIRROR}{WHEEL_PATH}.provenance"}},'
    f'{{"filename":"acme_tools-1.0.tar.gz","url":"../../{SDIST_PATH}","hashes":{{"sha256":"{"c" * 64}"}},'
    '"requires-python":null,"yanked":"broken build","size":777,"core-metadata":false,"data-dist-info-metadata":false}'
    "]}"
)


def test_golden_html() -> None:
    assert project_html("Acme.Tools", page_files()).decode() == GOLDEN_HTML


def test_golden_json() -> None:
    assert project_json("acme-tools", 42, page_files(), ["1.0"]).decode() == GOLDEN_JSON


def test_without_provenance_nothing_is_said_and_the_version_is_1_1() -> None:
    files = page_files(provenance=None)
    html = project_html("Acme.Tools", files).decode()
    doc = json.loads(project_json("acme-tools", 42, files, ["1.0"]))
    assert "provenance" not in html and '<meta name="pypi:repository-version" content="1.1">' in html
    assert html == GOLDEN_HTML.replace('content="1.3"', 'content="1.1"').replace(
        f' data-provenance="{MIRROR}{WHEEL_PATH}.provenance"', "")
    assert doc["meta"]["api-version"] == "1.1"
    assert all("provenance" not in f for f in doc["files"])


@pytest.mark.parametrize("url", [
    "", "../../" + WHEEL_PATH + ".provenance", "/pypi/" + WHEEL_PATH + ".provenance", "ftp://mirror.example.invalid/x",
    "file:///srv/x.provenance", "javascript:alert(1)", "https:///no-host", "https://[::1/broken",
])
def test_only_a_fully_qualified_provenance_url_is_published(url: str) -> None:
    """PEP 740: a fully qualified URL. A relative or non-http(s) one is not published, and the
    page then announces no version that promises provenance."""
    files = page_files(provenance=url)
    assert provenance_url(files[0]) is None
    assert b"provenance" not in project_html("Acme.Tools", files)
    assert b"provenance" not in project_json("acme-tools", None, files, ["1.0"])
    assert api_version(files) == "1.1"


@pytest.mark.parametrize("provenance, status, expected", [
    (None, None, "1.1"),  # PEP 700's versions, size, upload-time
    (MIRROR + "x.provenance", None, "1.3"),  # PEP 740's provenance
    ("http://127.0.0.1:8080/x.provenance", None, "1.3"),
    (None, {"status": "archived"}, "1.4"),  # PEP 792's project-status
    (MIRROR + "x.provenance", {"status": "deprecated", "reason": "use acme2"}, "1.4"),
])
def test_api_version_is_the_highest_served(provenance: str | None, status: dict[str, str] | None, expected: str) -> None:
    files = page_files(provenance=provenance)
    assert api_version(files, status) == expected
    assert f'<meta name="pypi:repository-version" content="{expected}">'.encode() in project_html("Acme.Tools", files, status)
    assert json.loads(project_json("acme-tools", 1, files, ["1.0"], status))["meta"]["api-version"] == expected
    assert api_version([], status) == ("1.4" if status else "1.1")


def test_status_and_provenance_together() -> None:
    status = {"status": "deprecated", "reason": "use acme2"}
    doc = json.loads(project_json("acme-tools", 7, page_files(), ["1.0"], status))
    assert doc["project-status"] == status and doc["files"][0]["provenance"] == f"{MIRROR}{WHEEL_PATH}.provenance"
    html = project_html("Acme.Tools", page_files(), status).decode()
    assert '<meta name="pypi:project-status" content="deprecated">' in html
    assert '<meta name="pypi:project-status-reason" content="use acme2">' in html
    assert f'data-provenance="{MIRROR}{WHEEL_PATH}.provenance"' in html


def test_root_pages_keep_1_1() -> None:
    rows = [("acme-tools", "Acme.Tools", 3)]
    assert b'content="1.1"' in root_html(rows)
    assert json.loads(root_json(rows, 3))["meta"] == {"api-version": "1.1", "_last-serial": 3}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.anchors: list[dict[str, str | None]] = []
        self.texts: dict[str, str] = {}
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in = tag
        if tag == "a":
            self.anchors.append(dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.texts[self._in] = self.texts.get(self._in, "") + data


HOSTILE_NAME = 'Evil"</title><script>alert(1)</script>&amp;'
HOSTILE_REASON = '"><img src=x onerror=alert(1)>\u2028&'
HOSTILE_RP = '<4,>=3.8"\''
HOSTILE_URL = 'https://mirror.example.invalid/p?q="><b>bold</b>&x=\'1\''


def test_hostile_text_is_escaped() -> None:
    files = [mirrored("acme_tools-1.0.tar.gz", SDIST_PATH, "c" * 64, requires_python=HOSTILE_RP, yanked=HOSTILE_REASON,
                      provenance_url=HOSTILE_URL)]
    parser = _Tags()
    parser.feed(project_html(HOSTILE_NAME, files).decode())
    assert parser.tags == ["html", "head", "meta", "title", "body", "h1", "a", "br"]  # no script, img or b got in
    assert parser.texts["title"] == f"Links for {HOSTILE_NAME}" == parser.texts["h1"]
    (anchor,) = parser.anchors
    assert anchor["data-requires-python"] == HOSTILE_RP
    assert anchor["data-yanked"] == HOSTILE_REASON
    assert anchor["data-provenance"] == HOSTILE_URL
    doc = json.loads(project_json(HOSTILE_NAME, None, files, ["1.0"]))
    assert doc["name"] == HOSTILE_NAME
    (entry,) = doc["files"]
    assert (entry["requires-python"], entry["yanked"], entry["provenance"]) == (HOSTILE_RP, HOSTILE_REASON, HOSTILE_URL)
