"""File-system helpers: atomic writes, flushing, the lock, and the preflight check."""
from __future__ import annotations

import ctypes
import errno
import fcntl
import itertools
import logging
import os
import pwd
import shutil
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable, Iterator, Optional, Union

from .errors import FilesystemError, LockedError

log = logging.getLogger(__name__)

REFUSED_FILESYSTEMS = {"ext2", "ext3"}
LOW_FREE_BYTES = 1024**3
LOW_FREE_RATIO = 0.05


class TempNames:
    """Unique temp-file suffixes for one process: its pid and a counter (no system call each)."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._seq = itertools.count()

    def next(self) -> str:
        return f"{self._pid}.{next(self._seq)}"


def write_file(path: str, data: bytes, *, exclusive: bool = False, fsync: bool = False) -> int:
    """Write `data` to `path` with one open, write and close (no buffered-I/O probing); returns
    the file's mtime in ns."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
        return os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)


def make_dirs(path: str) -> None:
    """`mkdir -p` that tries the deepest directory first: one system call when only it is new."""
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if parent == path:
            raise
        make_dirs(parent)
        try:
            os.mkdir(path)
        except FileExistsError:
            pass


def write_atomic(path: Union[str, Path], data: bytes, fsync: bool, also: Optional[Union[str, Path]] = None) -> None:
    """Write to a temp file beside `path`, then rename over it; `also` gets the same bytes as a
    hard link (index.v1_html beside index.html)."""
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.tmp.{os.getpid()}.{threading.get_ident()}")
    tmp_also = tmp + ".2"
    try:
        write_file(tmp, data, fsync=fsync)
        if also is not None:
            os.link(tmp, tmp_also)
            os.replace(tmp_also, also)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quiet(tmp)
        _unlink_quiet(tmp_also)
        raise_if_full(exc, Path(path))
        raise


def stage(staging: str, final: str, data: bytes, names: TempNames) -> str:
    """Write `data` to a temp file in `staging` (same file system as `final`), to be renamed into
    place later; returns the temp path. An interrupted run's leftovers are cleared at the next start."""
    head, name = os.path.split(final)
    tmp = os.path.join(staging, f"{os.path.basename(head)}.{name}.{names.next()}")
    try:
        write_file(tmp, data, exclusive=True)
    except OSError as exc:
        _unlink_quiet(tmp)
        raise_if_full(exc, Path(final))
        raise
    return tmp


def clear_dir(directory: Path) -> None:
    """Empty a scratch directory (left by an interrupted run), creating it if missing."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)


def raise_if_full(exc: OSError, path: Path) -> None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise FilesystemError(f"the disk holding {path.parent} is full ({exc.strerror}); nothing half-written was published") from None


def _unlink_quiet(path: Union[str, Path]) -> None:
    try:
        os.unlink(path)
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
        check_directory(self.path.parent, create=True, writable=True)
        try:
            handle = open(self.path, "a+")
        except OSError as exc:
            raise FilesystemError(
                f"cannot open the lock file {self.path} ({exc.strerror}); {_fix(self.path)}"
            ) from None
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


def _user() -> str:
    try:
        return f"user {pwd.getpwuid(os.geteuid()).pw_name}"
    except KeyError:
        return f"uid {os.geteuid()}"


def _fix(path: Path, access: str = "write") -> str:
    return f"give {_user()} {access} access to it, or set 'directory' to a path that user may write"


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISLNK(mode):
        return "a symbolic link to nothing"
    return "a special file"


def directory_problem(path: Path, *, writable: bool) -> Optional[str]:
    """Why the existing `path` cannot serve as a mirror directory, as one sentence; None if it can.
    A missing path is no problem here (see check_directory)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        try:
            st = os.lstat(path)  # a dangling symbolic link
        except FileNotFoundError:
            return None
        return f"{path} is {_kind(st.st_mode)}; set 'directory' to a directory"
    except NotADirectoryError:
        return f"a parent of {path} is not a directory; set 'directory' to a directory"
    except PermissionError:
        return f"{path} cannot be reached by {_user()} (a parent directory is not searchable); {_fix(path, 'search')}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is {_kind(st.st_mode)}, not a directory; set 'directory' to a directory"
    if not os.access(path, os.R_OK | os.X_OK):
        return f"{path} is not readable by {_user()}; {_fix(path, 'read')}"
    if writable and not os.access(path, os.W_OK | os.X_OK):
        if _read_only(path):
            return f"{path} is on a read-only file system; remount it read-write, or set 'directory' to a writable path"
        return f"{path} is not writable by {_user()}; {_fix(path)}"
    return None


def check_directory(path: Path, *, create: bool, writable: bool, entries: Iterable[Path] = ()) -> None:
    """Raise FilesystemError (exit 5) when `path` cannot be the mirror directory: not a directory,
    not readable, or (with `writable`) not writable; `create` makes it first. `entries` are paths
    inside it that must be readable (and writable) too where they exist: a web/ or state.sqlite
    left by a run as another user."""
    if create and not path.is_dir():
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = directory_problem(path, writable=writable)
            if problem is None:
                where = "on a read-only file system" if exc.errno == errno.EROFS else f"({exc.strerror})"
                problem = (
                    f"cannot create the mirror directory {path} {where}; create it for {_user()}, "
                    "or set 'directory' to a path that user may write"
                )
            raise FilesystemError(problem) from None
    problem = directory_problem(path, writable=writable)
    if problem is not None:
        raise FilesystemError(problem)
    for entry in entries:
        try:
            st = os.stat(entry)
        except OSError:
            continue  # not there yet: the run makes it, in the directory just checked
        search = os.X_OK if stat.S_ISDIR(st.st_mode) else 0
        if not os.access(entry, os.R_OK | search):
            raise FilesystemError(f"{entry} is not readable by {_user()}; {_fix(entry, 'read')}")
        if writable and not os.access(entry, os.W_OK | search):
            raise FilesystemError(f"{entry} is not writable by {_user()}; {_fix(entry)}")


def preflight(directory: Path, entries: Iterable[Path] = ()) -> list[str]:
    """Make sure `directory` (and those of `entries` that exist) is writable, exit 5 otherwise;
    refuse ext2/ext3 (32k sub-directory limit); return warnings about free space and inodes."""
    check_directory(directory, create=True, writable=True, entries=entries)
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
