"""Capture the pages of tests/data/real/ from the real default index, once.

    python tests/data/capture.py            # from the repository root

The upstream is the index pip itself would use here (mirror_sync.pip_default.default_upstream(),
read at run time): no registry host is written in this script, and every host name in the
captured bodies is rewritten to PLACEHOLDER before anything is written, so none is in the repo.

What it fetches (a few MB in all): the JSON and HTML pages of a few projects, and the first
ROOT_PREFIX bytes of the root in both formats (the whole root is ~40 MB: the response is closed
after the prefix, and the prefix is cut after its last complete entry and closed again, so the
fixture is a well-formed root with the real index's framing). Bodies larger than GZIP_OVER are
stored gzipped (mtime 0: the bytes do not depend on when they were captured). manifest.json
records, per file, what was asked for and what came back (content type, X-PyPI-Last-Serial).
"""
from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path
from typing import Optional

import requests

HERE = Path(__file__).resolve().parent
OUT = HERE / "real"
PLACEHOLDER = "https://files.upstream.invalid"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
HTML_ACCEPT = "application/vnd.pypi.simple.v1+html;q=0.9, text/html;q=0.1"
# small, yanked files (with reasons), requires-python on its files, very large
PROJECTS = {"requests": "small; yanked files with reasons", "idna": "requires-python on its files", "numpy": "very large"}
ROOT_PREFIX = 64 * 1024
GZIP_OVER = 100 * 1024
TIMEOUT = 60

_ORIGIN = re.compile(rb"(?:[A-Za-z][A-Za-z0-9+.-]*:)?//[A-Za-z0-9.-]+(?::\d+)?(?=[/\"'#?\s<>]|$)")


def neutral_hosts(body: bytes) -> bytes:
    """Every origin (scheme, host and port; also a scheme-relative one) in `body` becomes PLACEHOLDER."""
    return _ORIGIN.sub(PLACEHOLDER.encode(), body)


def _fetch(url: str, accept: str, limit: Optional[int] = None) -> tuple[bytes, dict[str, Optional[str]]]:
    with requests.get(url, headers={"Accept": accept}, timeout=TIMEOUT, stream=True) as response:
        response.raise_for_status()
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(16 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if limit is not None and size >= limit:
                break  # leaving the block closes the connection: the rest is never read
        info = {
            "content_type": response.headers.get("Content-Type"),
            "x_pypi_last_serial": response.headers.get("X-PyPI-Last-Serial"),
            "content_length": response.headers.get("Content-Length"),
        }
    return b"".join(chunks), info


def _cut_root(body: bytes, content_type: str) -> bytes:
    """A root's prefix, cut after its last complete entry and closed again."""
    if "json" in content_type:
        end = body.rfind(b"},")  # the end of the last entry that has another after it
        return body[: end + 1] + b"]}\n"
    end = body.rfind(b"</a>")
    line_end = body.find(b"\n", end)
    return body[: (line_end + 1 if line_end != -1 else end + 4)] + b"</body></html>\n"


def _write(name: str, body: bytes, info: dict[str, object], manifest: dict[str, object]) -> None:
    body = neutral_hosts(body)
    if len(body) > GZIP_OVER:
        name += ".gz"
        (OUT / name).write_bytes(gzip.compress(body, compresslevel=9, mtime=0))
    else:
        (OUT / name).write_bytes(body)
    manifest[name] = {**info, "bytes": len(body)}
    print(f"{name}: {len(body)} bytes, {info.get('content_type')}", file=sys.stderr)


def main() -> int:
    sys.path.insert(0, str(HERE.parent.parent))
    from mirror_sync.pip_default import default_upstream

    base = default_upstream().rstrip("/") + "/"
    OUT.mkdir(exist_ok=True)
    manifest: dict[str, object] = {}
    for project, why in PROJECTS.items():
        for fmt, accept in (("json", JSON_ACCEPT), ("html", HTML_ACCEPT)):
            body, info = _fetch(f"{base}{project}/", accept)
            _write(f"{project}.{fmt}", body, {"project": project, "why": why, "accept": accept, **info}, manifest)
    for fmt, accept in (("json", JSON_ACCEPT), ("html", HTML_ACCEPT)):
        body, info = _fetch(base, accept, limit=ROOT_PREFIX)
        ctype = str(info.get("content_type") or "")
        ext = "json" if "json" in ctype else "html"  # what came back, not what was asked for
        _write(f"root-asked-{fmt}.{ext}", _cut_root(body, ctype), {"accept": accept, "truncated_to_complete_entries": True, **info}, manifest)
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
