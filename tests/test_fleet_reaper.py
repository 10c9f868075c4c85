"""The fleet takes down what a killed fleet left behind (a CI run once failed on a predecessor's bridge).

Real parts: a loop device, a tmpfs mount, a bridge and a process whose command line names the
directory, as a SIGKILLed fleet leaves them; no containers are booted."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet.reaper import WORK_PREFIX, claim, reap_stale

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices, mounts and bridges need root")

BRIDGE = "fleetreap0"


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def _dead_pid() -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True, timeout=30)
    return int(proc.stdout), "1"


@pytest.fixture
def leftovers(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes], str]]:
    workdir = tmp_path / (WORK_PREFIX + "killed")
    (workdir / "hosts" / "h1" / "merged").mkdir(parents=True)
    image = workdir / "hosts" / "h1-volume.img"
    with image.open("wb") as fh:
        fh.truncate(8 * 1024 * 1024)
    device = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True,
                            check=True, timeout=30).stdout.strip()
    _sh("mount", "-t", "tmpfs", "tmpfs", str(workdir / "hosts" / "h1" / "merged"))
    _sh("ip", "link", "add", BRIDGE, "type", "bridge")
    # A process started from the directory, as systemd-nspawn --directory=... is.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", str(workdir / "hosts")])
    pid, _ = _dead_pid()
    (workdir / "owner").write_text(f"{pid} 1\n")  # its owner is gone
    (workdir / "bridge").write_text(BRIDGE + "\n")
    try:
        yield workdir, sleeper, device
    finally:
        sleeper.kill()
        sleeper.wait(timeout=30)
        subprocess.run(["umount", "--lazy", str(workdir / "hosts" / "h1" / "merged")], capture_output=True)
        subprocess.run(["losetup", "--detach", device], capture_output=True)
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)


def test_a_killed_fleet_is_taken_down(leftovers: tuple[Path, subprocess.Popen[bytes], str]) -> None:
    workdir, sleeper, device = leftovers
    reaped = reap_stale(workdir.parent)
    assert [r.workdir for r in reaped] == [workdir]
    assert (reaped[0].killed, reaped[0].unmounted, reaped[0].detached, reaped[0].bridge) == (1, 1, 1, BRIDGE)
    assert sleeper.wait(timeout=30) == -9
    assert not workdir.exists()
    assert not Path("/sys/class/net", BRIDGE).exists()
    losetup = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME"], capture_output=True,
                             text=True, timeout=30).stdout.split()
    assert device not in losetup


def test_a_live_fleet_is_left_alone(tmp_path: Path) -> None:
    workdir = tmp_path / (WORK_PREFIX + "alive")
    workdir.mkdir()
    claim(workdir)
    assert reap_stale(tmp_path) == []
    assert workdir.exists()


def test_an_owner_whose_pid_was_reused_is_gone(tmp_path: Path) -> None:
    """The pid alone is not the owner: a later process with the same pid has another start time."""
    workdir = tmp_path / (WORK_PREFIX + "reused")
    workdir.mkdir()
    (workdir / "owner").write_text(f"{os.getpid()} 1\n")
    assert [r.workdir for r in reap_stale(tmp_path)] == [workdir]
    assert not workdir.exists()
