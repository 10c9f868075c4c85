"""File-system helpers: atomic writes, flushing, the lock, and the preflight check."""
from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Optional

from .errors import FilesystemError, LockedError

log = logging.getLogger(__name__)

REFUSED_FILESYSTEMS = {"ext2", "ext3"}
LOW_FREE_BYTES = 1024**3
LOW_FREE_RATIO = 0.05


def write_atomic(path: Path, data: bytes, fsync: bool, also: Optional[Path] = None) -> None:
    """Write to a temp file beside `path`, then rename over it; `also` gets the same bytes as a
    hard link (index.v1_html beside index.html)."""
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    tmp_also = path.with_name(f".{path.name}.tmp2.{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        if also is not None:
            os.link(tmp, tmp_also)
            os.replace(tmp_also, also)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quiet(tmp)
        _unlink_quiet(tmp_also)
        raise_if_full(exc, path)
        raise


def stage(staging: Path, final: Path, data: bytes) -> Path:
    """Write `data` to a temp file in `staging` (same file system as `final`), to be renamed into
    place later; returns the temp path. An interrupted run's leftovers are cleared at the next start."""
    tmp = staging / f"{final.parent.name}.{final.name}.{uuid.uuid4().hex[:12]}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        _unlink_quiet(tmp)
        raise_if_full(exc, final)
        raise
    return tmp


def clear_dir(directory: Path) -> None:
    """Empty a scratch directory (left by an interrupted run), creating it if missing."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)


def raise_if_full(exc: OSError, path: Path) -> None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise FilesystemError(f"the disk holding {path.parent} is full ({exc.strerror}); nothing half-written was published") from None


def _unlink_quiet(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


class Flusher:
    """Makes everything written so far durable: syncfs(2) on the mirror's file system."""

    def __init__(self, directory: Path) -> None:
        self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        # the C library this process already has loaded (find_library would spawn ldconfig)
        self._syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)

    def flush(self) -> None:
        if self._syncfs is not None and self._syncfs(self.fd) == 0:
            return
        os.sync()

    def close(self) -> None:
        os.close(self.fd)


class MirrorLock:
    """An exclusive flock on <directory>/.lock, held for a whole run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: Optional[IO[str]] = None

    def __enter__(self) -> "MirrorLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                who = f" (pid {holder})" if holder else ""
                raise LockedError(f"another mirror-sync run{who} holds {self.path}; not starting a second one") from None
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.seek(0)
            self.handle.truncate()
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


@contextmanager
def shared_lock(path: Path) -> Iterator[bool]:
    """A shared flock on an existing lock file, without writing to it: True while held, False
    when a run holds it exclusively (or there is no lock file yet)."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        yield False
        return
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def filesystem_type(path: Path) -> tuple[str, str]:
    """(fstype, mount point) of the mount holding `path`, from /proc/self/mountinfo."""
    target = os.path.realpath(path)
    best = ("unknown", "/")
    best_len = -1
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                fields = line.split()
                if " - " not in line or len(fields) < 10:
                    continue
                mount_point = fields[4].replace("\\040", " ")
                fstype = line.split(" - ", 1)[1].split()[0]
                if (target == mount_point or target.startswith(mount_point.rstrip("/") + "/")) and len(mount_point) > best_len:
                    best, best_len = (fstype, mount_point), len(mount_point)
    except OSError:
        pass
    return best


def preflight(directory: Path) -> list[str]:
    """Refuse ext2/ext3 (32k sub-directory limit); return warnings about free space and inodes."""
    directory.mkdir(parents=True, exist_ok=True)
    fstype, mount = filesystem_type(directory)
    if fstype in REFUSED_FILESYSTEMS:
        raise FilesystemError(
            f"{directory} is on {fstype} (mounted at {mount}), which allows at most 32,000 sub-directories "
            "per directory ('Too many links'); put the mirror on ext4, xfs or btrfs"
        )
    warnings = []
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    total = st.f_blocks * st.f_frsize
    if free < LOW_FREE_BYTES or (total and free / total < LOW_FREE_RATIO):
        warnings.append(f"low free space on {mount}: {free // (1024 * 1024)} MiB left")
    if st.f_files and st.f_favail / st.f_files < LOW_FREE_RATIO:
        warnings.append(f"low free inodes on {mount}: {st.f_favail} left")
    return warnings
