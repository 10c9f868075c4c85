"""OSV advisories in the schema's own form, for tests: single entries, and a synthetic export
shaped like OSV's PyPI zip (many entries of about 2 KB: GHSA with CVSS v3 vectors, PYSEC
aliasing them, MAL- reports) to measure how long loading takes.

    python -m tests.support.osv_export [COUNT]   # writes an export to a temp dir and times loading it
"""
from __future__ import annotations

import json
import random
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

MODIFIED = "2024-03-01T10:00:00Z"


def advisory(
    ident: str,
    project: str,
    *,
    events: Sequence[dict[str, str]] | None = None,
    versions: Sequence[str] = (),
    aliases: Sequence[str] = (),
    cvss: str | None = None,
    database_severity: str | None = None,
    withdrawn: str | None = None,
    modified: str = MODIFIED,
    ecosystem: str = "PyPI",
    summary: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One OSV entry naming one package, with one ECOSYSTEM range when `events` is given."""
    affected: dict[str, Any] = {"package": {"ecosystem": ecosystem, "name": project, "purl": f"pkg:pypi/{project}"}}
    if events is not None:
        affected["ranges"] = [{"type": "ECOSYSTEM", "events": list(events)}]
    if versions:
        affected["versions"] = list(versions)
    doc: dict[str, Any] = {
        "schema_version": "1.6.0",
        "id": ident,
        "modified": modified,
        "published": "2024-01-01T00:00:00Z",
        "aliases": list(aliases),
        "summary": summary or f"an advisory for {project}",
        "details": f"Details of {ident}.",
        "affected": [affected],
        "references": [{"type": "WEB", "url": f"https://advisories.invalid/{ident}"}],
    }
    if cvss:
        doc["severity"] = [{"type": "CVSS_V3", "score": cvss}]
    if database_severity:
        doc["database_specific"] = {"severity": database_severity, "cwe_ids": ["CWE-79"], "github_reviewed": True}
    if withdrawn:
        doc["withdrawn"] = withdrawn
    if extra:
        doc.update(extra)
    return doc


def dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2).encode()


def write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


_VECTORS = (
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N",
    "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:L/A:N",
    "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N",
)


def synthetic_entries(count: int, seed: int = 13) -> Iterator[tuple[str, bytes]]:
    """`count` entries of about 2 KB each, as OSV's PyPI export has them: a third GHSA (with a
    vector and a database severity), a third PYSEC aliasing the GHSA before it (no severity of its
    own), a third MAL- (every version). Projects are shared by a few advisories each."""
    rnd = random.Random(seed)
    filler = " ".join(["The vulnerable code path is reached through a crafted request."] * 14)
    for i in range(count):
        project = f"project-{i // 3 % (count // 5 + 1)}"
        versions = [f"1.{minor}.{patch}" for minor in range(3) for patch in range(rnd.randint(3, 8))]
        kind = i % 3
        if kind == 0:
            ident = f"GHSA-{i:04x}-{rnd.randrange(16**4):04x}-{rnd.randrange(16**4):04x}"
            doc = advisory(ident, project, events=[{"introduced": "0"}, {"fixed": "1.2.0"}], versions=versions,
                           aliases=[f"CVE-2024-{i}"], cvss=rnd.choice(_VECTORS), database_severity="HIGH")
        elif kind == 1:
            ident = f"PYSEC-2024-{i}"
            doc = advisory(ident, project, events=[{"introduced": "1.1.0"}, {"last_affected": "1.1.4"}],
                           versions=versions, aliases=[f"GHSA-{i - 1:04x}-0000-0000", f"CVE-2024-{i - 1}"])
        else:
            ident = f"MAL-2024-{i}"
            doc = advisory(ident, f"malicious-{i}", events=[{"introduced": "0"}], versions=versions,
                           extra={"database_specific": {"malicious-packages-origins": [{"source": "ossf-package-analysis"}]}})
        doc["details"] = filler
        yield f"{ident}.json", dumps(doc)


def write_synthetic_zip(path: Path, count: int) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in synthetic_entries(count):
            archive.writestr(name, data)
    return path


def main(argv: Sequence[str]) -> int:
    from mirror_sync.policy.osv import load_advisories
    from mirror_sync.policy.osv_index import IndexFile

    count = int(argv[0]) if argv else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        path = write_synthetic_zip(Path(tmp) / "PyPI.zip", count)
        index = Path(tmp) / "advisories.index"
        sizes = [len(data) for _, data in synthetic_entries(min(count, 300))]
        print(f"{count} entries (mean {sum(sizes) / len(sizes):.0f} bytes), zip {path.stat().st_size} bytes")
        for what, cache in (("parsed", None), ("parsed, index written", IndexFile(index)), ("from the index", IndexFile(index))):
            started = time.perf_counter()
            db = load_advisories(path, cache=cache)
            print(f"  {what}: {db!r} in {time.perf_counter() - started:.2f} s")
        print(f"  index: {index.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
