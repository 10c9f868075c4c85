"""Small, real wheels built in memory (a valid zip with METADATA, WHEEL and RECORD)."""
from __future__ import annotations

import base64
import hashlib
import io
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
