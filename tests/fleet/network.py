"""The private bridge the hosts sit on, and the tmpfs systemd-nspawn needs on this machine.

Only 198.18.0.0/24 is used: the bridge is 198.18.0.1, hosts get 198.18.0.1X. Nothing is routed out.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from .commands import FleetError, run

NETWORK = ipaddress.ip_network("198.18.0.0/24")
BRIDGE_ADDRESS = ipaddress.ip_address("198.18.0.1")
NSPAWN_RUNTIME = Path("/run/systemd/nspawn")


def host_address(index: int) -> str:
    """198.18.0.1X for host number X (1..89): the brief's addressing scheme, bounded to the /24."""
    if not 1 <= index <= 89:
        raise ValueError(f"host index {index} outside 1..89")
    address = ipaddress.ip_address(f"198.18.0.{10 + index}")
    assert address in NETWORK
    return str(address)


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _address_in_use() -> str | None:
    """Name of an interface already holding an address in 198.18.0.0/24, if any."""
    out = run(["ip", "-o", "-4", "addr", "show"], timeout=10).stdout
    for line in out.splitlines():
        words = line.split()
        if "inet" in words:
            iface = ipaddress.ip_interface(words[words.index("inet") + 1])
            if iface.ip in NETWORK:
                return words[1]
    return None


@dataclass
class Bridge:
    name: str
    address: str = str(BRIDGE_ADDRESS)
    created: bool = False

    @classmethod
    def create(cls, preferred: str = "fleet0") -> Bridge:
        holder = _address_in_use()
        if holder is not None:
            raise FleetError(
                f"{holder} already holds an address in {NETWORK}: another fleet is running; "
                "two fleets on one machine would share the network"
            )
        name = preferred
        for n in range(1, 50):
            if not _link_exists(name):
                break
            name = f"{preferred[:10]}x{n}"
        else:
            raise FleetError(f"no free bridge name like {preferred}")
        bridge = cls(name=name)
        run(["ip", "link", "add", name, "type", "bridge"], timeout=10)
        bridge.created = True
        try:
            run(["ip", "addr", "add", f"{bridge.address}/{NETWORK.prefixlen}", "dev", name], timeout=10)
            run(["ip", "link", "set", name, "up"], timeout=10)
        except FleetError:
            bridge.delete()
            raise
        return bridge

    def delete(self) -> None:
        if self.created and _link_exists(self.name):
            run(["ip", "link", "delete", self.name, "type", "bridge"], timeout=10, check=False)
        self.created = False


@dataclass
class NspawnRuntime:
    """nspawn refuses to run when /run is not a tmpfs (no systemd as PID 1 here): give it one."""

    mounted: bool = False

    @classmethod
    def ensure(cls) -> NspawnRuntime:
        NSPAWN_RUNTIME.mkdir(parents=True, exist_ok=True)
        if os.path.ismount(NSPAWN_RUNTIME) or _is_tmpfs(Path("/run")):
            return cls(mounted=False)
        run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(NSPAWN_RUNTIME)], timeout=10)
        return cls(mounted=True)

    def release(self) -> None:
        if self.mounted and os.path.ismount(NSPAWN_RUNTIME):
            run(["umount", str(NSPAWN_RUNTIME)], timeout=30, check=False)
        self.mounted = False


def _is_tmpfs(path: Path) -> bool:
    best = ("", "")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _dev, mnt, fstype, *_ = line.split()
        if str(path).startswith(mnt) and len(mnt) > len(best[0]):
            best = (mnt, fstype)
    return best[1] == "tmpfs"
