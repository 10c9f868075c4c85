"""Names and filenames from upstream, validated before they touch the file system."""
from __future__ import annotations

import re
from typing import Optional

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from .errors import HostileDataError

_SEPARATORS = re.compile(r"[-_.]+")
# \Z, not $: $ also matches before a trailing newline ("foo\n" is no name). re.ASCII: with
# IGNORECASE alone, [A-Z] matches non-ASCII letters that fold to them (the long s, the Kelvin sign).
_NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE | re.ASCII)
_FILENAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!~-]*\Z")
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_LEGACY_SUFFIXES = (".egg", ".exe", ".msi", ".rpm", ".dmg", ".deb")
_SDIST_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz", ".tar")


def canonical_project(name: str) -> str:
    """Canonical name of a project name from upstream, or HostileDataError if it is unsafe.

    A name that matches PEP 508's name pattern canonicalises (PEP 503) to letters, digits and
    single dashes, never starting or ending with a dash: safe as a path component."""
    if not isinstance(name, str) or len(name) > 200 or not _NAME_RE.match(name):
        raise HostileDataError(f"upstream lists an invalid project name {name!r}")
    return _SEPARATORS.sub("-", name).lower()


_NAME_LINES_RE = re.compile(r"(?:[A-Z0-9](?:[A-Z0-9._-]{0,198}[A-Z0-9])?\n)*", re.IGNORECASE | re.ASCII)


def canonical_projects(names: list[object]) -> list[Optional[str]]:
    """canonical_project() for many names at once; None where a name is invalid."""
    if all(type(n) is str for n in names):
        joined = "\n".join(names) + "\n"  # type: ignore[arg-type]
        if _NAME_LINES_RE.fullmatch(joined):
            canonicals = _SEPARATORS.sub("-", joined).lower().split("\n")[:-1]
            if len(canonicals) == len(names):  # a name with a newline in it would split in two
                return canonicals  # type: ignore[return-value]
    out: list[Optional[str]] = []
    for name in names:
        try:
            out.append(canonical_project(name))  # type: ignore[arg-type]
        except HostileDataError:
            out.append(None)
    return out


def check_filename(filename: object) -> str:
    """A distribution filename that is safe as one path component."""
    if (
        not isinstance(filename, str)
        or not filename
        or len(filename) > 240
        or "/" in filename
        or "\\" in filename
        or "\x00" in filename
        or filename in (".", "..")
        or not _FILENAME_RE.match(filename)
    ):
        raise HostileDataError(f"upstream gives an unsafe filename {filename!r}")
    return filename


def check_sha256(value: object) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not _HEX64.match(value.lower()):
        raise HostileDataError(f"upstream gives a malformed sha256 {value!r}")
    return value.lower()


def is_sdist(filename: str) -> bool:
    return filename.endswith(_SDIST_SUFFIXES)


def version_of(filename: str, canonical: str) -> Optional[str]:
    """The version in a distribution filename, or None when it cannot be told."""
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        if filename.endswith((".tar.gz", ".zip")):
            return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, ValueError):
        pass
    # legacy sdists (.tar.bz2, ...), eggs and installers: <name>-<version>[-...].<ext>
    stem = filename
    for suffix in _SDIST_SUFFIXES + _LEGACY_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    else:
        return None
    parts = stem.split("-")
    for i in range(1, len(parts)):
        if canonicalize_name("-".join(parts[:i])) == canonical:
            return parts[i] or None
    return parts[1] if len(parts) > 1 else None


def package_path(sha256: str, filename: str) -> str:
    """Where a file lives under web/: content addressed, so a changed file never overwrites."""
    return f"packages/{sha256[:2]}/{sha256[2:4]}/{sha256[4:]}/{filename}"
