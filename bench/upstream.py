"""The synthetic upstream: an in-memory model of N projects and the static tree nginx serves.

Tree layout (relative to the root):
  simple/index.v1_json, simple/index.html       PEP 691 JSON root (with _last-serial) and PEP 503 root
  simple/<canonical>/index.v1_json, index.html  project pages (PEP 691 1.1 with PEP 700 fields / PEP 503)
  pypi/<canonical>/json                         the legacy JSON API bandersnatch 8.x reads
  packages/<sha[0:2]>/<sha[2:4]>/<sha[4:]>/<filename>[.metadata]   files and PEP 658 metadata
The per-project serials (for the X-PyPI-Last-Serial header) come from `serials()`.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Optional, Union

from .names import canonical, project_names
from .wheels import TINY, SizeModel, big_positions, big_size, build_wheel, lognormal_size, payload_for

_EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)
_TAGS = (
    "py3-none-any",
    "cp312-cp312-manylinux_2_17_x86_64",
    "cp311-cp311-manylinux_2_17_x86_64",
    "cp312-cp312-win_amd64",
    "cp312-cp312-macosx_11_0_arm64",
)
API_VERSION = "1.1"


@dataclass
class DistFile:
    filename: str
    version: str
    sha256: str
    size: int
    metadata_sha256: str
    upload_time: datetime
    requires_python: Optional[str]
    yanked: Union[bool, str]
    requires: tuple[str, ...] = ()  # Requires-Dist of its METADATA

    @property
    def path(self) -> str:
        s = self.sha256
        return f"packages/{s[:2]}/{s[2:4]}/{s[4:]}/{self.filename}"

    def iso_time(self) -> str:
        return self.upload_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Project:
    name: str
    canonical: str
    serial: int = 0
    files: list[DistFile] = field(default_factory=list)
    next_major: int = 0
    summary: str = ""

    def versions(self) -> list[str]:
        seen: dict[str, None] = {}
        for f in self.files:
            seen.setdefault(f.version, None)
        return list(seen)


@dataclass(frozen=True)
class Mutation:
    changed: list[str]
    added: list[DistFile]
    removed: list[DistFile]


@dataclass(frozen=True)
class Shape:
    """How big the upstream is."""

    projects: int
    wheels_per_release: int = 1
    many_release_projects: int = 0  # projects with 60..150 releases; default: 0.1% of the projects, at least 3
    seed: int = 1
    sizes: SizeModel = TINY  # file sizes: tiny (~1 KB) or lognormal (see wheels.SizeModel)


class Upstream:
    def __init__(self, root: Path, base_url: str, seed: int = 1, sizes: SizeModel = TINY) -> None:
        self.root = root
        self.base_url = base_url.rstrip("/")
        self.projects: dict[str, Project] = {}
        self.serial = 0
        self.sizes = sizes
        self._rng = random.Random(seed)
        # sizes come from their own stream: the projects, releases and names are the same whatever the size model
        self._size_rng = random.Random(f"sizes-{seed}")
        self._made_dirs: set[str] = set()

    # ---- generation -------------------------------------------------------------------------
    @classmethod
    def generate(cls, root: Path, base_url: str, shape: Shape) -> "Upstream":
        up = cls(root, base_url, shape.seed, shape.sizes)
        rng = up._rng
        names = project_names(shape.projects, shape.seed)
        many = shape.many_release_projects or max(3, shape.projects // 1000)
        many_set = set(rng.sample(range(len(names)), min(many, len(names))))
        canons = [canonical(n) for n in names]
        order = list(range(len(names)))
        rng.shuffle(order)  # serials are not in alphabetical order
        for i in order:
            name = names[i]
            proj = Project(name=name, canonical=canons[i], summary=f"The {name} project")
            up.projects[proj.canonical] = proj
            if i in many_set:
                releases = rng.randint(60, 150)
            else:
                releases = rng.choices((1, 2, 3, 5, 8), weights=(70, 12, 8, 7, 3))[0]
            deps = [rng.choice(canons) for _ in range(rng.choice((0, 0, 1, 2)))]
            for _ in range(releases):
                up._add_release(proj, shape.wheels_per_release, [d for d in deps if d != proj.canonical])
        up._make_big()
        return up

    def _make_big(self) -> None:
        """Rebuild the few big files of the size model (spread evenly over the files in creation order)."""
        ordered = sorted(((f.upload_time, c, i) for c, p in self.projects.items() for i, f in enumerate(p.files)))
        for pos in big_positions(len(ordered), self.sizes):
            _when, canon, index = ordered[pos]
            proj = self.projects[canon]
            old = proj.files[index]
            os.unlink(os.path.join(self.root, old.path))
            os.unlink(os.path.join(self.root, old.path + ".metadata"))
            size = big_size(self._size_rng, self.sizes)
            tag = "-".join(old.filename.removesuffix(".whl").rsplit("-", 3)[1:])
            proj.files[index] = self._write_wheel(proj, old.version, tag, old.requires_python,
                                                  list(old.requires), payload_for(size, old.filename), old.upload_time, old.yanked)

    def _next_version(self, proj: Project) -> str:
        rng = self._rng
        proj.next_major += 1
        major = proj.next_major - 1
        kind = rng.random()
        if kind < 0.05:
            return f"{major}.0.0rc1"
        if kind < 0.08:
            return f"{major}.0.post1"
        return f"{major}.{rng.randrange(10)}.{rng.randrange(20)}"

    def _add_release(self, proj: Project, wheels: int, deps: list[str]) -> list[DistFile]:
        rng = self._rng
        version = self._next_version(proj)
        self.serial += 1
        proj.serial = self.serial
        when = _EPOCH + timedelta(seconds=60 * self.serial)
        rp = ">=3.8" if rng.random() < 0.5 else None
        added = []
        for tag in _TAGS[: max(1, wheels)]:
            payload = b"# " + b"x" * rng.randrange(0, 1500) + b"\n"
            if self.sizes.kind == "lognormal":
                payload = payload_for(lognormal_size(self._size_rng, self.sizes), f"{proj.canonical} {version} {tag}")
            yanked: Union[bool, str] = False
            if rng.random() < 0.01:
                yanked = "broken build" if rng.random() < 0.5 else True
            f = self._write_wheel(proj, version, tag, rp, deps, payload, when, yanked)
            proj.files.append(f)
            added.append(f)
        return added

    def _write_wheel(self, proj: Project, version: str, tag: str, rp: Optional[str], deps: list[str],
                     payload: bytes, when: datetime, yanked: Union[bool, str]) -> DistFile:
        built = build_wheel(proj.name, version, summary=proj.summary, requires_python=rp, requires=deps, payload=payload)
        filename = built.filename.replace("py3-none-any", tag)
        f = DistFile(
            filename=filename,
            version=version,
            sha256=hashlib.sha256(built.data).hexdigest(),
            size=len(built.data),
            metadata_sha256=hashlib.sha256(built.metadata).hexdigest(),
            upload_time=when,
            requires_python=rp,
            yanked=yanked,
            requires=tuple(deps),
        )
        self._write_bytes(f.path, built.data)
        self._write_bytes(f.path + ".metadata", built.metadata)
        return f

    # ---- writing ------------------------------------------------------------------------------
    def _write_bytes(self, rel: str, data: bytes) -> None:
        path = os.path.join(self.root, rel)
        parent = os.path.dirname(path)
        if parent not in self._made_dirs:
            os.makedirs(parent, exist_ok=True)
            self._made_dirs.add(parent)
        with open(path, "wb") as fh:
            fh.write(data)

    def write_pages(self, only: Optional[Iterable[str]] = None) -> None:
        """Write project pages (all, or the given canonical names) and the root pages."""
        for canon in only if only is not None else self.projects:
            proj = self.projects[canon]
            self._write_bytes(f"simple/{canon}/index.v1_json", self.project_json(proj))
            self._write_bytes(f"simple/{canon}/index.html", self.project_html(proj))
            self._write_bytes(f"pypi/{canon}/json", self.legacy_json(proj))
        self._write_bytes("simple/index.v1_json", self.root_json())
        self._write_bytes("simple/index.html", self.root_html())

    def root_json(self) -> bytes:
        projects = [{"name": p.name, "_last-serial": p.serial} for p in self.projects.values()]
        return json.dumps({"meta": {"api-version": API_VERSION, "_last-serial": self.serial}, "projects": projects}).encode()

    def root_html(self) -> bytes:
        rows = "".join(f'    <a href="{p.canonical}/">{html.escape(p.name)}</a>\n' for p in self.projects.values())
        return (
            '<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" content="1.1">\n'
            f"    <title>Simple index</title>\n  </head>\n  <body>\n{rows}  </body>\n</html>\n"
        ).encode()

    def project_json(self, proj: Project) -> bytes:
        files = []
        for f in proj.files:
            meta = {"sha256": f.metadata_sha256}
            files.append(
                {
                    "filename": f.filename,
                    "url": f"../../{f.path}",
                    "hashes": {"sha256": f.sha256},
                    "requires-python": f.requires_python,
                    "size": f.size,
                    "upload-time": f.iso_time(),
                    "yanked": f.yanked,
                    "core-metadata": meta,
                    "data-dist-info-metadata": meta,
                }
            )
        page = {
            "meta": {"api-version": API_VERSION, "_last-serial": proj.serial},
            "name": proj.canonical,
            "files": files,
            "versions": proj.versions(),
        }
        return json.dumps(page).encode()

    def project_html(self, proj: Project) -> bytes:
        rows = []
        for f in proj.files:
            attrs = f' data-core-metadata="sha256={f.metadata_sha256}" data-dist-info-metadata="sha256={f.metadata_sha256}"'
            if f.requires_python:
                attrs += f' data-requires-python="{html.escape(f.requires_python)}"'
            if f.yanked:
                attrs += f' data-yanked="{html.escape(f.yanked) if isinstance(f.yanked, str) else ""}"'
            rows.append(f'    <a href="../../{f.path}#sha256={f.sha256}"{attrs}>{f.filename}</a><br />\n')
        return (
            '<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" content="1.1">\n'
            f"    <title>Links for {proj.canonical}</title>\n  </head>\n  <body>\n"
            f"    <h1>Links for {proj.canonical}</h1>\n{''.join(rows)}  </body>\n</html>\n"
        ).encode()

    def legacy_json(self, proj: Project) -> bytes:
        releases: dict[str, list[dict[str, object]]] = {}
        for f in proj.files:
            meta = {"sha256": f.metadata_sha256}
            releases.setdefault(f.version, []).append(
                {
                    "filename": f.filename,
                    "url": f"{self.base_url}/{f.path}",
                    "digests": {"sha256": f.sha256},
                    "size": f.size,
                    "packagetype": "bdist_wheel",
                    "python_version": "py3",
                    "requires_python": f.requires_python,
                    "upload_time": f.upload_time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "upload_time_iso_8601": f.iso_time(),
                    "yanked": bool(f.yanked),
                    "yanked_reason": f.yanked if isinstance(f.yanked, str) else None,
                    "core-metadata": meta,
                    "data-dist-info-metadata": meta,
                    "has_sig": False,
                }
            )
        latest = proj.files[-1].version if proj.files else ""
        doc = {
            "info": {"name": proj.name, "version": latest, "summary": proj.summary, "requires_python": None},
            "last_serial": proj.serial,
            "releases": releases,
            "urls": releases.get(latest, []),
            "vulnerabilities": [],
        }
        return json.dumps(doc).encode()

    # ---- the 1%-changed scenario ----------------------------------------------------------------
    def mutate(self, fraction: float, seed: int = 2) -> Mutation:
        """A new release for `fraction` of the projects, and the oldest file of each of them removed."""
        rng = random.Random(seed)
        count = max(1, round(len(self.projects) * fraction))
        chosen = rng.sample(sorted(self.projects), count)
        added: list[DistFile] = []
        removed: list[DistFile] = []
        for canon in chosen:
            proj = self.projects[canon]
            if proj.files:
                gone = proj.files.pop(0)
                removed.append(gone)
                for rel in (gone.path, gone.path + ".metadata"):
                    os.unlink(os.path.join(self.root, rel))
            added.extend(self._add_release(proj, 1, []))
        self.write_pages(chosen)
        return Mutation(changed=chosen, added=added, removed=removed)

    # ---- views ------------------------------------------------------------------------------------
    def serials(self) -> dict[str, int]:
        return {c: p.serial for c, p in self.projects.items()}

    def file_count(self) -> int:
        return sum(len(p.files) for p in self.projects.values())

    def file_sizes(self) -> list[int]:
        return [f.size for p in self.projects.values() for f in p.files]

    def largest_files(self, n: int) -> list[DistFile]:
        return sorted((f for p in self.projects.values() for f in p.files), key=lambda f: f.size, reverse=True)[:n]

    def expected_files(self) -> set[tuple[str, str]]:
        """(filename, sha256) of every file and metadata file a complete mirror holds."""
        out: set[tuple[str, str]] = set()
        for p in self.projects.values():
            for f in p.files:
                out.add((f.filename, f.sha256))
                out.add((f.filename + ".metadata", f.metadata_sha256))
        return out

    def sync_paths(self) -> list[str]:
        """The URL paths a full sync of the simple API fetches (project pages, files, metadata)."""
        paths = []
        for p in self.projects.values():
            paths.append(f"/simple/{p.canonical}/")
            for f in p.files:
                paths.append(f"/{f.path}")
                paths.append(f"/{f.path}.metadata")
        return paths
