"""The filesystem preflight checks the real limit: on the ext4 driver a directory holds at most
64,998 sub-directories unless the file system has dir_nlink and dir_index, whatever the mount type
is called. Real loop-mounted images, made with and without the features."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.syncutil import REPO, run_cli, write_config

NOBODY = 65534
EXT4_SUBDIR_LIMIT = 64_998  # EXT4_LINK_MAX 65,000 links: "." and the entry in the parent take two
EXT2_SUBDIR_LIMIT = 31_998  # EXT2_LINK_MAX 32,000: the old ext2/ext3 drivers


# -- pure ------------------------------------------------------------------------------------------


def superblock(compat: int, incompat: int, ro_compat: int, magic: int = 0xEF53) -> bytes:
    block = bytearray(1024)
    block[0x38:0x3A] = magic.to_bytes(2, "little")
    block[0x5C:0x60] = compat.to_bytes(4, "little")
    block[0x60:0x64] = incompat.to_bytes(4, "little")
    block[0x64:0x68] = ro_compat.to_bytes(4, "little")
    return bytes(block)


def test_the_superblock_words() -> None:
    from mirror_sync.dirlimit import parse_superblock

    assert parse_superblock(superblock(0x3C, 0x2C2, 0x6B)) == (0x3C, 0x2C2, 0x6B)
    assert parse_superblock(superblock(0x3C, 0x2C2, 0x6B, magic=0x1234)) is None
    assert parse_superblock(b"\0" * 100) is None


def test_the_verdicts() -> None:
    from mirror_sync import dirlimit
    from mirror_sync.dirlimit import Features, decide

    assert (dirlimit.EXT4_SUBDIR_LIMIT, dirlimit.EXT2_SUBDIR_LIMIT) == (EXT4_SUBDIR_LIMIT, EXT2_SUBDIR_LIMIT)
    both = Features(dirlimit.COMPAT_DIR_INDEX, 0, dirlimit.RO_COMPAT_DIR_NLINK, "ioctl")
    no_nlink = Features(dirlimit.COMPAT_DIR_INDEX, 0, 0, "ioctl")
    no_index = Features(0, 0, dirlimit.RO_COMPAT_DIR_NLINK, "ioctl")
    for fstype in ("ext2", "ext3", "ext4"):  # the name does not decide: the features do
        assert decide(fstype, True, both).limit is None
        verdict = decide(fstype, True, no_nlink)
        assert verdict.limit == EXT4_SUBDIR_LIMIT == 64_998 and verdict.known and "dir_nlink" in verdict.why
        assert "64,998" in verdict.why
        assert decide(fstype, True, no_index).limit == EXT4_SUBDIR_LIMIT and "dir_index" in decide(fstype, True, no_index).why
    # the old ext2/ext3 drivers: 32,000 links
    assert decide("ext2", False, None).limit == EXT2_SUBDIR_LIMIT == 31_998
    # features unknown: an ext4 mount is let through (with a warning near the limit), ext2/ext3 are not
    assert decide("ext4", True, None) == dirlimit.Verdict(None, False, decide("ext4", True, None).why)
    assert decide("ext3", True, None).limit == EXT4_SUBDIR_LIMIT and not decide("ext3", True, None).known
    for other in ("xfs", "btrfs", "tmpfs", "zfs"):
        assert decide(other, False, None).limit is None


def test_a_crowded_mirror_is_warned_about_when_the_features_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mirror_sync import dirlimit, fsutil

    monkeypatch.setattr(dirlimit, "check", lambda *a, **k: dirlimit.Verdict(None, False, "its dir_nlink and dir_index features could not be read"))
    assert not [w for w in fsutil.preflight(tmp_path) if "projects" in w]
    monkeypatch.setattr(fsutil, "_subdirectories", lambda path: 61_000)
    [warning] = [w for w in fsutil.preflight(tmp_path) if "projects" in w]
    assert "61,000 projects" in warning and "64,998" in warning and "tune2fs -l" in warning


# -- real file systems -------------------------------------------------------------------------


def _root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices and mounts")


@contextmanager
def loop_mounted(mkfs: list[str], fstype: str, size_mb: int = 64) -> Iterator[Path]:
    """A fresh image made by `mkfs`, loop-mounted as `fstype` on a directory every user may
    enter; unmounted and detached afterwards."""
    base = Path(tempfile.mkdtemp(prefix="mirror-preflight-", dir="/tmp"))
    os.chmod(base, 0o755)
    image = base / "fs.img"
    mnt = base / "mnt"
    mnt.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(size_mb * 1024 * 1024)
    subprocess.run([*mkfs, "-q", "-F", str(image)], check=True, capture_output=True)
    attached = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if attached.returncode != 0:
        pytest.skip(f"no loop device: {attached.stderr.strip()}")
    loop = attached.stdout.strip()
    try:
        subprocess.run(["mount", "-t", fstype, loop, str(mnt)], check=True, capture_output=True)
        try:
            os.chmod(mnt, 0o777)
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)
        image.unlink()
        mnt.rmdir()
        base.rmdir()


MKFS_EXT4 = ["mkfs.ext4", "-O", "inline_data", "-I", "256", "-N", "70000"]  # room for 65,000 empty directories

CASES = {
    # name: (mkfs, mount type, refused, words of the refusal)
    "ext4": (MKFS_EXT4, "ext4", False, ()),
    "ext4 without dir_nlink": (MKFS_EXT4 + ["-O", "^dir_nlink"], "ext4", True, ("without dir_nlink", "64,998", "tune2fs -O dir_index,dir_nlink")),
    "ext4 without dir_index": (MKFS_EXT4 + ["-O", "^dir_index"], "ext4", True, ("without dir_index", "64,998")),
    "ext3 mounted as ext4": (["mkfs.ext3"], "ext4", True, ("on ext4", "without dir_nlink", "64,998")),
    "ext3": (["mkfs.ext3"], "ext3", True, ("on ext3", "64,998")),
    "ext2": (["mkfs.ext2"], "ext2", True, ("on ext2",)),
}


@pytest.mark.root
@pytest.mark.parametrize("case", sorted(CASES))
def test_sync_is_refused_where_the_limit_is_reached(case: str, upstream, tmp_path: Path) -> None:
    _root()
    mkfs, fstype, refused, words = CASES[case]
    with loop_mounted(mkfs, fstype) as mnt:
        cfg = write_config(tmp_path / "m.yml", upstream.url, mnt / "mirror")
        rc, summary, stderr = run_cli(cfg, "sync")
        if not refused:
            assert rc == 0, (summary, stderr)
            return
        assert rc == 5, (summary, stderr)
        for word in words:
            assert word in summary["error"], summary["error"]
        assert "32,000" not in summary["error"]
        assert not (mnt / "mirror" / "web").exists()


@pytest.mark.root
@pytest.mark.parametrize("case", ["ext4", "ext4 without dir_nlink", "ext3 mounted as ext4"])
def test_the_superblock_on_the_device_says_the_same_as_the_ioctl(case: str) -> None:
    """Linux 6.18 answers any user through an ioctl; older kernels need the device, read as root."""
    _root()
    from mirror_sync import dirlimit
    from mirror_sync.fsutil import mount_of

    mkfs, fstype, refused, _words = CASES[case]
    with loop_mounted(mkfs, fstype) as mnt:
        mount = mount_of(mnt)
        device = dirlimit.block_device(mount.dev, mount.source)
        assert device is not None and device.startswith("/dev/")
        by_device = dirlimit.features_by_device(device)
        assert by_device is not None and by_device.dir_nlink is (not refused)
        by_ioctl = dirlimit.features_by_ioctl(str(mnt))
        if by_ioctl is None:
            pytest.skip("this kernel has no EXT4_IOC_GET_TUNE_SB_PARAM (before Linux 6.18): the device was read")
        assert (by_ioctl.compat, by_ioctl.incompat, by_ioctl.ro_compat) == (by_device.compat, by_device.incompat, by_device.ro_compat)
        verdict = dirlimit.check(str(mnt), mount.fstype, mount.dev, mount.source, use_ioctl=False)
        assert verdict.known and (verdict.limit == EXT4_SUBDIR_LIMIT) is refused


CHECK_AS_NOBODY = r"""
import sys
from pathlib import Path
from mirror_sync import dirlimit
from mirror_sync.fsutil import mount_of
m = mount_of(Path(sys.argv[1]))
device = dirlimit.block_device(m.dev, m.source)
print(dirlimit.features_by_device(device) is None if device else True)
v = dirlimit.check(sys.argv[1], m.fstype, m.dev, m.source)
print(v.known, v.limit)
"""


@pytest.mark.root
def test_an_unprivileged_sync_user_sees_the_features_too() -> None:
    """The sync runs as its own user, who cannot read the block device."""
    _root()
    from mirror_sync import dirlimit

    mkfs, fstype, _refused, _words = CASES["ext4 without dir_nlink"]
    with loop_mounted(mkfs, fstype) as mnt:
        if dirlimit.features_by_ioctl(str(mnt)) is None:
            pytest.skip("this kernel has no EXT4_IOC_GET_TUNE_SB_PARAM (before Linux 6.18)")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)}
        proc = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-c", CHECK_AS_NOBODY, str(mnt)],
            capture_output=True, text=True, env=env, timeout=60, cwd="/",
        )
        assert proc.returncode == 0, proc.stderr
        device_unreadable, verdict = proc.stdout.split("\n")[:2]
        assert device_unreadable == "True"  # the device is root's
        assert verdict == f"True {EXT4_SUBDIR_LIMIT}"


LIMIT_PROBE = EXT4_SUBDIR_LIMIT + 10


@pytest.mark.root
@pytest.mark.parametrize("case, stops_at", [("ext4 without dir_nlink", EXT4_SUBDIR_LIMIT), ("ext4", None)])
def test_the_figure_is_the_kernels(case: str, stops_at) -> None:
    """mkdir until the kernel refuses: 64,998 sub-directories without dir_nlink (not 32,000),
    no limit with it. What the engine does at the limit is one sentence, exit 5."""
    _root()
    from mirror_sync.errors import FilesystemError
    from mirror_sync.fsutil import make_dirs

    mkfs, fstype, _refused, _words = CASES[case]
    with loop_mounted(mkfs, fstype) as mnt:
        parent = mnt / "simple"
        parent.mkdir()
        made = 0
        try:
            for made in range(LIMIT_PROBE):  # bounded: a few seconds on a loop device
                os.mkdir(parent / f"p{made}")
            made = LIMIT_PROBE
        except OSError as exc:
            assert exc.errno == errno.EMLINK, exc
        assert made == (stops_at if stops_at is not None else LIMIT_PROBE)
        if stops_at is not None:
            with pytest.raises(FilesystemError, match="Too many links"):
                make_dirs(str(parent / "one-more" / "below"))
