"""The organisation's own distributions (mirror_sync/local.py): validation of real wheels and
sdists built by tests/support/dists.py, the scan of the `local:` directory, and adding a file."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from mirror_sync.errors import LocalPackageError
from mirror_sync.local import (
    ArchiveLimits,
    add_distribution,
    find_local_files,
    release_key,
    scan_local,
    upload_time_of,
    validate_distribution,
)
from tests.support.dists import build_sdist, build_wheel, core_metadata

MTIME_NS = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456Z


def put(directory: Path, filename: str, data: bytes, mtime_ns: int = MTIME_NS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def rezip(data: bytes, changes: Mapping[str, bytes | None], *, duplicate: bool = False) -> bytes:
    """A copy of a zip with members replaced (bytes), removed (None) or added; `duplicate` appends
    the changed members instead of replacing them (a zip can list a name twice)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename in changes and not duplicate:
                continue
            dst.writestr(info, src.read(info))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about a duplicate name
            for name, content in changes.items():
                if content is not None:
                    dst.writestr(name, content)
    return out.getvalue()


def tar_gz(members: list[tuple[str, bytes]], *, fmt: int = tarfile.PAX_FORMAT, kinds: dict[str, bytes] | None = None) -> bytes:
    """A gzip'd tar of regular files (and members of other kinds: name -> tarfile type)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, kind in (kinds or {}).items():
            info = tarfile.TarInfo(name)
            info.type = kind
            tf.addfile(info)
    return gzip.compress(raw.getvalue(), mtime=0)


def failure(path: Path, **kwargs: object) -> str:
    with pytest.raises(LocalPackageError) as info:
        validate_distribution(path, **kwargs)  # type: ignore[arg-type]
    assert info.value.exit_code == 2
    return str(info.value)


# -- valid files -----------------------------------------------------------------------------------
def test_a_wheel(tmp_path: Path) -> None:
    filename, data, metadata = build_wheel("Acme.Tools", "1.0", requires_dist=['requests>=2; extra == "http"', "attrs"],
                                           requires_python=">=3.9")
    dist = validate_distribution(put(tmp_path, filename, data))
    assert (dist.canonical, dist.name, dist.version, dist.filename) == ("acme-tools", "Acme.Tools", "1.0", "acme_tools-1.0-py3-none-any.whl")
    assert (dist.sha256, dist.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert dist.requires_python == ">=3.9"
    assert dist.requires_dist == ('requests>=2; extra == "http"', "attrs")
    assert dist.metadata == metadata and dist.metadata_sha256 == hashlib.sha256(metadata).hexdigest()
    assert dist.yanked is False
    assert dist.upload_time == "2023-11-14T22:13:20.123456Z" and dist.mtime_ns == MTIME_NS
    assert dist.path == tmp_path / filename


@pytest.mark.parametrize("archive", ["tar.gz", "zip"])
def test_an_sdist(tmp_path: Path, archive: str) -> None:
    filename, data, _pkg_info = build_sdist("acme-tools", "2.0.post1", requires_dist=["attrs>=21"], archive=archive)
    assert filename == f"acme_tools-2.0.post1.{archive}"
    dist = validate_distribution(put(tmp_path, filename, data))
    assert (dist.canonical, dist.name, dist.version) == ("acme-tools", "acme-tools", "2.0.post1")
    assert dist.requires_dist == ("attrs>=21",) and dist.requires_python is None
    assert dist.metadata is None and dist.metadata_sha256 is None  # no .metadata for sdists
    assert dist.sha256 == hashlib.sha256(data).hexdigest()


def test_a_platform_wheel_with_a_build_tag(tmp_path: Path) -> None:
    filename, data, _ = build_wheel("fastthing", "3.1", tag="cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64")
    dist = validate_distribution(put(tmp_path, filename, data))
    assert dist.version == "3.1"
    renamed = filename.replace("-3.1-", "-3.1-1local-")  # a build tag: not part of the dist-info name
    assert validate_distribution(put(tmp_path, renamed, data)).filename == renamed


def test_upload_time_of() -> None:
    assert upload_time_of(0) == "1970-01-01T00:00:00.000000Z"
    assert upload_time_of(MTIME_NS) == "2023-11-14T22:13:20.123456Z"


NAMES = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,30}[A-Za-z0-9])?", fullmatch=True)


@st.composite
def versions(draw: st.DrawFn) -> str:
    """PEP 440 versions in their many spellings (1.0-RC.1, v2, 1!3.0.post2.dev0+local.7, ...)."""
    text = draw(st.sampled_from(["", "v", "V"]))
    if draw(st.booleans()):
        text += f"{draw(st.integers(0, 5))}!"
    text += ".".join(str(n) for n in draw(st.lists(st.integers(0, 2000), min_size=1, max_size=4)))
    if draw(st.booleans()):
        text += draw(st.sampled_from(["a", "b", "rc", "c", "alpha", "beta", "pre", "preview", "-rc.", ".a", "_b"]))
        text += str(draw(st.integers(0, 30)))
    if draw(st.booleans()):
        text += draw(st.sampled_from([".post", "-post", "post", "-r", ".rev"])) + str(draw(st.integers(0, 30)))
    if draw(st.booleans()):
        text += draw(st.sampled_from([".dev", "-dev", "dev"])) + str(draw(st.integers(0, 30)))
    if draw(st.booleans()):
        text += "+" + draw(st.from_regex(r"[a-z0-9]{1,6}([._-][a-z0-9]{1,6}){0,2}", fullmatch=True))
    if draw(st.booleans()):
        text = text.upper()
    return text


@settings(max_examples=int(os.environ.get("LOCAL_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(NAMES, versions(), st.sampled_from(["wheel", "tar.gz", "zip"]))
def test_any_valid_name_and_version_validate(name: str, version: str, kind: str) -> None:
    """For any valid project name and PEP 440 version, spelled any way, the metadata's canonical
    name and normal version are the filename's: the name is normalised the same on both sides."""
    try:
        normal = str(Version(version))
    except InvalidVersion:
        assume(False)
        return
    if kind == "wheel":
        filename, data, _ = build_wheel(name, version)
    else:
        filename, data, _ = build_sdist(name, version, archive=kind)
    with tempfile.TemporaryDirectory() as tmp:
        dist = validate_distribution(put(Path(tmp), filename, data))
    assert dist.canonical == canonicalize_name(name) == re.sub(r"[-_.]+", "-", name).lower()
    assert dist.name == name and dist.version == normal and dist.filename == filename


# -- bad files, each with its sentence ---------------------------------------------------------------
def wheel_with(tmp_path: Path, changes: Mapping[str, bytes | None], name: str = "acme-tools", version: str = "1.0",
               **kwargs: object) -> Path:
    filename, data, _ = build_wheel(name, version, **kwargs)  # type: ignore[arg-type]
    return put(tmp_path, filename, rezip(data, changes))


DIST_INFO = "acme_tools-1.0.dist-info"


def test_metadata_version_differs_from_the_filename(tmp_path: Path) -> None:
    path = wheel_with(tmp_path, {f"{DIST_INFO}/METADATA": core_metadata("acme-tools", "1.1")})
    assert failure(path) == "acme_tools-1.0-py3-none-any.whl: METADATA says version 1.1, the filename says 1.0"


def test_metadata_names_another_project(tmp_path: Path) -> None:
    path = wheel_with(tmp_path, {f"{DIST_INFO}/METADATA": core_metadata("acme-tool", "1.0")})
    assert failure(path) == "acme_tools-1.0-py3-none-any.whl: METADATA says name acme-tool, the filename says acme-tools"


def test_equal_versions_in_another_spelling_pass(tmp_path: Path) -> None:
    path = wheel_with(tmp_path, {"acme_tools-1.0.0.dist-info/METADATA": core_metadata("ACME_Tools", "V1.0.0")},
                      version="1.0.0")
    dist = validate_distribution(path)
    assert (dist.name, dist.version) == ("ACME_Tools", "1.0.0")
    path = wheel_with(tmp_path, {f"{DIST_INFO}/METADATA": core_metadata("acme-tools", "1.0.0")})  # 1.0 == 1.0.0, not its normal form
    assert failure(path) == "acme_tools-1.0-py3-none-any.whl: METADATA says version 1.0.0, the filename says 1.0"


@pytest.mark.parametrize(
    ("metadata", "sentence"),
    [
        (b"Name: acme-tools\nVersion: 1.0\n\n", "METADATA has no Metadata-Version"),
        (b"Metadata-Version: 3.0\nName: acme-tools\nVersion: 1.0\n\n", "METADATA says Metadata-Version '3.0', not one of 1.x or 2.x"),
        (b"Metadata-Version: 2.1\nVersion: 1.0\n\n", "METADATA has no Name"),
        (b"Metadata-Version: 2.1\nName: acme-tools\n\n", "METADATA has no Version"),
        (b"Metadata-Version: 2.1\nName: acme tools\nVersion: 1.0\n\n", "METADATA gives an invalid project name 'acme tools'"),
        (b"Metadata-Version: 2.1\nName: acme-tools\nVersion: one\n\n", "METADATA gives an invalid version 'one'"),
        (b"Metadata-Version: 2.1\nName: acme-tools\nName: acme-tools\nVersion: 1.0\n\n", "METADATA gives Name 2 times"),
        (b"Metadata-Version: 2.1\nName: acme-tools\nVersion: 1.0\nRequires-Python: >>3\n\n",
         "METADATA gives an invalid Requires-Python '>>3'"),
        (b"Metadata-Version: 2.1\nName: acme-tools\nVersion: 1.0\nRequires-Dist: attrs (>=\n\n",
         "METADATA gives an invalid Requires-Dist 'attrs (>='"),
        (b"Metadata-Version: 2.1\nName: acme-tools\nVersion: 1.0\nSummary: \xff\n\n", "its METADATA is not UTF-8"),
    ],
)
def test_bad_metadata(tmp_path: Path, metadata: bytes, sentence: str) -> None:
    path = wheel_with(tmp_path, {f"{DIST_INFO}/METADATA": metadata})
    assert failure(path) == f"acme_tools-1.0-py3-none-any.whl: {sentence}"


@pytest.mark.parametrize(
    ("changes", "sentence"),
    [
        ({f"{DIST_INFO}/METADATA": None}, f"has no {DIST_INFO}/METADATA"),
        ({f"{DIST_INFO}/WHEEL": None}, f"has no {DIST_INFO}/WHEEL"),
        ({"other-2.0.dist-info/METADATA": b"x"},
         f"a wheel holds exactly one .dist-info directory, this one holds 2 ({DIST_INFO}, other-2.0.dist-info)"),
        ({f"{DIST_INFO}/WHEEL": b"Wheel-Version: 2.0\nTag: py3-none-any\n\n"}, "its WHEEL says Wheel-Version 2.0; installers read version 1 only"),
        ({f"{DIST_INFO}/WHEEL": b"Tag: py3-none-any\n\n"}, "its WHEEL has no valid Wheel-Version (it says '')"),
        ({f"{DIST_INFO}/WHEEL": b"Wheel-Version: 1.0\nTag: cp312-cp312-win_amd64\n\n"},
         "its WHEEL's tags are not the filename's (only in WHEEL: ['cp312-cp312-win_amd64'], only in the filename: ['py3-none-any'])"),
        ({f"{DIST_INFO}/WHEEL": b"Wheel-Version: 1.0\nTag: py3-none\n\n"}, "its WHEEL lists an invalid Tag among ['py3-none']"),
        ({"../evil.py": b"x"}, "holds an unsafe member name '../evil.py'"),
        ({"/etc/evil": b"x"}, "holds an unsafe member name '/etc/evil'"),
    ],
)
def test_bad_wheels(tmp_path: Path, changes: Mapping[str, bytes | None], sentence: str) -> None:
    assert failure(wheel_with(tmp_path, changes)) == f"acme_tools-1.0-py3-none-any.whl: {sentence}"


def test_a_wheel_without_dist_info(tmp_path: Path) -> None:
    path = wheel_with(tmp_path, {f"{DIST_INFO}/METADATA": None, f"{DIST_INFO}/WHEEL": None, f"{DIST_INFO}/RECORD": None})
    assert failure(path) == "acme_tools-1.0-py3-none-any.whl: a wheel holds exactly one .dist-info directory, this one holds none"


def test_a_dist_info_of_another_release(tmp_path: Path) -> None:
    _, data, _ = build_wheel("acme-tools", "1.1")
    path = put(tmp_path, "acme_tools-1.0-py3-none-any.whl", data)
    assert failure(path) == "acme_tools-1.0-py3-none-any.whl: its acme_tools-1.1.dist-info directory is not that of acme-tools 1.0"


def test_a_member_listed_twice(tmp_path: Path) -> None:
    filename, data, _ = build_wheel("acme-tools", "1.0")
    path = put(tmp_path, filename, rezip(data, {f"{DIST_INFO}/METADATA": core_metadata("acme-tools", "6.6")}, duplicate=True))
    assert failure(path) == f"acme_tools-1.0-py3-none-any.whl: holds '{DIST_INFO}/METADATA' twice"


@pytest.mark.parametrize(
    ("filename", "sentence"),
    [
        ("acme.whl", "is not a valid wheel filename (Invalid wheel filename (wrong number of parts))"),
        ("acme-1.0-py3-none.whl", "is not a valid wheel filename (Invalid wheel filename (wrong number of parts))"),
        ("acme-one-py3-none-any.whl", "is not a valid wheel filename (Invalid wheel filename (invalid version))"),
        ("acme-notaversion.tar.gz", "is not a valid sdist filename (Invalid sdist filename (invalid version))"),
        ("acme.tar.gz", "is not a valid sdist filename (Invalid sdist filename)"),
        ("-1.0.zip", "is not a safe distribution filename (letters, digits and ._+!~- only)"),
        ("acme-1.0.tar.bz2", "is neither a wheel (.whl) nor an sdist (.tar.gz, .zip)"),
        ("acme tools-1.0.tar.gz", "is not a safe distribution filename (letters, digits and ._+!~- only)"),
    ],
)
def test_bad_filenames(tmp_path: Path, filename: str, sentence: str) -> None:
    assert failure(put(tmp_path, filename, b"whatever")) == f"{filename}: {sentence}"


def test_not_an_archive(tmp_path: Path) -> None:
    assert failure(put(tmp_path, "acme-1.0-py3-none-any.whl", b"not a zip")) == (
        "acme-1.0-py3-none-any.whl: is not a readable zip archive (File is not a zip file)"
    )
    assert failure(put(tmp_path, "acme-1.0.zip", b"not a zip")) == "acme-1.0.zip: is not a readable zip archive (File is not a zip file)"
    assert failure(put(tmp_path, "acme-1.0.tar.gz", b"not gzip")).startswith("acme-1.0.tar.gz: is not a readable gzip'd tar archive (")


def test_missing_file_and_a_directory(tmp_path: Path) -> None:
    assert failure(tmp_path / "acme-1.0.tar.gz") == "acme-1.0.tar.gz: no such file"
    (tmp_path / "acme-2.0.tar.gz").mkdir()
    assert failure(tmp_path / "acme-2.0.tar.gz") == "acme-2.0.tar.gz: is not a regular file"


def test_a_truncated_sdist(tmp_path: Path) -> None:
    filename, data, _ = build_sdist("acme", "1.0")
    sentence = failure(put(tmp_path, filename, data[: len(data) - 9]))  # the gzip trailer (CRC, size) is gone
    assert sentence.startswith("acme-1.0.tar.gz: is not a readable gzip'd tar archive (")


def test_a_corrupted_sdist(tmp_path: Path) -> None:
    filename, data, _ = build_sdist("acme", "1.0")
    damaged = data[:-8] + bytes(b ^ 0xFF for b in data[-8:-4]) + data[-4:]  # a wrong CRC-32 in the trailer
    assert failure(put(tmp_path, filename, damaged)).startswith("acme-1.0.tar.gz: is not a readable gzip'd tar archive (")


def pkg_info(name: str = "acme", version: str = "1.0") -> bytes:
    return core_metadata(name, version, metadata_version="2.2")


@pytest.mark.parametrize(
    ("members", "kinds", "sentence"),
    [
        ([("acme-1.0/setup.py", b"")], None, "has no acme-1.0/PKG-INFO"),
        ([("acme-1.0/PKG-INFO", pkg_info()), ("elsewhere/x.py", b"")], None, "holds 'elsewhere/x.py' outside its acme-1.0/ directory"),
        ([("acme-1.0/PKG-INFO", pkg_info()), ("acme-1.0/../../x", b"")], None, "holds an unsafe member name 'acme-1.0/../../x'"),
        ([("acme-1.0/PKG-INFO", pkg_info(version="1.2"))], None, "PKG-INFO says version 1.2, the filename says 1.0"),
        ([("acme-1.0/PKG-INFO", pkg_info()), ("acme-1.0/PKG-INFO", pkg_info())], None, "holds 'acme-1.0/PKG-INFO' twice"),
        ([("acme-1.0/PKG-INFO", pkg_info())], {"acme-1.0/dev": tarfile.CHRTYPE},
         "holds 'acme-1.0/dev', which is neither a file, a directory nor a link"),
    ],
)
def test_bad_tar_sdists(tmp_path: Path, members: list[tuple[str, bytes]], kinds: dict[str, bytes] | None, sentence: str) -> None:
    assert failure(put(tmp_path, "acme-1.0.tar.gz", tar_gz(members, kinds=kinds))) == f"acme-1.0.tar.gz: {sentence}"


def test_bad_zip_sdists(tmp_path: Path) -> None:
    filename, data, _ = build_sdist("acme", "1.0", archive="zip")
    path = put(tmp_path, filename, rezip(data, {"acme-1.0/PKG-INFO": None}))
    assert failure(path) == "acme-1.0.zip: has no acme-1.0/PKG-INFO"
    path = put(tmp_path, filename, rezip(data, {"stray.txt": b"x"}))
    assert failure(path) == "acme-1.0.zip: holds 'stray.txt' outside its acme-1.0/ directory"


# -- bombs: the limits refuse them before anything inflates ----------------------------------------
def test_zip_bombs(tmp_path: Path) -> None:
    filename, data, _ = build_wheel("acme-tools", "1.0")
    path = put(tmp_path, filename, data)
    assert failure(path, limits=ArchiveLimits(members=3)) == (
        "acme_tools-1.0-py3-none-any.whl: holds 4 archive members, more than the 3 allowed"
    )
    total = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
    assert failure(path, limits=ArchiveLimits(unpacked=total - 1)) == (
        f"acme_tools-1.0-py3-none-any.whl: would unpack to {total} bytes, more than the {total - 1} allowed"
    )
    bomb = put(tmp_path / "b", filename, rezip(data, {"acme_tools/zeros.bin": bytes(50_000_000)}))
    assert bomb.stat().st_size < 200_000  # fifty megabytes of zeros, deflated
    assert failure(bomb, limits=ArchiveLimits(unpacked=10_000_000)).startswith(
        "acme_tools-1.0-py3-none-any.whl: would unpack to 50000"
    )
    metadata = core_metadata("acme-tools", "1.0") + b"x" * 5000
    big = put(tmp_path / "c", filename, rezip(data, {f"{DIST_INFO}/METADATA": metadata}))
    assert failure(big, limits=ArchiveLimits(member=4096)) == (
        f"acme_tools-1.0-py3-none-any.whl: its {DIST_INFO}/METADATA is {len(metadata)} bytes, more than the 4096 allowed"
    )


def test_tar_bombs(tmp_path: Path) -> None:
    zeros = tar_gz([("acme-1.0/PKG-INFO", pkg_info()), ("acme-1.0/zeros.bin", bytes(50_000_000))])
    path = put(tmp_path, "acme-1.0.tar.gz", zeros)
    assert path.stat().st_size < 200_000
    assert failure(path, limits=ArchiveLimits(unpacked=10_000_000)) == (
        "acme-1.0.tar.gz: would unpack to more than the 10000000 bytes allowed"
    )
    assert validate_distribution(path).version == "1.0"  # the default limits let fifty megabytes through
    many = put(tmp_path / "m", "acme-1.0.tar.gz", tar_gz([("acme-1.0/PKG-INFO", pkg_info())] + [(f"acme-1.0/{i}", b"") for i in range(20)]))
    assert failure(many, limits=ArchiveLimits(members=10)) == "acme-1.0.tar.gz: holds more than the 10 archive members allowed"
    # a PAX header is read whole by tarfile, whatever size it claims: two megabytes of name
    long_name = tar_gz([("acme-1.0/PKG-INFO", pkg_info()), ("acme-1.0/" + "n" * 2_000_000, b"")])
    path = put(tmp_path / "p", "acme-1.0.tar.gz", long_name)
    assert failure(path, limits=ArchiveLimits(member=1_000_000)) == (
        "acme-1.0.tar.gz: holds a tar header or member read larger than the 1000001 bytes allowed"
    )
    # trailing data past the tar's end is decompressed too (the CRC is at the very end): bounded as well
    padded = put(tmp_path / "t", "acme-1.0.tar.gz", gzip.compress(gzip.decompress(tar_gz([("acme-1.0/PKG-INFO", pkg_info())])) + bytes(30_000_000)))
    assert failure(padded, limits=ArchiveLimits(unpacked=10_000_000)) == "acme-1.0.tar.gz: unpacks to more than the 10000000 bytes allowed"


# -- the directory ---------------------------------------------------------------------------------
def populate(local: Path) -> dict[str, bytes]:
    built = {
        "top": build_wheel("Acme.Tools", "1.0"),
        "newer": build_wheel("ACME-tools", "1.10", tag="py2.py3-none-any"),
        "sdist": build_sdist("ACME-tools", "1.10"),
        "other": build_sdist("beta", "0.1", archive="zip"),
    }
    put(local, built["top"][0], built["top"][1])
    put(local / "team-a", built["newer"][0], built["newer"][1])
    put(local / "team-a", built["sdist"][0], built["sdist"][1])
    put(local / "team-b", built["other"][0], built["other"][1])
    (local / "README.txt").write_text("not a distribution")
    (local / "team-a" / "notes.md").write_text("ignored")
    put(local, ".acme_tools-9.0-py3-none-any.whl.x1.tmp", b"an add in progress")  # hidden: an add's temp file
    put(local, ".hidden-1.0.tar.gz", b"hidden")
    put(local / ".git", "x-1.0.tar.gz", b"hidden directory")
    put(local / "team-a" / "deeper", "deep-1.0.tar.gz", b"two levels down: not scanned")
    return {name: data for name, data, _ in built.values()}


def test_scan_local(tmp_path: Path) -> None:
    local = tmp_path / "local"
    built = populate(local)
    assert [p.relative_to(local).as_posix() for p in find_local_files(local)] == [
        "acme_tools-1.0-py3-none-any.whl",
        "team-a/acme_tools-1.10-py2.py3-none-any.whl",
        "team-a/acme_tools-1.10.tar.gz",
        "team-b/beta-0.1.zip",
    ]
    projects = scan_local(local)
    assert list(projects) == ["acme-tools", "beta"]
    acme = projects["acme-tools"]
    assert acme.name == "ACME-tools"  # the newest version's metadata gives the display name
    assert [f.filename for f in acme.files] == sorted(f.filename for f in acme.files)
    assert [f.filename for f in acme.files] == ["acme_tools-1.0-py3-none-any.whl", "acme_tools-1.10-py2.py3-none-any.whl",
                                                "acme_tools-1.10.tar.gz"]
    assert acme.versions == ["1.0", "1.10"]
    assert {f.filename: f.sha256 for f in acme.files} == {n: hashlib.sha256(d).hexdigest() for n, d in built.items() if n.startswith("acme")}
    assert [f.filename for f in projects["beta"].files] == ["beta-0.1.zip"]


def test_scan_refuses_a_bad_file_by_its_place(tmp_path: Path) -> None:
    local = tmp_path / "local"
    populate(local)
    _, data, _ = build_sdist("gamma", "1.1")
    put(local / "team-b", "gamma-1.0.tar.gz", data)
    with pytest.raises(LocalPackageError) as info:
        scan_local(local)
    assert str(info.value) == "team-b/gamma-1.0.tar.gz: holds 'gamma-1.1/PKG-INFO' outside its gamma-1.0/ directory"


def test_scan_refuses_a_filename_twice(tmp_path: Path) -> None:
    local = tmp_path / "local"
    filename, data, _ = build_wheel("acme", "1.0")
    put(local / "a", filename, data)
    put(local / "b", filename, data)
    with pytest.raises(LocalPackageError) as info:
        scan_local(local)
    assert str(info.value) == (
        "a/acme-1.0-py3-none-any.whl and b/acme-1.0-py3-none-any.whl: the local directory holds acme-1.0-py3-none-any.whl twice; "
        "keep one (a filename is published once)"
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("acme", "1.0", "py2.py3-none-any"), ("acme", "1.0", "py3.py2-none-any")),
        (("acme", "1.0", "py3-none-any"), ("acme", "1.0.0", "py3-none-any")),
        (("Acme.Tools", "1.0", None), ("acme_tools", "1.0.0", None)),
    ],
)
def test_scan_refuses_one_distribution_under_two_names(tmp_path: Path, first: tuple[str, str, str | None],
                                                      second: tuple[str, str, str | None]) -> None:
    local = tmp_path / "local"
    names = []
    for sub, (name, version, tag) in zip(("x", "y"), (first, second)):
        if tag is None:
            stem = f"{name}-{version}"
            filename, data = f"{stem}.tar.gz", tar_gz([(f"{stem}/PKG-INFO", pkg_info(name, version))])
        else:
            filename, data, _ = build_wheel(name, version, tag=tag)
        put(local / sub, filename, data)
        names.append(f"{sub}/{filename}")
    assert release_key(names[0].split("/")[1]) == release_key(names[1].split("/")[1])
    with pytest.raises(LocalPackageError) as info:
        scan_local(local)
    assert str(info.value) == f"{names[0]} and {names[1]}: one distribution under two filenames; keep one"


def test_scan_of_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(LocalPackageError) as info:
        scan_local(tmp_path / "nowhere")
    assert str(info.value) == f"the local directory {tmp_path / 'nowhere'} does not exist"
    (tmp_path / "file").write_text("")
    with pytest.raises(LocalPackageError) as info:
        scan_local(tmp_path / "file")
    assert str(info.value) == f"the local directory {tmp_path / 'file'} is not a directory"


def test_an_empty_directory_has_no_projects(tmp_path: Path) -> None:
    assert scan_local(tmp_path) == {}


# -- adding a file ---------------------------------------------------------------------------------
def test_add_copies_atomically_and_once(tmp_path: Path) -> None:
    filename, data, _ = build_wheel("acme-tools", "1.0")
    src = put(tmp_path / "dist", filename, data)
    local = tmp_path / "local" / "new"  # created on the first add
    dist = add_distribution(src, local)
    assert dist.path == local / filename and dist.path.read_bytes() == data
    assert dist.sha256 == hashlib.sha256(data).hexdigest()
    assert oct(dist.path.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in local.iterdir()) == [filename]  # no temp file left behind
    assert dist.mtime_ns == dist.path.stat().st_mtime_ns != MTIME_NS  # the upload time is when it was added
    again = add_distribution(src, local)  # the same bytes: nothing to do
    assert again == dist
    assert list(scan_local(local)) == ["acme-tools"]


def test_add_refuses_other_bytes_under_a_published_name(tmp_path: Path) -> None:
    filename, data, _ = build_wheel("acme-tools", "1.0")
    local = tmp_path / "local"
    put(local, filename, data)
    _, other, _ = build_wheel("acme-tools", "1.0", requires_dist=["attrs"])
    src = put(tmp_path / "dist", filename, other)
    with pytest.raises(LocalPackageError) as info:
        add_distribution(src, local)
    assert str(info.value) == (
        "acme_tools-1.0-py3-none-any.whl: the local directory already has a different acme_tools-1.0-py3-none-any.whl; "
        "a published filename never changes its content (give the new build a new version)"
    )
    assert (local / filename).read_bytes() == data
    assert sorted(p.name for p in local.iterdir()) == [filename]


def test_add_finds_the_file_in_a_sub_directory(tmp_path: Path) -> None:
    filename, data, _ = build_sdist("acme", "1.0")
    local = tmp_path / "local"
    put(local / "team", filename, data)
    src = put(tmp_path / "dist", filename, data)
    assert add_distribution(src, local).path == local / "team" / filename  # already there: a no-op
    assert not (local / filename).exists()
    _, other, _ = build_sdist("acme", "1.0", requires_dist=["attrs"])
    with pytest.raises(LocalPackageError) as info:
        add_distribution(put(tmp_path / "dist2", filename, other), local)
    assert "already has a different team/acme-1.0.tar.gz" in str(info.value)


def test_add_refuses_the_same_distribution_under_another_name(tmp_path: Path) -> None:
    local = tmp_path / "local"
    first, data, _ = build_wheel("acme", "1.0", tag="py2.py3-none-any")
    put(local, first, data)
    second, same, _ = build_wheel("acme", "1.0", tag="py3.py2-none-any")
    assert same == data  # the tags in another order: the same wheel under another filename
    with pytest.raises(LocalPackageError) as info:
        add_distribution(put(tmp_path / "dist", second, same), local)
    assert str(info.value) == f"{second}: the local directory already has this distribution as {first}"
    _, other, _ = build_wheel("acme", "1.0", tag="py3.py2-none-any", requires_dist=["attrs"])
    with pytest.raises(LocalPackageError) as info:
        add_distribution(put(tmp_path / "dist2", second, other), local)
    assert str(info.value) == f"{second}: the local directory already has a different {first}; " \
        "a published filename never changes its content (give the new build a new version)"
    assert sorted(p.name for p in local.iterdir()) == [first]


def test_add_refuses_an_invalid_file_and_writes_nothing(tmp_path: Path) -> None:
    filename, data, _ = build_wheel("acme-tools", "1.0")
    src = put(tmp_path / "dist", filename, rezip(data, {f"{DIST_INFO}/METADATA": core_metadata("acme-tools", "1.1")}))
    local = tmp_path / "local"
    local.mkdir()
    with pytest.raises(LocalPackageError) as info:
        add_distribution(src, local)
    assert str(info.value) == "acme_tools-1.0-py3-none-any.whl: METADATA says version 1.1, the filename says 1.0"
    assert list(local.iterdir()) == []


def test_add_beside_a_file_that_is_no_distribution(tmp_path: Path) -> None:
    local = tmp_path / "local"
    put(local, "junk.whl", b"not a wheel")
    filename, data, _ = build_wheel("acme", "1.0")
    assert add_distribution(put(tmp_path / "dist", filename, data), local).path == local / filename
    with pytest.raises(LocalPackageError) as info:
        scan_local(local)  # the scan still refuses the junk
    assert str(info.value) == "junk.whl: is not a valid wheel filename (Invalid wheel filename (wrong number of parts))"
