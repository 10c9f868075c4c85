"""Build real, installable distributions in memory: wheels and sdists, deterministic and fast.

No subprocess and no build backend: a wheel is a zip written with :mod:`zipfile`, an sdist a
gzip'd tar written with :mod:`tarfile`. Timestamps are fixed, so the same arguments always give
the same bytes (and the same sha256).

>>> filename, data, metadata = build_wheel("Foo.Bar", "1.0", requires_dist=['baz>=2; extra == "x"'])
>>> filename
'foo_bar-1.0-py3-none-any.whl'
"""
from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import re
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from typing import Optional, Union

from packaging.tags import parse_tag
from packaging.utils import canonicalize_name
from packaging.version import Version

__all__ = [
    "build_wheel",
    "build_sdist",
    "dist_filename_name",
    "import_name",
    "normalized_version",
    "record_hash",
]

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
TAR_EPOCH = 0
_EXTRA_RE = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")

FileContent = Union[str, bytes]


def dist_filename_name(name: str) -> str:
    """The name component of a wheel or sdist filename: canonical, with ``-`` as ``_``."""
    return canonicalize_name(name).replace("-", "_")


def normalized_version(version: str) -> str:
    """PEP 440 normal form of ``version`` as it appears in file names (raises on invalid)."""
    return str(Version(version)).replace("-", "_")


def import_name(name: str) -> str:
    """The top-level package the default module set uses for project ``name``."""
    base = dist_filename_name(name).replace(".", "_")
    return base if base[0].isalpha() or base[0] == "_" else f"_{base}"


def record_hash(data: bytes) -> str:
    """``sha256=<urlsafe base64, no padding>`` as used in RECORD."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _as_bytes(content: FileContent) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else content


def _extras(requires_dist: Iterable[str], extras: Iterable[str]) -> list[str]:
    found: list[str] = []
    for extra in list(extras) + [m for req in requires_dist for m in _EXTRA_RE.findall(req)]:
        if extra not in found:
            found.append(extra)
    return found


def core_metadata(
    name: str,
    version: str,
    *,
    requires_dist: Iterable[str] = (),
    requires_python: Optional[str] = None,
    extras: Iterable[str] = (),
    metadata_version: str = "2.1",
    summary: Optional[str] = None,
) -> bytes:
    """Core metadata (METADATA / PKG-INFO) bytes.

    ``Provides-Extra`` lists ``extras`` plus every extra named by a marker in ``requires_dist``.
    """
    reqs = list(requires_dist)
    lines = [
        f"Metadata-Version: {metadata_version}",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {summary if summary is not None else f'Test distribution {name}'}",
    ]
    if requires_python is not None:
        lines.append(f"Requires-Python: {requires_python}")
    lines.extend(f"Provides-Extra: {extra}" for extra in _extras(reqs, extras))
    lines.extend(f"Requires-Dist: {req}" for req in reqs)
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def _default_modules(name: str, version: str) -> dict[str, FileContent]:
    return {f"{import_name(name)}/__init__.py": f'__version__ = "{version}"\n'}


def _zip_write(zf: zipfile.ZipFile, path: str, data: bytes) -> None:
    info = zipfile.ZipInfo(path, date_time=ZIP_EPOCH)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def build_wheel(
    name: str,
    version: str,
    *,
    requires_dist: Iterable[str] = (),
    requires_python: Optional[str] = None,
    tag: str = "py3-none-any",
    extras: Iterable[str] = (),
    modules: Optional[Mapping[str, FileContent]] = None,
) -> tuple[str, bytes, bytes]:
    """Build a wheel; return ``(filename, wheel bytes, METADATA bytes)``.

    ``tag`` is a (possibly compressed) tag triple such as ``py2.py3-none-any`` or
    ``cp311-cp311-manylinux_2_17_x86_64``. ``modules`` maps archive paths to file contents and
    replaces the default ``<import_name>/__init__.py`` that sets ``__version__``.
    ``requires_dist`` entries are PEP 508 strings, markers included
    (``'b>=1; extra == "x"'``, ``'c; python_version < "3.8"'``).
    """
    dist = dist_filename_name(name)
    ver = normalized_version(version)
    tags = sorted(str(t) for t in parse_tag(tag))  # validates the tag triple
    filename = f"{dist}-{ver}-{tag}.whl"
    dist_info = f"{dist}-{ver}.dist-info"
    metadata = core_metadata(
        name, version, requires_dist=requires_dist, requires_python=requires_python, extras=extras
    )
    purelib = tag.rsplit("-", 1)[1] == "any"
    wheel_file = (
        "Wheel-Version: 1.0\n"
        "Generator: tests.support.dists\n"
        f"Root-Is-Purelib: {'true' if purelib else 'false'}\n"
        + "".join(f"Tag: {t}\n" for t in tags)
        + "\n"
    ).encode("ascii")
    files: list[tuple[str, bytes]] = [
        (path, _as_bytes(content))
        for path, content in (modules if modules is not None else _default_modules(name, version)).items()
    ]
    files.append((f"{dist_info}/METADATA", metadata))
    files.append((f"{dist_info}/WHEEL", wheel_file))
    record_io = io.StringIO()
    writer = csv.writer(record_io, lineterminator="\n")
    for path, data in files:
        writer.writerow([path, record_hash(data), str(len(data))])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    files.append((f"{dist_info}/RECORD", record_io.getvalue().encode("utf-8")))

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files:
            _zip_write(zf, path, data)
    return filename, buf.getvalue(), metadata


def _pyproject(name: str, version: str, requires_dist: list[str], requires_python: Optional[str]) -> bytes:
    def toml_str(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        "[build-system]",
        'requires = ["setuptools>=61"]',
        'build-backend = "setuptools.build_meta"',
        "",
        "[project]",
        f"name = {toml_str(name)}",
        f"version = {toml_str(version)}",
        "dependencies = [" + ", ".join(toml_str(r) for r in requires_dist if not _EXTRA_RE.search(r)) + "]",
    ]
    if requires_python is not None:
        lines.append(f"requires-python = {toml_str(requires_python)}")
    optional: dict[str, list[str]] = {}
    for req in requires_dist:
        match = _EXTRA_RE.search(req)
        if match:
            optional.setdefault(match.group(1), []).append(_strip_extra_clause(req, match))
    if optional:
        lines.append("")
        lines.append("[project.optional-dependencies]")
        lines.extend(f"{toml_str(extra)} = [" + ", ".join(toml_str(r) for r in reqs) + "]" for extra, reqs in optional.items())
    return ("\n".join(lines) + "\n").encode("utf-8")


def _strip_extra_clause(req: str, match: "re.Match[str]") -> str:
    """``'b; extra == "x" and python_version < "4"'`` -> ``'b; python_version < "4"'``."""
    head, _, marker = req.partition(";")
    clause = match.group(0)
    marker = re.sub(r"\s+and\s+" + re.escape(clause) + "|" + re.escape(clause) + r"\s+and\s+|" + re.escape(clause), "", marker, count=1).strip()
    return f"{head.strip()}; {marker}" if marker else head.strip()


def build_sdist(
    name: str,
    version: str,
    *,
    requires_dist: Iterable[str] = (),
    requires_python: Optional[str] = None,
    archive: str = "tar.gz",
) -> tuple[str, bytes, bytes]:
    """Build an sdist (``archive`` "tar.gz", or "zip"); return ``(filename, bytes, PKG-INFO bytes)``.

    PKG-INFO is Metadata-Version 2.2 with no ``Dynamic`` fields, so its Requires-Dist is
    authoritative. The archive holds ``PKG-INFO``, a static ``pyproject.toml`` and the package.
    """
    if archive not in ("tar.gz", "zip"):
        raise ValueError(f"an sdist is a .tar.gz or a .zip, not {archive!r}")
    reqs = list(requires_dist)
    base = f"{dist_filename_name(name)}-{normalized_version(version)}"
    pkg_info = core_metadata(
        name, version, requires_dist=reqs, requires_python=requires_python, metadata_version="2.2"
    )
    members: list[tuple[str, bytes]] = [
        (f"{base}/PKG-INFO", pkg_info),
        (f"{base}/pyproject.toml", _pyproject(name, version, reqs, requires_python)),
    ]
    members.extend((f"{base}/{path}", _as_bytes(c)) for path, c in _default_modules(name, version).items())
    if archive == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for path, data in members:
                _zip_write(zf, path, data)
        return f"{base}.zip", buf.getvalue(), pkg_info

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, data in members:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = TAR_EPOCH
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tf.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=TAR_EPOCH) as gz:
        gz.write(raw.getvalue())
    return f"{base}.tar.gz", out.getvalue(), pkg_info
