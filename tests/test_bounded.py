"""Hostile answers cost bounded memory and bounded time: a huge page, a compression bomb (page or
wheel), a wheel whose METADATA member lies about its size, an answer that trickles. Each fails
the project (or file) it belongs to, with one sentence; the rest of the run goes on; the run's
own peak RSS (measured with wait4) stays under 200 MB."""
from __future__ import annotations

import functools
import io
import json
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.index_tree import IndexTree
from tests.support.mirror_check import check_mirror
from tests.support.upstream_server import UpstreamServer
from tests.syncutil import cli_env, write_config

RSS_LIMIT_KB = 200 * 1024
MB = 1024 * 1024


def sync_measured(config: Path, timeout: float = 300) -> tuple[int, dict[str, Any], str, int]:
    """Run the CLI's sync under /usr/bin/time; (exit code, JSON summary, stderr, peak RSS in KiB)."""
    env = cli_env()
    proc = subprocess.run(["/usr/bin/time", "-f", "peak_rss_kb=%M", sys.executable, "-m", "mirror_sync", "-c", str(config),
                           "sync", "--json"], capture_output=True, text=True, env=env, timeout=timeout)
    err, _, last = proc.stderr.rstrip().rpartition("\n")
    assert last.startswith("peak_rss_kb="), proc.stderr[-500:]
    assert "Traceback" not in err, err
    rss = int(last.split("=")[1])
    print(f"peak_rss_mb={rss // 1024}")  # for the record (pytest -s shows it)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1]), err, rss


@functools.lru_cache(maxsize=None)
def gzip_bomb(decoded: int) -> bytes:
    """`decoded` zero bytes, gzip-compressed (about 1000:1), built a megabyte at a time."""
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(MB)
    parts = [co.compress(block) for _ in range(decoded // MB)]
    parts.append(co.flush())
    return b"".join(parts)


def stream_of(data: bytes, chunk: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i:i + chunk]


def huge_page(total: int) -> Iterator[bytes]:
    """A page that never ends well: `total` bytes of JSON-ish filler."""
    block = b" " * MB
    yield b'{"meta": {"api-version": "1.1"}, "name": "huge", "files": ['
    for _ in range(total // MB):
        yield block


def lying_wheel(name: str, version: str, inflated: int) -> bytes:
    """A wheel whose METADATA member says it is 100 bytes but inflates to `inflated`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(f"{name}-{version}.dist-info/METADATA")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as fh:
            fh.write(b"Metadata-Version: 2.1\nName: " + name.encode() + b"\nVersion: " + version.encode() + b"\n\n")
            block = bytes(MB)
            for _ in range(inflated // MB):
                fh.write(block)
        zf.writestr(f"{name}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{name}-{version}.dist-info/RECORD", "")
    data = bytearray(buf.getvalue())
    # rewrite the member's uncompressed size in its central directory entry to 100 bytes
    pos = data.find(b"PK\x01\x02")
    assert pos > 0
    struct.pack_into("<I", data, pos + 24, 100)
    return bytes(data)


@pytest.fixture
def tree(tmp_path: Path) -> IndexTree:
    tree = IndexTree(tmp_path / "upstream")
    tree.add_wheel("good", "1.0")
    tree.add_wheel("victim", "1.0")
    return tree


def _run(tree: IndexTree, tmp_path: Path, faults: list[dict[str, Any]], **keys: Any) -> tuple[int, dict[str, Any], str, int]:
    tree.write()
    with UpstreamServer(tree.root) as server:
        for fault in faults:
            server.add_fault(times=100, **fault)
        cfg = write_config(tmp_path / "m.yml", server.url, tmp_path / "mirror", **{"retries": 1, **keys})
        return sync_measured(cfg)


def test_a_huge_page_fails_its_project_only(tree: IndexTree, tmp_path: Path) -> None:
    rc, summary, _err, rss = _run(tree, tmp_path, [{"prefix": "/simple/victim/", "body": lambda: huge_page(2048 * MB)}])
    assert rc == 1
    assert [f["project"] for f in summary["failures"]] == ["victim"]
    assert "larger than the 67108864 bytes allowed" in summary["failures"][0]["error"]
    assert set(check_mirror(tmp_path / "mirror")) == {"good"}
    assert rss < RSS_LIMIT_KB, f"peak RSS {rss // 1024} MB"


def test_a_compression_bomb_page_fails_its_project_only(tree: IndexTree, tmp_path: Path) -> None:
    bomb = gzip_bomb(1024 * MB)
    assert len(bomb) < 2 * MB
    rc, summary, _err, rss = _run(tree, tmp_path, [{"prefix": "/simple/victim/", "body": lambda: stream_of(bomb),
                                                   "headers": {"Content-Encoding": "gzip"}}])
    assert rc == 1
    assert [f["project"] for f in summary["failures"]] == ["victim"]
    assert "once decoded" in summary["failures"][0]["error"]
    assert rss < RSS_LIMIT_KB, f"peak RSS {rss // 1024} MB"


def test_a_wheel_that_inflates_past_its_advertised_size_is_refused(tree: IndexTree, tmp_path: Path) -> None:
    """Advertised as a small wheel, sent as gzip that decodes to 768 MB: counted as decoded, it
    is refused at its advertised size (and so is a .metadata document that inflates)."""
    bomb = gzip_bomb(768 * MB)
    tree.add_wheel("bombed", "1.0", with_metadata=False)
    rc, summary, _err, rss = _run(tree, tmp_path, [{"prefix": "/packages/", "body": lambda: stream_of(bomb),
                                                   "headers": {"Content-Encoding": "gzip"}}], projects=["bombed", "good"])
    assert rc == 1
    failed = {f["project"]: f["error"] for f in summary["failures"]}
    assert set(failed) == {"bombed", "good"}  # every file (and document) under /packages/ is a bomb here
    assert "more bytes than" in failed["bombed"], failed
    assert "metadata of good-1.0-py3-none-any.whl: larger than" in failed["good"], failed
    assert rss < RSS_LIMIT_KB, f"peak RSS {rss // 1024} MB"
    assert not any((tmp_path / "mirror" / "web" / "packages").rglob("*.whl"))


def test_a_metadata_member_that_lies_about_its_size_is_read_with_a_bound(tree: IndexTree, tmp_path: Path) -> None:
    tree.add_file("liar", "liar-1.0-py3-none-any.whl", lying_wheel("liar", "1.0", 1024 * MB), metadata=None, version="1.0")
    rc, summary, err, rss = _run(tree, tmp_path, [], projects=["liar", "good"])
    assert rc == 0, (summary, err[-2000:])
    pages = check_mirror(tmp_path / "mirror")
    assert pages["liar"] == ["liar-1.0-py3-none-any.whl"]
    assert not list((tmp_path / "mirror" / "web" / "packages").rglob("liar-1.0-py3-none-any.whl.metadata"))
    assert rss < RSS_LIMIT_KB, f"peak RSS {rss // 1024} MB"


def test_a_trickling_page_fails_at_the_deadline_and_the_rest_is_published(tree: IndexTree, tmp_path: Path) -> None:
    rc, summary, _err, _rss = _run(tree, tmp_path, [{"prefix": "/simple/victim/", "trickle": 1.0}],
                                   timeout=2, deadline=4, retries=0)
    assert rc == 1
    assert summary["failures"] == [{"project": "victim", "error": summary["failures"][0]["error"]}]
    assert "did not arrive within the 4 s deadline" in summary["failures"][0]["error"]
    mirror = tmp_path / "mirror"
    assert set(check_mirror(mirror)) == {"good"}
    root = json.loads((mirror / "web/simple/index.v1_json").read_text())
    assert [p["name"] for p in root["projects"]] == ["good"]


def test_a_full_mirror_refuses_a_root_past_its_cap(tree: IndexTree, tmp_path: Path) -> None:
    """A 2 GB root (of valid-looking names, which the streamed parse would otherwise keep) fails
    the run at max_root_size, with one sentence and bounded memory; nothing is deleted."""
    def names() -> Iterator[bytes]:
        yield b'{"meta": {"api-version": "1.1"}, "projects": ['
        block = b"".join(b'{"name": "p%07d"},' % i for i in range(20_000))
        for _ in range(2048 * MB // len(block)):
            yield block

    rc, summary, err, rss = _run(tree, tmp_path, [{"prefix": "/simple/", "body": names}], max_root_size="32M")
    assert rc == 1
    assert "upstream root index: larger than the 33554432 bytes allowed" in summary["error"], summary
    assert rss < RSS_LIMIT_KB, f"peak RSS {rss // 1024} MB"


def test_a_run_stopped_by_sigterm_publishes_what_it_completed_with_a_root_that_lists_it(tmp_path: Path) -> None:
    """cron's `timeout` sends SIGTERM: the projects completed so far go live, and the root lists
    them, so that a run cut short at the same place every time still moves the mirror."""
    import signal
    import time

    tree = IndexTree(tmp_path / "upstream")
    for i in range(12):
        tree.add_wheel(f"p{i:02d}", "1.0")
    tree.add_wheel("zz-slow", "1.0")
    tree.write()
    mirror = tmp_path / "mirror"
    with UpstreamServer(tree.root) as server:
        server.add_fault("/simple/zz-slow/", trickle=1.0, times=10)
        cfg = write_config(tmp_path / "m.yml", server.url, mirror, workers=2, deadline=120, timeout=60)
        env = cli_env()
        proc = subprocess.Popen([sys.executable, "-m", "mirror_sync", "-c", str(cfg), "sync", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            for _ in range(300):  # bounded: up to 30 s for every other project's file to be fetched
                if len(server.requests("/packages/")) >= 12:
                    break
                time.sleep(0.1)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == 143, err.decode()[-1000:]
    assert b"Traceback" not in err
    pages = check_mirror(mirror)
    root = json.loads((mirror / "web/simple/index.v1_json").read_text())
    assert sorted(p["name"] for p in root["projects"]) == sorted(pages)
    assert len(pages) == 12 and "zz-slow" not in pages
