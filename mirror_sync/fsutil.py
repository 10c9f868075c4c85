"""File-system helpers: atomic writes, flushing, file locks (the mirror's among them), and the preflight check."""
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
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

from .errors import FilesystemError, LockedError

log = logging.getLogger(__name__)

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
    """`mkdir -p` that tries the deepest directory first: one system call when only it is new.
    A parent that holds as many sub-directories as its file system allows fails the run (exit 5)."""
    try:
        _mkdir(path)
    except FileExistsError:
        return
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if parent == path:
            raise
        make_dirs(parent)
        try:
            _mkdir(path)
        except FileExistsError:
            pass


def _mkdir(path: str) -> None:
    try:
        os.mkdir(path)
    except OSError as exc:
        if exc.errno == errno.EMLINK:
            raise FilesystemError(
                f"cannot create {path}: {os.path.dirname(path)} holds as many sub-directories as its file system "
                "allows ('Too many links'); put the mirror on a file system without that limit (ext4 with dir_nlink "
                "and dir_index, xfs or btrfs)"
            ) from None
        raise


def write_atomic(
    path: Union[str, Path], data: bytes, fsync: bool, also: Optional[Union[str, Path]] = None, *, mode: Optional[int] = None
) -> None:
    """Write to a temp file beside `path`, then rename over it: a reader sees the old file or the
    new one, never a part. `also` gets the same bytes as a hard link (index.v1_html beside
    index.html); `mode` sets the permission bits whatever the umask (a file another user's daemon
    reads). A full disk is a FilesystemError naming the path; nothing is left behind."""
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.tmp.{os.getpid()}.{threading.get_ident()}")
    tmp_also = tmp + ".2"
    try:
        write_file(tmp, data, fsync=fsync)
        if mode is not None:
            os.chmod(tmp, mode)
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
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise_if_full(exc, directory)
        raise


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


# Locks this process holds (their fds). A forked child closes its copies before it runs anything:
# flock(2) locks belong to the open file description, which fork shares with the child, so a
# worker that outlived its parent (kill -9) would hold the run's lock for ever. O_CLOEXEC only
# covers exec, not a bare fork. Closing the child's copy leaves the parent's lock as it was
# (flock(LOCK_UN) in the child would release it for both: never that).
_HELD_LOCKS: set[int] = set()


def _close_locks_in_child() -> None:
    for fd in list(_HELD_LOCKS):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_locks_in_child)


def held_lock_fds() -> frozenset[int]:
    """The lock fds this process holds (none in a forked child)."""
    return frozenset(_HELD_LOCKS)


def acquire(fd: int, *, shared: bool = False, wait: bool = False) -> bool:
    """flock(2) the open file `fd` (exclusive, or `shared`); False when another open file holds
    it (never with `wait`, which blocks instead). A held lock is registered so that a forked child
    closes its copy; give it back with :func:`release`. Other errors (no flock on that file
    system) raise OSError."""
    op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
    try:
        fcntl.flock(fd, op)
    except OSError as exc:
        if not wait and exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    _HELD_LOCKS.add(fd)
    return True


def release(fd: int) -> None:
    """Unlock and close a file locked with :func:`acquire`."""
    _HELD_LOCKS.discard(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def try_lock(path: Path, *, shared: bool = False, wait: bool = False, create: bool = False) -> Optional[int]:
    """Open `path` (a file, or a directory) and lock it: its fd while held, for :func:`release`;
    None when another process holds it or, without `create`, when there is no such file."""
    flags = os.O_CLOEXEC | (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY)
    try:
        fd = os.open(path, flags, 0o666)
    except FileNotFoundError:
        if create:
            raise
        return None
    try:
        held = acquire(fd, shared=shared, wait=wait)
    except BaseException:
        os.close(fd)
        raise
    if not held:
        os.close(fd)
        return None
    return fd


@contextmanager
def file_lock(path: Path, *, shared: bool = False, wait: bool = False, create: bool = False) -> Iterator[bool]:
    """:func:`try_lock` for the block: True while held, False when it could not be had."""
    fd = try_lock(path, shared=shared, wait=wait, create=create)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            release(fd)


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""


class MirrorLock:
    """An exclusive flock on <directory>/.lock, held for a whole run (never by its forked workers)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: Optional[int] = None

    def __enter__(self) -> "MirrorLock":
        check_directory(self.path.parent, create=True, writable=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise_if_full(exc, self.path)
            raise FilesystemError(
                f"cannot open the lock file {self.path} ({exc.strerror}); {_fix(self.path)}"
            ) from None
        try:
            held = acquire(fd)
        except OSError as exc:
            os.close(fd)
            raise FilesystemError(f"cannot lock {self.path} ({exc.strerror}); the mirror needs a local file system that supports flock") from None
        if not held:
            holder = _read_holder(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise LockedError(f"another mirror-sync run{who} holds {self.path}; not starting a second one")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        except OSError as exc:
            release(fd)
            raise_if_full(exc, self.path)
            raise FilesystemError(f"cannot write the lock file {self.path} ({exc.strerror}); {_fix(self.path)}") from None
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            release(fd)


@contextmanager
def shared_lock(path: Path) -> Iterator[bool]:
    """A shared flock on an existing lock file, without writing to it: True while held, False
    when a run holds it exclusively (or there is no lock file yet, or no flock where it is)."""
    try:
        fd = try_lock(path, shared=True)
    except OSError:
        fd = None
    try:
        yield fd is not None
    finally:
        if fd is not None:
            release(fd)


@dataclass(frozen=True)
class Mount:
    fstype: str
    mount_point: str
    source: str  # the mounted device or what stands for it ("tmpfs", "/dev/root", ...)
    dev: int  # st_dev of the file system


def mount_of(path: Path) -> Mount:
    """The mount holding `path`, from /proc/self/mountinfo: the deepest mount point above it
    (the last one listed, when several are mounted on the same point)."""
    target = os.path.realpath(path)
    try:
        dev = os.stat(target).st_dev
    except OSError:
        dev = -1
    best = Mount("unknown", "/", "", dev)
    best_len = -1
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                fields = line.split()
                if " - " not in line or len(fields) < 10:
                    continue
                mount_point = fields[4].replace("\\040", " ")
                tail = line.split(" - ", 1)[1].split()
                if (target == mount_point or target.startswith(mount_point.rstrip("/") + "/")) and len(mount_point) >= best_len:
                    best = Mount(tail[0], mount_point, tail[1] if len(tail) > 1 else "", dev)
                    best_len = len(mount_point)
    except OSError:
        pass
    return best


def filesystem_type(path: Path) -> tuple[str, str]:
    """(fstype, mount point) of the mount holding `path`."""
    mount = mount_of(path)
    return mount.fstype, mount.mount_point


def _user() -> str:
    try:
        return f"user {pwd.getpwuid(os.geteuid()).pw_name}"
    except KeyError:
        return f"uid {os.geteuid()}"


def _fix(path: Path, access: str = "write") -> str:
    return f"give {_user()} {access} access to it, or set 'directory' to a path that user may write"


FS_IOC_GETFLAGS = 0x80086601  # _IOR('f', 1, long); the kernel reads and writes an int
FS_IMMUTABLE_FL = 0x10
FS_APPEND_FL = 0x20


def _inode_flags(path: Union[str, Path]) -> int:
    """The inode's attribute flags (lsattr), 0 when they cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return 0
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
        return int.from_bytes(buf[:4], "little")
    except OSError:
        return 0
    finally:
        os.close(fd)


def pinned(path: Union[str, Path]) -> bool:
    """Whether `path` is immutable or append-only: it can be neither renamed nor removed."""
    return bool(_inode_flags(path) & (FS_IMMUTABLE_FL | FS_APPEND_FL))


def unwritable_reason(path: Union[str, Path]) -> str:
    """Why the existing `path` cannot be written, as the end of a sentence naming it."""
    flags = _inode_flags(path)
    if flags & FS_IMMUTABLE_FL:
        return f"is immutable (chattr +i); make it writable again with 'chattr -i {path}' (as root)"
    if flags & FS_APPEND_FL:
        return f"is append-only (chattr +a); make it writable again with 'chattr -a {path}' (as root)"
    if _read_only(Path(path)):
        return "is on a read-only file system; remount it read-write, or set 'directory' to a writable path"
    return f"is not writable by {_user()}; {_fix(Path(path))}"


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
        return f"{path} {unwritable_reason(path)}"
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
            raise FilesystemError(f"{entry} {unwritable_reason(entry)}")


def preflight(directory: Path, entries: Iterable[Path] = ()) -> list[str]:
    """Make sure `directory` (and those of `entries` that exist) is writable, exit 5 otherwise;
    refuse a file system on which web/simple/ cannot hold a directory per project (see
    dirlimit); return warnings about free space, inodes, and a sub-directory limit that could not
    be checked."""
    from . import dirlimit

    check_directory(directory, create=True, writable=True, entries=entries)
    mount = mount_of(directory)
    verdict = dirlimit.check(os.fspath(directory), mount.fstype, mount.dev, mount.source)
    where = f"{directory} is on {mount.fstype} (mounted at {mount.mount_point})"
    warnings = []
    if verdict.limit is not None:
        if verdict.known and verdict.limit == dirlimit.EXT4_SUBDIR_LIMIT:
            device = dirlimit.block_device(mount.dev, mount.source) or mount.source or "DEVICE"
            fix = (f"put the mirror on ext4 made by mkfs.ext4 (which sets both), xfs or btrfs, or add the features with "
                   f"'tune2fs -O dir_index,dir_nlink {device}' and 'e2fsck -fD {device}' while it is unmounted")
        else:
            fix = "put the mirror on ext4, xfs or btrfs"
        raise FilesystemError(f"{where}: {verdict.why} ('Too many links'), and the mirror needs one per project; {fix}")
    if not verdict.known:
        crowded = _subdirectories(directory / "web" / "simple")
        if crowded is not None and crowded >= dirlimit.EXT4_SUBDIR_LIMIT - 5000:
            warnings.append(f"{where} and web/simple holds {crowded:,} projects: {verdict.why}; without them "
                            f"the file system takes no more than {dirlimit.EXT4_SUBDIR_LIMIT:,} (check with 'tune2fs -l')")
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    total = st.f_blocks * st.f_frsize
    if free < LOW_FREE_BYTES or (total and free / total < LOW_FREE_RATIO):
        warnings.append(f"low free space on {mount.mount_point}: {free // (1024 * 1024)} MiB left")
    if st.f_files and st.f_favail / st.f_files < LOW_FREE_RATIO:
        warnings.append(f"low free inodes on {mount.mount_point}: {st.f_favail} left")
    return warnings


def _subdirectories(path: Path) -> Optional[int]:
    """How many sub-directories `path` holds, from its link count; None when it does not exist
    or the count is not kept (a link count of 1: ext4's dir_nlink past 65,000, btrfs)."""
    try:
        nlink = os.stat(path).st_nlink
    except OSError:
        return None
    return nlink - 2 if nlink >= 2 else None
