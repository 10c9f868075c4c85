"""One test host: a systemd-nspawn container booted (systemd as PID 1) on its own overlay of the rootfs."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .commands import FleetError, run, unmount
from .loopdev import LoopDevice
from .network import host_address
from .sshkey import SSH_OPTIONS, SshKey

BOOT_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
POLL_S = 1.0
START_ATTEMPTS = 3  # starts of a unit that failed in a boot race
START_PAUSE_S = 1.0


@dataclass(frozen=True)
class HostSpec:
    """What a host is: its name, its number (address 198.18.0.1X), inventory groups, extras."""

    name: str
    index: int
    groups: tuple[str, ...] = ()
    volume_mb: int | None = None  # hand in a loop block device of this size
    files: tuple[tuple[str, Path, int], ...] = ()  # (path inside host, file on controller, mode)
    hostvars: tuple[tuple[str, object], ...] = ()

    @property
    def address(self) -> str:
        return host_address(self.index)


@dataclass
class Host:
    spec: HostSpec
    root: Path  # the host's directory: upper/, work/, merged/ (removed when the host stops)
    key: SshKey
    log_dir: Path  # console.log is kept here, so a failed boot can still be read after teardown
    loop: LoopDevice | None = None
    process: subprocess.Popen[bytes] | None = None
    overlay_mounted: bool = False
    boot_seconds: float | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)
    _mended: set[str] = field(default_factory=set, repr=False)  # units started again after a boot race

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def address(self) -> str:
        return self.spec.address

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def console_log(self) -> Path:
        return self.log_dir / f"{self.name}.console.log"

    @property
    def device(self) -> str | None:
        return self.loop.device if self.loop else None

    # -- preparing the tree ------------------------------------------------------------------------

    def prepare(self, rootfs: Path) -> None:
        """Give the host its own writable tree over the shared rootfs, and its identity and key."""
        upper, work = self.root / "upper", self.root / "work"
        for d in (upper, work, self.merged):
            d.mkdir(parents=True, exist_ok=True)
        try:
            run(
                ["mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir={rootfs},upperdir={upper},workdir={work}", str(self.merged)],
                timeout=30,
            )
            self.overlay_mounted = True
        except FleetError:
            # No overlayfs here: a full copy (reflinked where the filesystem can) does the same job.
            shutil.rmtree(self.merged)
            run(["cp", "-a", "--reflink=auto", str(rootfs), str(self.merged)], timeout=600)
        m = self.merged
        (m / "etc/hostname").write_text(self.name + "\n")
        (m / "etc/hosts").write_text(
            f"127.0.0.1 localhost\n127.0.1.1 {self.name}\n{self.address} {self.name}\n"
        )
        (m / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        ssh_dir = m / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        auth = ssh_dir / "authorized_keys"
        auth.write_text(self.key.public.read_text())
        auth.chmod(0o600)
        for inside, source, mode in self.spec.files:
            target = m / inside.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            target.chmod(mode)
        if self.spec.volume_mb:
            self.loop = LoopDevice.attach(self.root.parent / f"{self.name}-volume.img", self.spec.volume_mb)

    # -- booting -------------------------------------------------------------------------------------

    def start(self, bridge: str) -> None:
        argv = [
            "systemd-nspawn", "--boot", f"--directory={self.merged}", f"--machine={self.name}",
            "--register=no", "--keep-unit", f"--network-bridge={bridge}",
            "--console=read-only", "--resolv-conf=off", "--timezone=off", "--link-journal=no",
        ]
        if self.loop is not None:
            # The device node, and the capability to mkfs and mount it inside the booted host.
            argv += [f"--bind={self.loop.device}", "--capability=CAP_SYS_ADMIN"]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.console_log.open("wb")
        self._log = log
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _pid1(self) -> int | None:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            pids = [int(p) for p in children.read_text().split()]
        except (OSError, ValueError):
            return None
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return pid
            except OSError:
                continue
        return None

    def _fail(self, what: str) -> FleetError:
        tail = self.console_log.read_text(errors="replace")[-3000:] if self.console_log.exists() else ""
        return FleetError(f"host {self.name}: {what}; console tail:\n{tail}")

    def configure_network(self, timeout: float = 60.0) -> None:
        """Address host0 from outside (the rootfs has no network manager): 198.18.0.1X/24."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise self._fail(f"systemd-nspawn exited {self.process.returncode} while booting")
            pid = self._pid1()
            if pid is not None:
                probe = run(["nsenter", "-t", str(pid), "-n", "ip", "link", "show", "host0"], check=False, timeout=10)
                if probe.returncode == 0:
                    break
            if time.monotonic() > deadline:
                raise self._fail(f"no systemd with a host0 link within {timeout:.0f} s")
            time.sleep(0.2)
        ns = ["nsenter", "-t", str(pid), "-n"]
        run([*ns, "ip", "addr", "add", f"{self.address}/24", "dev", "host0"], timeout=10)
        run([*ns, "ip", "link", "set", "host0", "up"], timeout=10)
        run([*ns, "ip", "link", "set", "lo", "up"], timeout=10)

    def wait_running(self, started: float, timeout: float = BOOT_TIMEOUT_S) -> None:
        """Poll `systemctl is-system-running` over SSH until running/degraded, bounded by `timeout`."""
        deadline = time.monotonic() + timeout
        state = "no answer"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise self._fail(f"systemd-nspawn exited {self.process.returncode} while booting")
            proc = self.ssh("systemctl is-system-running", check=False, timeout=15)
            state = proc.stdout.strip() or f"ssh exit {proc.returncode}"
            if state == "degraded" and self._mend_boot_casualties():
                continue  # poll again: the units started again decide whether it is running now
            if state in ("running", "degraded"):
                self.boot_seconds = round(time.monotonic() - started, 1)
                return
            time.sleep(POLL_S)
        raise self._fail(f"not running within {timeout:.0f} s (last state: {state})")

    def _mend_boot_casualties(self) -> bool:
        """Start again units that failed during the boot, up to START_ATTEMPTS times each, until
        a start succeeds; every attempt and its outcome go to `<host>.boot-retries.log` beside the
        console log.

        On this kind of host (cgroup v1, no systemd as PID 1 outside) systemd inside a container
        now and then loses a race of the boot: a unit started before its cgroup exists (status
        219/CGROUP, "Failed to attach to cgroup ... No such file or directory"), seen on
        systemd-tmpfiles-setup in one or two of five hosts booted at the same moment (CI runs of
        2026-12-01). `systemctl restart` cannot mend systemd-tmpfiles-setup (RefuseManualStop=yes
        refuses the stop half), so each unit is started again, up to a few times a second apart.
        The boot has not been touched by anything the tests converge. A unit still failed after
        its last attempt stays failed, and the tests see it."""
        out = self.ssh(
            "for u in $(systemctl --failed --no-legend --plain | awk '{print $1}'); do "
            "echo \"$u $(systemctl show -p ExecMainStatus --value \"$u\")\"; done",
            check=False, timeout=20,
        ).stdout.split("\n")
        failed = [line.split() for line in out if line.split()]
        units = [(words[0], " ".join(words[1:])) for words in failed if words[0] not in self._mended]
        for unit, status in units:
            self._mended.add(unit)
            journal = self.ssh(f"journalctl -b -u {unit} --no-pager -n 50", check=False, timeout=30).stdout
            with (self.log_dir / f"{self.name}.boot-retries.log").open("a") as fh:
                fh.write(f"== {unit} failed during the boot (status {status or '?'})\n{journal}\n")
                for attempt in range(1, START_ATTEMPTS + 1):
                    # start, not restart: some of these refuse a manual stop (systemd-tmpfiles-setup
                    # has RefuseManualStop=yes), and a start of a failed unit runs it again; for a
                    # oneshot the start waits for it to finish and says how it ended
                    proc = self.ssh(f"systemctl reset-failed {unit}; systemctl start {unit}", check=False, timeout=60)
                    outcome = "started" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip()}"
                    fh.write(f"start {attempt}/{START_ATTEMPTS}: {outcome}\n")
                    if proc.returncode == 0:
                        break
                    time.sleep(START_PAUSE_S)
        return bool(units)

    # -- using it ------------------------------------------------------------------------------------

    def ssh(self, command: str, *, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the host as root over SSH (the way Ansible reaches it)."""
        return run([*self.key.ssh_argv(self.address), command], check=check, timeout=timeout)

    def failed_units(self) -> str:
        return self.ssh("systemctl --failed --no-legend --plain", check=False, timeout=20).stdout.strip()

    def testinfra_spec(self) -> tuple[str, dict[str, object]]:
        """Arguments for testinfra.get_host() that reach this host over SSH."""
        return (
            f"ssh://root@{self.address}",
            {"ssh_identity_file": str(self.key.private), "ssh_extra_args": shlex.join(SSH_OPTIONS)},
        )

    # -- stopping ------------------------------------------------------------------------------------

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> list[str]:
        """Shut the host down (SIGTERM to nspawn powers systemd off), then remove its tree. Errors listed."""
        errors: list[str] = []
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                errors.append(f"{self.name}: nspawn did not stop within {timeout:.0f} s; killed")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.overlay_mounted:
            unmount(str(self.merged))
            self.overlay_mounted = os.path.ismount(self.merged)
            if self.overlay_mounted:
                errors.append(f"{self.name}: overlay still mounted at {self.merged}")
        if self.loop is not None:
            self.loop.detach()
            self.loop = None
        if not self.overlay_mounted and self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
        return errors
