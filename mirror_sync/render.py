"""Render PEP 503 HTML and PEP 691 JSON pages (with PEP 592, 658/714, 700, 740 and 792 fields)."""
from __future__ import annotations

import json
from html import escape
from typing import Iterable, Optional, Sequence
from urllib.parse import urlsplit

from .models import MirroredFile

# The Simple API's minor versions (PyPA's "API Version History"): 1.1 added PEP 700's versions,
# size and upload-time; 1.2 PEP 708's tracks/alternate-locations (optional keys, not served
# here); 1.3 PEP 740's provenance; 1.4 PEP 792's project-status. A page announces the highest
# version whose fields it actually carries.
API_VERSION = "1.1"
PROVENANCE_API_VERSION = "1.3"
STATUS_API_VERSION = "1.4"


def provenance_url(f: MirroredFile) -> str | None:
    """The provenance link a page gives for `f`: PEP 740 wants a fully qualified URL, so only an
    absolute http(s) one is published (a mirror without a public base URL publishes none)."""
    url = f.provenance_url
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme in ("http", "https") and parts.hostname else None


def api_version(files: Sequence[MirroredFile], status: dict[str, str] | None = None) -> str:
    """The highest Simple API version whose fields a project page serves."""
    if status:
        return STATUS_API_VERSION
    if any(provenance_url(f) for f in files):
        return PROVENANCE_API_VERSION
    return API_VERSION


def file_href(f: MirroredFile) -> str:
    """Relative to simple/<project>/: the mirror can be served under any host and prefix."""
    return "../../" + f.path


def project_html(name: str, files: Sequence[MirroredFile], status: Optional[dict[str, str]] = None) -> bytes:
    out = [
        "<!DOCTYPE html>\n<html>\n  <head>\n",
        f'    <meta name="pypi:repository-version" content="{api_version(files, status)}">\n',
    ]
    if status:
        out.append(f'    <meta name="pypi:project-status" content="{escape(status["status"])}">\n')
        if status.get("reason"):
            out.append(f'    <meta name="pypi:project-status-reason" content="{escape(status["reason"])}">\n')
    out.append(f"    <title>Links for {escape(name)}</title>\n  </head>\n  <body>\n    <h1>Links for {escape(name)}</h1>\n")
    for f in files:
        attrs = [f'href="{escape(file_href(f))}#sha256={f.sha256}"']
        if f.requires_python:
            attrs.append(f'data-requires-python="{escape(f.requires_python)}"')
        if f.yanked is not False:
            reason = f.yanked if isinstance(f.yanked, str) else ""
            attrs.append(f'data-yanked="{escape(reason)}"')
        if f.metadata_sha256:
            attrs.append(f'data-dist-info-metadata="sha256={f.metadata_sha256}"')
            attrs.append(f'data-core-metadata="sha256={f.metadata_sha256}"')
        provenance = provenance_url(f)
        if provenance:
            attrs.append(f'data-provenance="{escape(provenance)}"')
        out.append(f"    <a {' '.join(attrs)}>{escape(f.filename)}</a><br/>\n")
    out.append("  </body>\n</html>\n")
    return "".join(out).encode("utf-8")


def project_json(
    name: str,
    serial: Optional[int],
    files: Sequence[MirroredFile],
    versions: Sequence[str],
    status: Optional[dict[str, str]] = None,
) -> bytes:
    meta: dict[str, object] = {"api-version": api_version(files, status)}
    if serial is not None:
        meta["_last-serial"] = serial
    entries = []
    for f in files:
        entry: dict[str, object] = {
            "filename": f.filename,
            "url": file_href(f),
            "hashes": {"sha256": f.sha256},
            "requires-python": f.requires_python,
            "yanked": f.yanked,
            "size": f.size,
        }
        if f.upload_time:
            entry["upload-time"] = f.upload_time
        meta_value: object = {"sha256": f.metadata_sha256} if f.metadata_sha256 else False
        entry["core-metadata"] = meta_value
        entry["data-dist-info-metadata"] = meta_value
        provenance = provenance_url(f)
        if provenance:
            entry["provenance"] = provenance
        entries.append(entry)
    doc: dict[str, object] = {"meta": meta, "name": name, "versions": list(versions), "files": entries}
    if status:
        doc["project-status"] = status
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# Project names reach the state only after names.canonical_project() accepted them: letters,
# digits, ".", "_" and "-". They need no HTML or JSON escaping, which keeps a 700,000-project root
# to plain string joins.


def root_html(entries: Iterable[tuple[str, str, Optional[int]]]) -> bytes:
    """entries: (canonical, display, serial), sorted."""
    head = (
        '<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" content="1.1">\n'
        "    <title>Simple index</title>\n  </head>\n  <body>\n"
    )
    body = "".join([f'    <a href="{canonical}/">{display}</a><br/>\n' for canonical, display, _ in entries])
    return (head + body + "  </body>\n</html>\n").encode("utf-8")


def root_json(entries: Iterable[tuple[str, str, Optional[int]]], serial: Optional[int]) -> bytes:
    meta = json.dumps({"api-version": API_VERSION, **({"_last-serial": serial} if serial is not None else {})}, separators=(",", ":"))
    projects = ",".join(
        [
            f'{{"name":"{display}","_last-serial":{s}}}' if s is not None else f'{{"name":"{display}"}}'
            for _canonical, display, s in entries
        ]
    )
    return f'{{"meta":{meta},"projects":[{projects}]}}'.encode("utf-8")


def serials_map(entries: Iterable[tuple[str, str, Optional[int]]], serial: Optional[int]) -> bytes:
    """Body of an nginx `map` block: each index page's path to its serial (`/simple/` and
    `/simple/<project>/`). The nginx role no longer includes it: its njs script reads
    X-PyPI-Last-Serial from the head of each page's JSON (`meta` first, see `project_json`), which
    needs no reload and no per-project nginx memory."""
    head = f"/simple/ {serial};\n" if serial is not None else ""
    return (head + "".join([f"/simple/{c}/ {s};\n" for c, _d, s in entries if s is not None])).encode("ascii")
