"""OSV advisories (mirror_sync/policy/osv.py, osv_index.py): entries written in the OSV schema,
exports as OSV publishes them (a zip) or unpacked (a directory), hostile exports, and the
evaluation rules, with hypothesis properties against a plain reference."""
from __future__ import annotations

import json
import logging
import os
import struct
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.version import Version

from mirror_sync.errors import AdvisoryError, MirrorSyncError
from mirror_sync.policy import osv
from mirror_sync.policy.osv import Advisory, AdvisoryDB, Limits, load_advisories
from mirror_sync.policy.osv_index import IndexFile
from tests.support.osv_export import (
    advisory,
    dumps,
    synthetic_entries,
    write_synthetic_zip,
    write_zip,
)

UTC = timezone.utc
CRITICAL_VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
LOW_VECTOR = "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N"  # 3.1 (POODLE)


def fixture_entries() -> dict[str, bytes]:
    """The advisories the tests judge by, one entry each, in the OSV schema."""
    docs = [
        advisory("MAL-2024-0001", "Evil_Pkg", events=[{"introduced": "0"}], versions=["1.0.0", "1.0.1"],
                 summary="Malicious code in evil-pkg (PyPI)"),
        advisory("GHSA-aaaa-bbbb-cccc", "requests-lite", events=[{"introduced": "0"}, {"fixed": "2.31.0"}],
                 aliases=["CVE-2024-1111"], cvss=CRITICAL_VECTOR, database_severity="MODERATE"),
        advisory("PYSEC-2024-10", "requests-lite", events=[{"introduced": "0"}, {"fixed": "2.31.0"}],
                 aliases=["GHSA-aaaa-bbbb-cccc", "CVE-2024-1111"]),
        advisory("GHSA-wwww-wwww-wwww", "flask-thing", events=[{"introduced": "0"}], cvss=CRITICAL_VECTOR,
                 withdrawn="2024-02-01T00:00:00Z"),
        advisory("PYSEC-2024-20", "lastaff", events=[{"introduced": "1.0"}, {"last_affected": "1.4"}], cvss=LOW_VECTOR),
        advisory("PYSEC-2024-30", "listed", versions=["0.9", "1.0.0rc1", "weird-version"]),
        advisory("PYSEC-2024-40", "multi", events=[{"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}, {"fixed": "2.1"}]),
        advisory("PYSEC-2024-50", "limited", events=[{"introduced": "0"}, {"limit": "3.0"}]),
        advisory("GHSA-dddd-dddd-dddd", "dbsev", events=[{"introduced": "0"}], database_severity="HIGH",
                 extra={"severity": [{"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}]}),
        advisory("PYSEC-2024-60", "unscored", events=[{"introduced": "0"}]),
        advisory("GHSA-npmx-npmx-npmx", "left-pad", ecosystem="npm", events=[{"introduced": "0"}]),
        advisory("GHSA-mmmm-mmmm-mmmm", "Mixed.Project", events=[{"introduced": "0"}, {"fixed": "1.0"}],
                 extra={"affected": [
                     {"package": {"ecosystem": "npm", "name": "mixed"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}]},
                     {"package": {"ecosystem": "PyPI", "name": "Mixed.Project"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0"}]},
                                 {"type": "GIT", "repo": "https://git.invalid/x", "events": [{"introduced": "abc123"}]}]},
                 ]}),
        advisory("GHSA-mal0-mal0-mal0", "aliased-evil", events=[{"introduced": "0"}], aliases=["MAL-2024-0099"]),
    ]
    return {f"{doc['id']}.json": dumps(doc) for doc in docs}


@pytest.fixture(scope="module")
def db() -> AdvisoryDB:
    return AdvisoryDB.from_entries(fixture_entries())


def one(db: AdvisoryDB, project: str, ident: str) -> Advisory:
    found = [a for a in db.for_project(project) if a.id == ident]
    assert len(found) == 1, db.for_project(project)
    return found[0]


# -- reading ----------------------------------------------------------------------------------------


def summary(db: AdvisoryDB) -> list[tuple[Any, ...]]:
    return [(a.project, a.id, a.aliases, a.modified, a.withdrawn, a.summary, a.severity, a.versions, a.ranges, a.names, a.digest)
            for a in db.advisories()]


def test_a_zip_a_directory_and_single_files_read_the_same(tmp_path: Path, db: AdvisoryDB) -> None:
    entries = fixture_entries()
    from_zip = load_advisories(write_zip(tmp_path / "PyPI.zip", entries))
    directory = tmp_path / "osv"
    (directory / "nested").mkdir(parents=True)
    for i, (name, data) in enumerate(entries.items()):
        (directory / ("nested" if i % 2 else "") / name).write_bytes(data)
    (directory / "README.txt").write_text("not an entry")
    (directory / ".git").mkdir()
    (directory / ".git" / "junk.json").write_text("not json")  # hidden directories are not read
    from_dir = load_advisories(directory)
    assert summary(from_zip) == summary(from_dir) == summary(db)
    assert from_zip.entries == from_dir.entries == len(entries)
    single = load_advisories(directory / "MAL-2024-0001.json")
    assert [a.id for a in single.advisories()] == ["MAL-2024-0001"]


def test_projects_are_canonical_and_only_pypi_counts(db: AdvisoryDB) -> None:
    assert [a.id for a in db.for_project("evil-pkg")] == ["MAL-2024-0001"]
    assert db.for_project("Evil_Pkg") == ()  # callers pass canonical names
    assert db.for_project("left-pad") == () and db.for_project("mixed") == ()
    mixed = one(db, "mixed-project", "GHSA-mmmm-mmmm-mmmm")
    assert mixed.ranges == ((("introduced", "0"), ("fixed", "1.0")),)  # the npm entry and the GIT range are not ours
    assert "left-pad" not in db.projects() and "requests-lite" in db.projects()
    assert len(db) == len(fixture_entries())  # every advisory counts for aliases, PyPI or not


def test_malicious_by_id_or_alias(db: AdvisoryDB) -> None:
    assert one(db, "evil-pkg", "MAL-2024-0001").malicious
    assert one(db, "aliased-evil", "GHSA-mal0-mal0-mal0").malicious
    assert not one(db, "requests-lite", "GHSA-aaaa-bbbb-cccc").malicious


def test_severity_sources_in_order(db: AdvisoryDB) -> None:
    assert one(db, "requests-lite", "GHSA-aaaa-bbbb-cccc").severity == "critical"  # the vector, not the database's MODERATE
    assert one(db, "requests-lite", "PYSEC-2024-10").severity == "critical"  # none of its own: its alias's
    assert one(db, "dbsev", "GHSA-dddd-dddd-dddd").severity == "high"  # a v4 vector is not scored: the database's
    assert one(db, "lastaff", "PYSEC-2024-20").severity == "low"
    assert one(db, "unscored", "PYSEC-2024-60").severity is None


def test_aliases_are_symmetric_and_transitive() -> None:
    entries = {
        "A.json": dumps(advisory("PYSEC-1", "p", events=[{"introduced": "0"}], aliases=["CVE-1"])),
        "B.json": dumps(advisory("GHSA-b", "p", events=[{"introduced": "0"}], aliases=["CVE-1"], database_severity="HIGH")),
        "C.json": dumps(advisory("OSV-c", "q", events=[{"introduced": "0"}], aliases=["GHSA-b"])),
    }
    db = AdvisoryDB.from_entries(entries)
    assert one(db, "p", "PYSEC-1").names == one(db, "q", "OSV-c").names == frozenset({"PYSEC-1", "CVE-1", "GHSA-b", "OSV-c"})
    assert one(db, "p", "PYSEC-1").severity == one(db, "q", "OSV-c").severity == "high"


def test_affected_severity_applies_to_its_package() -> None:
    doc = advisory("GHSA-pkg", "a", events=[{"introduced": "0"}])
    doc["affected"].append({"package": {"ecosystem": "PyPI", "name": "b"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
                            "severity": [{"type": "CVSS_V3", "score": LOW_VECTOR}]})
    doc["affected"][0]["severity"] = [{"type": "CVSS_V3", "score": CRITICAL_VECTOR}]
    db = AdvisoryDB.from_entries({"x.json": dumps(doc)})
    assert one(db, "a", "GHSA-pkg").severity == "critical" and one(db, "b", "GHSA-pkg").severity == "low"


def test_timestamps(db: AdvisoryDB) -> None:
    adv = one(db, "flask-thing", "GHSA-wwww-wwww-wwww")
    assert adv.withdrawn == datetime(2024, 2, 1, tzinfo=UTC)
    assert adv.modified == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert adv.withdrawn_by(datetime(2024, 2, 1, tzinfo=UTC)) and not adv.withdrawn_by(datetime(2024, 1, 31, tzinfo=UTC))
    assert one(db, "evil-pkg", "MAL-2024-0001").withdrawn is None


def test_two_entries_with_one_id_the_later_modified_wins() -> None:
    old = advisory("PYSEC-9", "p", events=[{"introduced": "0"}, {"fixed": "1.0"}], modified="2024-01-01T00:00:00Z")
    new = advisory("PYSEC-9", "p", events=[{"introduced": "0"}, {"fixed": "2.0"}], modified="2024-06-01T00:00:00Z")
    for order in ({"a.json": dumps(old), "b.json": dumps(new)}, {"a.json": dumps(new), "b.json": dumps(old)}):
        got = one(AdvisoryDB.from_entries(order), "p", "PYSEC-9")
        assert got.affects("1.5")


# -- evaluation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("project", "ident", "affected", "unaffected"), [
    ("requests-lite", "GHSA-aaaa-bbbb-cccc", ["0.1", "2.30.99", "2.31.0rc1", "2.31.0.dev1"], ["2.31.0", "2.31.0.post1", "3.0"]),
    ("lastaff", "PYSEC-2024-20", ["1.0", "1.2", "1.4", "1.4.0", "1.4rc1"], ["0.9", "1.0rc1", "1.4.0.post1", "1.4.1", "2.0"]),
    ("multi", "PYSEC-2024-40", ["1.0", "1.1.9", "2.0", "2.0.5"], ["0.9", "1.2", "1.9", "2.1", "3.0"]),
    ("limited", "PYSEC-2024-50", ["0.1", "2.9"], ["3.0", "4.0"]),
    ("listed", "PYSEC-2024-30", ["0.9", "0.9.0", "1.0.0rc1", "1.0rc1", "weird-version"], ["1.0", "0.8", "weird"]),
    ("evil-pkg", "MAL-2024-0001", ["0", "1.0.0", "99.0", "0.0.1.dev0"], []),
])
def test_affected_versions(db: AdvisoryDB, project: str, ident: str, affected: list[str], unaffected: list[str]) -> None:
    adv = one(db, project, ident)
    assert [v for v in affected if not adv.affects(v)] == []
    assert [v for v in unaffected if adv.affects(v)] == []


def test_what_cannot_be_ordered_fails_closed(db: AdvisoryDB) -> None:
    ranged = one(db, "requests-lite", "GHSA-aaaa-bbbb-cccc")
    assert ranged.affects("not-pep-440") and ranged.affects(None)
    listed = one(db, "listed", "PYSEC-2024-30")
    assert listed.affects(None) and not listed.affects("not-pep-440")  # a list is compared, not ordered

    def range_of(events: list[dict[str, str]]) -> Advisory:
        return one(AdvisoryDB.from_entries({"x.json": dumps(advisory("X-1", "p", events=events))}), "p", "X-1")

    assert range_of([{"introduced": "1.0-SNAPSHOT!"}, {"fixed": "2.0"}]).affects("0.1")  # unusable start: from the start
    assert range_of([{"introduced": "1.0"}, {"fixed": "2.0-final!"}]).affects("9.0")  # unusable fix: open-ended
    assert range_of([{"fixed": "2.0"}]).affects("1.0")  # no introduced at all: from the start
    assert not range_of([{"fixed": "2.0"}]).affects("2.0")
    assert range_of([{"introduced": "0"}, {"limit": "*"}]).affects("9.0")
    assert range_of([{"introduced": "1.0"}, {"fixed": "1.0"}]).affects("1.0") is False  # an empty range


def test_an_entry_without_ranges_or_versions_affects_nothing() -> None:
    doc = advisory("X-2", "p")
    db = AdvisoryDB.from_entries({"x.json": dumps(doc)})
    assert not one(db, "p", "X-2").affects("1.0") and not one(db, "p", "X-2").affects(None)


_VERSIONS = st.builds(
    lambda parts, pre: Version(".".join(map(str, parts)) + pre),
    st.lists(st.integers(0, 12), min_size=1, max_size=3),
    st.sampled_from(["", "", "", "rc1", "a2", ".post1", ".dev3"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_VERSIONS, min_size=1, max_size=8, unique=True), _VERSIONS, st.booleans(), st.randoms(use_true_random=False))
def test_ranges_agree_with_intervals(bounds: list[Version], v: Version, from_zero: bool, rnd: Any) -> None:
    """Alternating introduced/fixed events (given in any order) describe the union of
    [introduced, fixed) intervals; a last introduced is open-ended."""
    ordered = sorted(bounds)
    if from_zero:
        ordered = [Version("0")] + [b for b in ordered if b != Version("0")]
    events = [{"introduced" if i % 2 == 0 else "fixed": str(b)} for i, b in enumerate(ordered)]
    if from_zero:
        events[0] = {"introduced": "0"}
    shuffled = list(events)
    rnd.shuffle(shuffled)
    adv = one(AdvisoryDB.from_entries({"x.json": dumps(advisory("X-3", "p", events=shuffled))}), "p", "X-3")
    starts = ordered[0::2]
    ends = ordered[1::2] + [None]
    expected = any(
        (from_zero and i == 0 or str(s) == "0" or s <= v) and (e is None or v < e)  # "0": before every version
        for i, (s, e) in enumerate(zip(starts, ends))
    )
    assert adv.affects(str(v)) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(_VERSIONS, max_size=6, unique=True), _VERSIONS)
def test_listed_versions_are_affected(listed: list[Version], v: Version) -> None:
    adv = one(AdvisoryDB.from_entries({"x.json": dumps(advisory("X-4", "p", versions=[str(x) for x in listed] or ["0.0.0.1"]))}), "p", "X-4")
    assert all(adv.affects(str(x)) for x in listed)
    assert adv.affects(str(v)) == (v in listed or v == Version("0.0.0.1"))


# -- malformed and hostile exports ----------------------------------------------------------------


@pytest.mark.parametrize(("data", "why"), [
    (b"{not json", "is not valid JSON"),
    (b"\xff\xfe{}", "is not UTF-8 text"),
    (b"[1, 2]", "is not a JSON object"),
    (b'{"modified": "2024-01-01T00:00:00Z"}', "has no 'id' string"),
    (json.dumps({"id": "X-5", "affected": {"package": "p"}}).encode(), "'affected' is not a list"),
    (json.dumps({"id": "X-5", "affected": [{"package": {"ecosystem": "PyPI"}}]}).encode(), "has no 'ecosystem' and 'name' strings"),
    (json.dumps({"id": "X-5", "aliases": "CVE-1"}).encode(), "'aliases' is not a list of strings"),
    (json.dumps({"id": "X-5", "modified": "last week"}).encode(), "'modified' is not an RFC 3339 timestamp"),
    (json.dumps({"id": "X-5", "withdrawn": 12}).encode(), "'withdrawn' is not an RFC 3339 timestamp"),
    (dumps(advisory("X-5", "p", events=[{"introduced": "0", "fixed": "1.0"}])), "must have exactly one of"),
    (dumps(advisory("X-5", "p", events=[{"introduced": 1}])), "must have exactly one of"),  # type: ignore[dict-item]
    (dumps(advisory("X-5", "p", events=[])), "'affected[0].ranges[0].events' is not a non-empty list"),
    (dumps(advisory("X-5", "p", versions=["1.0", 2])), "'affected[0].versions' is not a list of strings"),  # type: ignore[list-item]
    (dumps(advisory("X-5", "p", extra={"severity": [{"type": "CVSS_V3"}]})), "'severity[0]' has no 'type' and 'score' strings"),
    (b"[" * 100_000, "is not valid JSON"),
])
def test_a_malformed_entry_is_refused_naming_it(tmp_path: Path, data: bytes, why: str) -> None:
    entries = dict(fixture_entries())
    entries["bad/X-5.json"] = data
    path = write_zip(tmp_path / "PyPI.zip", entries)
    with pytest.raises(AdvisoryError) as info:
        load_advisories(path)
    message = str(info.value)
    assert message.startswith(f"advisories {path}: entry bad/X-5.json") and why in message, message
    assert "\n" not in message and info.value.exit_code == 2 and isinstance(info.value, MirrorSyncError)


def test_a_summary_is_one_printable_line() -> None:
    doc = advisory("X-7", "p", events=[{"introduced": "0"}], summary="two\nlines \x1b[31mred\x1b[0m\tand " + "long " * 100)
    got = one(AdvisoryDB.from_entries({"x.json": dumps(doc)}), "p", "X-7").summary
    assert got.startswith("two lines [31mred[0m and long") and got.isprintable() and len(got) == 200


def test_unknown_fields_are_ignored() -> None:
    doc = advisory("X-6", "p", events=[{"introduced": "0"}], extra={"future_field": {"x": [1]}, "related": ["Y"]})
    doc["affected"][0]["ranges"][0]["events"].append({"fixed": "2.0", "note": "unknown keys beside one known"})
    doc["affected"][0]["ecosystem_specific"] = {"anything": True}
    adv = one(AdvisoryDB.from_entries({"x.json": dumps(doc)}), "p", "X-6")
    assert adv.affects("1.0") and not adv.affects("2.0")


def test_a_compression_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("MAL-2024-0001.json", fixture_entries()["MAL-2024-0001.json"])
        with archive.open("GHSA-bomb.json", "w") as member:  # 9 MiB of spaces: valid JSON whitespace, ~9 KB compressed
            member.write(b"{")
            for _ in range(9):
                member.write(b" " * 1024**2)
            member.write(b"}")
    assert path.stat().st_size < 100_000
    with pytest.raises(AdvisoryError, match=r"entry GHSA-bomb.json decompresses to more than 8388608 bytes \(a compression bomb\?\); refused"):
        load_advisories(path)


def test_the_total_is_capped(tmp_path: Path) -> None:
    entries = fixture_entries()
    path = write_zip(tmp_path / "PyPI.zip", entries)
    total = sum(len(d) for d in entries.values())
    with pytest.raises(AdvisoryError, match=r"more than \d+ bytes once decompressed; refused"):
        load_advisories(path, Limits(max_total_bytes=total - 1))
    assert len(load_advisories(path, Limits(max_total_bytes=total))) == len(entries)
    directory = tmp_path / "dir"
    directory.mkdir()
    for name, data in entries.items():
        (directory / name).write_bytes(data)
    with pytest.raises(AdvisoryError, match=r"more than \d+ bytes of entries; refused"):
        load_advisories(directory, Limits(max_total_bytes=total - 1))
    with pytest.raises(AdvisoryError, match=r"entry GHSA-aaaa-bbbb-cccc.json is larger than 10 bytes; refused"):
        load_advisories(directory, Limits(max_entry_bytes=10))


def test_the_entry_count_is_capped_before_the_directory_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = fixture_entries()
    path = write_zip(tmp_path / "PyPI.zip", entries)

    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the central directory was parsed")

    monkeypatch.setattr(zipfile.ZipFile, "__init__", no_parse)
    with pytest.raises(AdvisoryError, match=rf"the archive has {len(entries)} entries, more than 3; refused"):
        load_advisories(path, Limits(max_entries=3))
    with pytest.raises(AdvisoryError, match=r"directory of \d+ bytes is larger than allowed"):
        load_advisories(path, Limits(max_central_directory_bytes=100))


def test_a_zip64_end_record_is_read(tmp_path: Path) -> None:
    path = tmp_path / "PyPI.zip"
    with zipfile.ZipFile(path, "w", allowZip64=True) as archive:
        for name, data in fixture_entries().items():
            archive.writestr(name, data)
    raw = bytearray(path.read_bytes())
    at = raw.rfind(b"PK\x05\x06")
    # rewrite the archive's end as zip64 (record, locator, then an end record that points to them)
    _sig, _d, _cd, here, total, cd_size, cd_offset, _c = struct.unpack("<4sHHHHIIH", raw[at:at + 22])
    record = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, here, total, cd_size, cd_offset)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, at, 1)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path.write_bytes(bytes(raw[:at]) + record + locator + end)
    assert len(load_advisories(path)) == len(fixture_entries())
    with pytest.raises(AdvisoryError, match="more than 3; refused"):
        load_advisories(path, Limits(max_entries=3))


def test_sizes_in_the_headers_are_not_trusted(tmp_path: Path) -> None:
    data = fixture_entries()["MAL-2024-0001.json"]
    path = write_zip(tmp_path / "PyPI.zip", {"MAL-2024-0001.json": data})
    raw = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory
        at = raw.find(signature)
        struct.pack_into("<I", raw, at + offset, 10)  # claims 10 bytes uncompressed
    path.write_bytes(bytes(raw))
    with pytest.raises(AdvisoryError, match=r"entry MAL-2024-0001.json cannot be read \("):
        load_advisories(path)


@pytest.mark.parametrize(("content", "why"), [
    (b"", "is not a zip archive"),
    (b"PK\x03\x04 this is no zip" * 10, "is not a zip archive"),
    (b"\x00" * 46 + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, 46, 0, 0), "not a readable zip archive"),
    (b"\x00" * 30 + b"PK\x05\x06" + b"\x00" * 18, "the archive holds no .json entries"),  # an empty zip
])
def test_not_a_zip(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "PyPI.zip"
    path.write_bytes(content)
    with pytest.raises(AdvisoryError, match=why):
        load_advisories(path)


def test_missing_and_unusable_paths(tmp_path: Path) -> None:
    with pytest.raises(AdvisoryError, match=r"advisories .*/nowhere.zip: not found"):
        load_advisories(tmp_path / "nowhere.zip")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(AdvisoryError, match="neither a zip archive, a directory nor a .json file"):
        load_advisories(fifo)
    directory = tmp_path / "osv"
    directory.mkdir()
    os.mkfifo(directory / "PYSEC-1.json")  # would block a plain read for ever
    with pytest.raises(AdvisoryError, match="entry PYSEC-1.json is not a regular file"):
        load_advisories(directory)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AdvisoryError, match="the directory holds no .json files; refused"):
        load_advisories(empty)


# -- fingerprints -----------------------------------------------------------------------------------


def test_the_fingerprint_follows_the_advisories_of_the_project(db: AdvisoryDB) -> None:
    base = fixture_entries()

    def fp(entries: dict[str, bytes], project: str) -> str:
        return AdvisoryDB.from_entries(entries).fingerprint(project)

    before = {p: db.fingerprint(p) for p in ("requests-lite", "evil-pkg", "flask-thing", "nothing-known")}
    assert fp(base, "requests-lite") == before["requests-lite"]  # deterministic
    withdrawn = dict(base)
    withdrawn["MAL-2024-0001.json"] = dumps(advisory("MAL-2024-0001", "Evil_Pkg", events=[{"introduced": "0"}],
                                                     versions=["1.0.0", "1.0.1"], summary="Malicious code in evil-pkg (PyPI)",
                                                     withdrawn="2024-06-01T00:00:00Z", modified="2024-06-01T00:00:00Z"))
    assert fp(withdrawn, "evil-pkg") != before["evil-pkg"]
    assert fp(withdrawn, "requests-lite") == before["requests-lite"]  # another project's advisory
    added = dict(base, **{"NEW.json": dumps(advisory("PYSEC-2024-99", "flask-thing", events=[{"introduced": "0"}]))})
    assert fp(added, "flask-thing") != before["flask-thing"]
    removed = {k: v for k, v in base.items() if k != "PYSEC-2024-10.json"}
    assert fp(removed, "requests-lite") != before["requests-lite"]
    assert fp(base, "nothing-known") == fp({}, "nothing-known")


def test_the_fingerprint_follows_an_alias_elsewhere() -> None:
    entries = {
        "a.json": dumps(advisory("PYSEC-1", "p", events=[{"introduced": "0"}], aliases=["GHSA-x"])),
        "b.json": dumps(advisory("GHSA-x", "q", events=[{"introduced": "0"}], database_severity="LOW")),
    }
    before = AdvisoryDB.from_entries(entries).fingerprint("p")
    entries["b.json"] = dumps(advisory("GHSA-x", "q", events=[{"introduced": "0"}], database_severity="CRITICAL"))
    db = AdvisoryDB.from_entries(entries)
    assert db.fingerprint("p") != before and one(db, "p", "PYSEC-1").severity == "critical"


# -- the index of a zip export ------------------------------------------------------------------------


def test_the_index_stands_for_the_export_it_was_made_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = fixture_entries()
    path = write_zip(tmp_path / "PyPI.zip", entries)
    index = tmp_path / "state" / "advisories.index"
    index.parent.mkdir()
    first = load_advisories(path, cache=IndexFile(index))
    assert index.is_file() and not [p for p in index.parent.iterdir() if p != index]  # written atomically, no leftovers

    def no_parse(*args: object) -> None:
        raise AssertionError("the export was parsed again")

    with monkeypatch.context() as patch:
        patch.setattr(osv, "_parse_entry", no_parse)
        again = load_advisories(path, cache=IndexFile(index))
    assert summary(again) == summary(first) and again.export_digest == first.export_digest
    assert all(again.fingerprint(p) == first.fingerprint(p) for p in first.projects())

    entries["PYSEC-2024-99.json"] = dumps(advisory("PYSEC-2024-99", "flask-thing", events=[{"introduced": "0"}]))
    write_zip(path, entries)  # a new export: parsed, and the index rewritten
    changed = load_advisories(path, cache=IndexFile(index))
    assert "PYSEC-2024-99" in {a.id for a in changed.for_project("flask-thing")}
    with monkeypatch.context() as patch:
        patch.setattr(osv, "_parse_entry", no_parse)
        assert summary(load_advisories(path, cache=IndexFile(index))) == summary(changed)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "other-key"])
def test_a_damaged_index_is_ignored_and_rewritten(tmp_path: Path, damage: str) -> None:
    path = write_zip(tmp_path / "PyPI.zip", fixture_entries())
    index = tmp_path / "advisories.index"
    good = summary(load_advisories(path, cache=IndexFile(index)))
    raw = bytearray(index.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        raw[-10] ^= 0x01
    elif damage == "garbage":
        raw = bytearray(b"\x00\xff" * 50)
    else:
        raw = raw.replace(b"osv-index/", b"osv-index/x", 1)
    index.write_bytes(bytes(raw))
    assert summary(load_advisories(path, cache=IndexFile(index))) == good
    assert summary(load_advisories(path, cache=IndexFile(index))) == good
    assert index.read_bytes() != bytes(raw)


def test_an_index_that_cannot_be_written_is_only_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_zip(tmp_path / "PyPI.zip", fixture_entries())
    with caplog.at_level(logging.WARNING, logger="mirror_sync.policy.osv_index"):
        db = load_advisories(path, cache=IndexFile(tmp_path / "no-such-dir" / "advisories.index"))
    assert len(db) == len(fixture_entries())
    assert "event=advisory-index-unwritten" in caplog.text


def test_a_synthetic_export_reads_back_from_its_index(tmp_path: Path) -> None:
    """A smaller copy of the 20,000-entry export `python -m tests.support.osv_export` times."""
    path = write_synthetic_zip(tmp_path / "PyPI.zip", 1500)
    index = tmp_path / "advisories.index"
    parsed = load_advisories(path, cache=IndexFile(index))
    indexed = load_advisories(path, cache=IndexFile(index))
    assert len(parsed) == 1500 and summary(indexed) == summary(parsed)
    assert all(indexed.fingerprint(p) == parsed.fingerprint(p) for p in parsed.projects())
    sizes = [len(data) for _, data in synthetic_entries(60)]
    assert 1500 < sum(sizes) / len(sizes) < 2600  # about the size of OSV's entries
    pysec = next(a for a in parsed.advisories() if a.id.startswith("PYSEC-"))
    assert pysec.severity is not None  # from the GHSA it aliases
