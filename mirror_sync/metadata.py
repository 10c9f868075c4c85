"""Core metadata (PEP 643/658): read Requires-Dist from .metadata bytes, wheels and sdists."""
from __future__ import annotations

import io
import zipfile
import zlib
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Optional, Union

from .names import is_sdist

_MAX_MEMBER = 16 * 1024 * 1024  # never read a metadata member bigger than this


def requires_dist(metadata: bytes) -> list[str]:
    """The Requires-Dist values of a METADATA/PKG-INFO document."""
    message = BytesHeaderParser().parsebytes(metadata)
    return [" ".join(v.split()) for v in message.get_all("Requires-Dist") or []]


def _is_dynamic(metadata: bytes) -> bool:
    message = BytesHeaderParser().parsebytes(metadata)
    version = message.get("Metadata-Version", "1.0")
    dynamic = {d.strip().lower() for d in message.get_all("Dynamic") or []}
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return True
    return (major, minor) < (2, 2) or "requires-dist" in dynamic


def wheel_metadata(source: Union[Path, bytes]) -> Optional[bytes]:
    """METADATA from a wheel (a path, or its bytes), or None when it has none (or is not a zip)."""
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as zf:
            for info in zf.infolist():
                parts = info.filename.split("/")
                if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
                    return _read_member(zf, info)
    except (zipfile.BadZipFile, zlib.error, OSError, KeyError, ValueError):
        return None
    return None


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Optional[bytes]:
    """A member's bytes, read with a bound whatever its header claims (a member that lies about
    its size would otherwise inflate in full before the size check); None when it is too big."""
    if info.file_size > _MAX_MEMBER:
        return None
    with zf.open(info) as fh:
        data = fh.read(_MAX_MEMBER + 1)
    return None if len(data) > _MAX_MEMBER else data


def sdist_requires(path: Path) -> Optional[list[str]]:
    """Requires-Dist of an sdist: PKG-INFO when it is authoritative (2.2+, not dynamic),
    else an egg-info requires.txt; None when neither tells."""
    import tarfile  # only closures over sdists read one

    members: dict[str, bytes] = {}
    wanted = ("PKG-INFO", "requires.txt")
    try:
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    parts = info.filename.split("/")
                    if parts[-1] in wanted and len(parts) <= 3:
                        data = _read_member(zf, info)
                        if data is not None:
                            members.setdefault("/".join(parts[1:]), data)
        else:
            with tarfile.open(path) as tf:
                for member in tf:
                    parts = member.name.split("/")
                    if parts[-1] in wanted and len(parts) <= 3 and member.isfile() and member.size <= _MAX_MEMBER:
                        handle = tf.extractfile(member)
                        if handle is not None:
                            members.setdefault("/".join(parts[1:]), handle.read())
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError):
        return None
    pkg_info = members.get("PKG-INFO")
    if pkg_info is not None and not _is_dynamic(pkg_info):
        return requires_dist(pkg_info)
    for key, data in members.items():
        if key.endswith(".egg-info/requires.txt"):
            return _requires_txt(data.decode("utf-8", "replace"))
    return None


def _requires_txt(text: str) -> list[str]:
    """setuptools' requires.txt: plain lines, then [extra] or [extra:marker] or [:marker] sections."""
    out: list[str] = []
    section_marker = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            extra, _, marker = line[1:-1].partition(":")
            parts = []
            if extra:
                parts.append(f'extra == "{extra}"')
            if marker:
                parts.append(f"({marker})")
            section_marker = " and ".join(parts)
            continue
        out.append(f"{line}; {section_marker}" if section_marker else line)
    return out


def file_requires(path: Path, filename: str) -> Optional[list[str]]:
    if filename.endswith(".whl"):
        data = wheel_metadata(path)
        return requires_dist(data) if data is not None else None
    if is_sdist(filename):
        return sdist_requires(path)
    return None
