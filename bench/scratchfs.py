"""A fresh ext4 file system on a loop device for one benchmark run.

Both tools create tens of thousands of files and directories; how fast a file system does that
depends on its history (on a journal-less ext4 that has seen many deletions, every inode allocation
scans recently freed inodes) more than on either tool. A new, journalled ext4 — what the mirror
role puts under a real mirror — gives both tools the same clean start on every run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Optional, Protocol, TypeVar

from .system import filesystem_of

BYTES_PER_FILE = 160 * 1024  # upstream tree + two mirrors, 4 KiB blocks, directories, headroom
INODES_PER_FILE = 32
MIN_BYTES = 2 * 1024**3


def available() -> Optional[str]:
    """None when a loop-mounted ext4 can be made here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("mkfs.ext4", "mount", "umount", "losetup"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}") and not os.path.exists(f"/sbin/{tool}"):
            return f"{tool} is missing"
    return None


class ScratchFs:
    """`with ScratchFs(files, parent) as mountpoint:` — a sparse image, mkfs.ext4, a loop device with
    direct I/O, mounted;
    unmounted and deleted on exit (also after errors and Ctrl-C)."""

    def __init__(self, files: int, parent: Optional[Path] = None, data_bytes: int = 0) -> None:
        # sparse: only what is written takes space, so a generous size costs nothing
        self.size = max(MIN_BYTES, files * BYTES_PER_FILE + data_bytes)
        self.inodes = max(65536, files * INODES_PER_FILE)
        self.dir = Path(tempfile.mkdtemp(prefix="mirror-bench-fs-", dir=parent))
        os.chmod(self.dir, 0o755)  # nginx workers run as nobody and must reach the tree below
        self.image = self.dir / "ext4.img"
        self.mountpoint = self.dir / "mnt"
        self.mounted = False
        self.device: Optional[str] = None

    def __enter__(self) -> Path:
        try:
            with open(self.image, "wb") as fh:
                fh.truncate(self.size)  # sparse: only what is written takes space
            _run(["mkfs.ext4", "-q", "-F", "-N", str(self.inodes), "-E", "lazy_itable_init=0,lazy_journal_init=0", str(self.image)])
            self.mountpoint.mkdir()
            # direct I/O on the backing file: reads and writes reach the disk like a block device's
            # (several in flight, no second copy in the page cache); plain `-o loop` otherwise
            res = subprocess.run(["losetup", "--direct-io=on", "--find", "--show", str(self.image)],
                                 capture_output=True, text=True, timeout=60)
            if res.returncode == 0 and res.stdout.strip().startswith("/dev/"):
                self.device = res.stdout.strip()
                _run(["mount", self.device, str(self.mountpoint)])
            else:
                _run(["mount", "-o", "loop", str(self.image), str(self.mountpoint)])
            self.mounted = True
            os.chmod(self.mountpoint, 0o755)
        except BaseException:
            self.__exit__()
            raise
        return self.mountpoint

    def __exit__(self, *exc: object) -> None:
        if self.mounted:
            res = subprocess.run(["umount", str(self.mountpoint)], capture_output=True, text=True)
            if res.returncode != 0:  # something still holds it (a straggling process): detach lazily
                subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True, text=True)
            self.mounted = False
        if self.device is not None:
            subprocess.run(["losetup", "-d", self.device], capture_output=True, text=True)
            self.device = None
        shutil.rmtree(self.dir, ignore_errors=True)


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()[:300]}")


class _HasFilesystem(Protocol):
    filesystem: str


_R = TypeVar("_R", bound=_HasFilesystem)


def in_work_directory(parent: Optional[Path], keep: bool, log: Callable[[str], None], fs_note: str,
                      body: Callable[[Path], _R]) -> _R:
    """Run `body` in a new work directory under `parent` (readable by nginx's workers, which run as
    nobody), note on its result which file system it ran on, and remove it unless `keep`."""
    work = Path(tempfile.mkdtemp(prefix="mirror-bench-", dir=parent))
    os.chmod(work, 0o755)
    try:
        result = body(work)
        result.filesystem = f"{fs_note}, {filesystem_of(work)}"
        return result
    finally:
        if keep:
            log(f"kept the work directory {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
