"""Build (once) and cache the Debian root filesystem every fleet host boots from.

The hosts have no route out of the bridge, so every distribution package the roles need is installed
here, at build time. The cache is keyed by suite, variant and package list: changing the list builds a
new tree, an unchanged list reuses the old one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from pathlib import Path

from .commands import FleetError, ensure_tools, run

CACHE_ROOT = Path("/var/cache/pypi-mirror-kit")
SUITE = "bookworm"
VARIANT = "minbase"
# Bump when the post-install steps below change, so old caches are not reused.
LAYOUT_VERSION = 1

PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "python3-pip",
    # ansible.builtin.apt imports it; without it Ansible tries to apt-get it, and hosts are offline.
    "python3-apt",
    "openssh-server",
    "iproute2",
    "nginx",
    # njs, for the nginx role's vhost (X-PyPI-Last-Serial, redirects of unnormalized names)
    "libnginx-mod-http-js",
    "cron",
    "logrotate",
    "e2fsprogs",
    "sudo",
    "acl",
    "util-linux",
    "curl",
    "ca-certificates",
    "procps",
)

CONTROLLER_TOOLS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "losetup": "mount",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "nsenter": "util-linux",
    "mkfs.ext4": "e2fsprogs",
}


def cache_key(packages: tuple[str, ...] = PACKAGES) -> str:
    material = json.dumps(
        {"suite": SUITE, "variant": VARIANT, "packages": sorted(packages), "layout": LAYOUT_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def apt_mirror() -> str | None:
    """The Debian archive this machine's apt uses (so debootstrap uses the same), if one is found."""
    candidates: list[Path] = [Path("/etc/apt/sources.list")]
    sources_d = Path("/etc/apt/sources.list.d")
    if sources_d.is_dir():
        candidates += sorted(sources_d.glob("*.sources")) + sorted(sources_d.glob("*.list"))
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            url = ""
            if words[0] == "URIs:" and len(words) > 1:
                url = words[1]
            elif words[0] == "deb" and len(words) > 2:
                url = words[2] if words[1].startswith("[") else words[1]
            if url.startswith(("http://", "https://")) and "security" not in url:
                return url
    return None


def _post_install(root: Path) -> None:
    # Each host gets its own machine id at boot (written per host); none is baked in.
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.is_symlink() or dbus_id.exists():
        dbus_id.unlink()
    # Nothing in a test host may try to reach out for time or packages.
    for path in (root / "var/cache/apt/archives").glob("*.deb"):
        path.unlink()
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)


def build_rootfs(packages: tuple[str, ...] = PACKAGES, cache_root: Path = CACHE_ROOT) -> Path:
    """Return a ready root filesystem for `packages`, building it with debootstrap if not cached."""
    ensure_tools(CONTROLLER_TOOLS)
    cache_root.mkdir(parents=True, exist_ok=True)
    key = cache_key(packages)
    final = cache_root / f"rootfs-{SUITE}-{key}"
    marker = final / ".pypi-mirror-kit-rootfs.json"
    lock_path = cache_root / f"rootfs-{SUITE}-{key}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session building the same tree: wait for it
        if marker.is_file():
            return final
        staging = cache_root / f"rootfs-{SUITE}-{key}.building"
        if staging.exists():
            shutil.rmtree(staging)
        argv = [
            "debootstrap",
            f"--variant={VARIANT}",
            f"--include={','.join(packages)}",
            SUITE,
            str(staging),
        ]
        mirror = apt_mirror()
        if mirror:
            argv.append(mirror)
        started = time.monotonic()
        try:
            run(argv, timeout=1800)
            _post_install(staging)
        except FleetError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        (staging / marker.name).write_text(
            json.dumps({"packages": sorted(packages), "key": key, "build_s": round(time.monotonic() - started, 1)})
        )
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        return final
