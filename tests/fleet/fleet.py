"""A fleet of booted test hosts on a private bridge, built up and torn down as one unit.

    with Fleet.session([HostSpec("mirror1", 1, ("mirror",), volume_mb=300),
                        HostSpec("client1", 2, ("clients",))], workdir=...) as fleet:
        fleet.host("mirror1").ssh("systemctl is-system-running")
        fleet.write_inventory(path)
        fleet.add_host(HostSpec("mirror2", 4, ("downstream",)))   # later hosts join the same bridge

Everything the session created is removed when the `with` block ends, also on errors.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from .commands import FleetError, FleetUnavailable, require_root
from .host import BOOT_TIMEOUT_S, Host, HostSpec
from .inventory import write_inventory
from .network import Bridge, NspawnRuntime
from .reaper import WORK_PREFIX, claim, reap_stale
from .rootfs import PACKAGES, build_rootfs
from .sshkey import SshKey

WORK_PARENT = Path("/var/tmp")


@dataclass
class Fleet:
    workdir: Path
    log_dir: Path
    rootfs: Path
    key: SshKey
    bridge: Bridge
    runtime: NspawnRuntime
    hosts: dict[str, Host] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    @contextmanager
    def session(
        cls,
        specs: Sequence[HostSpec],
        *,
        log_dir: Path | None = None,
        packages: tuple[str, ...] = PACKAGES,
        bridge_name: str = "fleet0",
        boot_timeout: float = BOOT_TIMEOUT_S,
    ) -> Iterator[Fleet]:
        require_root()
        previous_sigterm = _exit_on_sigterm()
        t0 = time.monotonic()
        rootfs = build_rootfs(packages)
        rootfs_s = time.monotonic() - t0
        for reaped in reap_stale(WORK_PARENT, orphan_bridges=(bridge_name,)):
            print(f"fleet: took down what a killed fleet left: {reaped}", file=sys.stderr)
        workdir = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=WORK_PARENT))
        claim(workdir)
        fleet: Fleet | None = None
        runtime: NspawnRuntime | None = None
        bridge: Bridge | None = None
        try:
            runtime = NspawnRuntime.ensure()
            bridge = Bridge.create(bridge_name)
            claim(workdir, bridge.name)
            key = SshKey.generate(workdir / "ssh")
            fleet = cls(
                workdir=workdir, log_dir=log_dir or workdir / "logs", rootfs=rootfs, key=key,
                bridge=bridge, runtime=runtime,
            )
            fleet.timings["rootfs_s"] = round(rootfs_s, 1)
            fleet.add_hosts(specs, boot_timeout=boot_timeout)
            fleet.timings["boot_s"] = round(time.monotonic() - t0 - rootfs_s, 1)
            yield fleet
        finally:
            errors = fleet.stop_hosts() if fleet is not None else []
            if bridge is not None:
                bridge.delete()
            if runtime is not None:
                runtime.release()
            shutil.rmtree(workdir, ignore_errors=True)
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)
            if errors:
                raise FleetError("fleet teardown: " + "; ".join(errors))

    # -- hosts ---------------------------------------------------------------------------------------

    def add_hosts(self, specs: Iterable[HostSpec], *, boot_timeout: float = BOOT_TIMEOUT_S) -> list[Host]:
        """Boot hosts (all at once) and wait until each is running; they are stopped at teardown."""
        new: list[Host] = []
        for spec in specs:
            if spec.name in self.hosts or any(h.spec.index == spec.index for h in self.hosts.values()):
                raise FleetError(f"host {spec.name} (index {spec.index}) clashes with a host of this fleet")
            host = Host(spec=spec, root=self.workdir / "hosts" / spec.name, key=self.key, log_dir=self.log_dir)
            self.hosts[spec.name] = host  # registered first, so teardown finds it whatever happens next
            new.append(host)
            host.prepare(self.rootfs)
        started = time.monotonic()
        for host in new:
            host.start(self.bridge.name)
        for host in new:
            host.configure_network()
        for host in new:
            host.wait_running(started, timeout=boot_timeout)
        return new

    def add_host(self, spec: HostSpec, *, boot_timeout: float = BOOT_TIMEOUT_S) -> Host:
        return self.add_hosts([spec], boot_timeout=boot_timeout)[0]

    def host(self, name: str) -> Host:
        return self.hosts[name]

    def group(self, group: str) -> list[Host]:
        return [h for h in self.hosts.values() if group in h.spec.groups]

    def stop_hosts(self) -> list[str]:
        errors: list[str] = []
        for host in list(self.hosts.values()):
            if host.process is not None and host.process.poll() is None:
                host.process.terminate()  # all shut down in parallel; stop() then waits for each
        for host in list(self.hosts.values()):
            try:
                errors += host.stop()
            except Exception as exc:  # noqa: BLE001 - keep tearing down the others
                errors.append(f"{host.name}: {exc}")
        return errors

    # -- for Ansible and testinfra ----------------------------------------------------------------

    @property
    def controller_address(self) -> str:
        """This machine's address as the hosts see it (bind test servers here)."""
        return self.bridge.address

    def write_inventory(
        self, path: Path, group_vars: Mapping[str, Mapping[str, object]] | None = None
    ) -> Path:
        return write_inventory(path, self.hosts.values(), self.key, group_vars)


def _exit_on_sigterm() -> signal.Handlers | Callable[[int, FrameType | None], object] | int | None:
    """Turn SIGTERM (a CI timeout, `kill`) into SystemExit, so the teardown in `finally` still runs."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:
        def _raise(signum: int, _frame: FrameType | None) -> None:
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, _raise)
        return previous
    return None


__all__ = ["Fleet", "FleetError", "FleetUnavailable", "HostSpec"]
