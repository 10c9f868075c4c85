"""Debian packages the benchmark needs: nginx, wrk, GNU time — installed with apt-get when missing."""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Callable, Mapping

# package -> the program it provides
PACKAGES = {"nginx": "nginx", "wrk": "wrk", "time": "/usr/bin/time"}
# the latency scenario: no wrk; iptables for the NFQUEUE rule, curl for the bulk-transfer check
LATENCY_PACKAGES = {"nginx": "nginx", "time": "/usr/bin/time", "iptables": "iptables-legacy", "curl": "curl"}


def _present(program: str) -> bool:
    if program.startswith("/"):
        return os.path.exists(program)
    return shutil.which(program) is not None or os.path.exists(f"/usr/sbin/{program}")


def missing(packages: Mapping[str, str] = PACKAGES) -> list[str]:
    return [pkg for pkg, prog in packages.items() if not _present(prog)]


def ensure(log: Callable[[str], None], packages: Mapping[str, str] = PACKAGES) -> list[str]:
    """Install what is missing (as root, with apt-get); returns what is still missing."""
    need = missing(packages)
    if not need:
        return []
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        log(f"missing Debian packages {need} and cannot install them (not root or no apt-get)")
        return need
    log(f"installing Debian packages {need}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    res = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need], env=env, capture_output=True, text=True)
    if res.returncode != 0:  # stale or absent package lists
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, text=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need], env=env, capture_output=True, text=True)
    return missing(packages)


def filesystem_of(path: "os.PathLike[str] | str") -> str:
    """The type of the file system holding `path` (from /proc/self/mounts), e.g. "ext4"."""
    target = os.path.realpath(path)
    best, fstype = "", "unknown"
    try:
        with open("/proc/self/mounts") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, fstype = mnt, parts[2]
    except OSError:
        pass
    return fstype
