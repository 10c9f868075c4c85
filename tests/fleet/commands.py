"""Run commands on the controller (the machine the tests run on): bounded, logged, checked."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence


class FleetError(RuntimeError):
    """A step that builds or runs the fleet failed; the message says which and why."""


class FleetUnavailable(FleetError):
    """This machine cannot run a fleet at all (not root, no nspawn, ...): tests skip with the reason."""


def run(
    argv: Sequence[str],
    *,
    timeout: float = 120,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` with a timeout; raise FleetError naming the command and its stderr on failure."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            input=input_text,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise FleetError(f"{' '.join(argv)} did not finish within {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise FleetError(f"{' '.join(argv)} exited {proc.returncode}: {tail}")
    return proc


def unmount(point: str) -> None:
    """Unmount `point`; lazily when it is busy (what still holds it lets go when it ends)."""
    if run(["umount", point], timeout=60, check=False).returncode != 0:
        run(["umount", "--lazy", point], timeout=60, check=False)


CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21


def require_root() -> None:
    """Root with the capabilities nspawn needs (an unprivileged container has neither)."""
    if os.geteuid() != 0:
        raise FleetUnavailable("the fleet needs root (debootstrap, nspawn, bridges, loop devices)")
    caps = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("CapEff:"):
                caps = int(line.split()[1], 16)
    for bit, name in ((CAP_SYS_ADMIN, "CAP_SYS_ADMIN"), (CAP_NET_ADMIN, "CAP_NET_ADMIN")):
        if not caps & (1 << bit):
            raise FleetUnavailable(f"root here lacks {name}: systemd-nspawn cannot boot hosts")


_APT_UPDATED = False


def ensure_tools(tools: Mapping[str, str]) -> None:
    """Install the Debian package providing each missing tool (tool name -> package name)."""
    global _APT_UPDATED
    missing = sorted({pkg for tool, pkg in tools.items() if shutil.which(tool) is None})
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise FleetUnavailable(f"missing {', '.join(missing)} and no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _APT_UPDATED:
        run(["apt-get", "update", "-q"], timeout=600, env=env)
        _APT_UPDATED = True
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], timeout=900, env=env)
    still = sorted(tool for tool in tools if shutil.which(tool) is None)
    if still:
        raise FleetUnavailable(f"apt-get installed {', '.join(missing)} but {', '.join(still)} still missing")
