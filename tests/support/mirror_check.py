"""Check a mirror on disk the way a client sees it: every page, every link, every hash."""
from __future__ import annotations

import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from packaging.utils import canonicalize_name


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _resolve(web: Path, page_rel: str, href: str) -> Path:
    url = urljoin("http://mirror.invalid/" + page_rel, href)
    parts = urlsplit(url)
    assert parts.netloc == "mirror.invalid", f"{page_rel}: link {href!r} leaves the mirror"
    target = (web / unquote(parts.path).lstrip("/")).resolve()
    assert web.resolve() in target.parents, f"{page_rel}: link {href!r} escapes the web root"
    return target


def check_mirror(directory: Path) -> dict[str, list[str]]:
    """Assert that every published page links only to files that exist with the advertised
    sha256 (and .metadata when advertised). Returns {project: [filenames]} from the JSON pages."""
    web = directory / "web"
    simple = web / "simple"
    root_page = simple / "index.v1_json"
    # before the first run finishes there is no root yet: the project pages must still hold
    listed = {p["name"] for p in json.loads(root_page.read_bytes())["projects"]} if root_page.exists() else set()
    out: dict[str, list[str]] = {}
    for page_dir in sorted(p for p in simple.iterdir() if p.is_dir()):
        name = page_dir.name
        if not (page_dir / "index.v1_json").exists():
            # a run was stopped between creating the directory and publishing its pages
            assert not (page_dir / "index.html").exists() or root_page.exists() is False or name not in listed
            assert name not in {canonicalize_name(n) for n in listed}, f"root lists {name} without pages"
            continue
        js = json.loads((page_dir / "index.v1_json").read_bytes())
        assert js["meta"]["api-version"].startswith("1.")
        names = []
        for f in js["files"]:
            target = _resolve(web, f"simple/{name}/", f["url"])
            assert target.is_file(), f"{name}: JSON links to missing {f['url']}"
            assert _sha256(target) == f["hashes"]["sha256"], f"{name}: {f['filename']} hash mismatch"
            assert target.stat().st_size == f["size"]
            assert target.name == f["filename"]
            meta = f.get("core-metadata")
            if meta:
                mpath = target.with_name(target.name + ".metadata")
                assert mpath.is_file(), f"{name}: advertised .metadata missing for {f['filename']}"
                assert _sha256(mpath) == meta["sha256"]
            names.append(f["filename"])
        parser = _Links()
        html = (page_dir / "index.html").read_text()
        parser.feed(html)
        assert (page_dir / "index.v1_html").read_text() == html
        html_names = []
        for link in parser.links:
            href = link["href"] or ""
            path_part, _, fragment = href.partition("#")
            target = _resolve(web, f"simple/{name}/", path_part)
            assert target.is_file(), f"{name}: HTML links to missing {href}"
            assert fragment == "sha256=" + _sha256(target)
            if link.get("data-core-metadata"):
                mpath = target.with_name(target.name + ".metadata")
                assert link["data-core-metadata"] == "sha256=" + _sha256(mpath)
            html_names.append(target.name)
        assert sorted(html_names) == sorted(names), f"{name}: HTML and JSON pages disagree"
        out[name] = names
    # every project the root lists has its pages (names may differ in case from the directory)
    assert {canonicalize_name(n) for n in listed} <= set(out), "root lists a project without pages"
    return out


def assert_no_temp_files(directory: Path) -> None:
    """After a completed run nothing half-written is left anywhere under web/."""
    web = directory / "web"
    leftovers = [p for p in web.rglob("*") if p.is_file() and (".staging" in p.parts or ".incoming" in p.parts or ".tmp." in p.name)]
    assert leftovers == [], f"temp files left behind: {leftovers}"
