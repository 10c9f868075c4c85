"""The organisation's own distributions: validate a wheel or an sdist, scan the `local:`
directory, add a built file to it.

A local distribution is checked the way an index checks an upload: its filename parses (PEP 427
wheel, PEP 625 sdist: ``.tar.gz`` or ``.zip``), its archive is readable and bounded (member count,
unpacked size, the size of each metadata member: a bomb is refused before it inflates), it holds
its core metadata where the specifications put it (a wheel's single ``<name>-<ver>.dist-info/
METADATA`` and ``WHEEL``, an sdist's ``<name>-<ver>/PKG-INFO``), and that metadata names the same
project and version as the filename. Every refusal is one LocalPackageError sentence that starts
with the file's name.

Reading is all this module does with an archive; nothing is extracted.
"""
from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import re
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path
from typing import IO, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import parse_tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from .errors import HostileDataError, LocalPackageError
from .fsutil import raise_if_full
from .metadata import requires_dist as metadata_requires_dist
from .models import ProjectPage, UpstreamFile
from .names import canonical_project, check_filename

WHEEL_SUFFIX = ".whl"
SDIST_SUFFIXES = (".tar.gz", ".zip")
SUFFIXES = (WHEEL_SUFFIX,) + SDIST_SUFFIXES
_CHUNK = 1 << 20
_METADATA_VERSION = re.compile(r"([12])\.(\d+)\Z")


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may hold before it is refused as a bomb."""

    members: int = 200_000  # entries in the archive (the largest wheels hold about 20,000)
    unpacked: int = 16 * 1024**3  # bytes all members declare together (a tar: its decompressed stream)
    member: int = 16 * 1024 * 1024  # bytes of one metadata member (METADATA, WHEEL, PKG-INFO) or tar header


DEFAULT_LIMITS = ArchiveLimits()


@dataclass(frozen=True)
class LocalDist:
    """One validated distribution file of the `local:` directory."""

    canonical: str  # PEP 503 name
    name: str  # the display name, as its core metadata spells it
    version: str  # PEP 440 normal form
    filename: str
    sha256: str
    size: int
    requires_python: str | None
    requires_dist: tuple[str, ...]  # Requires-Dist lines of its core metadata
    metadata: bytes | None  # a wheel's METADATA, to publish as its PEP 658 .metadata; None for sdists
    upload_time: str  # the file's mtime, PEP 700 form (yyyy-mm-ddThh:mm:ss.ffffffZ)
    path: Path
    mtime_ns: int
    yanked: bool = False

    @property
    def metadata_sha256(self) -> str | None:
        return hashlib.sha256(self.metadata).hexdigest() if self.metadata is not None else None


@dataclass(frozen=True)
class LocalProject:
    """A project of the `local:` directory: its display name and its files, sorted by filename."""

    canonical: str
    name: str
    files: tuple[LocalDist, ...]

    @property
    def versions(self) -> list[str]:
        """Its versions, oldest first (PEP 700's `versions`)."""
        return [str(v) for v in sorted({Version(f.version) for f in self.files})]


def _fail(shown: str, what: str) -> LocalPackageError:
    return LocalPackageError(f"{shown}: {what}")


# -- filenames -----------------------------------------------------------------------------------
def is_local_candidate(filename: str) -> bool:
    """A name the scan considers: a wheel or an sdist suffix, not hidden (temp files start with '.')."""
    return filename.endswith(SUFFIXES) and not filename.startswith(".")


def _parse_filename(filename: str, shown: str) -> tuple[str, str]:
    """(canonical name, normal version) that the filename gives, or the sentence why it gives none."""
    try:
        check_filename(filename)
    except HostileDataError:
        raise _fail(shown, "is not a safe distribution filename (letters, digits and ._+!~- only)") from None
    if filename.endswith(WHEEL_SUFFIX):
        try:
            name, version, _build, _tags = parse_wheel_filename(filename)
        except InvalidWheelFilename as exc:
            raise _fail(shown, f"is not a valid wheel filename ({_reason(exc)})") from None
        return str(name), str(version)
    if filename.endswith(SDIST_SUFFIXES):
        try:
            name, version = parse_sdist_filename(filename)
            canonical_project(_sdist_stem(filename).rpartition("-")[0])
        except InvalidSdistFilename as exc:
            raise _fail(shown, f"is not a valid sdist filename ({_reason(exc)})") from None
        except HostileDataError:
            raise _fail(shown, "is not a valid sdist filename (its name part is not a valid project name)") from None
        return str(name), str(version)
    raise _fail(shown, "is neither a wheel (.whl) nor an sdist (.tar.gz, .zip)")


def _reason(exc: Exception) -> str:
    """packaging's message without its repeated filename: "Invalid wheel filename (wrong number of parts): 'x'"."""
    text = str(exc)
    head, sep, _rest = text.partition(": '")
    return (head if sep else text).rstrip(":").strip()


def _sdist_stem(filename: str) -> str:
    for suffix in SDIST_SUFFIXES:
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


def _version_key(version: Version) -> str:
    """Equal versions, one text: 1.0 and 1.0.0 are one version (PEP 440), so trailing zeros go."""
    release = list(version.release)
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    return repr((version.epoch, tuple(release), version.pre, version.post, version.dev, version.local))


def release_key(filename: str) -> str:
    """The filename as its parts normalise: two files with one key are one distribution under two
    names (``Acme.Tools-1.0.tar.gz`` and ``acme_tools-1.0.0.tar.gz``; wheel tags in any order).

    >>> release_key("Acme.Tools-1.0.0-py2.py3-none-any.whl") == release_key("acme_tools-1.0-py3.py2-none-any.whl")
    True
    >>> release_key("acme-1.0.tar.gz") == release_key("acme-1.0.zip")
    False
    """
    if filename.endswith(WHEEL_SUFFIX):
        name, version, build, tags = parse_wheel_filename(filename)
        build_text = "".join(str(part) for part in build)
        return f"{name}|{_version_key(version)}|{build_text}|{','.join(sorted(map(str, tags)))}|wheel"
    name, version = parse_sdist_filename(filename)
    suffix = next(s for s in SDIST_SUFFIXES if filename.endswith(s))
    return f"{name}|{_version_key(version)}|{suffix}"


# -- archives ------------------------------------------------------------------------------------
def _safe_member(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and "\\" not in name and "\x00" not in name and ".." not in parts


def _read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ArchiveLimits, shown: str) -> bytes:
    """A member's bytes, read with a bound whatever its header claims."""
    if info.file_size > limits.member:
        raise _fail(shown, f"its {info.filename} is {info.file_size} bytes, more than the {limits.member} allowed")
    with zf.open(info) as fh:
        data = fh.read(limits.member + 1)
    if len(data) > limits.member:
        raise _fail(shown, f"its {info.filename} unpacks to more than the {limits.member} bytes allowed")
    return data


def _zip_infos(zf: zipfile.ZipFile, limits: ArchiveLimits, shown: str) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > limits.members:
        raise _fail(shown, f"holds {len(infos)} archive members, more than the {limits.members} allowed")
    total = sum(info.file_size for info in infos)
    if total > limits.unpacked:
        raise _fail(shown, f"would unpack to {total} bytes, more than the {limits.unpacked} allowed")
    by_name: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if not _safe_member(info.filename):
            raise _fail(shown, f"holds an unsafe member name {info.filename[:200]!r}")
        if info.filename in by_name:
            raise _fail(shown, f"holds {info.filename!r} twice")
        by_name[info.filename] = info
    return by_name


def _wheel_documents(fh: IO[bytes], canonical: str, version: str, limits: ArchiveLimits, shown: str) -> tuple[bytes, bytes, str]:
    """(METADATA, WHEEL, the .dist-info directory's name) of the wheel of `canonical` `version`."""
    try:
        with zipfile.ZipFile(fh) as zf:
            members = _zip_infos(zf, limits, shown)
            dist_infos = sorted({n.split("/", 1)[0] for n in members if "/" in n and n.split("/", 1)[0].endswith(".dist-info")})
            if len(dist_infos) != 1:
                found = f"{len(dist_infos)} ({', '.join(dist_infos)})" if dist_infos else "none"
                raise _fail(shown, f"a wheel holds exactly one .dist-info directory, this one holds {found}")
            dist_info = dist_infos[0]
            dname, sep, dversion = dist_info[: -len(".dist-info")].rpartition("-")
            try:
                belongs = bool(sep) and canonicalize_name(dname) == canonical and str(Version(dversion)) == version
            except InvalidVersion:
                belongs = False
            if not belongs:
                raise _fail(shown, f"its {dist_info} directory is not that of {canonical} {version}")
            documents = []
            for leaf in ("METADATA", "WHEEL"):
                info = members.get(f"{dist_info}/{leaf}")
                if info is None:
                    raise _fail(shown, f"has no {dist_info}/{leaf}")
                documents.append(_read_zip_member(zf, info, limits, shown))
            return documents[0], documents[1], dist_info
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
        raise _fail(shown, f"is not a readable zip archive ({exc})") from None


def _check_wheel_file(wheel: bytes, filename: str, dist_info: str, shown: str) -> None:
    """WHEEL: a Wheel-Version with major version 1, and Tag lines (when given) that are the
    filename's tags, expanded."""
    message = _parse_document(wheel, f"{dist_info}/WHEEL", shown)
    wheel_version = (message.get("Wheel-Version") or "").strip()
    major, _, minor = wheel_version.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise _fail(shown, f"its WHEEL has no valid Wheel-Version (it says {wheel_version!r})")
    if major != "1":
        raise _fail(shown, f"its WHEEL says Wheel-Version {wheel_version}; installers read version 1 only")
    lines = [t.strip() for t in message.get_all("Tag") or []]
    if lines:
        try:
            listed = {tag for line in lines for tag in parse_tag(line)}
        except ValueError:  # packaging's InvalidTag (26.3+) is one
            raise _fail(shown, f"its WHEEL lists an invalid Tag among {lines[:5]}") from None
        in_name = parse_wheel_filename(filename)[3]
        if listed != set(in_name):
            extra = sorted(map(str, listed - in_name))[:3]
            missing = sorted(map(str, in_name - listed))[:3]
            raise _fail(shown, f"its WHEEL's tags are not the filename's (only in WHEEL: {extra}, only in the filename: {missing})")


class _Seekable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...
    def seek(self, offset: int, whence: int = ..., /) -> int: ...


class _CappedStream:
    """A decompressed tar stream that never goes past `cap` bytes and never reads more than
    `largest` at once: tarfile reads a GNU long name or a PAX header whole, whatever size its
    header claims, and skips member data by seeking (which the gzip layer decompresses in chunks)."""

    def __init__(self, raw: _Seekable, cap: int, largest: int, shown: str) -> None:
        self.raw, self.cap, self.largest, self.shown = raw, cap, largest, shown
        self.pos = 0

    def _too_big(self) -> LocalPackageError:
        return _fail(self.shown, f"unpacks to more than the {self.cap} bytes allowed")

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self.largest:
            raise _fail(self.shown, f"holds a tar header or member read larger than the {self.largest} bytes allowed")
        if self.pos + size > self.cap:
            size = max(0, self.cap - self.pos) + 1  # one byte past the cap tells a short stream from a long one
        data = self.raw.read(size)
        self.pos += len(data)
        if self.pos > self.cap:
            raise self._too_big()
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self.pos + offset if whence == io.SEEK_CUR else -1
        if target < 0:
            raise OSError(errno.EINVAL, "unsupported seek")
        if target > self.cap:
            raise self._too_big()
        self.pos = self.raw.seek(target)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def drain(self) -> None:
        """Read to the end of the stream (within the cap): the gzip layer checks its CRC there, so
        a truncated or corrupted file is refused rather than published."""
        while self.read(min(_CHUNK, self.largest)):
            pass


def _tar_pkg_info(fh: IO[bytes], stem: str, limits: ArchiveLimits, shown: str) -> bytes:
    pkg_info: bytes | None = None
    try:
        with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
            stream = _CappedStream(gz, limits.unpacked, limits.member + 1, shown)
            with tarfile.open(fileobj=stream, mode="r:") as tf:  # type: ignore[call-overload]
                count = 0
                total = 0
                while True:
                    member = tf.next()
                    if member is None:
                        break
                    count += 1
                    if count > limits.members:
                        raise _fail(shown, f"holds more than the {limits.members} archive members allowed")
                    total += member.size
                    if total > limits.unpacked:
                        raise _fail(shown, f"would unpack to more than the {limits.unpacked} bytes allowed")
                    name = member.name
                    if not _safe_member(name):
                        raise _fail(shown, f"holds an unsafe member name {name[:200]!r}")
                    if name != stem and not name.startswith(stem + "/"):
                        raise _fail(shown, f"holds {name[:200]!r} outside its {stem}/ directory")
                    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
                        raise _fail(shown, f"holds {name[:200]!r}, which is neither a file, a directory nor a link")
                    if name == f"{stem}/PKG-INFO" and member.isreg():
                        if pkg_info is not None:
                            raise _fail(shown, f"holds {name!r} twice")
                        if member.size > limits.member:
                            raise _fail(shown, f"its PKG-INFO is {member.size} bytes, more than the {limits.member} allowed")
                        handle = tf.extractfile(member)
                        pkg_info = handle.read(limits.member + 1) if handle is not None else b""
            stream.drain()
    except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:  # gzip.BadGzipFile is an OSError
        raise _fail(shown, f"is not a readable gzip'd tar archive ({exc})") from None
    if pkg_info is None:
        raise _fail(shown, f"has no {stem}/PKG-INFO")
    return pkg_info


def _zip_pkg_info(fh: IO[bytes], stem: str, limits: ArchiveLimits, shown: str) -> bytes:
    try:
        with zipfile.ZipFile(fh) as zf:
            members = _zip_infos(zf, limits, shown)
            for name in members:
                if name.rstrip("/") != stem and not name.startswith(stem + "/"):
                    raise _fail(shown, f"holds {name[:200]!r} outside its {stem}/ directory")
            info = members.get(f"{stem}/PKG-INFO")
            if info is None:
                raise _fail(shown, f"has no {stem}/PKG-INFO")
            return _read_zip_member(zf, info, limits, shown)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
        raise _fail(shown, f"is not a readable zip archive ({exc})") from None


# -- core metadata -------------------------------------------------------------------------------
def _parse_document(data: bytes, label: str, shown: str) -> Message:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(shown, f"its {label} is not UTF-8") from None
    return HeaderParser().parsestr(text)


def _single(message: Message, field: str, label: str, shown: str) -> str | None:
    values = message.get_all(field) or []
    if len(values) > 1:
        raise _fail(shown, f"{label} gives {field} {len(values)} times")
    return str(values[0]).strip() if values else None


def _check_metadata(data: bytes, label: str, canonical: str, version: str, shown: str) -> tuple[str, str | None, tuple[str, ...]]:
    """(display name, Requires-Python, Requires-Dist) of a core-metadata document whose name and
    version must be `canonical` and `version`."""
    message = _parse_document(data, label, shown)
    meta_version = _single(message, "Metadata-Version", label, shown)
    if meta_version is None:
        raise _fail(shown, f"{label} has no Metadata-Version")
    if not _METADATA_VERSION.match(meta_version):
        raise _fail(shown, f"{label} says Metadata-Version {meta_version!r}, not one of 1.x or 2.x")
    name = _single(message, "Name", label, shown)
    if not name:
        raise _fail(shown, f"{label} has no Name")
    try:
        meta_canonical = canonical_project(name)
    except HostileDataError:
        raise _fail(shown, f"{label} gives an invalid project name {name!r}") from None
    if meta_canonical != canonical:
        raise _fail(shown, f"{label} says name {name}, the filename says {canonical}")
    raw_version = _single(message, "Version", label, shown)
    if not raw_version:
        raise _fail(shown, f"{label} has no Version")
    try:
        meta_version_text = str(Version(raw_version))
    except InvalidVersion:
        raise _fail(shown, f"{label} gives an invalid version {raw_version!r}") from None
    if meta_version_text != version:
        raise _fail(shown, f"{label} says version {raw_version}, the filename says {version}")
    requires_python = _single(message, "Requires-Python", label, shown) or None
    if requires_python is not None:
        try:
            SpecifierSet(requires_python)
        except InvalidSpecifier:
            raise _fail(shown, f"{label} gives an invalid Requires-Python {requires_python!r}") from None
    requires = tuple(metadata_requires_dist(data))
    for line in requires:
        try:
            Requirement(line)
        except InvalidRequirement:
            raise _fail(shown, f"{label} gives an invalid Requires-Dist {line[:200]!r}") from None
    return name, requires_python, requires


# -- one file ------------------------------------------------------------------------------------
def upload_time_of(mtime_ns: int) -> str:
    """A file's mtime as PEP 700 gives upload-time.

    >>> upload_time_of(1_700_000_000_123_456_789)
    '2023-11-14T22:13:20.123456Z'
    """
    seconds, nanos = divmod(mtime_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).replace(microsecond=nanos // 1000)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hash_file(fh: IO[bytes]) -> tuple[str, int]:
    fh.seek(0)
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = fh.read(_CHUNK)
        if not chunk:
            return digest.hexdigest(), size
        digest.update(chunk)
        size += len(chunk)


def validate_distribution(path: Path, *, shown: str | None = None, limits: ArchiveLimits = DEFAULT_LIMITS) -> LocalDist:
    """`path` as a LocalDist, or the LocalPackageError that says what is wrong with it; `shown`
    is how the sentence names the file (its name by default)."""
    shown = shown or path.name
    filename = path.name
    canonical, version = _parse_filename(filename, shown)
    try:
        with open(path, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise _fail(shown, "is not a regular file")
            if filename.endswith(WHEEL_SUFFIX):
                metadata, wheel, dist_info = _wheel_documents(fh, canonical, version, limits, shown)
                _check_wheel_file(wheel, filename, dist_info, shown)
                document, label = metadata, "METADATA"
            elif filename.endswith(".zip"):
                document, label = _zip_pkg_info(fh, _sdist_stem(filename), limits, shown), "PKG-INFO"
            else:
                document, label = _tar_pkg_info(fh, _sdist_stem(filename), limits, shown), "PKG-INFO"
            name, requires_python, requires = _check_metadata(document, label, canonical, version, shown)
            sha256, size = _hash_file(fh)
    except FileNotFoundError:
        raise _fail(shown, "no such file") from None
    except IsADirectoryError:
        raise _fail(shown, "is not a regular file") from None
    except OSError as exc:
        raise _fail(shown, f"cannot be read ({exc.strerror or exc})") from None
    return LocalDist(
        canonical=canonical,
        name=name,
        version=version,
        filename=filename,
        sha256=sha256,
        size=size,
        requires_python=requires_python,
        requires_dist=requires,
        metadata=document if label == "METADATA" else None,
        upload_time=upload_time_of(info.st_mtime_ns),
        path=path,
        mtime_ns=info.st_mtime_ns,
    )


# -- the directory -------------------------------------------------------------------------------
def find_local_files(directory: Path) -> list[Path]:
    """The distributions of the `local:` directory, sorted: every wheel and sdist directly in it
    or in one level of sub-directories (hidden names and other files are left alone). Lists only:
    nothing is opened, so a caller can skip files it knows by their stat."""
    found: list[Path] = []
    try:
        with os.scandir(directory) as top:
            entries = sorted(top, key=lambda e: e.name)
    except FileNotFoundError:
        raise LocalPackageError(f"the local directory {directory} does not exist") from None
    except NotADirectoryError:
        raise LocalPackageError(f"the local directory {directory} is not a directory") from None
    except OSError as exc:
        raise LocalPackageError(f"the local directory {directory} cannot be read ({exc.strerror or exc})") from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            try:
                with os.scandir(entry.path) as inner:
                    found.extend(Path(e.path) for e in sorted(inner, key=lambda e: e.name)
                                 if is_local_candidate(e.name) and e.is_file())
            except FileNotFoundError:
                continue  # removed since the listing
            except OSError as exc:
                raise LocalPackageError(f"the local directory's {entry.name}/ cannot be read ({exc.strerror or exc})") from None
        elif is_local_candidate(entry.name) and entry.is_file():
            found.append(Path(entry.path))
    return found


def _label(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)


def group_projects(dists: Iterable[LocalDist], root: Path | None = None) -> dict[str, LocalProject]:
    """Validated files by project (canonical name -> LocalProject). A filename found twice, or
    two filenames that are one distribution (release_key), are refused: which would a client get?
    The display name is the one the newest version's metadata gives."""
    by_key: dict[str, LocalDist] = {}
    by_filename: dict[str, LocalDist] = {}
    for dist in dists:
        other = by_filename.get(dist.filename)
        if other is not None:
            raise LocalPackageError(
                f"{_label(other.path, root)} and {_label(dist.path, root)}: the local directory holds {dist.filename} twice; "
                "keep one (a filename is published once)"
            )
        key = release_key(dist.filename)
        other = by_key.get(key)
        if other is not None:
            raise LocalPackageError(
                f"{_label(other.path, root)} and {_label(dist.path, root)}: one distribution under two filenames; keep one"
            )
        by_filename[dist.filename] = by_key[key] = dist
    grouped: dict[str, list[LocalDist]] = {}
    for dist in by_filename.values():
        grouped.setdefault(dist.canonical, []).append(dist)
    out: dict[str, LocalProject] = {}
    for canonical in sorted(grouped):
        files = sorted(grouped[canonical], key=lambda d: d.filename)
        newest = max(files, key=lambda d: (Version(d.version), d.filename))
        out[canonical] = LocalProject(canonical=canonical, name=newest.name, files=tuple(files))
    return out


def scan_local(directory: Path, *, limits: ArchiveLimits = DEFAULT_LIMITS) -> dict[str, LocalProject]:
    """Every distribution of the `local:` directory, validated, by project. One bad file fails the
    scan: a project whose only file were skipped would lose its reserved name to upstream."""
    paths = find_local_files(directory)
    return group_projects((validate_distribution(p, shown=_label(p, directory), limits=limits) for p in paths), directory)


# -- adding a file -------------------------------------------------------------------------------
def _same_bytes(path: Path, sha256: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return _hash_file(fh)[0] == sha256
    except OSError:
        return False


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _existing(dist: LocalDist, local_dir: Path) -> Path | None:
    """A file of the local directory that already is `dist`'s filename or distribution: the same
    bytes under the same name are returned (nothing to do); anything else is refused."""
    key = release_key(dist.filename)
    for path in find_local_files(local_dir):
        try:
            other_key = release_key(path.name)
        except (InvalidWheelFilename, InvalidSdistFilename):
            continue  # not a distribution's name: the scan refuses it, it holds nothing an add could clash with
        if path.name != dist.filename and other_key != key:
            continue
        shown = _label(path, local_dir)
        if not _same_bytes(path, dist.sha256):
            raise LocalPackageError(
                f"{dist.filename}: the local directory already has a different {shown}; "
                "a published filename never changes its content (give the new build a new version)"
            )
        if path.name != dist.filename:
            raise LocalPackageError(f"{dist.filename}: the local directory already has this distribution as {shown}")
        return path
    return None


def add_distribution(src: Path, local_dir: Path, *, limits: ArchiveLimits = DEFAULT_LIMITS) -> LocalDist:
    """Validate `src` and copy it into `local_dir` atomically (a hidden temp file in the same
    directory, fsync, then a link that never replaces a file); the LocalDist of the copy. A file
    already there with the same bytes makes this a no-op; with other bytes it is refused."""
    dist = validate_distribution(src, limits=limits)
    try:
        local_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise_if_full(exc, local_dir / dist.filename)
        raise LocalPackageError(f"the local directory {local_dir} cannot be created ({exc.strerror or exc})") from None
    found = _existing(dist, local_dir)
    if found is not None:
        return validate_distribution(found, shown=_label(found, local_dir), limits=limits)
    dest = local_dir / dist.filename
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dist.filename}.", suffix=".tmp", dir=local_dir)
    tmp = Path(tmp_name)
    try:
        try:
            digest = hashlib.sha256()
            with open(fd, "wb", closefd=True) as out, open(src, "rb") as source:
                os.fchmod(out.fileno(), 0o644)
                while True:
                    chunk = source.read(_CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != dist.sha256:
                raise _fail(dist.filename, "changed while it was being copied; run the command again")
            try:
                os.link(tmp, dest)  # fails if dest appeared meanwhile: never replaces a published file
            except FileExistsError:
                if not _same_bytes(dest, dist.sha256):
                    raise LocalPackageError(
                        f"{dist.filename}: the local directory already has a different {dist.filename}; "
                        "a published filename never changes its content (give the new build a new version)"
                    ) from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
                    raise
                if dest.exists():  # a file system without hard links: a rename, after one more look
                    raise LocalPackageError(f"{dist.filename}: the local directory already has a {dist.filename}") from None
                os.rename(tmp, dest)
            _fsync_dir(local_dir)
        except OSError as exc:
            raise_if_full(exc, dest)
            raise LocalPackageError(f"{dist.filename}: cannot be copied into {local_dir} ({exc.strerror or exc})") from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    info = dest.stat()
    return replace(dist, path=dest, mtime_ns=info.st_mtime_ns, upload_time=upload_time_of(info.st_mtime_ns))


# -- as a page of the index -------------------------------------------------------------------


def local_page(project: LocalProject, upstream: ProjectPage | None = None) -> ProjectPage:
    """The project's page as the mirror publishes it: the local directory's files, and, for a
    name in `merge_upstream`, upstream's files too (a local file wins over an upstream file of
    the same name). Without `upstream`, nothing of upstream's reaches the page: the name is
    reserved for the organisation's own files (no dependency confusion)."""
    from .download import LOCAL_SCHEME

    files = [
        UpstreamFile(
            filename=d.filename,
            url=LOCAL_SCHEME + os.fspath(d.path),
            sha256=d.sha256,
            size=d.size,
            requires_python=d.requires_python,
            yanked=d.yanked,
            upload_time=d.upload_time,
            version=d.version,
            local=True,
        )
        for d in project.files
    ]
    mine = hashlib.sha256("\n".join(f"{d.filename} {d.sha256} {d.mtime_ns}" for d in project.files).encode())
    if upstream is None:
        return ProjectPage(project.name, project.canonical, None, files, fingerprint=mine.hexdigest(), local=True)
    names = {f.filename for f in files}
    merged = files + [f for f in upstream.files if f.filename not in names]
    mine.update((upstream.fingerprint or "").encode())
    return replace(upstream, files=merged, fingerprint=mine.hexdigest(), local=True, etag=None, last_modified=None)


def local_requires(project: LocalProject) -> dict[str, tuple[str, ...]]:
    """filename -> its Requires-Dist lines, as validated (the closure follows them)."""
    return {d.filename: d.requires_dist for d in project.files}
