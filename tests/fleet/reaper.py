"""Take down what a fleet left behind when its run was killed outright (SIGKILL, a lost session).

A session's work directory names its owner (`owner`: pid and the kernel's start time of that pid, so
a reused pid is not mistaken for it) and its bridge (`bridge`). Before a new fleet starts, every
work directory whose owner is gone is taken down in the order a teardown would: nspawn processes
started from it, mounts under it, loop devices backed by files in it, its bridge, the directory.
A directory whose owner still runs is left alone (the new fleet then refuses to share the network).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from .commands import run, unmount
from .loopdev import attached
from .network import Bridge, NspawnRuntime

WORK_PREFIX = "pypi-mirror-kit-fleet-"
OWNER_FILE = "owner"
BRIDGE_FILE = "bridge"
KILL_WAIT_S = 30.0
UNCLAIMED_GRACE_S = 60.0  # a directory this young without an owner may be a fleet about to claim it


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its last ")".
    return stat.rsplit(")", 1)[1].split()[19]


def claim(workdir: Path, bridge: str | None = None) -> None:
    """Mark `workdir` as this process's (and, once it exists, name its bridge)."""
    pid = os.getpid()
    (workdir / OWNER_FILE).write_text(f"{pid} {_start_time(pid)}\n")
    if bridge is not None:
        (workdir / BRIDGE_FILE).write_text(bridge + "\n")


def _owner_alive(workdir: Path) -> bool:
    try:
        pid_text, started = (workdir / OWNER_FILE).read_text().split()
    except (OSError, ValueError):
        # No owner recorded (a fleet from before owners were written, or one killed between its
        # mkdtemp and its claim): alive only while young or while some process still runs from it.
        young = time.time() - workdir.stat().st_mtime < UNCLAIMED_GRACE_S
        return young or bool(_processes_using(workdir))
    return _start_time(int(pid_text)) == started


def _processes_using(workdir: Path) -> list[int]:
    """Pids whose command line names a path inside `workdir` (systemd-nspawn --directory=...)."""
    needle = str(workdir).encode()
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            pids.append(int(entry.name))
    return pids


def _mounts_under(workdir: Path) -> list[str]:
    prefix = str(workdir) + "/"
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    return sorted(points, key=len, reverse=True)  # the deepest first


def _loops_under(workdir: Path) -> list[str]:
    return [device for device, back in attached() if back.startswith(str(workdir) + "/")]


@dataclass(frozen=True)
class Reaped:
    workdir: Path
    killed: int
    unmounted: int
    detached: int
    bridge: str | None

    def __str__(self) -> str:
        return (
            f"{self.workdir}: {self.killed} process(es) killed, {self.unmounted} mount(s) and "
            f"{self.detached} loop device(s) released, bridge {self.bridge or '-'} deleted"
        )


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.2)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed child stays in /proc until its parent reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _is_bridge(name: str) -> bool:
    return Path("/sys/class/net", name, "bridge").exists()


def _bridge_of(workdir: Path) -> str | None:
    try:
        name = (workdir / BRIDGE_FILE).read_text().strip()
    except OSError:
        return None
    return name or None


def reap(workdir: Path) -> Reaped:
    pids = _processes_using(workdir)
    _kill(pids)
    mounts = _mounts_under(workdir)
    for point in mounts:
        unmount(point)
    loops = _loops_under(workdir)
    for device in loops:
        run(["losetup", "--detach", device], timeout=30, check=False)
    bridge = _bridge_of(workdir)
    if bridge is not None and _is_bridge(bridge):
        Bridge(bridge, created=True).delete()
    else:
        bridge = None
    if not _mounts_under(workdir):
        shutil.rmtree(workdir, ignore_errors=True)
    return Reaped(workdir, len(pids), len(mounts), len(loops), bridge)


def _nspawn_running() -> bool:
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "systemd-nspawn":
                return True
        except OSError:
            continue
    return False


def reap_stale(parent: Path, *, orphan_bridges: tuple[str, ...] = ()) -> list[Reaped]:
    """Take down every fleet work directory under `parent` whose owner is gone.

    When, after that, no fleet is alive at all, nothing can be using what a fleet that recorded
    less left behind: `orphan_bridges` (a fleet that wrote no `bridge` file) are deleted, and the
    tmpfs a fleet mounted for nspawn is unmounted unless some other nspawn still runs."""
    reaped: list[Reaped] = []
    alive = False
    for workdir in sorted(parent.glob(WORK_PREFIX + "*")):
        if not workdir.is_dir():
            continue
        if _owner_alive(workdir):
            alive = True
            continue
        reaped.append(reap(workdir))
    if not alive:
        for name in orphan_bridges:
            if _is_bridge(name):
                Bridge(name, created=True).delete()
                reaped.append(Reaped(parent, 0, 0, 0, name))
        if reaped and not _nspawn_running():
            NspawnRuntime(mounted=True).release()  # only when it is mounted
    return reaped
