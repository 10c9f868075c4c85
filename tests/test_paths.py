"""A mirror `directory` that cannot be used fails before anything else: exit 5, one sentence that
names the path, no traceback; for sync (also a dry run), verify (also --repair) and status.

Unwritable is tested the ways it happens in production: a read-only mount, an immutable directory
(`chattr +i`), and a directory owned by root with mode 0555 while the sync runs as another user
(`nobody` here, as `pypi-mirror` under cron).
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
UPSTREAM = "http://127.0.0.1:9/simple/"  # nothing listens: a path check that let a run start would fail otherwise
COMMANDS = [["sync"], ["sync", "--dry-run"], ["verify"], ["verify", "--repair"], ["status"]]
IDS = ["sync", "dry-run", "verify", "repair", "status"]


def write_config(where: Path, directory: Path) -> Path:
    config = where / "mirror.yml"
    config.write_text(yaml.safe_dump({"directory": str(directory), "upstream": UPSTREAM, "retries": 0, "timeout": 2}))
    return config


def run(config: Path, *args: str, user: Optional[str] = None) -> tuple[int, str, dict]:
    """The CLI with --json; (exit code, the error sentence on stderr, the JSON object)."""
    cmd = [sys.executable, "-m", "mirror_sync", "-c", str(config), *args, "--json"]
    if user is not None:
        # another user, who can still read this checkout and its interpreter (under /root) but
        # whose writes get no privilege: DAC_READ_SEARCH only, carried across exec as an ambient cap
        gid = pwd.getpwnam(user).pw_gid
        cmd = ["setpriv", f"--reuid={user}", f"--regid={gid}", "--clear-groups",
               "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", *cmd]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "PIP_CONFIG_FILE": os.devnull, "HOME": str(config.parent)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=config.parent)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, (proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line or line.startswith("mirror-sync: error")]
    return proc.returncode, "\n".join(errors), json.loads(lines[0])


def assert_refused(result: tuple[int, str, dict], path: Path, words: str) -> None:
    code, errors, doc = result
    assert code == 5, (code, errors, doc)
    assert doc["ok"] is False and doc["exit_code"] == 5
    sentence = doc["error"]
    assert str(path) in sentence and words in sentence, sentence
    assert sentence.count(". ") == 0 and "\n" not in sentence, sentence


@pytest.mark.parametrize("args", COMMANDS, ids=IDS)
def test_a_regular_file_is_not_a_mirror_directory(tmp_path: Path, args: list[str]) -> None:
    target = tmp_path / "mirror"
    target.write_text("not a directory\n")
    assert_refused(run(write_config(tmp_path, target), *args), target, "is a regular file")
    assert target.read_text() == "not a directory\n"


@pytest.mark.parametrize("args", [["sync"], ["status"]], ids=["sync", "status"])
def test_a_parent_that_is_a_file(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "mirror"
    assert_refused(run(write_config(tmp_path, target), *args), target, "is not a directory")


def test_a_dangling_symlink(tmp_path: Path) -> None:
    target = tmp_path / "mirror"
    target.symlink_to(tmp_path / "gone")
    assert_refused(run(write_config(tmp_path, target), "sync"), target, "symbolic link")


def test_status_of_a_missing_mirror_says_so(tmp_path: Path) -> None:
    """As documented (README, the module's diff mode): no mirror yet is not an error."""
    code, _errors, doc = run(write_config(tmp_path, tmp_path / "mirror"), "status")
    assert code == 0 and doc["initialized"] is False
    proc = subprocess.run(
        [sys.executable, "-m", "mirror_sync", "-c", str(tmp_path / "mirror.yml"), "status"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"{tmp_path / 'mirror'}: no mirror yet (run 'mirror-sync sync')"
    assert not (tmp_path / "mirror").exists(), "status creates nothing"


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts, chattr, setpriv)")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="mirror-paths-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a read-only tmpfs")
    mount = tmp_path / "ro"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True, timeout=60)


@pytest.mark.parametrize("args", COMMANDS[:2] + COMMANDS[2:4], ids=IDS[:4])
def test_a_read_only_file_system(read_only_mount: Path, tmp_path: Path, args: list[str]) -> None:
    result = run(write_config(tmp_path, read_only_mount), *args)
    if args == ["sync", "--dry-run"]:  # a dry run writes nothing: a read-only mirror is fine to plan from
        assert result[0] != 5 and "read-only" not in result[1], result
        return
    assert_refused(result, read_only_mount, "read-only file system")


def test_cannot_create_the_directory_on_a_read_only_file_system(read_only_mount: Path, tmp_path: Path) -> None:
    target = read_only_mount / "mirror"
    assert_refused(run(write_config(tmp_path, target), "sync"), target, "read-only file system")


@needs_root
def test_an_immutable_directory(tmp_path: Path) -> None:
    target = tmp_path / "mirror"
    target.mkdir()
    if subprocess.run(["chattr", "+i", str(target)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable flag")
    try:
        assert_refused(run(write_config(tmp_path, target), "sync"), target, f"is immutable (chattr +i); make it writable again with 'chattr -i {target}'")
    finally:
        subprocess.run(["chattr", "-i", str(target)], check=True)


def _have_setpriv() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run(["setpriv", "--reuid=nobody", "--regid=65534", "--clear-groups", "--inh-caps=+dac_read_search",
                            "--ambient-caps=+dac_read_search", sys.executable, "-c", "import mirror_sync"],
                           capture_output=True, timeout=60)
    return probe.returncode == 0


needs_setpriv = pytest.mark.skipif(not _have_setpriv(), reason="needs root and setpriv with ambient capabilities")


@needs_setpriv
@pytest.mark.parametrize("args", [["sync"], ["verify"], ["verify", "--repair"]], ids=["sync", "verify", "repair"])
def test_a_root_owned_0555_directory_as_another_user(shared_dir: Path, args: list[str]) -> None:
    target = shared_dir / "mirror"
    target.mkdir(mode=0o555)
    target.chmod(0o555)
    (target / "state.sqlite").write_bytes(b"")  # verify needs a state to get as far as the lock
    assert_refused(run(write_config(shared_dir, target), *args, user="nobody"), target, "is not writable by user nobody")


@needs_setpriv
def test_cannot_create_the_directory_as_another_user(shared_dir: Path) -> None:
    parent = shared_dir / "srv"
    parent.mkdir(mode=0o755)
    target = parent / "mirror"
    assert_refused(run(write_config(shared_dir, target), "sync", user="nobody"), target, "cannot create the mirror directory")
    assert not target.exists()


@needs_setpriv
def test_a_web_directory_left_by_root(shared_dir: Path) -> None:
    """The mirror belongs to the sync user, but a run as root made web/: named, not a traceback."""
    target = shared_dir / "mirror"
    target.mkdir()
    os.chown(target, pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
    (target / "web").mkdir(mode=0o755)
    assert_refused(run(write_config(shared_dir, target), "sync", user="nobody"), target / "web", "is not writable by user nobody")
