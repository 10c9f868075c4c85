"""A static, PyPI-compatible upstream index written to a directory (served by nginx or UpstreamServer).

Layout under ``root`` (the document root; URL path == relative file path)::

    simple/index.html                 PEP 503 root (relative links ``<name>/``)
    simple/index.v1_json              PEP 691 root: meta.api-version 1.1, meta._last-serial,
                                      projects[{name, _last-serial}]
    simple/<canonical>/index.html     PEP 503/592/658/714 anchors, <!--SERIAL n--> trailer
    simple/<canonical>/index.v1_json  PEP 691 + PEP 700 (versions, size, upload-time)
    pypi/<canonical>/json             legacy JSON API (what bandersnatch 8.x reads)
    packages/<b2[0:2]>/<b2[2:4]>/<b2[4:]>/<filename>            (b2 = blake2b-256 hex, as upstream does)
    packages/.../<filename>.metadata  PEP 658 core metadata, when the file has it

Sidecars (not part of the served tree; UpstreamServer refuses to serve them)::

    serials.json        {"serial": N, "projects": {canonical: serial}}: for X-PyPI-Last-Serial
    serials.map         nginx ``map $request_uri $x { default ""; include .../serials.map; }`` body:
                        ``/simple/ N;``, ``/simple N;``, ``/simple/<c>/ n;``, ``/pypi/<c>/json n;``
    .previous/          the generation of every page before its last rewrite (hard links) and
                        ``.previous/serials.json``: what a stale cache would serve

Page links are relative (``../../packages/...``). The legacy JSON needs absolute URLs: they start
with ``origin`` (``IndexTree(root, origin="http://127.0.0.1:8080")``), or, by default, with
:data:`ORIGIN_PLACEHOLDER`, which :class:`~tests.support.upstream_server.UpstreamServer` replaces
with its own origin when serving (for nginx: pass ``origin`` or use ``sub_filter``).

Serial model: every mutation bumps the global serial and sets the touched project's serial to it.
Mutations only change memory; :meth:`IndexTree.write` publishes them (changed pages only, each
page replaced atomically). Distribution bytes are kept in memory until ``write()`` stores them,
and ``write()`` unlinks the bytes of deleted files. Not thread-safe: mutate and write from one thread.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from .dists import build_sdist, build_wheel

__all__ = ["IndexTree", "FileEntry", "ORIGIN_PLACEHOLDER", "PAGE_FORMATS"]

ORIGIN_PLACEHOLDER = "http://upstream-origin.invalid"
API_VERSION = "1.1"
PAGE_FORMATS = ("json", "html", "legacy")
PREVIOUS_DIR = ".previous"
SERIALS_JSON = "serials.json"
SERIALS_MAP = "serials.map"
EPOCH = _dt.datetime(2020, 1, 1, tzinfo=_dt.timezone.utc)
_NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
_PATCH_KEYS = frozenset(
    {"filename", "url", "sha256", "size", "requires-python", "yanked", "core-metadata", "upload-time"}
)
Yanked = Union[bool, str]


@dataclass
class FileEntry:
    """One distribution file as upstream lists it. ``path`` is relative to the tree root."""

    filename: str
    version: str
    sha256: str
    md5: str
    blake2b_256: str
    size: int
    path: str
    requires_python: Optional[str]
    yanked: Yanked
    upload_time: _dt.datetime
    metadata_sha256: Optional[str]
    patch: dict[str, Any] = field(default_factory=dict)

    @property
    def url_path(self) -> str:
        """Absolute URL path of the file on the upstream, e.g. ``/packages/ab/cd/.../x.whl``."""
        return "/" + self.path

    @property
    def packagetype(self) -> str:
        if self.filename.endswith(".whl"):
            return "bdist_wheel"
        if self.filename.endswith(".egg"):
            return "bdist_egg"
        return "sdist"

    @property
    def python_version(self) -> str:
        if self.filename.endswith(".whl"):
            return self.filename[:-4].split("-")[-3]
        return "source"


@dataclass
class _Project:
    name: str
    canonical: str
    serial: int
    files: dict[str, FileEntry] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)


def _iso(moment: _dt.datetime) -> str:
    return moment.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _version_key(version: str) -> tuple[int, Any]:
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def version_from_filename(filename: str) -> str:
    """The version in a wheel or sdist filename (ValueError if it cannot be told)."""
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise ValueError(f"cannot tell the version of {filename!r}; pass version=") from exc


class IndexTree:
    """Build and mutate a static upstream index under ``root``; see the module docstring.

    Typical use::

        tree = IndexTree(tmp_path / "upstream")
        tree.add_wheel("a", "1.0", requires_dist=["b>=1"])
        tree.add_sdist("a", "1.0")
        tree.write()
        tree.yank("a", "a-1.0.tar.gz", "broken")
        tree.write()          # rewrites only a's pages, the root and the sidecars
    """

    def __init__(
        self, root: Path, *, origin: Optional[str] = None, start_serial: int = 0, io_workers: int = 4
    ) -> None:
        """``origin``: scheme://host[:port] put in front of the legacy JSON's file URLs (default
        :data:`ORIGIN_PLACEHOLDER`). ``io_workers``: threads that create files in ``write()``
        (file creation dominates on disk: 4 threads halve a 20k-project first write there; on
        tmpfs 1 is a little faster)."""
        self.root = Path(root)
        self._root_s = str(self.root)
        self._io_workers = max(1, min(int(io_workers), 16))
        self.origin = (origin or ORIGIN_PLACEHOLDER).rstrip("/")
        self._serial = start_serial
        self._projects: dict[str, _Project] = {}
        self._dirty: set[str] = set()
        self._root_dirty = True
        self._raw_root: dict[str, bytes] = {}
        self._pending_unlink: list[str] = []
        self._pending_store: dict[str, bytes] = {}
        self._refs: dict[str, int] = {}  # stored rel path -> how many listed files use it
        self._made_dirs: set[str] = set()
        self._page_serial: dict[str, int] = {}  # rel page path -> serial of what is on disk
        self._prev_serial: dict[str, int] = {}  # rel page path -> serial of .previous copy
        self.root.mkdir(parents=True, exist_ok=True)

    # ----------------------------------------------------------------- reading
    @property
    def serial(self) -> int:
        """The global serial (the last mutation's)."""
        return self._serial

    def project_serial(self, name: str) -> int:
        """The serial of project ``name`` (any spelling); KeyError if it does not exist."""
        return self._project(name).serial

    def projects(self) -> dict[str, int]:
        """``{canonical name: serial}`` of every live project."""
        return {c: p.serial for c, p in self._projects.items()}

    def files(self, project: str) -> list[FileEntry]:
        """The files of ``project`` in upload order."""
        return list(self._project(project).files.values())

    def file(self, project: str, filename: str) -> FileEntry:
        return self._file(project, filename)

    def file_path(self, project: str, filename: str) -> Path:
        """Where the bytes of a file are stored on disk (after the next ``write()``)."""
        return self.root / self._file(project, filename).path

    def page_path(self, project: str, fmt: str = "json") -> Path:
        """On-disk path of a project's page; ``fmt`` is one of :data:`PAGE_FORMATS`."""
        return self.root / self._page_rel(canonicalize_name(project), fmt)

    # ---------------------------------------------------------------- mutating
    def add_project(self, name: str) -> str:
        """Create an empty project; returns its canonical name. ValueError if it exists."""
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(f"invalid project name {name!r} (use set_raw_root for hostile names)")
        canonical = canonicalize_name(name)
        if canonical in self._projects:
            raise ValueError(f"project {canonical!r} exists")
        self._projects[canonical] = _Project(name=name, canonical=canonical, serial=0)
        self._bump(canonical)
        return canonical

    def add_file(
        self,
        project: str,
        filename: str,
        data: bytes,
        *,
        metadata: Optional[bytes] = None,
        requires_python: Optional[str] = None,
        yanked: Yanked = False,
        upload_time: Optional[_dt.datetime] = None,
        version: Optional[str] = None,
    ) -> FileEntry:
        """Store ``data`` and list it under ``project`` (created if missing).

        ``metadata`` is the PEP 658 core metadata served as ``<file>.metadata`` (None: the file
        has none). ``version`` defaults to the one in the filename. ``upload_time`` defaults to a
        deterministic clock (2020-01-01 plus the serial in seconds).
        """
        if "/" in filename or "\\" in filename or filename in ("", ".", "..") or "\x00" in filename:
            raise ValueError(f"unsafe filename {filename!r} (use patch_file for hostile filenames)")
        canonical = canonicalize_name(project)
        if canonical not in self._projects:
            self.add_project(project)
        proj = self._projects[canonical]
        if filename in proj.files:
            raise ValueError(f"{filename!r} already exists in {canonical!r}")
        blake = hashlib.blake2b(data, digest_size=32).hexdigest()
        rel = f"packages/{blake[:2]}/{blake[2:4]}/{blake[4:]}/{filename}"
        self._store(rel, data)
        self._refs[rel] = self._refs.get(rel, 0) + 1
        meta_sha = None
        if metadata is not None:
            self._store(rel + ".metadata", metadata)
            self._refs[rel + ".metadata"] = self._refs.get(rel + ".metadata", 0) + 1
            meta_sha = hashlib.sha256(metadata).hexdigest()
        serial = self._bump(canonical)
        entry = FileEntry(
            filename=filename,
            version=version if version is not None else version_from_filename(filename),
            sha256=hashlib.sha256(data).hexdigest(),
            md5=hashlib.md5(data).hexdigest(),
            blake2b_256=blake,
            size=len(data),
            path=rel,
            requires_python=requires_python,
            yanked=yanked,
            upload_time=upload_time or EPOCH + _dt.timedelta(seconds=serial),
            metadata_sha256=meta_sha,
        )
        proj.files[filename] = entry
        return entry

    def add_wheel(
        self,
        project: str,
        version: str,
        *,
        yanked: Yanked = False,
        upload_time: Optional[_dt.datetime] = None,
        with_metadata: bool = True,
        **build_kwargs: Any,
    ) -> FileEntry:
        """Build a wheel with :func:`~tests.support.dists.build_wheel` (kwargs go there) and add
        it; its Requires-Python is advertised and its METADATA served as ``.metadata``."""
        name = self._projects[canonicalize_name(project)].name if canonicalize_name(project) in self._projects else project
        filename, data, metadata = build_wheel(name, version, **build_kwargs)
        return self.add_file(
            project,
            filename,
            data,
            metadata=metadata if with_metadata else None,
            requires_python=build_kwargs.get("requires_python"),
            yanked=yanked,
            upload_time=upload_time,
            version=version,
        )

    def add_sdist(
        self,
        project: str,
        version: str,
        *,
        yanked: Yanked = False,
        upload_time: Optional[_dt.datetime] = None,
        with_metadata: bool = False,
        **build_kwargs: Any,
    ) -> FileEntry:
        """Build an sdist with :func:`~tests.support.dists.build_sdist` and add it (no
        ``.metadata`` unless ``with_metadata``: upstream serves none for sdists)."""
        name = self._projects[canonicalize_name(project)].name if canonicalize_name(project) in self._projects else project
        filename, data, pkg_info = build_sdist(name, version, **build_kwargs)
        return self.add_file(
            project,
            filename,
            data,
            metadata=pkg_info if with_metadata else None,
            requires_python=build_kwargs.get("requires_python"),
            yanked=yanked,
            upload_time=upload_time,
            version=version,
        )

    def yank(self, project: str, filename: str, reason: Yanked = True) -> None:
        """PEP 592: mark a file yanked (``reason`` a string, or True for no reason)."""
        self._file(project, filename).yanked = reason
        self._bump(canonicalize_name(project))

    def unyank(self, project: str, filename: str) -> None:
        self._file(project, filename).yanked = False
        self._bump(canonicalize_name(project))

    def delete_file(self, project: str, filename: str) -> None:
        """Unlist a file; ``write()`` then unlinks its bytes (and ``.metadata``)."""
        self._unlist(self._project(project), filename)
        self._bump(canonicalize_name(project))

    def delete_project(self, name: str) -> None:
        """Remove a project (one serial bump): gone from the root, its pages and files removed
        by ``write()``."""
        proj = self._project(name)
        for filename in list(proj.files):
            self._unlist(proj, filename)
        del self._projects[proj.canonical]
        self._bump(proj.canonical)

    def touch(self, project: str) -> int:
        """Bump the serial of ``project`` without changing anything else; returns the serial."""
        self._project(project)
        return self._bump(canonicalize_name(project))

    def patch_file(self, project: str, filename: str, /, **fields: Any) -> None:
        """Make the pages lie about one file (hostile upstream). Keyword names use the JSON
        spelling with ``_`` for ``-``: ``filename``, ``url`` (relative to the project page),
        ``sha256``, ``size``, ``requires_python``, ``yanked``, ``core_metadata`` (False, True or
        {"sha256": ...}), ``upload_time`` (string). Applies to the JSON, HTML and legacy pages;
        the stored bytes do not change. ``patch_file(p, f)`` with no fields clears the patch.
        """
        entry = self._file(project, filename)
        patch = {k.replace("_", "-"): v for k, v in fields.items()}
        unknown = set(patch) - _PATCH_KEYS
        if unknown:
            raise ValueError(f"cannot patch {sorted(unknown)}; known: {sorted(_PATCH_KEYS)}")
        entry.patch = patch if fields else {}
        self._bump(canonicalize_name(project))

    def set_raw_page(self, project: str, fmt: str, body: Optional[bytes]) -> None:
        """Serve ``body`` verbatim as the project's ``fmt`` page (one of :data:`PAGE_FORMATS`)
        instead of the generated one, e.g. malformed JSON; ``None`` goes back to generating."""
        if fmt not in PAGE_FORMATS:
            raise ValueError(f"fmt must be one of {PAGE_FORMATS}")
        proj = self._project(project)
        if body is None:
            proj.raw.pop(fmt, None)
        else:
            proj.raw[fmt] = body
        self._bump(proj.canonical)

    def set_raw_root(self, fmt: str, body: Optional[bytes]) -> None:
        """Serve ``body`` verbatim as the root ``json`` or ``html`` page (None: generate)."""
        if fmt not in ("json", "html"):
            raise ValueError("fmt must be 'json' or 'html'")
        if body is None:
            self._raw_root.pop(fmt, None)
        else:
            self._raw_root[fmt] = body
        self._serial += 1
        self._root_dirty = True

    # ----------------------------------------------------------------- writing
    def write(self) -> int:
        """Publish every change since the last write; returns how many pages were written.

        Order: new distribution files, changed projects' pages, the root pages, the sidecars,
        then the unlinking of deleted files, so a reader never sees a link to something not yet
        written. File system work runs on a few threads (file creation dominates).
        """
        jobs: list[tuple[str, int, bytes]] = []
        removed: list[str] = []
        for canonical in sorted(self._dirty):
            proj = self._projects.get(canonical)
            if proj is None:
                removed.append(canonical)
                continue
            for fmt, render in (("json", self._project_json), ("html", self._project_html),
                                ("legacy", self._legacy_json)):
                body = proj.raw[fmt] if fmt in proj.raw else render(proj)
                jobs.append((self._page_rel(canonical, fmt), proj.serial, body))
        stores = list(self._pending_store.items())
        self._pending_store.clear()
        if self._io_workers > 1:
            with ThreadPoolExecutor(max_workers=self._io_workers) as pool:
                list(pool.map(lambda item: self._store_now(*item, atomic=False), stores, chunksize=64))
                list(pool.map(lambda job: self._write_page(*job), jobs, chunksize=64))
        else:
            for rel, data in stores:
                self._store_now(rel, data, atomic=False)
            for job in jobs:
                self._write_page(*job)
        for canonical in removed:
            self._remove_project_pages(canonical)
        written = len(jobs)
        if self._root_dirty or self._dirty:
            for fmt, rel, render in (("json", "simple/index.v1_json", self._root_json),
                                     ("html", "simple/index.html", self._root_html)):
                self._write_page(rel, self._serial, self._raw_root[fmt] if fmt in self._raw_root else render())
                written += 1
            self._write_sidecars()
        for rel in self._pending_unlink:
            if rel not in self._refs:  # not listed again since
                try:
                    os.unlink(self.root / rel)
                except FileNotFoundError:
                    pass
        self._pending_unlink.clear()
        self._dirty.clear()
        self._root_dirty = False
        return written

    # --------------------------------------------------------------- internals
    def _project(self, name: str) -> _Project:
        try:
            return self._projects[canonicalize_name(name)]
        except KeyError:
            raise KeyError(f"no project {name!r}") from None

    def _file(self, project: str, filename: str) -> FileEntry:
        try:
            return self._project(project).files[filename]
        except KeyError:
            raise KeyError(f"no file {filename!r} in project {project!r}") from None

    def _unlist(self, proj: _Project, filename: str) -> None:
        entry = proj.files.pop(filename)
        paths = [entry.path] + ([entry.path + ".metadata"] if entry.metadata_sha256 is not None else [])
        for rel in paths:
            self._refs[rel] -= 1
            if not self._refs[rel]:
                del self._refs[rel]
                self._pending_unlink.append(rel)

    def _bump(self, canonical: str) -> int:
        self._serial += 1
        if canonical in self._projects:
            self._projects[canonical].serial = self._serial
        self._dirty.add(canonical)
        self._root_dirty = True
        return self._serial

    @staticmethod
    def _page_rel(canonical: str, fmt: str) -> str:
        if fmt == "json":
            return f"simple/{canonical}/index.v1_json"
        if fmt == "html":
            return f"simple/{canonical}/index.html"
        if fmt == "legacy":
            return f"pypi/{canonical}/json"
        raise ValueError(f"fmt must be one of {PAGE_FORMATS}")

    def _makedirs(self, rel_dir: str) -> None:
        if rel_dir and rel_dir not in self._made_dirs:
            os.makedirs(os.path.join(self._root_s, rel_dir), exist_ok=True)
            self._made_dirs.add(rel_dir)

    def _store(self, rel: str, data: bytes) -> None:
        """Queue ``data`` to be written at ``rel`` by the next ``write()``."""
        self._pending_store[rel] = data

    def _store_now(self, rel: str, data: bytes, atomic: bool = True) -> None:
        self._makedirs(os.path.dirname(rel))
        target = os.path.join(self._root_s, rel)
        if not atomic:  # content-addressed distribution files: unlinked until pages are written
            with open(target, "wb") as fh:
                fh.write(data)
            return
        tmp = f"{target}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)

    def _write_page(self, rel: str, serial: int, body: bytes) -> None:
        """Atomically replace a page, keeping the old one as ``.previous/<rel>``.

        Runs on worker threads: each call touches only its own page's paths and dict keys.
        """
        self._makedirs(os.path.dirname(rel))
        target = os.path.join(self._root_s, rel)
        if rel in self._page_serial:
            self._makedirs(f"{PREVIOUS_DIR}/{os.path.dirname(rel)}")
            prev = os.path.join(self._root_s, PREVIOUS_DIR, rel)
            prev_tmp = prev + ".tmp"
            try:
                os.unlink(prev_tmp)
            except FileNotFoundError:
                pass
            try:
                os.link(target, prev_tmp)
                os.replace(prev_tmp, prev)
                self._prev_serial[rel] = self._page_serial[rel]
            except FileNotFoundError:
                pass
            tmp = target + ".tmp"
            with open(tmp, "wb") as fh:
                fh.write(body)
            os.replace(tmp, target)
        else:  # a new page: nothing links to it before this write() ends, so no rename needed
            with open(target, "wb") as fh:
                fh.write(body)
        self._page_serial[rel] = serial

    def _remove_project_pages(self, canonical: str) -> None:
        for fmt in PAGE_FORMATS:
            rel = self._page_rel(canonical, fmt)
            self._page_serial.pop(rel, None)
            self._prev_serial.pop(rel, None)
            for path in (self.root / rel, self.root / PREVIOUS_DIR / rel):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        for rel_dir in (f"simple/{canonical}", f"pypi/{canonical}"):
            for base in (self.root, self.root / PREVIOUS_DIR):
                try:
                    os.rmdir(base / rel_dir)
                except OSError:
                    pass
            self._made_dirs.discard(rel_dir)
            self._made_dirs.discard(f"{PREVIOUS_DIR}/{rel_dir}")

    def _write_sidecars(self) -> None:
        current = {"serial": self._serial,
                   "projects": {c: p.serial for c, p in sorted(self._projects.items())}}
        previous: dict[str, Any] = {"serial": self._prev_serial.get("simple/index.v1_json"), "projects": {}}
        for rel, serial in self._prev_serial.items():
            parts = rel.split("/")
            if len(parts) == 3:
                previous["projects"][parts[1]] = serial
        map_lines = [f"/simple/ {self._serial};", f"/simple {self._serial};",
                     f"/simple/index.html {self._serial};", f"/simple/index.v1_json {self._serial};"]
        for c, p in sorted(self._projects.items()):
            map_lines.append(f"/simple/{c}/ {p.serial};")
            map_lines.append(f"/pypi/{c}/json {p.serial};")
        self._store_now(SERIALS_MAP, ("\n".join(map_lines) + "\n").encode("ascii"))
        self._store_now(f"{PREVIOUS_DIR}/{SERIALS_JSON}", json.dumps(previous).encode("utf-8"))
        self._store_now(SERIALS_JSON, json.dumps(current).encode("utf-8"))

    # ------------------------------------------------------------------ pages
    def _file_fields(self, entry: FileEntry) -> dict[str, Any]:
        """The PEP 691 view of a file, patches applied; ``url`` relative to the project page."""
        meta: Union[bool, dict[str, str]] = (
            {"sha256": entry.metadata_sha256} if entry.metadata_sha256 is not None else False
        )
        fields: dict[str, Any] = {
            "filename": entry.filename,
            "url": "../../" + entry.path,
            "sha256": entry.sha256,
            "size": entry.size,
            "requires-python": entry.requires_python,
            "yanked": entry.yanked,
            "core-metadata": meta,
            "upload-time": _iso(entry.upload_time),
        }
        fields.update(entry.patch)
        return fields

    def _project_json(self, proj: _Project) -> bytes:
        files = []
        for entry in proj.files.values():
            f = self._file_fields(entry)
            files.append({
                "filename": f["filename"],
                "url": f["url"],
                "hashes": {"sha256": f["sha256"]},
                "requires-python": f["requires-python"],
                "yanked": f["yanked"],
                "core-metadata": f["core-metadata"],
                "data-dist-info-metadata": f["core-metadata"],
                "size": f["size"],
                "upload-time": f["upload-time"],
            })
        doc = {
            "meta": {"api-version": API_VERSION, "_last-serial": proj.serial},
            "name": proj.canonical,
            "versions": sorted({e.version for e in proj.files.values()}, key=_version_key),
            "files": files,
        }
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    def _project_html(self, proj: _Project) -> bytes:
        esc = html.escape
        title = esc(proj.name)
        lines = [
            "<!DOCTYPE html>",
            "<html>",
            "  <head>",
            f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
            f"    <title>Links for {title}</title>",
            "  </head>",
            "  <body>",
            f"    <h1>Links for {title}</h1>",
        ]
        for entry in proj.files.values():
            f = self._file_fields(entry)
            href = f"{f['url']}#sha256={f['sha256']}" if f["sha256"] else f["url"]
            attrs = [f'href="{esc(href)}"']
            if f["requires-python"] is not None:
                attrs.append(f'data-requires-python="{esc(f["requires-python"])}"')
            if f["yanked"] is not False:
                reason = f["yanked"] if isinstance(f["yanked"], str) else ""
                attrs.append(f'data-yanked="{esc(reason)}"')
            meta = f["core-metadata"]
            if meta is True:
                attrs += ['data-core-metadata="true"', 'data-dist-info-metadata="true"']
            elif isinstance(meta, dict) and meta:
                value = esc("{}={}".format(*next(iter(meta.items()))))
                attrs += [f'data-core-metadata="{value}"', f'data-dist-info-metadata="{value}"']
            lines.append(f"    <a {' '.join(attrs)}>{esc(f['filename'])}</a><br />")
        lines += ["  </body>", "</html>", f"<!--SERIAL {proj.serial}-->", ""]
        return "\n".join(lines).encode("utf-8")

    def _legacy_file(self, proj: _Project, entry: FileEntry) -> dict[str, Any]:
        f = self._file_fields(entry)
        url = f["url"]
        if "://" not in url:
            url = self.origin + "/" + _resolve_relative(f"simple/{proj.canonical}/", url)
        yanked = f["yanked"]
        upload = f["upload-time"]
        return {
            "comment_text": "",
            "digests": {"blake2b_256": entry.blake2b_256, "md5": entry.md5, "sha256": f["sha256"]},
            "downloads": -1,
            "filename": f["filename"],
            "has_sig": False,
            "md5_digest": entry.md5,
            "packagetype": entry.packagetype,
            "python_version": entry.python_version,
            "requires_python": f["requires-python"],
            "size": f["size"],
            "upload_time": upload[:19] if isinstance(upload, str) else upload,
            "upload_time_iso_8601": upload,
            "url": url,
            "yanked": yanked is not False,
            "yanked_reason": yanked if isinstance(yanked, str) and yanked else None,
            "core-metadata": f["core-metadata"],
            "data-dist-info-metadata": f["core-metadata"],
        }

    def _legacy_json(self, proj: _Project) -> bytes:
        releases: dict[str, list[dict[str, Any]]] = {}
        for entry in proj.files.values():
            releases.setdefault(entry.version, []).append(self._legacy_file(proj, entry))
        versions = sorted(releases, key=_version_key)
        finals = [v for v in versions if _version_key(v)[0] and not Version(v).is_prerelease]
        latest = (finals or versions or [None])[-1]
        latest_files = [e for e in proj.files.values() if e.version == latest]
        info = {
            "name": proj.name,
            "version": latest,
            "summary": f"Test distribution {proj.name}",
            "requires_python": latest_files[0].requires_python if latest_files else None,
            "requires_dist": None,
            "yanked": bool(latest_files) and all(e.yanked is not False for e in latest_files),
            "yanked_reason": None,
            "project_url": f"{self.origin}/project/{proj.canonical}/",
            "package_url": f"{self.origin}/project/{proj.canonical}/",
            "release_url": f"{self.origin}/project/{proj.canonical}/{latest}/",
        }
        doc = {
            "info": info,
            "last_serial": proj.serial,
            "releases": {v: releases[v] for v in versions},
            "urls": releases.get(latest, []) if latest is not None else [],
            "vulnerabilities": [],
        }
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    def _root_json(self) -> bytes:
        doc = {
            "meta": {"api-version": API_VERSION, "_last-serial": self._serial},
            "projects": [{"name": p.name, "_last-serial": p.serial}
                         for _, p in sorted(self._projects.items())],
        }
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    def _root_html(self) -> bytes:
        lines = [
            "<!DOCTYPE html>",
            "<html>",
            "  <head>",
            f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
            "    <title>Simple index</title>",
            "  </head>",
            "  <body>",
        ]
        lines += [f'    <a href="{c}/">{html.escape(p.name)}</a>' for c, p in sorted(self._projects.items())]
        lines += ["  </body>", "</html>", f"<!--SERIAL {self._serial}-->", ""]
        return "\n".join(lines).encode("utf-8")


def _resolve_relative(base_dir: str, href: str) -> str:
    """Resolve ``href`` against the root-relative directory ``base_dir`` (no leading slash)."""
    parts = [p for p in base_dir.split("/") if p]
    for seg in href.split("/"):
        if seg == "..":
            if parts:
                parts.pop()
        elif seg not in ("", "."):
            parts.append(seg)
    return "/".join(parts)
