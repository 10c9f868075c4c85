"""Real wheels built in memory (a valid zip with METADATA, WHEEL and RECORD), and the sizes they get.

Two size models (`SizeModel`): `tiny` (about 1 KB each: what the CPU-efficiency measure on loopback
has always used) and `lognormal` (what an index holds: median ~100 KB, a long tail, and a few files
of 20 MB and more), drawn from their own seeded random stream so runs are comparable.
"""
from __future__ import annotations

import base64
import hashlib
import io
import math
import random
import re
import zipfile
from dataclasses import dataclass
from typing import Optional

_DATE = (2024, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class BuiltWheel:
    filename: str
    data: bytes
    metadata: bytes  # the METADATA file, served as <filename>.metadata (PEP 658)


def dist_name(project: str) -> str:
    """The wheel filename's distribution part (PEP 427 escaping of the normalised name)."""
    return re.sub(r"[-_.]+", "_", project).lower()


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def metadata_text(name: str, version: str, summary: str, requires_python: Optional[str], requires: list[str]) -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {summary}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines.extend(f"Requires-Dist: {req}" for req in requires)
    return ("\n".join(lines) + "\n\n").encode()


def build_wheel(
    name: str,
    version: str,
    *,
    summary: str = "",
    requires_python: Optional[str] = None,
    requires: Optional[list[str]] = None,
    payload: bytes = b"",
) -> BuiltWheel:
    """A pure-Python `py3-none-any` wheel of `name` `version` with one module."""
    dist = dist_name(name)
    info = f"{dist}-{version}.dist-info"
    metadata = metadata_text(name, version, summary or f"{name} {version}", requires_python, requires or [])
    module = b'"""' + f"{name} {version}".encode() + b'"""\n' + payload
    wheel_meta = b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries = [(f"{dist}/__init__.py", module), (f"{info}/METADATA", metadata), (f"{info}/WHEEL", wheel_meta)]
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in entries) + f"{info}/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for path, data in entries + [(f"{info}/RECORD", record.encode())]:
            zf.writestr(zipfile.ZipInfo(path, _DATE), data)
    return BuiltWheel(f"{dist}-{version}-py3-none-any.whl", buf.getvalue(), metadata)


WHEEL_OVERHEAD = 900  # bytes a wheel has beside its payload: zip headers, METADATA, WHEEL, RECORD


@dataclass(frozen=True)
class SizeModel:
    """File sizes of the synthetic upstream.

    `lognormal`: sizes exp(N(ln median, sigma)), clipped to [min_bytes, big_bytes); the default sigma
    1.0 puts the mean at ~1.65x the median (about 165 KB) and one file in 50 above 1 MB. On top of
    that, `big_count(files)` files — one in `big_every`, at least `big_min` — are big_bytes to
    2 x big_bytes (the tail a sync must not leave for last)."""

    kind: str = "tiny"  # "tiny" | "lognormal"
    median_bytes: int = 100_000
    sigma: float = 1.0
    min_bytes: int = 2_000
    big_bytes: int = 20_000_000
    big_every: int = 1_850  # the upstream: five 20 MB files in 9,250
    big_min: int = 3

    def big_count(self, files: int) -> int:
        if self.kind != "lognormal":
            return 0
        return max(self.big_min, round(files / self.big_every))


TINY = SizeModel("tiny")
LOGNORMAL = SizeModel("lognormal")


def lognormal_size(rng: random.Random, model: SizeModel) -> int:
    """One file's size (bytes) from the body of the distribution."""
    size = int(math.exp(rng.gauss(math.log(model.median_bytes), model.sigma)))
    # below the big files by more than a wheel's overhead, so only the chosen few reach big_bytes
    return max(model.min_bytes, min(model.big_bytes - 4 * WHEEL_OVERHEAD, size))


def big_positions(files: int, model: SizeModel) -> list[int]:
    """Which of the first `files` files (in creation order) are the big ones: spread evenly."""
    count = min(files, model.big_count(files))
    if count <= 0:
        return []
    step = files / count
    return [int(step * i + step / 2) for i in range(count)]


def big_size(rng: random.Random, model: SizeModel) -> int:
    return int(model.big_bytes * (1.0 + rng.random()))


def payload_for(size: int, tag: str) -> bytes:
    """A module body that makes the wheel about `size` bytes (never less than a small header)."""
    head = b"# " + tag.encode() + b"\n"
    return head + b"x" * max(0, size - WHEEL_OVERHEAD - len(head))
