"""Memory independent of file size (issue 12): a file streams to disk in bounded chunks, hashed on
the way, so a sync of a 256 MB file peaks at the memory of a sync of a 2 MB one."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.support.index_tree import IndexTree
from tests.support.upstream_server import UpstreamServer
from tests.syncutil import write_config
from tests.test_bounded import MB, sync_measured

MARGIN_KB = 16 * 1024  # what two runs of the same sync differ by, and then some


def _sync_one_file(tmp_path: Path, size: int) -> int:
    """Peak RSS (KiB) of a sync of one project with one file of `size` bytes."""
    work = tmp_path / f"size-{size}"
    tree = IndexTree(work / "upstream")
    block = hashlib.sha256(str(size).encode()).digest() * (MB // 32)  # 1 MB, not compressible to nothing
    data = block * (size // MB)
    entry = tree.add_file("payload", "payload-1.0.tar.gz", data, version="1.0")
    del data
    tree.write()
    with UpstreamServer(tree.root) as server:
        cfg = write_config(work / "m.yml", server.url, work / "mirror", workers=2, retries=0)
        rc, summary, err, rss = sync_measured(cfg)
    assert rc == 0, (summary, err[-2000:])
    assert summary["files"]["downloaded"] == 1
    [got] = [p for p in (work / "mirror" / "web" / "packages").rglob("payload-1.0.tar.gz")]
    assert os.path.getsize(got) == size == entry.size
    return rss


def test_a_256_mb_file_costs_the_memory_of_a_2_mb_one(tmp_path: Path) -> None:
    small = _sync_one_file(tmp_path, 2 * MB)
    big = _sync_one_file(tmp_path, 256 * MB)
    assert big < small + MARGIN_KB, f"peak RSS {big // 1024} MB for 256 MB against {small // 1024} MB for 2 MB"
