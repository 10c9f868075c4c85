"""How many sub-directories one directory may hold on the file system of a path.

`web/simple/` holds one directory per project: about 700,000 on a full mirror. The ext4 driver
refuses a directory's 64,999th sub-directory with EMLINK ("Too many links") unless the file system
has both `dir_nlink` and `dir_index` (EXT4_LINK_MAX is 65,000 links: the directory's own entry in
its parent and its "." take two). The old ext2 and ext3 drivers stop at 31,998 (EXT2_LINK_MAX
32,000). The mount type's name does not tell: an ext3 volume mounted as ext4 has neither feature,
and since Linux 4.3 the ext4 driver serves every "ext3" mount.

The features are read from the superblock. The ioctl EXT4_IOC_GET_TUNE_SB_PARAM (Linux 6.18)
answers any user, on any file of the file system; on older kernels the superblock is read from the
block device, which takes root (or the disk group). Creating 65,000 directories to see would take
seconds of I/O on every run, and sysfs exposes no feature bits per file system.
"""
from __future__ import annotations

import fcntl
import os
import stat
from dataclasses import dataclass
from typing import Optional

EXT4_LINK_MAX = 65_000
EXT4_SUBDIR_LIMIT = EXT4_LINK_MAX - 2  # 64,998
EXT2_LINK_MAX = 32_000
EXT2_SUBDIR_LIMIT = EXT2_LINK_MAX - 2  # 31,998

COMPAT_DIR_INDEX = 0x0020
RO_COMPAT_DIR_NLINK = 0x0020
EXT_MAGIC = 0xEF53

EXT_FAMILY = ("ext2", "ext3", "ext4")

# struct ext4_tune_sb_params (include/uapi/linux/ext4.h): 232 bytes since 6.18.1 (and in 6.19),
# 228 in 6.18.0; the size is part of the ioctl's number. The feature words are at 64, 68, 72.
_TUNE_SIZES = (232, 228)
_IOC_READ = 2


def _ioc_get_tune_sb(size: int) -> int:
    return (_IOC_READ << 30) | (size << 16) | (ord("f") << 8) | 45


@dataclass(frozen=True)
class Features:
    compat: int
    incompat: int
    ro_compat: int
    source: str  # how they were read: "ioctl" or the device's path

    @property
    def dir_nlink(self) -> bool:
        return bool(self.ro_compat & RO_COMPAT_DIR_NLINK)

    @property
    def dir_index(self) -> bool:
        return bool(self.compat & COMPAT_DIR_INDEX)


@dataclass(frozen=True)
class Verdict:
    """limit: the most sub-directories a directory may hold (None: more than a mirror needs);
    known: whether that was established (False: the features could not be read); why: the
    reason, as the end of a sentence."""

    limit: Optional[int]
    known: bool
    why: str


def parse_superblock(block: bytes) -> Optional[tuple[int, int, int]]:
    """(compat, incompat, ro_compat) from the 1024 bytes of an ext2/3/4 superblock, None when
    they are not one (no magic)."""
    if len(block) < 0x68 or int.from_bytes(block[0x38:0x3A], "little") != EXT_MAGIC:
        return None
    word = lambda at: int.from_bytes(block[at:at + 4], "little")  # noqa: E731
    return word(0x5C), word(0x60), word(0x64)


def parse_tune_params(buf: bytes) -> tuple[int, int, int]:
    """(compat, incompat, ro_compat) from a struct ext4_tune_sb_params."""
    word = lambda at: int.from_bytes(buf[at:at + 4], "little")  # noqa: E731
    return word(64), word(68), word(72)


def decide(fstype: str, ext4_driver: bool, features: Optional[Features]) -> Verdict:
    """The sub-directory limit of a file system (pure: the facts are gathered by `check`)."""
    if fstype not in EXT_FAMILY:
        return Verdict(None, True, f"{fstype} has no sub-directory limit a mirror reaches")
    if not ext4_driver:
        return Verdict(EXT2_SUBDIR_LIMIT, True, f"the {fstype} driver allows at most {EXT2_SUBDIR_LIMIT:,} sub-directories per directory")
    if features is None:
        if fstype == "ext4":
            return Verdict(None, False, "its dir_nlink and dir_index features could not be read")
        # an ext2 or ext3 file system has neither unless someone added them
        return Verdict(EXT4_SUBDIR_LIMIT, False, f"an {fstype} file system (its features could not be read) allows at most "
                       f"{EXT4_SUBDIR_LIMIT:,} sub-directories per directory without dir_nlink and dir_index")
    missing = [name for name, have in (("dir_nlink", features.dir_nlink), ("dir_index", features.dir_index)) if not have]
    if not missing:
        return Verdict(None, True, "it has dir_nlink and dir_index")
    return Verdict(EXT4_SUBDIR_LIMIT, True, f"without {' and '.join(missing)} the ext4 driver allows at most "
                   f"{EXT4_SUBDIR_LIMIT:,} sub-directories per directory")


def features_by_ioctl(path: str) -> Optional[Features]:
    """The features as the mounted file system reports them (any user; Linux 6.18 and later)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        for size in _TUNE_SIZES:
            buf = bytearray(size)
            try:
                fcntl.ioctl(fd, _ioc_get_tune_sb(size), buf)
            except OSError:
                continue  # ENOTTY: another size, an older kernel, or not the ext4 driver
            compat, incompat, ro_compat = parse_tune_params(bytes(buf))
            return Features(compat, incompat, ro_compat, "ioctl")
        return None
    finally:
        os.close(fd)


def block_device(dev: int, source: str) -> Optional[str]:
    """A device node for the file system's st_dev: /dev/block/M:m, the kernel's name for it in
    /dev, or the mount's source; None when none of them is that block device."""
    major, minor = os.major(dev), os.minor(dev)
    candidates = [f"/dev/block/{major}:{minor}"]
    try:
        candidates.append("/dev/" + os.path.basename(os.path.realpath(f"/sys/dev/block/{major}:{minor}")))
    except OSError:
        pass
    if source.startswith("/dev/"):
        candidates.append(source)
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode) and st.st_rdev == dev:
            return path
    return None


def features_by_device(device: str) -> Optional[Features]:
    """The features from the superblock on the device (needs read access to it)."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        block = os.pread(fd, 1024, 1024)
    except OSError:
        return None
    finally:
        os.close(fd)
    parsed = parse_superblock(block)
    return None if parsed is None else Features(*parsed, source=device)


def ext4_serves(dev: int) -> bool:
    """Whether the ext4 driver serves the file system (it lists each in /sys/fs/ext4/<name>)."""
    try:
        name = os.path.basename(os.path.realpath(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"))
    except OSError:
        return False
    return bool(name) and os.path.isdir(f"/sys/fs/ext4/{name}")


def check(path: str, fstype: str, dev: int, source: str, *, use_ioctl: bool = True) -> Verdict:
    """The verdict for the file system holding `path` (an existing directory)."""
    if fstype not in EXT_FAMILY:
        return decide(fstype, False, None)
    features = features_by_ioctl(path) if use_ioctl else None
    ext4_driver = features is not None or ext4_serves(dev)
    if features is None and ext4_driver:
        device = block_device(dev, source)
        features = features_by_device(device) if device is not None else None
    return decide(fstype, ext4_driver, features)
